"""Metrics, health and structured logs, the same for every service.

- Prometheus metrics (prometheus-client): events consumed/produced per topic and type, handler
  (decision) latency, dead letters, trial durations and outcomes.
- ``GET /metrics`` and ``GET /healthz`` on ``FALCON_METRICS_PORT`` (0: off) - health is 200 when
  the service's consumer runs and Redis answers, 503 otherwise, with the reason in JSON.
- ``FALCON_LOG_FORMAT=json``: one JSON object per log line with the service, and the search id,
  event id and trial id of the event being handled (carried in context variables, so log lines
  from worker threads of that event carry them too).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import Any, Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

EVENTS_CONSUMED = Counter("falcon_events_consumed_total", "Events consumed and handled", ["service", "topic", "type"])
EVENTS_PRODUCED = Counter("falcon_events_produced_total", "Events published", ["service", "type"])
DEAD_LETTERS = Counter("falcon_dead_letters_total", "Messages sent to the dead-letter topic", ["service", "topic"])
HANDLER_SECONDS = Histogram("falcon_handler_seconds", "Time to handle one event (a searcher decision, a trial, "
                            "a profile)", ["service", "type"],
                            buckets=(0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900))
TRIAL_SECONDS = Histogram("falcon_trial_seconds", "Duration of a trial as its backend reports it",
                          ["backend", "status"], buckets=(0.1, 1, 5, 15, 60, 300, 900, 1800, 3600))
TRIALS = Counter("falcon_trials_total", "Trials run by this runner", ["backend", "status"])

SEARCH_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("search_id", default=None)
EVENT_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)
TRIAL_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("trial_id", default=None)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) +
                               f".{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                               "service": self.service, "logger": record.name, "msg": record.getMessage()}
        for key, var in (("search_id", SEARCH_ID), ("event_id", EVENT_ID), ("trial_id", TRIAL_ID)):
            if var.get() is not None:
                out[key] = var.get()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(service: str, fmt: str, level: str) -> None:
    """Send every log line through one handler: JSON (for log pipelines) or plain text."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else logging.Formatter(
        f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())


HealthCheck = Callable[[], Awaitable[dict[str, str]]]


async def serve_http(service: str, port: int, health: HealthCheck, host: str = "0.0.0.0") -> Any:
    """Start /metrics and /healthz (aiohttp, already a faust dependency); returns the runner."""
    from aiohttp import web

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        checks = await health()
        ok = all(v == "ok" for v in checks.values())
        return web.json_response({"service": service, "status": "ok" if ok else "unhealthy", **checks},
                                 status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
