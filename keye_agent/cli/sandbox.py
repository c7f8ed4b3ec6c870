"""`keye-agent sandbox build|ls|prune`: manage the sandbox image and containers (mounted by the main CLI)."""

from __future__ import annotations

import json

import typer

from keye_agent.errors import SandboxError

app = typer.Typer(help="Manage the Docker code sandbox: image and containers.", no_args_is_help=True)


def _fail(e: SandboxError) -> None:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.command()
def build(force: bool = typer.Option(False, "--force", help="Rebuild even if the image exists.")) -> None:
    """Build the sandbox image (debootstrap + docker import) if the current recipe's image is missing."""
    import time

    from keye_agent.sandboxes._docker import image_exists
    from keye_agent.sandboxes.build import build_image
    from keye_agent.sandboxes.recipe import DEFAULT_RECIPE

    from .progress import err_console, spinner

    try:
        if not force and image_exists(DEFAULT_RECIPE.image_tag):
            typer.echo(f"{DEFAULT_RECIPE.image_tag} is up to date")
            return
        t0 = time.monotonic()
        with spinner(err_console(), f"building the sandbox image {DEFAULT_RECIPE.image_tag} (a few minutes)") as wait:
            tag = build_image(force=force, log=wait.log)  # on a terminal its log lines show in the spinner
        typer.echo(f"built {tag} in {time.monotonic() - t0:.0f} s")
    except SandboxError as e:
        _fail(e)


@app.command("ls")
def ls(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List sandbox containers (with whether their owner process is alive) and sandbox images."""
    from keye_agent.sandboxes.admin import format_listing, listing

    try:
        typer.echo(json.dumps(listing(), indent=2) if as_json else format_listing())
    except SandboxError as e:
        _fail(e)


@app.command()
def prune(
    all_: bool = typer.Option(False, "--all", help="Remove every sandbox container, even of live owners."),
    images: bool = typer.Option(False, "--images", help="Also remove images of older recipes."),
) -> None:
    """Remove sandbox containers whose owner process is gone (and, with --images, old images)."""
    from keye_agent.sandboxes.admin import prune as do_prune

    try:
        for line in do_prune(everything=all_, images=images):
            typer.echo(line)
    except SandboxError as e:
        _fail(e)
