"""Every search's state rebuilt from the event log alone (``falcon rebuild``, and the searcher
when Redis lost its state): the searcher's logged decisions are replayed as facts."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

from schemas import Event
from schemas.events import KopsIdentified, SearchCancelled, SearchCompleted, SearchFailed, TrialRequested, TrialResult
from services.domain.spec import SearchSpec
from services.knowledge import Knowledge
from services.searcher.search.decide import (
    Decision,
    _next,
    _published,
    accept_trial,
    cancel_reason,
    cancel_search,
    decision_events,
    resolve_parallel,
    start_search,
    with_outbox,
)
from services.searcher.search.state import SearchState

def rebuild_states(events: Iterable[Event],
                   knowledge: Callable[[SearchSpec], Knowledge | None] = lambda spec: None) -> dict[str, SearchState]:
    """Every search's state rebuilt from the event log alone.

    The log holds the searcher's own decisions (trial-requested, search-completed/-failed, each
    with the id of the event that caused it), so they are replayed as facts, not decided again:
    the result equals what the searcher had stored, outbox included, whatever knowledge is at hand
    now. Only a decision whose events never reached the log (a crash between storing and
    publishing) is taken again by the core; nobody has seen it, so a new one is as consistent."""
    starts: dict[str, Event[KopsIdentified]] = {}
    results: dict[str, list[Event]] = {}
    cancels: dict[str, Event[SearchCancelled]] = {}
    effects: dict[str, list[Event]] = {}
    seen: set[str] = set()
    for e in events:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        if e.type == "kops-identified":
            starts.setdefault(e.search_id, e)
        elif e.type == "trial-completed":
            results.setdefault(e.search_id, []).append(e)
        elif e.type == "search-cancelled":
            cancels.setdefault(e.search_id, e)        # the first one decides; later ones changed nothing
        elif e.type in ("trial-requested", "search-completed", "search-failed") and e.causation_id:
            effects.setdefault(e.causation_id, []).append(e)
    states: dict[str, SearchState] = {}
    for sid, start in starts.items():
        try:
            begun = start.payload
        except ValueError:
            continue                      # the searcher answered it with search-failed, no state
        spec = begun.spec
        started = [e.payload for e in effects.get(start.event_id, ()) if e.type == "trial-requested"]
        # the searcher records its parallelism in every request (resolved from the runners on hand
        # when the spec left it open); older logs: one request per trial the start set running
        recorded = next((p.parallel for p in started if isinstance(p, TrialRequested) and p.parallel), None)
        parallel = resolve_parallel(spec) if spec.parallel is not None or not started else \
            recorded or len(started)
        state = SearchState(sid, spec, tuple(begun.kops), tuple(begun.operators), parallel=parallel,
                            notices=tuple(begun.notices or ()))
        cancel = cancels.get(sid)
        # the cancel took effect when the search had as many trials as its logged result lists
        cancel_effects = effects.get(cancel.event_id, []) if cancel is not None else []
        cancelled_at = next((len(e.payload.trials) for e in cancel_effects    # type: ignore[attr-defined]
                             if e.type in ("search-completed", "search-failed")), None)
        for cause in [start, *results.get(sid, ())]:
            if cause.type == "trial-completed":
                if cancel is not None and cancelled_at is not None and state.status == "running" \
                        and len(state.trials) >= cancelled_at:
                    state = _replay_cancel(state, cancel_effects)
                result = cause.payload
                assert isinstance(result, TrialResult)
                accepted = accept_trial(state, result)
                if isinstance(accepted, Decision):
                    continue              # duplicate or stale: it changed nothing then either
                state = accepted
                if state.status == "cancelled":   # the in-flight trial of a cancelled search: recorded only
                    state = with_outbox(Decision(state), [])
                    continue
            logged = effects.get(cause.event_id)
            if logged:
                state = _replay(state, logged)
            else:
                d = _next(state, knowledge(spec)) if cause.type == "trial-completed" else \
                    start_search(sid, spec, begun.kops, begun.operators, knowledge(spec), notices=begun.notices or ())
                state = with_outbox(d, decision_events(cause, d))
        if cancel is not None and state.status == "running":
            if cancel_effects:
                state = _replay_cancel(state, cancel_effects)
            else:                         # stored but never published: decide it again (nobody saw it)
                d = cancel_search(state, cancel_reason(cancel.payload))
                state = with_outbox(d, decision_events(cancel, d))
        states[sid] = state
    return states


def _replay(state: SearchState, logged: list[Event]) -> SearchState:
    """Apply a decision as the log recorded it."""
    for e in logged:
        p = e.payload
        if isinstance(p, (TrialRequested, SearchCompleted)):     # what the model expected when it decided
            state = replace(state, predicted=dict(p.predicted or {}))
        if isinstance(p, TrialRequested):
            if all(q.trial_id != p.trial_id for q in state.pending):
                state = replace(state, pending=state.pending + (p,))
        elif isinstance(p, SearchCompleted):
            state = replace(state, status="completed", stop_reason=p.stop_reason, pending=())
        elif isinstance(p, SearchFailed):
            state = replace(state, status="failed", stop_reason=p.reason, pending=())
    return _published(state, [e.as_dict() for e in logged])


def _replay_cancel(state: SearchState, logged: list[Event]) -> SearchState:
    """Apply a cancel as the log recorded it (the trials in flight stay pending)."""
    result = next((e.payload for e in logged if e.type in ("search-completed", "search-failed")), None)
    reason = result.stop_reason if isinstance(result, SearchCompleted) else \
        result.reason if isinstance(result, SearchFailed) else "cancelled"
    return _published(replace(state, status="cancelled", stop_reason=reason), [e.as_dict() for e in logged])
