"""The local stack's durable event log: each event once, readable when the broker is gone."""

import asyncio
from dataclasses import replace

from schemas import Event
from schemas.events import SearchFailed
from services.platform.settings import Settings
from tools.archive import Archive, history
from tools.localstack import free_port


def event(search_id: str, reason: str = "x") -> Event:
    return Event.new(SearchFailed("search", reason), search_id, "test")


def test_each_event_is_archived_once_and_read_back_in_order(tmp_path):
    a = Archive(tmp_path / "a" / "events.sqlite")
    e1, e2 = event("s1"), event("s2")
    assert a.add([("search-results", e1), ("search-results", e2)]) == 2
    assert a.add([("search-results", e1)]) == 0                      # a redelivery is not a second event
    assert [e.event_id for _, e in a.events()] == [e1.event_id, e2.event_id]
    assert [e.as_dict() for _, e in a.events(search_id="s2")] == [e2.as_dict()]
    assert list(a.events(topics=("dead-letter",))) == []
    a.close()


def test_with_the_broker_gone_the_archive_alone_is_read(tmp_path):
    path = tmp_path / "events.sqlite"
    a = Archive(path)
    e = event("s1", "kept")
    a.add([("search-results", e)])
    a.close()
    gone = replace(Settings(), broker=f"127.0.0.1:{free_port()}")        # nothing listens there

    async def read():
        return [i async for i in history(gone, ("search-results",), path)]
    got = asyncio.run(asyncio.wait_for(read(), 120))
    assert [(i.source, i.event.event_id) for i in got] == [("archive", e.event_id)]
