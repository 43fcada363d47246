"""Where the local stack keeps its files and how the application names things: shared by the
application layer and the command line (``tools/cli/_shared.py`` re-exports them)."""

from __future__ import annotations

import os
from pathlib import Path

PRODUCER = "cli"
REPO = Path(__file__).resolve().parents[2]


def home() -> Path:
    return Path(os.environ.get("FALCON_HOME", REPO / ".falcon"))


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:60]
