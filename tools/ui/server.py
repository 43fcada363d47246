"""Run the dashboard: uvicorn on loopback unless told otherwise; the token, if any, from
``FALCON_UI_TOKEN`` (never from a flag: flags show in ``ps``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

from services.platform.settings import Settings
from tools.ui import DEFAULT_HOST, DEFAULT_PORT, token_from_env

log = logging.getLogger("falcon.ui")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None,
          log_level: str = "info") -> None:
    import uvicorn

    from tools.cli._shared import home
    from tools.ui.app import create_app
    app = create_app(settings, token, reports_dir=home() / "reports" / "ui")
    mode = "submit and cancel with the token" if token else "read-only (set FALCON_UI_TOKEN to submit and cancel)"
    print(f"falcon ui: http://{host if ':' not in host else f'[{host}]'}:{port}/  {mode}", file=sys.stderr, flush=True)
    if not is_loopback(host):
        print(f"falcon ui: listening on {host}, not only on loopback: whoever reaches it can read every search",
              file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=True, proxy_headers=False,
                server_header=False)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("FALCON_UI_HOST", DEFAULT_HOST),
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=int(os.environ.get("FALCON_UI_PORT", DEFAULT_PORT)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.ui", description="the Falcon dashboard")
    add_arguments(p)
    a = p.parse_args(argv)
    from tools.cli._shared import settings
    serve(settings(), a.host, a.port, token_from_env(), Settings.from_env().log_level)
    return 0
