"""Searcher service shell: kops-identified / trial-completed in, trial-requested and search
results out; each search's state in Redis. Handlers: load state -> pure core -> store state
with its outbox -> publish the outbox. A redelivered event finds its effects in the outbox and
re-publishes them (same event ids), so a crash between store and publish loses nothing."""

from __future__ import annotations

import logging
from dataclasses import replace

import faust
from redis.asyncio import Redis

from schemas import Event
from services.common.bus import Publisher, Reject, create_app, run_worker, subscribe
from services.common.settings import Settings
from services.common.spec import SearchSpec
from services.searcher.search import (Decision, SearchState, TrialRecord, completed_data, failed_data,
                                      record_trial, start_search)
from services.searcher.store import SearchStore

SERVICE = "searcher"
log = logging.getLogger("falcon.searcher")


def outbox_events(cause: Event, decision: Decision) -> list[Event]:
    s = decision.state
    events = []
    if decision.request is not None:
        r = decision.request
        events.append(cause.caused("trial-requested", {
            "trial_id": r.trial_id, "index": r.index, "config": dict(r.config), "model": dict(s.spec.model),
            "backend": dict(s.spec.backend), "price_per_hour": r.price_per_hour}, SERVICE))
    if decision.finished:
        if s.status == "completed":
            events.append(cause.caused("search-completed", completed_data(s), SERVICE))
        else:
            events.append(cause.caused("search-failed", failed_data(s), SERVICE))
    return events


class SearcherHandlers:
    def __init__(self, store: SearchStore) -> None:
        self.store = store

    async def _apply(self, cause: Event, decision: Decision, publisher: Publisher) -> None:
        if decision.duplicate:
            log.info("search=%s duplicate %s %s: re-publishing outbox", cause.search_id, cause.type, cause.event_id)
            for e in decision.state.outbox:
                await publisher.publish(Event(**e))
            return
        if decision.ignored:
            log.info("search=%s %s ignored: %s", cause.search_id, cause.event_id, decision.ignored)
            return
        events = outbox_events(cause, decision)
        state = replace(decision.state, outbox=tuple(e.as_dict() for e in events))
        await self.store.put(state)
        for e in events:
            await publisher.publish(e)
        log.info("search=%s trials=%d status=%s %s", state.search_id, len(state.trials), state.status,
                 f"next={decision.request.trial_id}" if decision.request else state.stop_reason or "")

    async def on_kops_identified(self, event: Event, publisher: Publisher) -> None:
        state = await self.store.get(event.search_id)
        if state is not None:
            await self._apply(event, Decision(state, duplicate=True), publisher)
            return
        try:
            spec = SearchSpec.from_dict(event.data["spec"])
        except ValueError as exc:  # SpaceError, PricingError: a spec the schema admits but we cannot use
            await publisher.publish(event.caused("search-failed", {"stage": "search", "reason": str(exc)}, SERVICE))
            return
        await self._apply(event, start_search(event.search_id, spec, event.data["kops"], event.data["operators"]),
                          publisher)

    async def on_trial_completed(self, event: Event, publisher: Publisher) -> None:
        state = await self.store.get(event.search_id)
        if state is None:
            raise Reject(f"unknown search id {event.search_id!r}")
        d = event.data
        record = TrialRecord(trial_id=d["trial_id"], index=d["index"], config=d["config"], status=d["status"],
                             value=d["value"], cost_usd=d["cost_usd"], duration_s=d["duration_s"],
                             rps=d.get("rps"), p50_ms=d.get("p50_ms"), p99_ms=d.get("p99_ms"),
                             reason=d.get("reason"))
        await self._apply(event, record_trial(state, record), publisher)


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings)
    handlers = SearcherHandlers(SearchStore(Redis.from_url(settings.redis_url)))
    subscribe(app, settings, "kops-identified", handlers.on_kops_identified)
    subscribe(app, settings, "trial-completed", handlers.on_trial_completed)
    return app


def main() -> None:
    settings = Settings.from_env()
    run_worker(build(settings), settings)
