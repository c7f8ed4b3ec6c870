"""Fixtures for the TAU2 runner tests. tau2-bench's public data is the copy shipped in the package
(keye_agent/tau/domains/tau2_data), or $KEYE_TAU2_DATA when set; what tau2-bench's own code produced from it
(expected end states) is vendored in fixtures/tau2_expected/. Nothing outside the repository is read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keye_agent.tau.domains.tau2 import BUNDLED


@pytest.fixture(scope="session")
def tau2_data() -> Path:
    return Path(os.environ.get("KEYE_TAU2_DATA") or BUNDLED)


@pytest.fixture(scope="session")
def mock_domain(tau2_data: Path):
    from keye_agent.tau import load_domain

    return load_domain("mock", tau2_data=tau2_data)
