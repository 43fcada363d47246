"""Several trials of one search at once on the real broker: three runners in one group run a
search's three trials at the same time (each exactly once), and killing one of them with three
trials in flight loses none."""

import asyncio
import os
import signal
from dataclasses import replace
from datetime import datetime

import pytest
from redis.asyncio import Redis

from schemas import Event
from services.platform.bus import KafkaPublisher, read_events
from services.domain.falcon_data import read_operator_profile
from services.platform.runners import read_adverts
from services.platform.topics import trial_topic
from services.profiler.kops import identify_kops
from services.trial_runner.backends import ReplayBackend
from tests.helpers import PROFILES, spec, trial_runs
from tools.app.submit import wait_result
from tools.harness import run_search

pytestmark = pytest.mark.integration
MODEL, TRIALS, Q = "gru", 6, 3
TRIAL_REAL_S = 3.0


@pytest.fixture(scope="module")
def fs(infra):
    return replace(infra, trial_time_scale=TRIAL_REAL_S / 900, trial_lease_s=4.0)


@pytest.fixture(scope="module")
def cluster(fs, start_services):
    c = {"profiler": start_services("profiler", settings=fs, wait=False),
         "searcher": start_services("searcher", settings=fs, wait=False),
         "runners": start_services("trial_runner", 3, settings=fs)}
    asyncio.run(wait_partitioned(fs, 3))
    return c


async def wait_partitioned(fs, n, timeout_s=60):
    """Until ``n`` runners advertise the replay partitions they own (the group has settled)."""
    redis = Redis.from_url(fs.redis_url)
    try:
        for _ in range(int(timeout_s / 0.2)):
            owners = [a for a in await read_adverts(redis) if a.partitions.get(trial_topic("replay"))]
            if len(owners) >= n and sum(len(a.partitions[trial_topic("replay")]) for a in owners) == fs.partitions:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{n} runners never shared the replay partitions")
    finally:
        await redis.aclose()


def submission(search_id, seed):
    ops = read_operator_profile(PROFILES / MODEL / "operators.csv")
    return Event("model-submitted", search_id, {"spec": spec(MODEL, TRIALS, seed=seed, parallel=Q).to_dict(),
                                                "operators": ops}, "test")


def reference(seed):
    ops = read_operator_profile(PROFILES / MODEL / "operators.csv")
    return run_search("ref", spec(MODEL, TRIALS, seed=seed, parallel=Q), identify_kops(ops), ops, ReplayBackend())


async def completions(fs, search_id):
    return [i.event async for i in read_events(fs, ("trial-completed",))
            if i.event is not None and i.event.search_id == search_id]


def by_index(trials):
    return {t["index"] if isinstance(t, dict) else t.index: t["config"] if isinstance(t, dict) else t.config
            for t in trials}


async def test_three_trials_of_one_search_run_at_once_on_three_runners(fs, cluster):
    async with KafkaPublisher(fs) as pub:
        await pub.publish(submission("par-1", seed=1))
    result = await wait_result(fs, "par-1", timeout_s=120)
    assert result is not None and result.type == "search-completed", result
    trials = result.data["trials"]
    assert len(trials) == TRIALS == len({t["trial_id"] for t in trials})
    assert result.data["parallel"] == Q
    # the random strategy's choices do not depend on the order results arrive: same as in-process
    assert by_index(trials) == by_index(reference(1).trials)
    assert set((await trial_runs(fs, "par-1")).values()) == {1}            # each exactly once
    done = {e.data["index"]: e for e in await completions(fs, "par-1")}
    first = [done[i] for i in range(Q)]
    assert len({e.data["runner"] for e in first}) == Q, "the first batch must run on three runners"
    stamp = sorted(datetime.fromisoformat(e.ts.replace("Z", "+00:00")).timestamp() for e in first)
    # one after the other they would end TRIAL_REAL_S apart; at once, within a fraction of it
    assert stamp[-1] - stamp[0] < TRIAL_REAL_S * 0.75, stamp


async def test_a_runner_killed_with_three_trials_in_flight_loses_none(fs, cluster, start_services):
    async with KafkaPublisher(fs) as pub:
        await pub.publish(submission("par-kill", seed=2))
    redis = Redis.from_url(fs.redis_url)
    victim = None
    for _ in range(1000):                     # three trials claimed and running: kill one runner
        claims = await redis.keys("falcon:trial:par-kill/*:claim")
        running = []
        for key in claims:
            tid = key.decode().split(":")[2]
            owner = (await redis.get(key) or b"").decode()
            if owner and not await redis.exists(f"falcon:trial:{tid}:result"):
                running.append((tid, int(owner.rsplit(":", 1)[1])))
        if len(running) >= Q:
            victim = running[0]
            break
        await asyncio.sleep(0.02)
    await redis.aclose()
    assert victim, "never saw three trials of the search in flight"
    os.kill(victim[1], signal.SIGKILL)
    cluster["runners"] = [p for p in cluster["runners"] if p.pid != victim[1]] + start_services(
        "trial_runner", settings=fs)
    result = await wait_result(fs, "par-kill", timeout_s=180)
    assert result is not None and result.type == "search-completed", result
    trials = result.data["trials"]
    assert len(trials) == TRIALS == len({t["trial_id"] for t in trials})          # none lost, none twice
    assert by_index(trials) == by_index(reference(2).trials)
    runs = await trial_runs(fs, "par-kill")
    assert runs[victim[0]] == 2 and all(v == 1 for k, v in runs.items() if k != victim[0])
