"""Two trial runners in one consumer group on the real broker: every trial runs exactly once,
and a redelivered request never pays for the trial again."""

import asyncio

import pytest
from redis.asyncio import Redis

from schemas import Event
from services.platform.bus import KafkaPublisher, read_events
from services.domain.pricing import DEFAULT_PRICES
from services.domain.space import PAPER_SPACE
from services.platform.redis_keys import TRIAL_RUNS as RUNS
from tests.helpers import TARGETS

pytestmark = pytest.mark.integration
N = 24


def request(i: int) -> Event:
    cfg = PAPER_SPACE.config_at(i * 37)
    return Event("trial-requested", f"group-{i}", {
        "trial_id": f"group-{i}/t0", "index": 0, "config": cfg, "model": {"name": "gru", "format": "falcon-profile"},
        "backend": {"kind": "replay", "table": str(TARGETS / "reg-gru.csv"), "trial_seconds": 900.0},
        "price_per_hour": DEFAULT_PRICES.hourly(cfg)}, "test")


async def completed(settings, n, timeout_s=60):
    got = {}
    def enough(item):
        if item.event is not None and item.event.search_id.startswith("group-"):
            got.setdefault(item.event.data["trial_id"], []).append(item.event)
        return len(got) >= n
    async for _ in read_events(settings, ("trial-completed",), until=enough, timeout_s=timeout_s):
        pass
    return got


async def all_completed(settings):
    """Every trial-completed of this test in the log (read until the topic is quiet)."""
    got = {}
    async for item in read_events(settings, ("trial-completed",)):
        if item.event is not None and item.event.search_id.startswith("group-"):
            got.setdefault(item.event.data["trial_id"], []).append(item.event)
    return got


async def test_each_trial_runs_once_across_two_runners(infra, start_services):
    start_services("trial_runner", count=2)
    requests = [request(i) for i in range(N)]
    async with KafkaPublisher(infra) as pub:
        for r in requests:
            await pub.publish(r)
    got = await completed(infra, N)
    assert len(got) == N
    runners = {evs[0].data["runner"] for evs in got.values()}
    assert len(runners) == 2, "both runners of the group must have taken partitions"
    redis = Redis.from_url(infra.redis_url)
    runs = {k.decode(): int(v) for k, v in (await redis.hgetall(RUNS)).items()}
    assert all(runs[f"group-{i}/t0"] == 1 for i in range(N))

    # redeliver three requests; for one of them, pretend the runner crashed between storing the
    # result and publishing it: only that one is published again (same event), nothing re-runs
    crashed = requests[0].data["trial_id"]
    await redis.delete(f"falcon:trial:{crashed}:published")
    async with KafkaPublisher(infra) as pub:
        for r in requests[:3]:
            await pub.publish(r)
    for _ in range(30):
        again = await all_completed(infra)
        if len(again[crashed]) >= 2:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)   # time for any (wrong) further re-publication to show up
    again = await all_completed(infra)
    evs = again[crashed]
    assert len(evs) == 2 and evs[0].event_id == evs[1].event_id and evs[0].data == evs[1].data
    assert sum(len(v) for v in again.values()) == N + 1
    runs = {k.decode(): int(v) for k, v in (await redis.hgetall(RUNS)).items()}
    assert sum(runs.values()) == N
    await redis.aclose()


async def test_a_trial_whose_runner_keeps_dying_is_reported_failed(infra, start_services):
    """Simulate a trial that already killed its runner max-attempts times: the next runner does not
    run it again but reports it failed with the reason, so the search can go on without it."""
    req = request(33)
    redis = Redis.from_url(infra.redis_url)
    await redis.hset(RUNS, req.data["trial_id"], infra.trial_max_attempts)
    async with KafkaPublisher(infra) as pub:
        await pub.publish(req)
    got = {}
    def done(item):
        if item.event is not None and item.event.search_id == "group-33":
            got["e"] = item.event
        return "e" in got
    async for _ in read_events(infra, ("trial-completed",), until=done, timeout_s=60):
        pass
    d = got["e"].data
    assert d["status"] == "failed" and f"gave up after {infra.trial_max_attempts} attempts" in d["reason"]
    assert int(await redis.hget(RUNS, req.data["trial_id"])) == infra.trial_max_attempts + 1
    await redis.aclose()
