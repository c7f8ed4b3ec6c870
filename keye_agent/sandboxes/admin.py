"""What `keye-agent sandbox ls` and `prune` do: list sandbox containers and images, remove orphans and old images."""

from __future__ import annotations

import time
from typing import Any

import docker.errors

from ._docker import docker_client
from .build import cache_dir
from .owner import list_sandboxes, reap_orphans
from .recipe import DEFAULT_RECIPE, IMAGE_REPOSITORY, RECIPE_LABEL


def list_images() -> list[dict[str, Any]]:
    """Sandbox images: tag, size, whether it is the current recipe's."""
    rows = docker_client().api.images(name=IMAGE_REPOSITORY)
    out = []
    for r in rows:
        for tag in r.get("RepoTags") or []:
            out.append(
                {
                    "tag": tag,
                    "id": r["Id"],
                    "size": r.get("Size", 0),
                    "created": r.get("Created", 0),
                    "current": tag == DEFAULT_RECIPE.image_tag,
                    "recipe": (r.get("Labels") or {}).get(RECIPE_LABEL, ""),
                }
            )
    return out


def listing() -> dict[str, Any]:
    """Containers (with owner state) and images, as plain data (`ls --json`)."""
    now = time.time()
    containers = [
        {
            "name": c.name,
            "id": c.id[:12],
            "state": c.state,
            "owner_pid": c.owner_pid,
            "owner": c.owner,
            "age_s": int(now - c.created),
            "image": c.image,
        }
        for c in list_sandboxes()
    ]
    return {"containers": containers, "images": list_images(), "current_image": DEFAULT_RECIPE.image_tag}


def format_listing() -> str:
    """Plain-text table of `listing()`."""
    data = listing()
    lines = [f"{'CONTAINER':<34} {'STATE':<9} {'OWNER PID':>9} {'OWNER':<8} {'AGE':>7}  IMAGE"]
    for c in data["containers"]:
        lines.append(
            f"{c['name']:<34} {c['state']:<9} {c['owner_pid'] or '-':>9} {c['owner']:<8} {c['age_s']:>6}s  {c['image']}"
        )
    if not data["containers"]:
        lines.append("(no sandbox containers)")
    lines.append("")
    lines.append(f"{'IMAGE':<34} {'SIZE':>9}  CURRENT")
    for i in data["images"]:
        lines.append(f"{i['tag']:<34} {i['size'] / 2**20:>7.0f}Mi  {'yes' if i['current'] else 'no'}")
    if not data["images"]:
        lines.append(f"(no sandbox image; build {data['current_image']} with `keye-agent sandbox build`)")
    return "\n".join(lines)


def prune(*, everything: bool = False, images: bool = False) -> list[str]:
    """Remove orphaned containers (all sandbox containers with ``everything``), and with ``images`` the images and
    cached root filesystems of other recipes than the current one. Returns one line per thing removed."""
    done = [
        f"removed container {c.name} (owner pid {c.owner_pid}, {c.owner})" for c in reap_orphans(everything=everything)
    ]
    if images:
        api = docker_client().api
        for i in list_images():
            if i["current"]:
                continue
            try:
                api.remove_image(i["tag"])
                done.append(f"removed image {i['tag']}")
            except docker.errors.APIError as e:
                done.append(f"kept image {i['tag']}: {e.explanation or e}")
        current = f"rootfs-{DEFAULT_RECIPE.digest[:12]}.tar"
        for tar in sorted(cache_dir().glob("rootfs-*.tar")):
            if tar.name != current:
                tar.unlink()
                done.append(f"removed cached root filesystem {tar}")
    if not done:
        done.append("nothing to prune")
    return done
