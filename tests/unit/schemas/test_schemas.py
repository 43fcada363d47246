import msgpack
import pytest

import schemas
from schemas import Event, SchemaError
from schemas.events import SearchFailed
from services.domain.space import PAPER_SPACE
from services.platform.topics import EVENT_TOPIC, TOPIC_EVENTS
from tests.helpers import spec


def trial_completed(**over):
    data = {"trial_id": "s1/t0", "index": 0, "config": PAPER_SPACE.config_at(7), "status": "ok", "rps_per_usd": 0.5, "rps_per_usd_unit": "norm",
            "rps": None, "p50_ms": None, "p99_ms": None, "cost_usd": 0.2, "duration_s": 900.0, "reason": None,
            "runner": "r1"}
    data.update(over)
    return Event("trial-completed", "s1", data, "test")


def test_round_trip_keeps_every_field():
    ev = Event("model-submitted", "s-1", {"spec": spec().to_dict(), "operators": None}, "cli")
    back = schemas.decode(schemas.encode(ev))
    assert back == ev
    assert back.version == 1 and len(back.event_id) == 32 and back.ts.endswith("Z")


def test_every_event_type_has_a_topic_and_a_schema():
    assert set(EVENT_TOPIC) == set(schemas.SUPPORTED_VERSIONS)
    assert all(TOPIC_EVENTS[EVENT_TOPIC[t]] for t in schemas.EVENT_TYPES)


def test_caused_event_links_to_its_cause_and_is_deterministic():
    cause = trial_completed()
    a = cause.caused(SearchFailed("search", "x"), "searcher")
    b = cause.caused(SearchFailed("search", "x"), "searcher")
    assert a.causation_id == cause.event_id and a.search_id == cause.search_id
    assert a.event_id == b.event_id  # a redelivered cause yields the same effect id
    assert a.event_id != cause.caused(SearchFailed("search", "x"), "s", salt="2").event_id


@pytest.mark.parametrize("raw, reason", [
    (None, "empty message"),
    (b"\xc1\xff garbage", "not msgpack"),
    (msgpack.packb([1, 2, 3]), "not a map"),
    (msgpack.packb({"type": "trial-completed"}), "envelope"),
])
def test_garbage_is_rejected_with_a_reason(raw, reason):
    with pytest.raises(SchemaError, match=reason):
        schemas.decode(raw)


def test_unknown_version_and_type_are_rejected():
    d = trial_completed().as_dict()
    with pytest.raises(SchemaError, match="unsupported version 3"):
        schemas.decode(msgpack.packb({**d, "version": 3}))
    with pytest.raises(SchemaError, match="unknown event type"):
        schemas.decode(msgpack.packb({**d, "type": "trial-exploded"}))


def test_missing_or_mistyped_fields_are_rejected_with_their_path():
    d = trial_completed().as_dict()
    del d["data"]["cost_usd"]
    with pytest.raises(SchemaError, match="cost_usd"):
        schemas.decode(msgpack.packb(d))
    with pytest.raises(SchemaError, match="status"):
        schemas.decode(schemas.encode(trial_completed()).replace(b"\xa2ok", b"\xa2no"))


def test_oversized_messages_are_rejected_before_parsing():
    raw = schemas.encode(trial_completed())
    with pytest.raises(SchemaError, match="over the 100-byte limit"):
        schemas.decode(raw, max_bytes=100)
    big = trial_completed(reason="x" * 4000)
    with pytest.raises(SchemaError, match="over the"):
        schemas.encode(big, max_bytes=1000)


def test_event_on_the_wrong_topic_is_rejected():
    raw = schemas.encode(trial_completed())
    with pytest.raises(SchemaError, match="does not belong on this topic"):
        schemas.decode(raw, expect=("model-submitted",))


def test_writers_validate_too():
    with pytest.raises(SchemaError):
        schemas.encode(trial_completed(status="maybe"))
