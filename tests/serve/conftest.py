"""Fixtures of the server tests: one tiny Keye model (random weights) for the session, and a server over it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from serve_fixtures import serving


@pytest.fixture(scope="session")
def tiny():
    from keye_agent.backends import load_model

    with warnings.catch_warnings():  # the preset's stand-in tokenizer says it is one
        warnings.simplefilter("ignore")
        return load_model("keye:tiny", random_weights=True)


@pytest.fixture(scope="module")
def api(tiny) -> Iterator[str]:
    """The API root of a server over the tiny model, named "tiny"."""
    with serving(tiny) as url:
        yield url
