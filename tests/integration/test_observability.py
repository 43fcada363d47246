"""Every service exposes Prometheus metrics and a health endpoint, and logs JSON lines that
carry the search id of the event being handled."""

import asyncio
import json
import urllib.request
from dataclasses import replace

import pytest

from schemas import Event
from services.platform.bus import KafkaPublisher, read_events
from services.platform.connections import redis_client
from services.domain.falcon_data import read_operator_profile
from tests.helpers import PROFILES, spec
from tools import localstack

pytestmark = pytest.mark.integration


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_metrics_health_and_json_logs_of_a_running_service(infra, start_services):
    port = localstack.free_port()
    start_services("profiler", settings=replace(infra, metrics_port=port, log_format="json"))
    status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz")
    assert status == 200 and json.loads(body) == {"service": "profiler", "status": "ok", "consumer": "ok",
                                                  "redis": "ok"}
    ev = Event("model-submitted", "obs-1", {"spec": spec("gru").to_dict(),
                                            "operators": read_operator_profile(PROFILES / "gru" / "operators.csv")},
               "test")
    async with KafkaPublisher(infra) as pub:
        await pub.publish(ev)
    async for _ in read_events(infra, ("kops-identified",), timeout_s=30,
                               until=lambda i: i.event is not None and i.event.search_id == "obs-1"):
        pass
    status, metrics = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert 'falcon_events_consumed_total{service="profiler",topic="model-submitted",type="model-submitted"} 1.0' \
        in metrics
    assert 'falcon_events_produced_total{service="profiler",type="kops-identified"} 1.0' in metrics
    assert 'falcon_handler_seconds_count{service="profiler",type="model-submitted"} 1.0' in metrics
    log = next(p for p in start_services.logs.iterdir() if p.name.startswith("profiler"))
    lines = [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]
    mine = [ln for ln in lines if ln.get("search_id") == "obs-1"]
    assert mine and all(ln["service"] == "profiler" and ln["event_id"] == ev.event_id for ln in mine)


async def test_health_reports_an_unreachable_redis(infra):
    from services.platform.bus import _health
    from services.platform.observability import serve_http

    class App:                               # stands in for a faust app whose consumer runs
        class consumer:
            should_stop = False
    bad = redis_client(replace(infra, redis_url=f"redis://127.0.0.1:{localstack.free_port()}/0"))
    port = localstack.free_port()
    runner = await serve_http("searcher", port, lambda: _health(App, bad), host="127.0.0.1")
    try:
        status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz")
    finally:
        await runner.cleanup()
        await bad.aclose()
    assert status == 503
    d = json.loads(body)
    assert d["status"] == "unhealthy" and d["consumer"] == "ok" and "Connection" in d["redis"]
