"""Fixtures for the TAU2 runner tests. tau2-bench's public data is read from $KEYE_TAU2_DATA, else ../shared/tau2
beside the checkout; it is never copied into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_BESIDE = Path(__file__).resolve().parents[3] / "shared" / "tau2"
# where this workplace keeps the shared folder, for a clone made elsewhere (CI's clean clone, say)
_WORKPLACE = Path("/work/shared/tau2")
_DEFAULT = _BESIDE if _BESIDE.is_dir() or not _WORKPLACE.is_dir() else _WORKPLACE


@pytest.fixture(scope="session")
def tau2_data() -> Path:
    root = Path(os.environ.get("KEYE_TAU2_DATA") or _DEFAULT)
    if not (root / "data" / "tau2" / "domains" / "mock" / "tasks.json").is_file():
        pytest.skip(f"tau2-bench data not found at {root} (set KEYE_TAU2_DATA to a folder holding "
                    "data/tau2/domains/mock/tasks.json and expected/mock.json)")
    return root


@pytest.fixture(scope="session")
def mock_domain(tau2_data: Path):
    from keye_agent.tau import load_domain

    return load_domain("mock", tau2_data=tau2_data)
