"""The dashboard's view of the event log: it follows the search topics (``read_events``, the
project's one log reader) and keeps, per search, the audit timeline (the rows ``falcon audit``
prints), what the submission said and how it ended, plus the latest dead letters. Every new event
is announced to the pages' live streams (:meth:`LogIndex.listen`).

Only what is derived from the log lives here; search state comes from Redis (``SearchStore``)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator

from schemas import Event
from schemas.events import DeadLetter, ModelSubmitted, SearchCompleted, SearchFailed, TrialResult
from schemas.upcast import stated
from services.platform.bus import LoggedEvent, ensure_topics, read_events
from services.platform.settings import Settings
from services.platform.topics import ALL_TOPICS
from tools.app.audit import audit_row

log = logging.getLogger("falcon.ui")
# every topic that carries a search's events (offline tables and trees-ready are not a search's)
UI_TOPICS: tuple[str, ...] = tuple(t for t in ALL_TOPICS if t not in ("offline-data", "trees"))


def epoch(ts: str) -> float:
    """An envelope's ``ts`` (UTC, ISO 8601 with Z) as epoch seconds."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@dataclass
class SearchLog:
    """What the log says about one search."""
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)    # event id -> audit row
    model: str | None = None
    strategy: str | None = None
    max_trials: int | None = None
    submitted: float | None = None        # epoch seconds of model-submitted
    result: dict[str, Any] | None = None  # the first search-results event: {"type", "reason"}
    trials: dict[str, dict[str, Any]] = field(default_factory=dict)   # trial id -> what trial-completed said
    backend_kind: str | None = None       # the submission's (the unit of a v1 trial result's RPS/$)

    def timeline(self) -> list[dict[str, Any]]:
        return sorted(self.rows.values(), key=lambda r: r["ts"])


@dataclass(frozen=True)
class Note:
    """A new event, as announced to live streams."""
    type: str
    search_id: str
    ts: str
    event_id: str
    topic: str
    trial_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "search_id": self.search_id, "ts": self.ts, "event_id": self.event_id,
                "topic": self.topic, "trial_id": self.trial_id}


class LogIndex:
    def __init__(self, settings: Settings, topics: tuple[str, ...] = UI_TOPICS, keep_dead_letters: int = 500) -> None:
        self.settings = settings
        self.topics = topics
        self.searches: dict[str, SearchLog] = {}
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=keep_dead_letters)
        self.dead_letter_total = 0
        self.events = 0
        self.error: str | None = None       # why the log cannot be read now (None: following)
        self.started = time.time()
        self._listeners: set[asyncio.Queue[Note]] = set()

    # -- following -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Follow the log until cancelled; on a broker failure start over (the index is rebuilt
        from the beginning, so nothing is counted twice)."""
        while True:
            try:
                await ensure_topics(self.settings, timeout_s=10)
                async for item in read_events(self.settings, self.topics, follow=True):
                    self.error = None
                    self.add(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker down or restarting: retry, show why
                self.error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("cannot follow the event log: %s; retrying", self.error)
                self.reset()
                await asyncio.sleep(1.0)

    def reset(self) -> None:
        self.searches.clear()
        self.dead_letters.clear()
        self.dead_letter_total = 0
        self.events = 0

    def add(self, item: LoggedEvent) -> None:
        e = item.event
        if e is None:
            return
        self.events += 1
        if e.type == "dead-letter":
            self._dead_letter(e)
        if e.search_id:
            self._search_event(item.topic, e)
        if epoch(e.ts) >= self.started - 2.0:       # old events (catching up) change no open page
            trial_id = e.data.get("trial_id") if isinstance(e.data, dict) else None
            self._announce(Note(e.type, e.search_id, e.ts, e.event_id, item.topic,
                                trial_id if isinstance(trial_id, str) else None))

    def published(self, topic: str, e: Event) -> None:
        """An event this dashboard has just published: shown at once (the search's page exists
        before the event comes back from the log, where it is then counted as delivered)."""
        self._search_event(topic, e, deliveries=0)
        self._announce(Note(e.type, e.search_id, e.ts, e.event_id, topic))

    def _search_event(self, topic: str, e: Event, deliveries: int = 1) -> None:
        s = self.searches.setdefault(e.search_id, SearchLog())
        row = s.rows.get(e.event_id)
        if row is not None:
            row["deliveries"] += deliveries
            return
        s.rows[e.event_id] = {**audit_row(topic, e, s.backend_kind), "deliveries": deliveries}
        try:
            p = e.payload
        except ValueError:
            return
        if isinstance(p, ModelSubmitted) and s.submitted is None:
            s.model, s.strategy, s.max_trials = str(p.spec.model.get("name")), p.spec.strategy, p.spec.stop.max_trials
            s.submitted = epoch(e.ts)
            s.backend_kind = p.spec.backend.get("kind")
        elif isinstance(p, TrialResult):
            p = stated(p, s.backend_kind)
            s.trials.setdefault(p.trial_id, {"ts": e.ts, "index": p.index, "status": p.status,
                                             "rps_per_usd": p.rps_per_usd, "rps_per_usd_unit": p.rps_per_usd_unit,
                                             "reason": p.reason, "runner": p.runner})
        elif isinstance(p, (SearchCompleted, SearchFailed)) and s.result is None:
            s.result = {"type": e.type, "ts": e.ts,
                        "reason": p.stop_reason if isinstance(p, SearchCompleted) else f"{p.stage}: {p.reason}"}

    def _dead_letter(self, e: Event[DeadLetter]) -> None:
        p = e.payload
        self.dead_letter_total += 1
        raw = base64.b64decode(p.raw_b64)[:160]
        self.dead_letters.appendleft({
            "ts": e.ts, "event_id": e.event_id, "search_id": e.search_id, "source_topic": p.source_topic,
            "partition": p.partition, "offset": p.offset, "reason": p.reason, "service": p.service,
            "raw_size": p.raw_size, "key": p.key, "raw_head": raw.decode("utf-8", "replace")})

    # -- live streams ----------------------------------------------------------------------------
    def _announce(self, note: Note) -> None:
        for q in self._listeners:
            q.put_nowait(note)

    @contextmanager
    def listen(self) -> Iterator[asyncio.Queue[Note]]:
        q: asyncio.Queue[Note] = asyncio.Queue()
        self._listeners.add(q)
        try:
            yield q
        finally:
            self._listeners.discard(q)
