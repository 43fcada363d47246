"""Routing the trials of a batch to distinct idle runners (their adverts say which partitions they own)."""

from services.searcher.routing import pick_partition
from services.platform.runners import RunnerAdvert

TOPIC = "trial-requested"


def advert(name, parts, running=0):
    return RunnerAdvert(name, ("replay",), {"replay": {}}, current=tuple({"trial_id": f"x{i}"} for i in range(running)),
                        partitions={TOPIC: parts})


def test_a_batch_goes_to_the_idle_runners_first_one_each():
    adverts = [advert("a", (0, 1)), advert("b", (2,)), advert("c", (3,), running=1)]
    routed: dict[str, int] = {}
    picks = []
    for _ in range(3):
        runner, partition = pick_partition(adverts, TOPIC, routed)
        routed[runner] = routed.get(runner, 0) + 1
        picks.append((runner, partition))
    assert picks[:2] == [("a", 0), ("b", 2)]                 # the idle ones first, one trial each
    assert picks[2] == ("a", 1)          # then all have one: the first by name, on its other partition


def test_a_runner_with_two_partitions_gets_its_second_trial_on_the_other_partition():
    adverts = [advert("a", (0, 1))]
    assert pick_partition(adverts, TOPIC, {}) == ("a", 0)
    assert pick_partition(adverts, TOPIC, {"a": 1}) == ("a", 1)


def test_without_partition_adverts_the_key_decides():
    assert pick_partition([RunnerAdvert("old", ("replay",), {})], TOPIC, {}) is None
    assert pick_partition([advert("a", (0,))], "trial-requested.live-cpu", {}) is None


def test_adverts_keep_their_partitions_through_redis_json():
    import json
    a = advert("a", (0, 3), running=1)
    assert RunnerAdvert.from_dict(json.loads(a.to_json())) == a


def test_a_dead_runners_lingering_advert_attracts_no_trial():
    import time
    dead = RunnerAdvert("a", ("replay",), {}, heartbeat=time.time() - 30, partitions={TOPIC: (0,)})
    alive = RunnerAdvert("b", ("replay",), {}, heartbeat=time.time(), current=({"trial_id": "x"},),
                         partitions={TOPIC: (1,)})
    assert pick_partition([dead, alive], TOPIC, {}) == ("b", 1)


async def test_the_router_spreads_a_batch_and_sends_a_republished_trial_where_it_went(monkeypatch):
    from services.searcher import routing
    adverts = [advert("a", (0, 1)), advert("b", (2, 3))]

    async def read(_redis):
        return adverts
    monkeypatch.setattr(routing, "read_adverts", read)
    router = routing.TrialRouter(redis=None)
    first = [await router.partition(TOPIC, f"s/t{i}") for i in range(2)]
    assert first == [0, 2]                                       # two idle runners, one trial each
    assert await router.partition(TOPIC, "s/t0") == 0           # re-published: the same runner
    # once a runner's advert shows the trial running, it no longer counts as routed-not-started
    # (both now have one trial: the tie goes to "a" by name)
    adverts[0] = RunnerAdvert("a", ("replay",), {}, current=({"trial_id": "s/t0"},), partitions={TOPIC: (0, 1)})
    router._read_at = -1e9
    assert await router.partition(TOPIC, "s/t2") == 0
    # b's trial has not shown up as running: b still counts it, so with a third idle runner it gets the next
    adverts.append(advert("c", (4,)))
    router._read_at = -1e9
    assert await router.partition(TOPIC, "s/t3") == 4
