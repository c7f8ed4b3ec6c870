"""Built-in tools, found through the entry-point group ``keye_agent.tools``.

Each entry point names a factory ``make_<name>(**options) -> Tool``. Other parts of keye-agent (the sandbox's
``run_code``, search's ``web_search`` and ``fetch_url``) and third-party packages register theirs there, so this
package never imports them.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Any

from keye_agent.errors import ConfigError

from .base import Tool

GROUP = "keye_agent.tools"


def available_builtins() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load_builtin(name: str, **options: Any) -> Tool:
    """Build the built-in tool ``name`` with ``options`` (e.g. ``load_builtin("run_code", timeout_s=30)``)."""
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in eps:
        close = difflib.get_close_matches(name, list(eps), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "install the extra that provides it (e.g. keye-agent[all])"
        raise ConfigError(
            f"no built-in tool named {name!r}; available: {', '.join(sorted(eps)) or 'none'}", hint=hint
        )
    try:
        factory = eps[name].load()
    except ImportError as e:
        raise ConfigError(
            f"built-in tool {name!r} cannot be loaded: {e}", hint="install the extra that provides it (keye-agent[all])"
        ) from e
    try:
        made = factory(**options)
    except TypeError as e:
        raise ConfigError(f"built-in tool {name!r}: bad options {sorted(options)}: {e}") from e
    if not isinstance(made, Tool):
        raise ConfigError(f"entry point {name!r} returned {type(made).__name__}, not a Tool")
    return made
