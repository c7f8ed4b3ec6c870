"""Code sandboxes: `DockerSandbox` (a stateful, locked-down Python session in a container), its configuration,
the warm `SandboxPool`, the image build, and the ``run_code`` tool (in `keye_agent.sandboxes.tool`)."""

from .build import build_image
from .config import SandboxConfig
from .docker_sandbox import DockerSandbox
from .owner import reap_orphans
from .pool import SandboxPool
from .protocol import Sandbox
from .recipe import DEFAULT_RECIPE, Recipe, default_image
from .result import ExecResult

__all__ = [
    "DEFAULT_RECIPE",
    "DockerSandbox",
    "ExecResult",
    "Recipe",
    "Sandbox",
    "SandboxConfig",
    "SandboxPool",
    "build_image",
    "default_image",
    "reap_orphans",
]
