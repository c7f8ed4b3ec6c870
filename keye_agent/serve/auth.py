"""The optional bearer key: read once from the environment variable ``--api-key-env`` names, registered as a
secret (so no log line or error ever shows it), compared in constant time."""

from __future__ import annotations

import hmac
import os

from keye_agent.errors import ConfigError, RequestError, register_secret


def key_from_env(var: str) -> str:
    """The key in ``$var``; a missing or empty variable is a :class:`ConfigError` (the server does not start)."""
    key = os.environ.get(var, "")
    if not key.strip():
        raise ConfigError(f"--api-key-env {var}: the environment variable {var} is not set or empty",
                          hint=f"export {var}=<a long random key> before starting the server")
    register_secret(key)
    return key


def check_bearer(authorization: str | None, key: str) -> None:
    """A 401 unless the ``Authorization`` header is ``Bearer <key>``."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise RequestError("missing API key: send the header 'Authorization: Bearer <key>'", status=401,
                           error_type="authentication_error", code="invalid_api_key")
    if not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise RequestError("incorrect API key", status=401, error_type="authentication_error", code="invalid_api_key")
