"""redact() caches what it learnt from the environment; a changed, added or removed variable is seen at once."""

from __future__ import annotations

from keye_agent import errors
from keye_agent.errors import redact, register_secret


def test_the_secret_cache_follows_the_environment(monkeypatch):
    # a registered secret lives for the process: give this test its own registry so the value it registers cannot
    # redact words in later tests' messages
    monkeypatch.setattr(errors, "_registered_secrets", set(errors._registered_secrets))
    monkeypatch.setenv("CACHE_TEST_API_KEY", "first-secret-value")
    assert redact("a first-secret-value b") == "a *** b"
    monkeypatch.setenv("CACHE_TEST_API_KEY", "second-secret-value")
    assert redact("a second-secret-value b") == "a *** b"
    monkeypatch.setenv("OTHER_CACHE_TEST_TOKEN", "third-secret-value")
    assert redact("third-secret-value") == "***"
    monkeypatch.delenv("OTHER_CACHE_TEST_TOKEN")
    assert redact("third-secret-value") == "third-secret-value"
    register_secret("zq81-later-registered-xv")
    assert redact("zq81-later-registered-xv") == "***"
