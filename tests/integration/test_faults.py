"""Fault injection on the real broker and redis-server. Every faulty search must end with the
same recommendation and trial history as the fault-free reference (same seed), with no trial
counted twice and no paid trial run twice except one whose runner died while running it."""

import asyncio
import os
import signal
from dataclasses import replace

import msgpack
import pytest
from redis.asyncio import Redis

from schemas import Event
from services.platform.bus import KafkaPublisher, read_events
from services.domain.falcon_data import read_operator_profile
from services.profiler.kops import identify_kops
from services.searcher.store import SearchStore
from services.trial_runner.backends import ReplayBackend
from tests.conftest import INFRA_PROCS
from tests.helpers import PROFILES, spec, trial_runs
from tools.app.submit import wait_result
from tools.harness import run_search

pytestmark = pytest.mark.integration
MODEL, TRIALS = "gru", 8
TRIAL_REAL_S = 0.6


@pytest.fixture(scope="module")
def fs(infra):
    return replace(infra, trial_time_scale=TRIAL_REAL_S / 900, trial_lease_s=4.0)


@pytest.fixture(scope="module")
def cluster(fs, start_services):
    return {"profiler": start_services("profiler", settings=fs, wait=False),
            "searcher": start_services("searcher", settings=fs, wait=False),
            "runners": start_services("trial_runner", 2, settings=fs)}


def submission(search_id: str, seed: int) -> Event:
    ops = read_operator_profile(PROFILES / MODEL / "operators.csv")
    return Event("model-submitted", search_id, {"spec": spec(MODEL, TRIALS, seed=seed).to_dict(), "operators": ops},
                 "test")


def reference(seed: int):
    ops = read_operator_profile(PROFILES / MODEL / "operators.csv")
    return run_search("ref", spec(MODEL, TRIALS, seed=seed), identify_kops(ops), ops, ReplayBackend())


async def submit(fs, search_id, seed):
    async with KafkaPublisher(fs) as pub:
        await pub.publish(submission(search_id, seed))


async def wait_trials(fs, search_id, n, timeout_s=60):
    redis = Redis.from_url(fs.redis_url)
    try:
        for _ in range(int(timeout_s / 0.05)):
            st = await SearchStore(redis).get(search_id)
            if st is not None and len(st.trials) >= n:
                return st
            await asyncio.sleep(0.05)
        raise AssertionError(f"{search_id} never reached {n} trials")
    finally:
        await redis.aclose()


async def assert_same_as_reference(fs, search_id, seed):
    result = await wait_result(fs, search_id, timeout_s=120)
    assert result is not None and result.type == "search-completed", result
    ref = reference(seed)
    trials = result.data["trials"]
    assert len(trials) == TRIALS == len({t["trial_id"] for t in trials})
    assert [t["config"] for t in trials] == [t.config for t in ref.trials]
    assert result.data["best"]["config"] == ref.best.config
    assert result.data["best"]["rps_per_usd"] == pytest.approx(ref.best.rps_per_usd)
    return result


async def test_fault_free_run_equals_the_in_process_reference(fs, cluster):
    await submit(fs, "ff-1", seed=1)
    await assert_same_as_reference(fs, "ff-1", seed=1)
    assert set((await trial_runs(fs, "ff-1")).values()) == {1}


async def test_runner_killed_mid_trial_is_rerun_elsewhere(fs, cluster, start_services):
    await submit(fs, "kill-runner", seed=2)
    await wait_trials(fs, "kill-runner", 2)
    redis = Redis.from_url(fs.redis_url)
    victim = None
    for _ in range(400):                              # a trial of this search that is running right now
        for key in await redis.keys("falcon:trial:kill-runner/*:claim"):
            tid = key.decode().split(":")[2]
            if not await redis.exists(f"falcon:trial:{tid}:result"):
                owner = (await redis.get(key) or b"").decode()
                if owner:
                    victim = (tid, int(owner.rsplit(":", 1)[1]))
                    break
        if victim:
            break
        await asyncio.sleep(0.01)
    await redis.aclose()
    assert victim, "no running trial found"
    os.kill(victim[1], signal.SIGKILL)
    cluster["runners"] = [p for p in cluster["runners"] if p.pid != victim[1]] + start_services(
        "trial_runner", settings=fs)
    await assert_same_as_reference(fs, "kill-runner", seed=2)
    runs = await trial_runs(fs, "kill-runner")
    assert runs[victim[0]] == 2 and all(v == 1 for k, v in runs.items() if k != victim[0])


async def test_searcher_killed_mid_search_resumes_from_redis(fs, cluster, start_services):
    await submit(fs, "kill-searcher", seed=3)
    await wait_trials(fs, "kill-searcher", 3)
    cluster["searcher"][0].send_signal(signal.SIGKILL)
    cluster["searcher"] = start_services("searcher", settings=fs)
    await assert_same_as_reference(fs, "kill-searcher", seed=3)
    assert set((await trial_runs(fs, "kill-searcher")).values()) == {1}


async def test_redis_flushall_mid_search_is_rebuilt_from_the_log(fs, cluster):
    await submit(fs, "flush", seed=4)
    await wait_trials(fs, "flush", 3)
    redis = Redis.from_url(fs.redis_url)
    await redis.flushall()
    await redis.aclose()
    await assert_same_as_reference(fs, "flush", seed=4)
    assert all(v == 1 for v in (await trial_runs(fs, "flush")).values()), "a trial was paid for twice"


async def test_poison_messages_mid_search_change_nothing(fs, cluster):
    await submit(fs, "poison", seed=5)
    await wait_trials(fs, "poison", 2)
    stray = Event("trial-completed", "no-such-search", {
        "trial_id": "no-such-search/t0", "index": 0, "config": {"cpus": 1}, "status": "ok", "rps_per_usd": 1.0, "rps_per_usd_unit": "norm",
        "cost_usd": 0.0, "duration_s": 1.0, "runner": "x"}, "test")
    async with KafkaPublisher(fs) as pub:
        await pub.publish_raw("trial-completed", b"\xde\xad\xbe\xef", key=b"poison")
        await pub.publish_raw("trial-requested", msgpack.packb({"type": "trial-requested"}), key=b"poison")
        await pub.publish(stray)
    await assert_same_as_reference(fs, "poison", seed=5)
    reasons = [i.event.data["reason"] async for i in read_events(fs, ("dead-letter",)) if i.event]
    assert any("not msgpack" in r for r in reasons) and any("envelope" in r for r in reasons)
    assert any("unknown search id 'no-such-search'" in r for r in reasons)


async def test_broker_frozen_for_a_while_is_waited_out(fs, cluster):
    await submit(fs, "freeze", seed=6)
    await wait_trials(fs, "freeze", 2)
    broker = INFRA_PROCS["broker"]
    broker.send_signal(signal.SIGSTOP)
    await asyncio.sleep(5)
    broker.send_signal(signal.SIGCONT)
    await assert_same_as_reference(fs, "freeze", seed=6)


async def test_two_searchers_share_searches_without_double_decisions(fs, cluster, start_services):
    cluster["searcher"] += start_services("searcher", settings=fs)
    ids = {f"scale-{i}": 100 + i for i in range(8)}
    async with KafkaPublisher(fs) as pub:
        for sid, seed in ids.items():
            await pub.publish(submission(sid, seed))
    for sid, seed in ids.items():
        await assert_same_as_reference(fs, sid, seed)
        assert set((await trial_runs(fs, sid)).values()) == {1}
    deciders = set()
    async for item in read_events(fs, ("trial-requested",)):
        if item.event and item.event.search_id in ids:
            deciders.add(item.event.search_id)
    assert deciders == set(ids)
