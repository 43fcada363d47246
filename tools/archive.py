"""The local stack's durable event log.

The local broker (tansu) keeps its log in memory, so ``falcon down`` would forget every event. The
*archiver* (a process that ``falcon up`` starts beside the services: ``python -m tools.archive``)
follows every topic from the beginning and appends each event to a SQLite file in the stack's home
(``<home>/archive/events.sqlite``), once per event id. :func:`history` is what ``audit``,
``report``, ``rebuild``, ``watch`` and ``dead-letters`` read: the archive and whatever the broker
still holds, deduplicated by event id (with the broker down, the archive alone).

Only well-formed events are archived: a message that is not one is dead-lettered by the consumer
that met it, and that dead letter (with the reason and the raw bytes) is archived.

On SIGTERM the archiver reads on until the broker has been quiet for a second (the services stop
first, so their last events are in), then exits."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterable, Iterator

from aiokafka.errors import KafkaConnectionError, KafkaError

from schemas import Event
from services.platform.bus import read_events
from services.platform.settings import Settings
from services.platform.topics import ALL_TOPICS

log = logging.getLogger("falcon.archive")
READY_MARK = "archiver: following"
DRAIN_QUIET_S = 1.0

_SCHEMA = """CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY, topic TEXT NOT NULL, type TEXT NOT NULL, search_id TEXT NOT NULL,
    ts TEXT NOT NULL, archived_at REAL NOT NULL, event TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_search ON events (search_id);
CREATE INDEX IF NOT EXISTS events_type ON events (type);"""


def archive_path(home: Path) -> Path:
    return Path(home) / "archive" / "events.sqlite"


class Archive:
    """Events in a SQLite file, one row per event id (later copies of an event are ignored)."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add(self, items: Iterable[tuple[str, Event]]) -> int:
        """Archive (topic, event) pairs; returns how many were new. Committed before it returns."""
        rows = [(e.event_id, topic, e.type, e.search_id, e.ts, time.time(), json.dumps(e.as_dict()))
                for topic, e in items]
        with self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            return self.db.total_changes - before

    def events(self, topics: Iterable[str] | None = None, search_id: str | None = None) -> Iterator[tuple[str, Event]]:
        """(topic, event) in the order they were archived."""
        sql, args = "SELECT topic, event FROM events", []
        where = []
        if topics is not None:
            ts = list(topics)
            where.append(f"topic IN ({','.join('?' * len(ts))})")
            args += ts
        if search_id is not None:
            where.append("search_id = ?")
            args.append(search_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        for topic, raw in self.db.execute(sql + " ORDER BY rowid", args):
            yield topic, Event(**json.loads(raw))

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


@dataclass(frozen=True)
class Logged:
    topic: str
    event: Event
    source: str          # "archive" | "broker"


async def history(settings: Settings, topics: tuple[str, ...] = ALL_TOPICS, archive: Path | None = None,
                  search_id: str | None = None, idle_s: float = 1.5) -> AsyncIterator[Logged]:
    """Every event of ``topics``: first those in the archive (when the file exists), then those the
    broker still holds, each event id once. Without a reachable broker, the archive alone (an
    unreachable broker with no archive raises, as reading the broker would)."""
    seen: set[str] = set()
    archived = False
    if archive is not None and Path(archive).exists():
        a = Archive(Path(archive), create=False)
        try:
            for topic, e in a.events(topics, search_id):
                if e.event_id not in seen:
                    seen.add(e.event_id)
                    archived = True
                    yield Logged(topic, e, "archive")
        finally:
            a.close()
    try:
        async for item in read_events(settings, topics, idle_s=idle_s):
            e = item.event
            if e is None or e.event_id in seen or (search_id is not None and e.search_id != search_id):
                continue
            seen.add(e.event_id)
            yield Logged(item.topic, e, "broker")
    except (KafkaConnectionError, KafkaError, OSError, RuntimeError) as exc:
        if not archived:
            raise
        log.warning("broker unreachable (%s): the archive alone", exc)


# -- the archiver process ----------------------------------------------------------------------
async def follow_into(settings: Settings, archive: Archive, stop: asyncio.Event,
                      topics: tuple[str, ...] = ALL_TOPICS) -> int:
    """Append every event of ``topics`` to ``archive`` until ``stop`` is set and the broker has
    been quiet for DRAIN_QUIET_S; returns how many new events were archived."""
    added = 0
    last = time.monotonic()

    async def consume() -> None:
        nonlocal added, last
        while True:
            try:
                async for item in read_events(settings, topics, follow=True):
                    last = time.monotonic()
                    if item.event is not None:
                        added += archive.add([(item.topic, item.event)])
            except (KafkaError, OSError, RuntimeError) as exc:   # broker restarting, topic not there yet
                log.warning("archiver: %s; retrying", exc)
                await asyncio.sleep(1.0)

    task = asyncio.create_task(consume())
    print(READY_MARK, flush=True)
    await stop.wait()
    while time.monotonic() - last < DRAIN_QUIET_S and not task.done():
        await asyncio.sleep(0.1)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return added


async def _main(db: Path) -> None:
    settings = Settings.from_env()
    archive = Archive(db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        n = await follow_into(settings, archive, stop)
        print(f"archiver: stopped; {n} new events archived this run, {archive.count()} in {db}", flush=True)
    finally:
        archive.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.archive", description=__doc__.split("\n")[0])
    p.add_argument("--db", required=True, help="the SQLite archive file")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_main(Path(a.db)))


if __name__ == "__main__":
    main()
