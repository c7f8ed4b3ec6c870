"""Serve the store-and-delivery API: ``python -m examples.store_api [--host H] [--port P] [--now ISO] [--test-mode]``.

Then point the example registry at it: ``STORE_API_URL=http://127.0.0.1:8765`` (the default in examples/store.yaml).
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime

import uvicorn

from keye_agent.tau.domains.store.api import DEFAULT_NOW, create_app


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m examples.store_api", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--now", default=DEFAULT_NOW.isoformat(timespec="minutes"),
                    help="the API's clock, ISO format (default: a fixed Saturday evening, %(default)s)")
    ap.add_argument("--token-env", default=None,
                    help="require the token held in this environment variable (Bearer or X-API-Key)")
    ap.add_argument("--test-mode", action="store_true", help="enable X-Fault fault injection (tests only)")
    args = ap.parse_args(argv)
    token = os.environ.get(args.token_env) if args.token_env else None
    if args.token_env and not token:
        ap.error(f"--token-env {args.token_env}: that environment variable is not set")
    app = create_app(now=datetime.fromisoformat(args.now), api_token=token, test_mode=args.test_mode)
    print(f"store API on http://{args.host}:{args.port} (clock {args.now}); Ctrl-C stops it", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
