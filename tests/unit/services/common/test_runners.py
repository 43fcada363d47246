"""Routing the trials of a batch to distinct idle runners (their adverts say which partitions they own)."""

from services.common.runners import RunnerAdvert, pick_partition

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
    assert picks[0][0] != picks[1][0] and {r for r, _ in picks[:2]} == {"a", "b"}   # the idle ones first
    assert picks[2][0] in ("a", "b", "c")
    assert all(p in {"a": (0, 1), "b": (2,), "c": (3,)}[r] for r, p in picks)


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
