"""What every command group shares: exit codes, where the local stack lives, how to reach it,
and how results are printed."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable

from services.common.settings import Settings
from tools import localstack
from tools.app.context import PRODUCER, REPO, home, slug

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_DATA = REPO.parent / "shared" / "falcon-data"
__all__ = ["DEFAULT_DATA", "EXIT_FAILED", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "PRODUCER", "REPO", "command",
           "home", "out", "settings", "slug"]


def settings() -> Settings:
    """Environment first; else the stack that ``falcon up`` started; else defaults."""
    base = Settings.from_env()
    if "FALCON_BROKER" in os.environ:
        return base
    info = localstack.StackInfo.load(home())
    return info.settings(base) if info else base


def out(obj: Any, as_json: bool, text: str | None = None) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json or text is None else text)


def command(sub: Any, name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
    """A sub-command with ``--json`` (every command can answer machines)."""
    c = sub.add_parser(name, help=help_, description=help_)
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(fn=fn)
    return c
