"""What every command group shares: exit codes, where the local stack lives, how to reach it,
and how results are printed."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

from services.common.settings import Settings
from tools import localstack

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
PRODUCER = "cli"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "falcon-data"


def home() -> Path:
    return Path(os.environ.get("FALCON_HOME", REPO / ".falcon"))


def settings() -> Settings:
    """Environment first; else the stack that ``falcon up`` started; else defaults."""
    base = Settings.from_env()
    if "FALCON_BROKER" in os.environ:
        return base
    info = localstack.StackInfo.load(home())
    return info.settings(base) if info else base


def out(obj: Any, as_json: bool, text: str | None = None) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json or text is None else text)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:60]


def command(sub: Any, name: str, fn: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
    """A sub-command with ``--json`` (every command can answer machines)."""
    c = sub.add_parser(name, help=help_, description=help_)
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(fn=fn)
    return c
