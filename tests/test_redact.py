"""The one redaction point (keye_agent.errors.redact): whole secrets, cut ones, escaped ones, shapes, and errors."""

from __future__ import annotations

import pytest

from keye_agent.errors import ConfigError, ToolExecutionError, is_secret_name, redact, register_secret, shorten

SECRET = "s3cr3t-Vb7Nq2Lm9Xc4Kp8Wd1"


@pytest.fixture(autouse=True)
def _registered() -> None:
    register_secret(SECRET)


def test_whole_and_escaped_secrets() -> None:
    assert redact(f"token={SECRET}!") == "token=***!"
    register_secret("a+b/c=d e&f-long")
    assert redact("q=a%2Bb%2Fc%3Dd%20e%26f-long") == "q=***"  # as it appears inside a URL
    register_secret('quo"te\\back-1')
    assert redact('{"v": "quo\\"te\\\\back-1"}') == '{"v": "***"}'  # as it appears inside JSON


@pytest.mark.parametrize("text", [
    f"... Bearer {SECRET[:13]}",            # cut at the end of the text
    f"'{SECRET[:9]}...'",                    # a quoted excerpt cut inside the secret
    f"body: {SECRET[:20]}... (truncated)",   # cut before an ellipsis
    f"{SECRET[-11:]} and the rest",          # a window that starts inside the secret
    f"...{SECRET[-8:]}",
])
def test_a_piece_of_8_or_more_characters_at_a_cut_is_hidden(text: str) -> None:
    out = redact(text)
    assert "***" in out and not any(SECRET[i:i + 8] in out for i in range(len(SECRET) - 7)), out


def test_short_pieces_and_pieces_inside_text_are_left() -> None:
    assert redact(f"x {SECRET[:7]}") == f"x {SECRET[:7]}"        # under 8 characters
    assert redact(f"{SECRET[:10]}zzz more") == f"{SECRET[:10]}zzz more"  # not at a cut: another word


def test_shapes_of_credentials_are_hidden_whoever_issued_them() -> None:
    assert redact("Authorization: Bearer abcdefghijklmnop") == "Authorization: Bearer ***"
    assert redact("GET https://x.io/v1?q=1&api_key=ZZZ123&page=2") == "GET https://x.io/v1?q=1&api_key=***&page=2"
    assert redact("/next?access_token=abc.def&x=1") == "/next?access_token=***&x=1"
    assert redact("?monkey=banana&page=2") == "?monkey=banana&page=2"


def test_shorten_redacts_before_it_cuts() -> None:
    text = "x" * 95 + SECRET
    out = shorten(text, 100)
    assert out.startswith("x" * 95 + "***") and SECRET[:5] not in out


@pytest.mark.parametrize(("name", "secret"), [
    ("OPENAI_API_KEY", True), ("GITHUB_TOKEN", True), ("DB_PASSWORD", True), ("APIKEY", True),
    ("X_TOKEN", True), ("AWS_SECRET_ACCESS_KEY", True), ("KEYE_AGENT_CACHE_DIR", False),
    ("TOKENIZERS_PARALLELISM", False), ("PATH", False), ("MONKEY_COUNT", False),
    ("STRIPE_KEYS", True), ("MYTOKEN", True),
])
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_every_error_message_and_hint_is_redacted_when_built() -> None:
    e = ConfigError(f"'{SECRET}/x' is not an absolute URL", file="r.yaml", line=3, hint=f"use {SECRET}")
    assert SECRET not in str(e) and SECRET not in e.args[0] and SECRET not in (e.hint or "")
    assert SECRET not in str(ToolExecutionError(f"failed: {SECRET[:12]}", tool="t"))
