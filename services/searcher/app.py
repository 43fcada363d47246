"""Searcher service shell: kops-identified / trial-completed in, trial-requested and search
results out; each search's state in Redis.

A handler takes the search's lock, loads the state, asks the pure core, stores the new state
together with the events it decided (the outbox), releases the lock and publishes the outbox.
A redelivered event finds its effects already in the outbox and re-publishes them (same event
ids), so a crash between store and publish loses nothing and decides nothing twice. When Redis
comes up empty (new, or wiped), every search is first rebuilt from the event log."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import faust
from redis.asyncio import Redis

from schemas import Event
from services.common.bus import (
    Publisher,
    Reject,
    create_app,
    read_events,
    run_worker,
    subscribe,
)
from services.common.connections import redis_client
from services.common.redis_lock import initialise_once
from services.common.settings import Settings
from services.common.topics import SEARCH_LOG_TOPICS
from services.common.space import Space
from services.common.spec import SearchSpec
from services.searcher.search import (
    Decision,
    SearchState,
    TrialRecord,
    decision_events,
    rebuild_states,
    record_trial,
    start_search,
    with_outbox,
)
from services.searcher.store import INITIALISED, SearchStore, restore
from services.treebuilder.app import VERSION as OFFLINE_VERSION
from services.treebuilder.app import load_dataset, load_knowledge
from services.treebuilder.dataset import OfflineDataset
from services.treebuilder.kop_curves import Knowledge

SERVICE = "searcher"
log = logging.getLogger("falcon.searcher")
Decide = Callable[[SearchState | None, Knowledge | None], Decision]


class KnowledgeCache:
    """The offline knowledge for a space, built from the treebuilder's dataset in Redis and kept
    until the dataset's version changes."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._version: bytes | None = None
        self._dataset: OfflineDataset | None = None
        self._by_space: dict[Space, Knowledge] = {}

    async def for_space(self, space: Space) -> Knowledge | None:
        version = await self.redis.get(OFFLINE_VERSION)
        if version is None:
            return None                               # no offline dataset published yet
        if version != self._version:
            self._dataset, self._version, self._by_space = None, version, {}
        if space not in self._by_space:
            stored = await load_knowledge(self.redis, space, int(version))     # the treebuilder's product
            if stored is None:                                                 # not built (yet) for this space
                if self._dataset is None:
                    self._dataset = await load_dataset(self.redis)
                stored = await asyncio.to_thread(Knowledge.build, self._dataset, space)
            self._by_space[space] = stored
        return self._by_space[space]


async def rebuild_from_log(settings: Settings, store: SearchStore, knowledge: KnowledgeCache | None = None) -> int:
    """Rebuild every search found in the event log into Redis (what ``falcon rebuild`` runs)."""
    events = [item.event async for item in read_events(settings, SEARCH_LOG_TOPICS) if item.event is not None]
    cache = knowledge or KnowledgeCache(store.redis)
    spaces: dict[Space, Knowledge | None] = {}
    for e in events:
        if e.type == "kops-identified":
            try:
                space = SearchSpec.from_dict(e.data["spec"]).space
            except ValueError:
                continue
            if space not in spaces:
                spaces[space] = await cache.for_space(space)
    n = await restore(store, rebuild_states(events, lambda spec: spaces.get(spec.space)).values())
    await store.mark_initialised()
    return n


class SearcherHandlers:
    def __init__(self, store: SearchStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.knowledge = KnowledgeCache(store.redis)

    async def ensure_initialised(self) -> None:
        n = await initialise_once(self.store.redis, INITIALISED,
                                  lambda: rebuild_from_log(self.settings, self.store, self.knowledge))
        if n is not None:
            log.warning("Redis had no searcher state: rebuilt %d searches from the event log", n)

    async def _handle(self, event: Event, publisher: Publisher, decide: Decide, space: Space | None = None) -> None:
        """Lock the search, decide (in a worker thread: strategies fit models), store, publish."""
        await self.ensure_initialised()
        async with self.store.lock(event.search_id):
            state = await self.store.get(event.search_id)
            space = space or (state.spec.space if state is not None else None)
            knowledge = await self.knowledge.for_space(space) if space is not None else None
            decision = await asyncio.to_thread(decide, state, knowledge)
            if decision.duplicate:
                if await self.store.is_published(event.search_id, decision.state.outbox):
                    return           # its effects are on the broker already: nothing to do
                events = [Event(**e) for e in decision.state.outbox]
                log.info("search=%s duplicate %s: re-publishing its %d unpublished events", event.search_id,
                         event.type, len(events))
            elif decision.ignored:
                raise Reject(decision.ignored)
            else:
                events = decision_events(event, decision, SERVICE)
                await self.store.put(with_outbox(decision, events))
                s = decision.state
                log.info("search=%s trials=%d status=%s %s", s.search_id, len(s.trials), s.status,
                         f"next={decision.request.trial_id}" if decision.request else s.stop_reason or "")
        for e in events:
            await publisher.publish(e)
        await self.store.mark_published(event.search_id, [e.as_dict() for e in events])

    async def on_kops_identified(self, event: Event, publisher: Publisher) -> None:
        try:
            spec = SearchSpec.from_dict(event.data["spec"])
        except ValueError as exc:  # SpaceError, PricingError: a spec the schema admits but we cannot use
            await publisher.publish(event.caused("search-failed", {"stage": "search", "reason": str(exc)}, SERVICE))
            return

        def decide(state: SearchState | None, knowledge: Knowledge | None) -> Decision:
            if state is not None:
                return Decision(state, duplicate=True)
            return start_search(event.search_id, spec, event.data["kops"], event.data["operators"], knowledge)
        await self._handle(event, publisher, decide, spec.space)

    async def on_trial_completed(self, event: Event, publisher: Publisher) -> None:
        def decide(state: SearchState | None, knowledge: Knowledge | None) -> Decision:
            if state is None:
                raise Reject(f"unknown search id {event.search_id!r}")
            return record_trial(state, TrialRecord.from_row(event.data), knowledge)
        await self._handle(event, publisher, decide)


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings)
    handlers = SearcherHandlers(SearchStore(redis_client(settings)), settings)
    subscribe(app, settings, "kops-identified", handlers.on_kops_identified)
    subscribe(app, settings, "trial-completed", handlers.on_trial_completed)

    @app.task
    async def initialise() -> None:   # noqa: ANN202 - rebuild before the first event, if Redis is empty
        await handlers.ensure_initialised()
    return app


def main() -> None:
    settings = Settings.from_env()
    run_worker(build(settings), settings)
