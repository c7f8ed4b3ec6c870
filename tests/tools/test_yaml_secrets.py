"""Registry errors never quote an expanded secret (issue 24 item 4): a ``${VAR}`` of a secret-like name, one listed
under ``secrets:``, or one an ``auth:`` reads, wherever the error comes from (a schema problem found before any
auth is read, a URL check in an earlier tool) and in ``keye-agent tools validate`` output alike.

Each case has its own value: registered secrets are process-wide, so a value shared between cases would be
redacted by an earlier case's registration and prove nothing.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from keye_agent.cli.main import main
from keye_agent.errors import ConfigError
from keye_agent.tools.yaml_registry import load_registry, validate_registry_file

LOOP = "version: 1\nnetwork: {allow_loopback: true}\n"
CASES = {
    # the auth of a later tool reads the variable an earlier tool's bad URL quotes
    "auth_in_a_later_tool": (LOOP + 'tools:\n  - {name: a, kind: http, description: d, url: "${SVC_CRED}/x"}\n'
                             '  - {name: b, kind: http, description: d, url: "http://127.0.0.1/",'
                             ' auth: {type: bearer, token_env: SVC_CRED}}\n', "is not an absolute http"),
    # a schema problem is found before any auth is read
    "schema_error_before_auth": (LOOP + 'tools:\n  - {name: a, kind: http, description: d, url: "http://127.0.0.1/",'
                                 ' retries: "${SVC_CRED}", auth: {type: bearer, token_env: SVC_CRED}}\n',
                                 "expected an integer"),
    "api_key_under_defaults": (LOOP + "defaults: {auth: {type: api_key, key_env: SVC_CRED}}\n"
                               'tools:\n  - {name: a, kind: http, description: d, url: "http://127.0.0.1/",'
                               ' timeout_s: "${SVC_CRED}"}\n', "expected a number"),
    "listed_under_secrets": ('version: 1\nsecrets: [SVC_CRED]\ndefaults: {base_url: "${SVC_CRED}/x"}\n'
                             "tools:\n  - {name: a, kind: http, description: d, path: /a}\n", "is not an absolute http"),
    "secret_like_name": ('version: 1\ndefaults: {base_url: "${X_TOKEN}/x"}\n'
                         "tools:\n  - {name: a, kind: http, description: d, path: /a}\n", "is not an absolute http"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_registry_errors_never_quote_an_expanded_secret(case: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    text, expected = CASES[case]
    value = "v" + secrets.token_hex(12)  # no piece of it appears in ordinary text
    env = {"SVC_CRED": value, "X_TOKEN": value}
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_registry(path, env=env)
    assert expected in str(ei.value) and "***" in str(ei.value), str(ei.value)
    assert value[:8] not in str(ei.value) and value[-8:] not in str(ei.value)
    problems = validate_registry_file(path, env=env)
    assert problems and not any(value[:8] in p or value[-8:] in p for p in problems), problems
    for name, v in env.items():
        monkeypatch.setenv(name, v)
    assert main(["tools", "validate", str(path)]) == 1
    out = capsys.readouterr()
    assert expected in out.err and value[:8] not in out.err + out.out and value[-8:] not in out.err + out.out
