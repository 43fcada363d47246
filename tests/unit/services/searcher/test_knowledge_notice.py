"""A search that begins without the offline knowledge its space has says so in its result's
notices (and so in the report and the dashboard, which show those notices): the first demo on a
fresh stack searched without it, 60 s after asking, and nothing said so."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from schemas import Event
from schemas.events import KopsIdentified
from services.platform.redis_keys import OFFLINE_VERSION, SEARCHER_INITIALISED
from services.platform.settings import Settings
from services.knowledge.store import KnowledgeStore
from services.searcher.app import KnowledgeView, SearcherHandlers
from services.searcher.search import SearchState, start_search, trade_offs
from services.searcher.store import SearchStore
from services.searcher.strategies import missing_knowledge_notice
from services.domain.objectives import Objective
from tests.helpers import spec


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, partition: int | None = None) -> None:
        self.events.append(event)


def test_the_notice_is_for_strategies_that_read_knowledge():
    assert "began as plain GP-EI" in missing_knowledge_notice("falcon", Objective(), "not built yet")
    assert missing_knowledge_notice("random", Objective(), "not built yet") is None


def test_a_state_s_notices_reach_the_result_and_survive_storage():
    state = start_search("s1", spec(strategy="random"), ["dense"], []).state
    noted = SearchState.from_dict({**state.to_dict(), "notices": ["began without knowledge"]}, state.spec)
    assert noted.notices == ("began without knowledge",)
    assert SearchState.from_dict(noted.to_dict(), state.spec).notices == noted.notices
    assert trade_offs(noted, None)["notices"][0] == "began without knowledge"
    assert "notices" not in state.to_dict()          # a state without notices is stored as before


def test_a_search_the_treebuilder_kept_waiting_says_it_ran_without_knowledge(redis_url):
    async def go() -> tuple[SearchState | None, list[Event]]:
        redis = Redis.from_url(redis_url)
        try:
            await redis.set(OFFLINE_VERSION, 1)              # a dataset exists, its knowledge is not built
            await redis.set(SEARCHER_INITIALISED, "1")       # nothing to rebuild from a log
            settings = Settings(redis_url=redis_url)
            handlers = SearcherHandlers(SearchStore(redis), settings, KnowledgeView(KnowledgeStore(redis), 0.2))
            s = spec(strategy="falcon")
            out = Collect()
            event = Event.new(KopsIdentified(s, [], ["dense"], 0.05), "slow-knowledge", "profiler")
            await handlers.on_kops_identified(event, out)
            return await SearchStore(redis).get("slow-knowledge"), out.events
        finally:
            await redis.aclose()
    state, events = asyncio.run(go())
    assert any(e.type == "knowledge-requested" for e in events)
    assert state is not None and len(state.notices) == 1
    notice = state.notices[0]
    assert "searched without offline knowledge" in notice and "after 0 s" in notice and "falcon up" in notice
    assert trade_offs(state, None)["notices"][0] == notice
