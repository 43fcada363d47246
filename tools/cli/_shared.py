"""What every command group shares: exit codes, where the local stack lives, how to reach it,
and how results are printed."""

from __future__ import annotations

import argparse
import json
import os
import socket
from typing import Any, Callable
from urllib.parse import urlsplit

from services.platform.settings import Settings
from tools import localstack
from tools.app.context import PRODUCER, REPO, home, slug

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_DATA = REPO.parent / "shared" / "falcon-data"
__all__ = ["DEFAULT_DATA", "EXIT_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "PRODUCER", "REPO", "command",
           "home", "out", "require_stack", "settings", "slug"]


def settings() -> Settings:
    """Environment first; else the stack that ``falcon up`` started (or last started, when it is
    down: its ports, e.g. 127.0.0.1:16379, are the ones worth naming); else ``falcon up``'s
    default ports."""
    base = Settings.from_env()
    if "FALCON_BROKER" in os.environ:
        return base
    info = localstack.StackInfo.load(home()) or localstack.StackInfo.load_last(home())
    return (info or localstack.StackInfo(localstack.BROKER_PORT, localstack.REDIS_PORT)).settings(base)


class Unreachable(localstack.StackError):
    """The stack (its Redis or its broker) does not answer: exit 3, one line."""


def redis_address(s: Settings) -> str:
    u = urlsplit(s.redis_url)
    return f"{u.hostname or '127.0.0.1'}:{u.port or 6379}"


def broker_addresses(s: Settings) -> list[str]:
    return [b.strip() for b in s.broker.split(",") if b.strip()]


def _answers(address: str, timeout_s: float) -> str | None:
    """None when something accepts a connection at host:port, else why not."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            return None
    except (OSError, ValueError) as exc:
        return (exc.strerror or "").lower() if getattr(exc, "strerror", None) else (str(exc) or type(exc).__name__)


def unreachable_text(what: str, address: str, why: str | None = None) -> str:
    remote = "FALCON_BROKER" in os.environ
    fix = ("check FALCON_BROKER / FALCON_REDIS_URL" if remote else "start it with `falcon up`")
    return f"cannot reach the stack: no {what} at {address}" + (f" ({why})" if why else "") + f"; {fix}"


def require_stack(s: Settings, timeout_s: float = 2.0) -> None:
    """Raise :class:`Unreachable` naming the first address that does not answer (Redis, then each
    broker), so a command with the stack down says so in one line instead of a client's traceback."""
    why = _answers(redis_address(s), timeout_s)
    if why is not None:
        raise Unreachable(unreachable_text("Redis", redis_address(s), why))
    brokers = broker_addresses(s)
    failures = [(b, _answers(b, timeout_s)) for b in brokers]
    if brokers and all(w is not None for _, w in failures):
        raise Unreachable(unreachable_text("broker", failures[0][0], failures[0][1]))


def out(obj: Any, as_json: bool, text: str | None = None) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json or text is None else text)


def command(sub: Any, name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
    """A sub-command with ``--json`` (every command can answer machines)."""
    c = sub.add_parser(name, help=help_, description=help_)
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(fn=fn)
    return c
