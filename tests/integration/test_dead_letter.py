"""A consumer meeting bad messages on the real broker: each goes to the dead-letter topic with
its reason, and the consumer carries on with the next good one."""

import msgpack
import pytest

from schemas import Event
from services.platform.bus import KafkaPublisher, read_events
from tests.helpers import PROFILES, spec
from services.domain.falcon_data import read_operator_profile

pytestmark = pytest.mark.integration


async def test_poison_messages_are_dead_lettered_and_the_profiler_goes_on(infra, start_services):
    start_services("profiler")
    good = Event("model-submitted", "dlq-good", {"spec": spec("gru").to_dict(),
                                                 "operators": read_operator_profile(PROFILES / "gru" / "operators.csv")},
                 "test")
    wrong_version = {**good.as_dict(), "version": 9, "search_id": "dlq-v9"}
    no_profile = Event("model-submitted", "dlq-noprofile", {"spec": spec("gru").to_dict(), "operators": None}, "test")
    async with KafkaPublisher(infra) as pub:
        await pub.publish_raw("model-submitted", b"\x00\x01 this is not msgpack", key=b"dlq-garbage")
        await pub.publish_raw("model-submitted", msgpack.packb(wrong_version), key=b"dlq-v9")
        await pub.publish_raw("model-submitted", b"\x91" + b"x" * (infra.max_message_bytes + 10), key=b"dlq-big")
        await pub.publish(no_profile)
        await pub.publish(good)

    seen = {}
    def done(item):
        e = item.event
        if e is not None and (e.type == "dead-letter" or e.search_id.startswith("dlq-")):
            seen.setdefault(e.type, []).append(e)
        return len(seen.get("dead-letter", [])) >= 3 and "kops-identified" in seen and "search-failed" in seen
    async for _ in read_events(infra, ("dead-letter", "kops-identified", "search-results"), until=done, timeout_s=60):
        pass

    reasons = sorted(e.data["reason"] for e in seen["dead-letter"])
    assert any("not msgpack" in r for r in reasons)
    assert any("unsupported version 9" in r for r in reasons)
    assert any("over the" in r and "limit" in r for r in reasons)
    assert all(e.data["source_topic"] == "model-submitted" for e in seen["dead-letter"])
    # a well-formed submission without a profile fails the search with a reason, not a crash
    failed = seen["search-failed"][0]
    assert failed.search_id == "dlq-noprofile" and "without its operator profile" in failed.data["reason"]
    # and the good one behind the poison went through
    kops = seen["kops-identified"][0]
    assert kops.search_id == "dlq-good" and kops.causation_id == good.event_id
    assert set(kops.data["kops"]) >= {"multiply", "split", "dense"}
