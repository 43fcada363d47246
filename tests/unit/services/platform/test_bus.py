"""The consume path every service shares: decode -> handler, dead-letter on bad input."""

import base64
from dataclasses import dataclass, field, replace

import pytest

import schemas
from schemas import Event
from schemas.events import SearchFailed
from services.platform.bus import Reject, handle_message
from services.platform.settings import Settings

SETTINGS = replace(Settings(), handler_retries=3, retry_backoff_s=0.001)


@dataclass
class Recorder:
    """Collects what a handler publishes (the handler's side of the bus, not a broker)."""
    events: list = field(default_factory=list)

    async def publish(self, event, partition=None):
        self.events.append(event)


def failed_event():
    return Event("search-failed", "s1", {"stage": "search", "reason": "x"}, "test")


async def consume(raw, handler, expect=("search-failed",)):
    pub = Recorder()
    await handle_message(service="svc", settings=SETTINGS, publisher=pub, handler=handler, topic="search-results",
                         partition=2, offset=41, key=b"s1", raw=raw, expect=expect)
    return pub.events


async def never_called(event, pub):
    raise AssertionError("handler must not see a bad message")


async def test_malformed_message_is_dead_lettered_with_reason_and_bytes():
    out = await consume(b"\x93not an event", never_called)
    assert len(out) == 1 and out[0].type == "dead-letter"
    d = out[0].data
    assert d["source_topic"] == "search-results" and d["partition"] == 2 and d["offset"] == 41
    assert "msgpack" in d["reason"] and base64.b64decode(d["raw_b64"]) == b"\x93not an event"


async def test_rejected_event_is_dead_lettered_once_without_retry():
    calls = []

    async def handler(event, pub):
        calls.append(event)
        raise Reject("unknown search id 's1'")

    out = await consume(schemas.encode(failed_event()), handler)
    assert len(calls) == 1
    assert out[0].type == "dead-letter" and "unknown search id" in out[0].data["reason"]
    assert out[0].search_id == "s1" and out[0].causation_id is not None


async def test_transient_failure_is_retried_then_succeeds():
    calls = []

    async def flaky(event, pub):
        calls.append(1)
        if len(calls) < 2:
            raise ConnectionError("redis went away")
        await pub.publish(event.caused(SearchFailed("search", "ok"), "svc"))

    out = await consume(schemas.encode(failed_event()), flaky)
    assert len(calls) == 2 and [e.type for e in out] == ["search-failed"]


async def test_persistent_failure_ends_in_dead_letter_not_a_crash():
    async def broken(event, pub):
        raise RuntimeError("bug")

    out = await consume(schemas.encode(failed_event()), broken)
    assert [e.type for e in out] == ["dead-letter"]
    assert "failed 3x" in out[0].data["reason"] and "RuntimeError: bug" in out[0].data["reason"]


@pytest.mark.parametrize("raw", [None, b"", b"\xff" * 10, schemas.encode(Event(
    "trial-requested", "s", {"trial_id": "t", "index": 0, "config": {"a": 1}, "model": {"name": "m", "format": "f"},
                             "backend": {"kind": "replay"}, "price_per_hour": 1.0}, "x"))])
async def test_anything_that_is_not_an_expected_event_is_dead_lettered(raw):
    out = await consume(raw, never_called)
    assert [e.type for e in out] == ["dead-letter"] and out[0].data["reason"]


async def test_infrastructure_outage_is_waited_out_not_dead_lettered():
    calls = []

    async def redis_down_for_a_while(event, pub):
        calls.append(1)
        if len(calls) <= SETTINGS.handler_retries + 2:   # more failures than the retry budget
            raise ConnectionError("connection refused")
        await pub.publish(event.caused(SearchFailed("search", "ok"), "svc"))

    out = await consume(schemas.encode(failed_event()), redis_down_for_a_while)
    assert [e.type for e in out] == ["search-failed"] and len(calls) == SETTINGS.handler_retries + 3


async def test_a_typed_handler_is_never_given_another_payload_type():
    from schemas.events import TrialResult

    async def on_trial(event: Event[TrialResult], pub) -> None:
        raise AssertionError("a search-failed event must not reach a trial-completed handler")

    out = await consume(schemas.encode(failed_event()), on_trial)
    assert [e.type for e in out] == ["dead-letter"]
    assert "search-failed is not what svc handles here (TrialResult)" in out[0].data["reason"]


def test_every_service_handler_names_the_payload_types_its_topic_carries():
    """What services subscribe to, checked as at their start (a wrong signature is a TypeError)."""
    from schemas.events import SearchCompleted, SearchFailed
    from services.platform.topics import SEARCH_CONTROL, topic_events
    from services.platform.typed import check_handles, payload_types
    from services.profiler.app import ProfilerHandlers
    from services.searcher.app import KnowledgeView, SearcherHandlers
    from services.treebuilder.app import TreebuilderHandlers
    from services.trial_runner.app import TrialRunner
    subscriptions = [(ProfilerHandlers.on_model_submitted, "model-submitted"),
                     (SearcherHandlers.on_kops_identified, "kops-identified"),
                     (SearcherHandlers.on_trial_completed, "trial-completed"),
                     (SearcherHandlers.on_search_cancelled, SEARCH_CONTROL),
                     (KnowledgeView.on_trees_ready, "trees"),
                     (TreebuilderHandlers.on_offline_table, "offline-data"),
                     (TreebuilderHandlers.on_search_result, "search-results"),
                     (TreebuilderHandlers.on_knowledge_requested, "knowledge-requests"),
                     (TrialRunner.on_trial_requested, "trial-requested.replay")]
    for handler, topic in subscriptions:
        assert check_handles(handler, topic_events(topic), topic), handler.__qualname__
    assert payload_types(TreebuilderHandlers.on_search_result) == (SearchCompleted, SearchFailed)
    with pytest.raises(TypeError, match="also carries"):
        check_handles(SearcherHandlers.on_trial_completed, topic_events("search-results"), "search-results")
