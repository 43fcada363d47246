"""Searcher service shell: kops-identified / trial-completed / search-cancelled in, trial-requested
and search results out; each search's state in Redis.

A handler takes the search's lock, loads the state, asks the pure core, stores the new state
together with the events it decided (the outbox), releases the lock and publishes the outbox.
A redelivered event finds its effects already in the outbox and re-publishes them (same event
ids), so a crash between store and publish loses nothing and decides nothing twice. When Redis
comes up empty (new, or wiped), every search is first rebuilt from the event log."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Awaitable, Callable

import faust
from redis.exceptions import RedisError

from schemas import Event
from schemas.events import (
    KnowledgeRequested,
    KopsIdentified,
    SearchCancelled,
    SearchFailed,
    TreesReady,
    TrialResult,
)
from services.platform.bus import (
    Publisher,
    Reject,
    create_app,
    follow,
    read_events,
    run_worker,
    subscribe,
)
from services.platform.connections import redis_client
from services.domain.falcon_data import DataError, ModelTable
from services.searcher.preflight import Facts
from services.platform.redis_keys import SEARCHER_INITIALISED
from services.platform.redis_lock import initialise_once
from services.searcher.routing import TrialRouter
from services.platform.runners import read_adverts
from services.platform.tables import read_model_table
from services.platform.settings import Settings
from services.domain.space import Space
from services.domain.spec import SearchSpec
from services.platform.topics import SEARCH_CONTROL, SEARCH_LOG_TOPICS, topic_for
from services.knowledge import Knowledge
from services.knowledge.store import KnowledgeStore
from services.searcher.search import (
    Decision,
    SearchState,
    cancel_reason,
    cancel_search,
    decision_events,
    rebuild_states,
    record_trial,
    start_search,
    validate_spec,
    with_outbox,
)
from services.searcher.store import SearchStore, restore
from services.searcher.strategies import missing_knowledge_notice

SERVICE = "searcher"
log = logging.getLogger("falcon.searcher")
Decide = Callable[[SearchState | None, Knowledge | None], Decision]


class KnowledgeView:
    """The searcher's view of the treebuilder's knowledge. Which version exists for which space
    it learns from trees-ready events (every searcher process follows that topic); a space's
    knowledge is loaded from the store when first needed and dropped when a newer version is
    announced. A space with no knowledge yet is asked for (knowledge-requested) and waited for,
    at most ``wait_s``: a search is never failed or stalled for lack of knowledge."""

    def __init__(self, store: KnowledgeStore, wait_s: float = 60.0) -> None:
        self.store = store
        self.wait_s = wait_s
        self.announced: dict[str, int] = {}            # space key -> newest version announced
        self._loaded: dict[str, Knowledge | None] = {}
        self._news = asyncio.Condition()
        self.why_none: dict[str, str] = {}          # space key -> why the last ask for it came back empty

    async def on_trees_ready(self, event: Event[TreesReady], publisher: Publisher) -> None:
        ready = event.payload
        if ready.version > self.announced.get(ready.space_key, 0):
            self.announced[ready.space_key] = ready.version
            self._loaded.pop(ready.space_key, None)
        async with self._news:
            self._news.notify_all()

    async def for_space(self, space: Space, ask: Callable[[], Awaitable[None]] | None = None) -> Knowledge | None:
        """The knowledge for ``space``; None when no offline dataset exists (or none came in time).
        ``ask``: publishes the request for it when the treebuilder has not built it."""
        key = space.fingerprint()
        if key in self._loaded:
            return self._loaded[key]
        knowledge = await self.store.load(space)
        self.why_none.pop(key, None)
        if knowledge is None and ask is not None and await self.store.dataset_version() is None:
            self.why_none[key] = "no offline dataset is published to this stack (falcon up publishes the shipped ones)"
        if knowledge is None and ask is not None and await self.store.dataset_version() is not None:
            await ask()
            try:
                async with self._news:
                    await asyncio.wait_for(self._news.wait_for(lambda: key in self.announced), self.wait_s)
                knowledge = await self.store.load(space)
            except asyncio.TimeoutError:
                log.warning("no knowledge for space %s after %.0fs: searching without it", key, self.wait_s)
                self.why_none[key] = (f"the treebuilder had not built it after {self.wait_s:.0f} s (falcon up "
                                      "waits for the shipped spaces' knowledge before it says ready)")
                return None                          # not remembered: the next search asks again
        self._loaded[key] = knowledge
        return knowledge


async def rebuild_from_log(settings: Settings, store: SearchStore, knowledge: KnowledgeView | None = None,
                           events: list[Event] | None = None) -> int:
    """Rebuild every search found in the event log into Redis (what ``falcon rebuild`` runs).
    Logged decisions are replayed as they were; only an unlogged one is taken again, with the
    knowledge stored for its space (if any). ``events``: the log as the caller read it (e.g. a
    durable archive of it); default: the broker's."""
    if events is None:
        events = [item.event async for item in read_events(settings, SEARCH_LOG_TOPICS) if item.event is not None]
    view = knowledge or KnowledgeView(KnowledgeStore(store.redis))
    spaces: dict[Space, Knowledge | None] = {}
    for e in events:
        if e.type == "kops-identified":
            try:
                space = e.payload.spec.space        # type: ignore[attr-defined]
            except ValueError:
                continue
            if space not in spaces:
                spaces[space] = await view.for_space(space)
    n = await restore(store, rebuild_states(events, lambda spec: spaces.get(spec.space)).values())
    await store.mark_initialised()
    return n


class SearcherHandlers:
    def __init__(self, store: SearchStore, settings: Settings, knowledge: KnowledgeView | None = None) -> None:
        self.store = store
        self.settings = settings
        self.knowledge = knowledge or KnowledgeView(KnowledgeStore(store.redis), settings.knowledge_wait_s)
        self.router = TrialRouter(store.redis)

    async def facts(self, spec: SearchSpec) -> Facts:
        """What the submission checks need that takes I/O: the replay table (when this process can
        read it; else the runner reports per trial) and the runners' adverts."""
        table: ModelTable | None = None
        uri = spec.backend.get("table")
        if spec.backend.get("kind") == "replay" and uri:
            try:
                table = await asyncio.to_thread(read_model_table, str(uri), self.settings.cache_dir)
            except DataError as exc:
                log.warning("cannot check the space against replay table %s here: %s", uri, exc)
        return Facts(table, await read_adverts(self.store.redis))

    async def ensure_initialised(self) -> None:
        n = await initialise_once(self.store.redis, SEARCHER_INITIALISED,
                                  lambda: rebuild_from_log(self.settings, self.store, self.knowledge))
        if n is not None:
            log.warning("Redis had no searcher state: rebuilt %d searches from the event log", n)

    async def _handle(self, event: Event, publisher: Publisher, decide: Decide,
                      knowledge: Knowledge | None = None) -> None:
        """Lock the search, decide (in a worker thread: strategies fit models), store, publish."""
        await self.ensure_initialised()
        async with self.store.lock(event.search_id):
            state = await self.store.get(event.search_id)
            if state is not None and knowledge is None:
                knowledge = await self.knowledge.for_space(state.spec.space)
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
                         f"next={','.join(r.trial_id for r in decision.requests)}" if decision.requests
                         else s.stop_reason or "")
        for e in events:
            await publisher.publish(e, await self.partition_for(e))
        await self.store.mark_published(event.search_id, [e.as_dict() for e in events])

    async def partition_for(self, event: Event) -> int | None:
        """A trial request goes to the partition of an idle runner of its class (several trials
        of a search run at once on different runners); anything else by its key."""
        if event.type != "trial-requested":
            return None
        try:
            return await self.router.partition(topic_for(event.type, event.data), str(event.data["trial_id"]))
        except (OSError, RedisError) as exc:
            log.warning("cannot route trial %s to an idle runner (%s): by key", event.data.get("trial_id"), exc)
            return None

    async def on_kops_identified(self, event: Event[KopsIdentified], publisher: Publisher) -> None:
        begun = event.payload
        space = begun.spec.space

        async def ask() -> None:
            await publisher.publish(event.caused(KnowledgeRequested(space), SERVICE))
        facts = await self.facts(begun.spec)
        # before the lock: it may wait; a search refused by the checks fails at once, without it
        knowledge = None if validate_spec(begun.spec, facts) else await self.knowledge.for_space(space, ask)

        why = self.knowledge.why_none.get(space.fingerprint()) if knowledge is None else None
        notice = missing_knowledge_notice(begun.spec.strategy, begun.spec.objective, why) if why else None

        def decide(state: SearchState | None, knowledge: Knowledge | None) -> Decision:
            if state is not None:
                return Decision(state, duplicate=True)
            decision = start_search(event.search_id, begun.spec, begun.kops, begun.operators, knowledge, facts,
                                    begun.notices or ())
            if notice is None:
                return decision
            return replace(decision, state=replace(decision.state, notices=(*decision.state.notices, notice)))
        await self._handle(event, publisher, decide, knowledge)

    async def on_unusable_start(self, event: Event, error: ValueError, publisher: Publisher) -> None:
        """A kops-identified whose spec the schema admits but the searcher cannot use (a space or
        price catalogue that does not hold together): the search fails with the reason."""
        await publisher.publish(event.caused(SearchFailed("search", str(error)), SERVICE))

    async def on_trial_completed(self, event: Event[TrialResult], publisher: Publisher) -> None:
        result = event.payload

        def decide(state: SearchState | None, knowledge: Knowledge | None) -> Decision:
            if state is None:
                raise Reject(f"unknown search id {event.search_id!r}")
            return record_trial(state, result, knowledge)
        await self._handle(event, publisher, decide)

    async def on_search_cancelled(self, event: Event[SearchCancelled], publisher: Publisher) -> None:
        request = event.payload

        def decide(state: SearchState | None, knowledge: Knowledge | None) -> Decision:
            if state is None:
                raise Reject(f"unknown search id {event.search_id!r}: nothing to cancel")
            return cancel_search(state, cancel_reason(request))
        await self._handle(event, publisher, decide)


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings)
    handlers = SearcherHandlers(SearchStore(redis_client(settings)), settings)
    subscribe(app, settings, "kops-identified", handlers.on_kops_identified, on_unusable=handlers.on_unusable_start)
    subscribe(app, settings, "trial-completed", handlers.on_trial_completed)
    subscribe(app, settings, SEARCH_CONTROL, handlers.on_search_cancelled)
    follow(app, settings, "trees", handlers.knowledge.on_trees_ready)

    @app.task
    async def initialise() -> None:   # noqa: ANN202 - rebuild before the first event, if Redis is empty
        await handlers.ensure_initialised()
    return app


def main() -> None:
    settings = Settings.from_env()
    run_worker(build(settings), settings)
