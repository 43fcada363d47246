"""The live web dashboard (``falcon ui``): searches, one search, runners and dead letters, updated
as events happen; a JSON API behind the pages; submit and cancel with a token.

Tooling, not a service: it reads the searcher's state through ``SearchStore`` and the event log
through the bus's ``read_events``, and publishes model-submitted / search-cancelled like the CLI."""

from __future__ import annotations

import os

# the dashboard's own settings (environment; the CLI flags override host and port), besides the
# services' FALCON_* settings (broker, Redis, ...); FALCON_HOME: where it writes reports
UI_ENV = ("FALCON_UI_HOST", "FALCON_UI_PORT", "FALCON_UI_TOKEN", "FALCON_HOME")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def token_from_env() -> str | None:
    return os.environ.get("FALCON_UI_TOKEN", "").strip() or None
