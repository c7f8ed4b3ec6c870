"""The sandbox image recipe: what goes into the root filesystem, and the tag derived from it.

The image is named ``keye-sandbox:<first 12 hex digits of the recipe's SHA-256>``, so a change to the recipe
(packages, suite, user, build steps) gives a new tag and `keye-agent sandbox build` builds it; an unchanged recipe
finds its image and does nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

IMAGE_REPOSITORY = "keye-sandbox"
RECIPE_LABEL = "keye.sandbox.recipe"
SANDBOX_UID = 1000
SANDBOX_USER = "sandbox"
MATPLOTLIB_CACHE = "/opt/keye/matplotlib"  # font cache made at build time, copied to /tmp/matplotlib at start


@dataclass(frozen=True)
class Recipe:
    """A minimal Debian root filesystem with Python's data stack, built by debootstrap and imported into Docker."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = (
        "python3",
        "python-is-python3",  # models (and llm-sandbox) call `python`
        "python3-numpy",
        "python3-pandas",
        "python3-matplotlib",
        # Satisfies python3-fonttools' "scipy | munkres" with the small one: apt's first choice, scipy, drags in
        # pythran, gcc and boost headers (about 700 MB).
        "python3-munkres",
        "procps",
        "jq",
        "sqlite3",
        "unzip",
        "zip",
        "xz-utils",
        "bzip2",
        "bc",
        "file",
        "less",
    )
    removed_paths: tuple[str, ...] = (
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
        "usr/share/lintian",
        "var/lib/apt/lists",
        "var/cache/apt",
        "var/cache/debconf",
        "var/log",
    )
    uid: int = SANDBOX_UID
    user: str = SANDBOX_USER
    # Bumped when the build steps change in a way the fields above do not show.
    build_steps_version: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """SHA-256 of the recipe as canonical JSON."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    @property
    def image_tag(self) -> str:
        """``keye-sandbox:<12 hex digits>``: the image this recipe builds."""
        return f"{IMAGE_REPOSITORY}:{self.digest[:12]}"


DEFAULT_RECIPE = Recipe()


def default_image() -> str:
    """The tag of the image built from the current recipe."""
    return DEFAULT_RECIPE.image_tag
