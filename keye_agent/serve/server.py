"""Running the app: uvicorn on a host and port, loopback by default."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from keye_agent.errors import ConfigError

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    """Serve ``app`` until interrupted (Ctrl-C, SIGTERM)."""
    try:
        import uvicorn
    except ImportError as e:
        raise ConfigError(f"keye-agent serve needs uvicorn ({e})", hint="pip install 'keye-agent[serve]'") from None
    # uvicorn's access log shows the method, path and status of each request, never its headers (the key)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
