"""The image recipe, mirror discovery, and the admin commands (`build` when the image exists, `ls`, `prune`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keye_agent.cli.sandbox import app
from keye_agent.sandboxes import DEFAULT_RECIPE, Recipe
from keye_agent.sandboxes.build import debian_mirror


def test_recipe_tag_follows_its_content() -> None:
    assert Recipe().image_tag == DEFAULT_RECIPE.image_tag
    assert Recipe(packages=(*DEFAULT_RECIPE.packages, "git")).image_tag != DEFAULT_RECIPE.image_tag
    assert Recipe(build_steps_version=2).digest != DEFAULT_RECIPE.digest


def test_mirror_is_read_from_apt_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYE_SANDBOX_MIRROR", raising=False)
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert debian_mirror("bookworm", apt_dir=apt) == "http://mirror.invalid/debian"
    (apt / "sources.list.d" / "debian.sources").unlink()
    (apt / "sources.list").write_text("# comment\ndeb [arch=amd64] http://old.invalid/debian bookworm main\n")
    assert debian_mirror("bookworm", apt_dir=apt) == "http://old.invalid/debian"
    monkeypatch.setenv("KEYE_SANDBOX_MIRROR", "http://override.invalid/debian")
    assert debian_mirror("bookworm", apt_dir=apt) == "http://override.invalid/debian"


@pytest.mark.docker
def test_build_is_a_no_op_when_the_image_exists(engine: None) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "keye_agent.sandboxes", "build"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == f"{DEFAULT_RECIPE.image_tag} is up to date", out


@pytest.mark.docker
def test_cli_ls_and_prune(engine: None) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["ls", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["current_image"] == DEFAULT_RECIPE.image_tag
    assert any(i["tag"] == DEFAULT_RECIPE.image_tag and i["current"] for i in data["images"])
    res = runner.invoke(app, ["ls"])
    assert res.exit_code == 0 and "CONTAINER" in res.output and DEFAULT_RECIPE.image_tag in res.output
    res = runner.invoke(app, ["prune"])
    assert res.exit_code == 0 and res.output.strip()
