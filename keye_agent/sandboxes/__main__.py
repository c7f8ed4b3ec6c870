"""``python -m keye_agent.sandboxes build|ls|prune``: the sandbox admin commands without the full CLI.

The Makefile uses ``build`` before the `keye-agent` command is installed; `keye-agent sandbox ...` is the same.
"""

from __future__ import annotations

import argparse
import sys

from keye_agent.errors import SandboxError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keye_agent.sandboxes")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the sandbox image if the current recipe's image is missing")
    b.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    sub.add_parser("ls", help="list sandbox containers and images")
    p = sub.add_parser("prune", help="remove orphaned sandbox containers (owner gone)")
    p.add_argument("--all", action="store_true", help="remove every sandbox container, owners alive or not")
    p.add_argument("--images", action="store_true", help="also remove images of older recipes")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            from .build import build_image

            build_image(force=args.force)
        elif args.cmd == "ls":
            from .admin import format_listing

            print(format_listing())
        else:
            from .admin import prune

            for line in prune(everything=args.all, images=args.images):
                print(line)
    except SandboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
