"""The dashboard: ``falcon ui``."""

from __future__ import annotations

import argparse
from typing import Any

from tools.cli._shared import EXIT_OK, command, settings


def cmd_ui(a: argparse.Namespace) -> int:
    from tools.ui import token_from_env
    from tools.ui.server import serve
    serve(settings(), a.host, a.port, token_from_env())
    return EXIT_OK


def register(sub: Any) -> None:
    from tools.ui.server import add_arguments
    c = command(sub, "ui", cmd_ui, "serve the live web dashboard (searches, trials, runners, dead letters; "
                                   "submit and cancel with FALCON_UI_TOKEN)")
    add_arguments(c)
