"""Reading searches back: their state (Redis, else rebuilt from the event log), the overview
the CLI lists, the offline knowledge stored for their space, their events, and the rebuild of
Redis from the log (``falcon status``/``report``/``rebuild``, the dashboard's report)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from schemas import Event
from services.platform.connections import redis_client
from services.platform.settings import Settings
from services.platform.topics import ALL_TOPICS, SEARCH_LOG_TOPICS
from services.knowledge import Knowledge
from services.searcher.search import SearchState, rebuild_states
from services.searcher.store import SearchStore
from tools import units
from tools.app.context import home
from tools.archive import archive_path, history
from tools.report.summary import overview

LOG_TYPES = ("kops-identified", "trial-completed", "trial-requested", "search-completed", "search-failed")


def state_summary(st: SearchState) -> dict[str, Any]:
    """One search as ``falcon status`` lists it (the dashboard's row is made from the same overview)."""
    o = overview(st)
    return {"search_id": o["search_id"], "model": o["model"], "status": o["status"], "trials": o["trials"],
            "max_trials": o["max_trials"], "backend": o["backend"], "objective": o["objective_title"],
            "best_text": o["best_text"], "best_value": o["best_value"], "rps_per_usd_unit": o["rps_per_usd_unit"],
            "best_objective": o["best_objective"], "best_config": o["best_config"], "best_rps": o["best_rps"],
            "best_p99_ms": o["best_p99_ms"], "spent_usd": units.round_sig(o["spent_usd"]),
            "stop_reason": o["stop_reason"], "pending": o["pending"], "parallel": o["parallel"], "kops": o["kops"],
            "notices": o["notices"]}


async def search_rows(s: Settings, search_id: str | None) -> list[dict[str, Any]]:
    """:func:`state_summary` of one search, or of every search in the searcher's state."""
    redis = redis_client(s)
    try:
        store = SearchStore(redis)
        ids = [search_id] if search_id else await store.list_ids()
        rows = []
        for i in ids:
            st = await store.get(i)
            if st is not None:
                rows.append(state_summary(st))
        return rows
    finally:
        await redis.aclose()


# how far along its life an event says a search is (its outcome is final: the searcher keeps the
# first outcome of a search id and ignores a later submission under it)
_STAGE = {"model-submitted": 0, "kops-identified": 1, "search-completed": 2, "search-failed": 2}


def furthest(events: Iterable[Event]) -> Event | None:
    """The event that says how far a search got: its outcome if it has one, else its
    kops-identified, else its submission (the last one at a stage, in log order). Not simply
    the last event read: events of different topics (a submission and the search-failed it
    caused) reach the log's readers in no fixed order, e.g. in one fetch from the broker, where
    the consumer orders the partitions by hash, and the archive keeps them in the order the
    archiver read them."""
    found = None
    for e in events:
        if e.type in _STAGE and (found is None or _STAGE[e.type] >= _STAGE[found.type]):
            found = e
    return found


async def in_log(s: Settings, search_id: str) -> Event | None:
    """The event of this search in the log (archive + broker) that says how far it got
    (:func:`furthest`), or None when the log has none."""
    return furthest([item.event async for item in history(s, ("model-submitted", "kops-identified", "search-results"),
                                                           archive_path(home()), search_id=search_id, idle_s=1.0)])


async def search_events(s: Settings, search_id: str) -> list[tuple[str, Event]]:
    """(topic, event) of one search from the archive and the broker, each event once, in log order."""
    return [(i.topic, i.event) async for i in history(s, ALL_TOPICS, archive_path(home()), search_id=search_id)]


@dataclass(frozen=True)
class Loaded:
    state: SearchState | None
    knowledge: Knowledge | None
    wall_s: float | None          # submission to result, from the log's timestamps


def _ts(e: Event) -> float:
    return datetime.fromisoformat(e.ts.replace("Z", "+00:00")).timestamp()


async def load_search(s: Settings, search_id: str) -> Loaded:
    """A search's state (Redis, else rebuilt from the event log), the offline knowledge stored
    for its space (None when none was built) and its wall time."""
    from services.knowledge.store import KnowledgeStore
    events = [e for _, e in await search_events(s, search_id)]
    redis = redis_client(s)
    try:
        st = await SearchStore(redis).get(search_id)
        if st is None:
            st = rebuild_states([e for e in events if e.type in LOG_TYPES]).get(search_id)
        knowledge = await KnowledgeStore(redis).load(st.spec.space) if st is not None else None
    finally:
        await redis.aclose()
    start = [_ts(e) for e in events if e.type == "model-submitted"]
    end = [_ts(e) for e in events if e.type in ("search-completed", "search-failed")]
    wall = max(end) - min(start) if start and end else None
    return Loaded(st, knowledge, wall)


async def rebuild(s: Settings) -> dict[str, int]:
    from services.searcher.app import rebuild_from_log
    from services.trial_runner.app import restore_results
    events = [i.event async for i in history(s, SEARCH_LOG_TOPICS, archive_path(home()))]
    redis = redis_client(s)
    try:
        return {"searches_restored": await rebuild_from_log(s, SearchStore(redis), events=events),
                "trial_results_restored": await restore_results(redis, s, events)}
    finally:
        await redis.aclose()
