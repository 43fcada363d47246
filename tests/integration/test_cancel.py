"""search-cancelled over the real broker and Redis: the searcher requests no trial after it,
publishes the result at once (it says cancelled), records the trial that was in flight, and the
state rebuilt from the log equals the one it stored. A cancel that cannot apply is dead-lettered
with the reason."""

import asyncio
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from schemas import Event
from schemas.events import SearchCancelled
from services.platform.bus import KafkaPublisher, read_events
from services.platform.topics import SEARCH_LOG_TOPICS
from services.searcher.search import rebuild_states
from services.searcher.store import SearchStore
from tests.helpers import spec
from tools.app.submit import wait_result

pytestmark = pytest.mark.integration
TRIAL_REAL_S = 0.5
OPS = [{"op": "conv2d", "time_share": 1.0, "memory_share": None, "flops": None}]


@pytest.fixture(scope="module")
def cs(infra, start_services):
    s = replace(infra, trial_time_scale=TRIAL_REAL_S / 900)
    start_services("searcher", settings=s, wait=False)
    start_services("trial_runner", settings=s)
    return s


def begin(search_id: str, max_trials: int) -> Event:
    """What the profiler would publish for a submission (the searcher's input)."""
    return Event("kops-identified", search_id, {"spec": spec("mobilenet-v2", max_trials).to_dict(), "operators": OPS,
                                                "kops": ["conv2d"], "threshold": 0.05}, "test")


async def publish(s, *events):
    async with KafkaPublisher(s) as pub:
        for e in events:
            await pub.publish(e)


async def state_when(s, search_id, ok, timeout_s=60):
    redis = Redis.from_url(s.redis_url)
    try:
        for _ in range(int(timeout_s / 0.05)):
            st = await SearchStore(redis).get(search_id)
            if st is not None and ok(st):
                return st
            await asyncio.sleep(0.05)
        raise AssertionError(f"{search_id}: condition not reached; last state {st}")
    finally:
        await redis.aclose()


async def log_of(s, search_id):
    return [i.event async for i in read_events(s, SEARCH_LOG_TOPICS) if i.event and i.event.search_id == search_id]


async def test_a_cancelled_search_stops_requesting_trials_and_records_the_one_in_flight(cs):
    await publish(cs, begin("cx-1", max_trials=30))
    await state_when(cs, "cx-1", lambda st: len(st.trials) >= 2)
    cancel = Event.new(SearchCancelled("enough for today", "test"), "cx-1", "test")
    await publish(cs, cancel)

    result = await wait_result(cs, "cx-1", timeout_s=30)
    assert result is not None and result.type == "search-completed"
    assert result.data["stop_reason"] == "cancelled: enough for today (by test)"
    assert result.causation_id == cancel.event_id
    done = await state_when(cs, "cx-1", lambda st: st.status == "cancelled" and not st.pending)
    assert len(done.trials) == len(result.data["trials"]) + 1         # the trial in flight, recorded after

    await asyncio.sleep(3 * TRIAL_REAL_S)                              # nothing more happens
    log = await log_of(cs, "cx-1")
    requested = {e.data["trial_id"] for e in log if e.type == "trial-requested"}
    assert requested == {t.trial_id for t in done.trials} and len(done.trials) < 30
    assert sum(e.type in ("search-completed", "search-failed") for e in log) == 1
    # the state rebuilt from the log alone is the stored one
    now = await state_when(cs, "cx-1", lambda st: True)
    assert rebuild_states(log)["cx-1"] == now


async def test_a_cancel_that_cannot_apply_is_dead_lettered_with_the_reason(cs):
    await publish(cs, begin("cx-2", max_trials=2))
    assert (await wait_result(cs, "cx-2", timeout_s=30)).type == "search-completed"
    late = Event.new(SearchCancelled("too late", "test"), "cx-2", "test")
    unknown = Event.new(SearchCancelled("who?", "test"), "cx-nobody", "test")
    await publish(cs, late, unknown)
    letters = {}

    def done(item):
        if item.event is not None and item.event.causation_id in (late.event_id, unknown.event_id):
            letters[item.event.causation_id] = item.event.data
        return len(letters) == 2
    async for _ in read_events(cs, ("dead-letter",), until=done, timeout_s=30):
        pass
    assert "search is completed: nothing to cancel" in letters[late.event_id]["reason"]
    assert "unknown search id 'cx-nobody'" in letters[unknown.event_id]["reason"]
    assert letters[late.event_id]["source_topic"] == "search-control"
    st = await state_when(cs, "cx-2", lambda st: True)
    assert st.status == "completed" and st.stop_reason == "max-trials"
