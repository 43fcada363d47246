"""The searcher's pure core: a search's state and the decision taken on each event.

No Kafka, no Redis: the shell loads a :class:`SearchState`, calls :func:`start_search`,
:func:`record_trial` or :func:`cancel_search`, stores the new state and publishes what the
:class:`Decision` says.
Everything here is deterministic given the state, which is what makes restart-from-Redis exact.

This is the one ask/tell driver of the project: the searcher service, the in-process harness
(``tools/harness.py``) and the benchmark (``bench/search.py``) all run searches through
:func:`start_search`/:func:`record_trial`, so stop rules, constraints and failed trials behave
the same in all three.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from schemas import Event
from schemas.events import (
    KopsIdentified,
    SearchCancelled,
    SearchCompleted,
    SearchFailed,
    TrialRequested,
    TrialResult,
)
from services.common.objectives import best_per_objective, pareto_front
from services.common.preflight import Facts, spec_problems
from services.common.pricing import PricingError
from services.common.space import SpaceError
from services.common.spec import SearchSpec
from services.common.topics import runner_class
from services.knowledge import Knowledge
from services.searcher.estimate import Estimate, estimate, noisy, remeasure
from services.searcher.strategies import SearchContext, Strategy, StrategyError, knowledge_notice, make_strategy

# cancelled: stopped on request (search-cancelled); final like completed/failed, but the trials that
# were in flight then (``pending``) are still recorded when their results come
Status = Literal["running", "completed", "failed", "cancelled"]


@dataclass(frozen=True)
class SearchState:
    search_id: str
    spec: SearchSpec
    kops: tuple[str, ...]
    operators: tuple[Mapping[str, Any], ...]
    trials: tuple[TrialResult, ...] = ()
    pending: tuple[TrialRequested, ...] = ()   # trials in flight (up to ``parallel``), oldest first
    status: Status = "running"
    # a running search with a stop reason is winding down: it requests nothing more and completes
    # when its last pending trial reports (those trials are paid for; their results count)
    stop_reason: str | None = None
    outbox: tuple[Mapping[str, Any], ...] = ()   # events of the last decision, kept for re-publishing
    parallel: int = 1                            # trials in flight at once (the spec's, or resolved at start)
    # the trial-requested event of each pending trial, as published (re-published when a broker
    # restarted empty: ``falcon up`` resumes the searches that wait for them)
    pending_events: tuple[Mapping[str, Any], ...] = ()
    # noisy searches: what the strategy's model expected of each tried configuration at the last
    # decision (space key -> value); the recommendation shrinks the measurements towards it
    predicted: Mapping[str, float] = field(default_factory=dict)
    # what the strategy learnt that the recommendation should state (falcon: each knob no offline
    # knowledge covers, its estimated effect and the trials behind it), as of the last decision
    learnt: tuple[str, ...] = ()

    @property
    def spent_usd(self) -> float:
        return sum(t.cost_usd for t in self.trials)

    @property
    def committed_usd(self) -> float:
        """Spent plus what the trials in flight will cost."""
        return self.spent_usd + sum(p.price_per_hour * self.spec.trial_seconds / 3600 for p in self.pending)

    def violations(self, t: TrialResult) -> list[str]:
        """Why trial ``t`` cannot be recommended under the user's constraints (empty: it can),
        nor ranked by the objective (it did not measure what the objective needs)."""
        hourly = self.hourly(t)
        return self.spec.constraints.violations(t.rps, t.p99_ms, hourly) + self.spec.objective.violations(t, hourly)

    def hourly(self, t: TrialResult) -> float | None:
        """The trial's configuration's price, $/hour (None: the catalogue cannot price it)."""
        try:
            return self.spec.prices.hourly(t.config)
        except PricingError:
            return None

    def objective_value(self, t: TrialResult) -> float | None:
        """The search's objective for trial ``t``, higher is better (services/common/objectives.py):
        derived here, once, from what the runner measured; strategies and rankings see this."""
        return self.spec.objective.value(t, self.hourly(t))

    def feasible(self, t: TrialResult) -> bool:
        return t.ok and not self.violations(t)

    @cached_property
    def estimates(self) -> list[Estimate]:
        """The feasible configurations tried, best first, with what the search believes each is
        worth (the measurement itself when measurements are exact; a posterior mean with an
        interval when runners report noise: see ``estimate``)."""
        return estimate(self.spec.space, self.trials, self.feasible, self.predicted, value=self.objective_value,
                        spread=self.spec.objective.spread)

    @property
    def recommendation(self) -> Estimate | None:
        return self.estimates[0] if self.estimates else None

    @property
    def best(self) -> TrialResult | None:
        """The recommended configuration's best measurement (None while no trial met the constraints)."""
        rec = self.recommendation
        return rec.trial if rec else None

    def ranked(self) -> list[TrialResult]:
        """Feasible configurations, best first (the recommendation, then the runners-up), one
        trial each; on a tie of the objective (e.g. as many replicas for a load) the higher RPS/$
        (more headroom), then the earlier."""
        return [e.trial for e in self.estimates]

    def observed_values(self) -> list[float | None]:
        """What the strategy is told per trial: the objective, but an infeasible trial counts as
        the worst value seen so far (it must not lure the search, yet its neighbourhood may still
        hold the constrained optimum)."""
        values = [self.objective_value(t) for t in self.trials]
        seen = [v for v in values if v is not None]
        floor = min(seen) if seen else 0.0
        return [None if not t.ok else (v if v is not None and not self.violations(t) else floor)
                for t, v in zip(self.trials, values)]

    def has_trial(self, trial_id: str) -> bool:
        return any(t.trial_id == trial_id for t in self.trials)

    @property
    def winding_down(self) -> bool:
        return self.status == "running" and self.stop_reason is not None

    def to_dict(self) -> dict[str, Any]:
        return {"search_id": self.search_id, "spec": self.spec.to_dict(), "kops": list(self.kops),
                "operators": [dict(o) for o in self.operators], "trials": [t.to_data() for t in self.trials],
                "pending": [p.to_data() for p in self.pending], "parallel": self.parallel,
                "status": self.status, "stop_reason": self.stop_reason, "outbox": [dict(e) for e in self.outbox],
                "pending_events": [dict(e) for e in self.pending_events], "predicted": dict(self.predicted),
                "learnt": list(self.learnt)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], spec: SearchSpec | None = None) -> "SearchState":
        """``spec``: the search's spec when the caller has it parsed already (it never changes)."""
        spec = spec or SearchSpec.from_dict(d["spec"])
        p = d.get("pending") or []
        pending = [p] if isinstance(p, Mapping) else list(p)       # one dict: stored before parallel trials
        return cls(search_id=d["search_id"], spec=spec, kops=tuple(d["kops"]), operators=tuple(d["operators"]),
                   trials=tuple(TrialResult.from_data(t) for t in d["trials"]),
                   pending=tuple(TrialRequested.from_data({"model": spec.model, "backend": spec.backend, **x})
                                 for x in pending),
                   status=d["status"], stop_reason=d.get("stop_reason"), outbox=tuple(d.get("outbox", ())),
                   parallel=int(d.get("parallel") or 1),
                   # stored before several trials could be pending: the request is in the outbox
                   pending_events=tuple(d["pending_events"] if "pending_events" in d else
                                        (e for e in d.get("outbox", ()) if e.get("type") == "trial-requested")),
                   predicted={str(k): float(v) for k, v in (d.get("predicted") or {}).items()},
                   learnt=tuple(str(x) for x in d.get("learnt") or ()))


@dataclass(frozen=True)
class Decision:
    state: SearchState
    requests: tuple[TrialRequested, ...] = ()   # publish trial-requested, one per new trial
    finished: bool = False                # publish search-completed / search-failed (state.status says which)
    duplicate: bool = False               # the event was seen before: re-publish state.outbox, decide nothing
    ignored: str | None = None            # why the event changed nothing (stale, search already over)

    @property
    def request(self) -> TrialRequested | None:
        """The first new trial (the only one when trials run one at a time)."""
        return self.requests[0] if self.requests else None


def validate_spec(spec: SearchSpec, facts: Facts | None = None) -> list[str]:
    """Problems that make a search impossible, found before any trial is paid for: the strategy,
    the numbers, the prices, and (given the ``facts`` the shell could read) the space and
    constraints against the replay table and against what the runners apply and measure."""
    problems = []
    try:
        make_strategy(spec.strategy, SearchContext(spec.space, spec.seed, objective=spec.objective))
    except StrategyError as exc:
        problems.append(str(exc))
    return problems + spec_problems(spec, facts)


def start_search(search_id: str, spec: SearchSpec, kops: Sequence[str],
                 operators: Sequence[Mapping[str, Any]], knowledge: Knowledge | None = None,
                 facts: Facts | None = None) -> Decision:
    """``knowledge``: what the offline dataset says about the spec's space (treebuilder), if any;
    ``facts``: the replay table and runner adverts, as the shell could read them (they also set
    how many trials run at once when the spec does not say: see :func:`resolve_parallel`)."""
    problems = validate_spec(spec, facts)
    state = SearchState(search_id, spec, tuple(kops), tuple(operators), parallel=resolve_parallel(spec, facts))
    if problems:
        return Decision(replace(state, status="failed", stop_reason="; ".join(problems)), finished=True)
    return _next(state, knowledge)


def resolve_parallel(spec: SearchSpec, facts: Facts | None = None) -> int:
    """Trials in flight at once: the spec's ``parallel``, else the number of live runners that
    serve the search's trial classes (1 for replay, and when nobody advertises); at most the
    trial budget."""
    wanted = spec.parallel if spec.parallel is not None else serving_runners(spec, facts)
    return max(1, min(wanted, spec.stop.max_trials))


def serving_runners(spec: SearchSpec, facts: Facts | None) -> int:
    """How many advertising runners serve a trial class this search can request."""
    kind = str(spec.backend.get("kind"))
    if kind == "replay" or facts is None or not facts.runners:
        return 1
    gpu_knob = spec.prices.gpu_knob
    values = spec.space.knob(gpu_knob).values if gpu_knob in spec.space.names else (None,)
    classes = {runner_class(kind, {gpu_knob: v}, gpu_knob) for v in values}
    return sum(1 for r in facts.runners if classes & set(r.classes))


def accept_trial(state: SearchState, result: TrialResult) -> SearchState | Decision:
    """The state with the trial recorded, or the Decision that says why nothing changes."""
    if state.has_trial(result.trial_id):
        return Decision(state, duplicate=True)
    if state.status != "running" and not (state.status == "cancelled" and state.pending):
        return Decision(state, ignored=f"search is {state.status}")
    requested = next((p for p in state.pending if p.trial_id == result.trial_id), None)
    if requested is None:
        return Decision(state, ignored=f"trial {result.trial_id} was not requested by this search")
    try:
        config = state.spec.space.canonical(result.config)
    except SpaceError as exc:
        return Decision(state, ignored=f"trial result outside the space: {exc}")
    if state.spec.space.key(config) != state.spec.space.key(requested.config):
        return Decision(state, ignored=f"trial {result.trial_id} reports another configuration than requested")
    return replace(state, trials=state.trials + (replace(result, config=config),),
                   pending=tuple(p for p in state.pending if p.trial_id != result.trial_id))


def record_trial(state: SearchState, result: TrialResult, knowledge: Knowledge | None = None) -> Decision:
    accepted = accept_trial(state, result)
    if isinstance(accepted, Decision):
        return accepted
    if accepted.status == "cancelled":
        return Decision(accepted)         # an in-flight trial of a cancelled search: recorded, nothing asked
    return _next(accepted, knowledge)


def cancel_search(state: SearchState, reason: str) -> Decision:
    """Stop a running search now: no trial is requested after this, and its result is published at
    once (search-completed with the best trial so far, else search-failed; the stop reason says it
    was cancelled). The trials in flight, if any, stay ``pending`` and are recorded when they end."""
    if state.status == "cancelled":
        return Decision(state, duplicate=True)      # redelivered (or a second cancel): decided already
    if state.status != "running":
        return Decision(state, ignored=f"search is {state.status}: nothing to cancel")
    return Decision(replace(state, status="cancelled", stop_reason=f"cancelled: {reason}"), finished=True)


def _stop(state: SearchState, reason: str) -> Decision:
    """No more trials: finish now if none is in flight, else wind down (finish when they report)."""
    if state.pending:
        return Decision(replace(state, stop_reason=reason))
    if state.best is None:
        ok = any(t.status == "ok" for t in state.trials)
        reason = f"{reason}; no trial met the constraints" if ok else f"{reason}; no trial succeeded"
        return Decision(replace(state, status="failed", stop_reason=reason), finished=True)
    return Decision(replace(state, status="completed", stop_reason=reason), finished=True)


def _fail(state: SearchState, reason: str) -> Decision:
    """The search cannot go on (a strategy or pricing error): failed now; results of trials still
    in flight are ignored."""
    return Decision(replace(state, status="failed", stop_reason=reason, pending=()), finished=True)


def _strategy(state: SearchState, knowledge: Knowledge | None) -> Strategy:
    """The search's strategy, told every trial so far."""
    spec = state.spec
    strategy = make_strategy(spec.strategy, SearchContext(
        spec.space, spec.seed, state.kops, state.operators, knowledge, spec.prices.hourly, objective=spec.objective,
        constraints=spec.constraints, cost_aware=spec.cost_aware))
    for t, value in zip(state.trials, state.observed_values()):
        strategy.tell(t.config, value, stability_cv=spec.objective.spread(t), rps=t.rps)
    return strategy


def fresh_measurements(spec: SearchSpec) -> bool:
    """Whether measuring a configuration again measures it anew (re-measurement can settle which of
    two leaders is better): live trials, and replay with simulated noise; a plain replay answers
    the same row again, whatever spread its table reports."""
    return spec.backend.get("kind") != "replay" or float(spec.backend.get("noise") or 0.0) > 0


def with_predictions(state: SearchState, knowledge: Knowledge | None,
                     strategy: Strategy | None = None) -> SearchState:
    """A noisy search's state with the model's expectation of each tried configuration (what its
    recommendation shrinks the measurements towards); unchanged when measurements are exact.
    ``strategy``: the search's strategy already told its trials, when the caller has it."""
    if not noisy(state.trials, state.spec.objective.spread):
        return state
    tried = list({state.spec.space.key(t.config): t.config for t in state.trials if t.ok}.items())
    try:
        values = (strategy or _strategy(state, knowledge)).predict([c for _, c in tried])
    except StrategyError:
        values = None
    return replace(state, predicted={} if values is None else {k: float(v) for (k, _), v in zip(tried, values)})


def _next(state: SearchState, knowledge: Knowledge | None = None) -> Decision:
    """Top the trials in flight up to ``parallel``: the decision after the start and after each result."""
    spec, stop = state.spec, state.spec.stop
    strategy = _strategy(state, knowledge)
    state = with_predictions(state, knowledge, strategy)
    state = replace(state, learnt=tuple(strategy.learnt()))
    if state.winding_down:
        return _stop(state, state.stop_reason or "")
    best = state.best
    if stop.target_value is not None and best is not None \
            and spec.objective.reached(state.objective_value(best), stop.target_value):
        return _stop(state, "target")
    slots = min(state.parallel - len(state.pending), stop.max_trials - len(state.trials) - len(state.pending))
    if len(state.trials) + len(state.pending) >= stop.max_trials:
        return _stop(state, "max-trials")
    if slots <= 0:
        return Decision(state)
    configs = []
    again = remeasure(state.estimates, len(state.trials), stop.max_trials,
                      {spec.space.key(p.config) for p in state.pending}, spec.space,
                      Counter(spec.space.key(t.config) for t in state.trials),
                      {spec.space.key(t.config) for t in state.trials if not t.ok},
                      modelled=bool(state.predicted)) if fresh_measurements(spec) else None
    if again is not None:          # a real trial: it counts against every budget
        configs.append(spec.space.canonical(again.trial.config))
    try:
        configs += strategy.ask_batch(slots - len(configs), [p.config for p in state.pending] + configs)
    except StrategyError as exc:
        return _fail(state, str(exc))
    if not configs:
        return _stop(state, "space-exhausted")
    if strategy.converged and again is None and state.best is not None:   # nothing met the constraints yet: go on
        return _stop(state, "converged")
    requests: list[TrialRequested] = []
    committed = state.committed_usd
    for config in configs:
        try:
            hourly = spec.prices.hourly(config)
        except PricingError as exc:
            return _fail(state, str(exc))
        cost = hourly * spec.trial_seconds / 3600
        if stop.budget_usd is not None and committed + cost > stop.budget_usd:
            break
        committed += cost
        index = len(state.trials) + len(state.pending) + len(requests)
        requests.append(TrialRequested(f"{state.search_id}/t{index}", index, config, spec.model, spec.backend,
                                       hourly, runner_class(str(spec.backend["kind"]), config, spec.prices.gpu_knob),
                                       parallel=state.parallel, predicted=dict(state.predicted) or None))
    if not requests:
        return _stop(state, "budget")
    return Decision(replace(state, pending=state.pending + tuple(requests)), requests=tuple(requests))


def decision_events(cause: Event, decision: Decision, producer: str = "searcher") -> list[Event]:
    """The events a decision publishes; ids derive from the cause, so the same decision taken
    again (redelivery, rebuild) yields the same events."""
    s = decision.state
    events = []
    for i, request in enumerate(decision.requests):     # the first keeps the id it had before batches
        events.append(cause.caused(request, producer, salt="" if i == 0 else request.trial_id))
    if decision.finished:
        events.append(cause.caused(result_payload(s), producer))
    return events


def with_outbox(decision: Decision, events: Sequence[Event]) -> SearchState:
    return _published(decision.state, [e.as_dict() for e in events])


def _published(state: SearchState, events: Sequence[Mapping[str, Any]]) -> SearchState:
    """The state with ``events`` as its last decision's outbox, and the request events of the
    trials still pending."""
    pending = {p.trial_id for p in state.pending}
    kept: dict[str, Mapping[str, Any]] = {}
    for e in [*state.pending_events, *(e for e in events if e["type"] == "trial-requested")]:
        if e["data"]["trial_id"] in pending:
            kept.setdefault(e["data"]["trial_id"], e)
    return replace(state, outbox=tuple(events), pending_events=tuple(kept.values()))


def rebuild_states(events: Iterable[Event],
                   knowledge: Callable[[SearchSpec], Knowledge | None] = lambda spec: None) -> dict[str, SearchState]:
    """Every search's state rebuilt from the event log alone.

    The log holds the searcher's own decisions (trial-requested, search-completed/-failed, each
    with the id of the event that caused it), so they are replayed as facts, not decided again:
    the result equals what the searcher had stored, outbox included, whatever knowledge is at hand
    now. Only a decision whose events never reached the log (a crash between storing and
    publishing) is taken again by the core; nobody has seen it, so a new one is as consistent."""
    starts: dict[str, Event] = {}
    results: dict[str, list[Event]] = {}
    cancels: dict[str, Event] = {}
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
        assert isinstance(begun, KopsIdentified)
        spec = begun.spec
        started = [e.payload for e in effects.get(start.event_id, ()) if e.type == "trial-requested"]
        # the searcher records its parallelism in every request (resolved from the runners on hand
        # when the spec left it open); older logs: one request per trial the start set running
        recorded = next((p.parallel for p in started if isinstance(p, TrialRequested) and p.parallel), None)
        parallel = resolve_parallel(spec) if spec.parallel is not None or not started else \
            recorded or len(started)
        state = SearchState(sid, spec, tuple(begun.kops), tuple(begun.operators), parallel=parallel)
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
                    start_search(sid, spec, begun.kops, begun.operators, knowledge(spec))
                state = with_outbox(d, decision_events(cause, d))
        if cancel is not None and state.status == "running":
            if cancel_effects:
                state = _replay_cancel(state, cancel_effects)
            else:                         # stored but never published: decide it again (nobody saw it)
                request = cancel.payload
                assert isinstance(request, SearchCancelled)
                d = cancel_search(state, cancel_reason(request))
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


def cancel_reason(request: SearchCancelled) -> str:
    """The stop reason a cancel leaves (after "cancelled: ")."""
    return f"{request.reason} (by {request.requested_by})"


def result_payload(state: SearchState) -> SearchCompleted | SearchFailed:
    """What search-results says about a search that ended: completed with the recommendation, or
    failed with the reason; a cancelled search with a feasible trial is completed (stop reason
    "cancelled: ...")."""
    if state.status == "completed" or (state.status == "cancelled" and state.best is not None):
        return completed(state)
    return failed(state)


def completed(state: SearchState) -> SearchCompleted:
    """The search-completed payload: the recommendation, the runners-up and the whole history."""
    best = state.best
    assert best is not None
    return SearchCompleted(
        best=best, stop_reason=state.stop_reason or "", trials=list(state.trials), spent_usd=state.spent_usd,
        strategy=state.spec.strategy, kops=list(state.kops), runners_up=state.ranked()[1:4],
        constraints=state.spec.constraints.to_dict(), model=state.spec.model["name"],
        backend_kind=str(state.spec.backend.get("kind")), space=state.spec.space,
        infeasible={t.trial_id: "; ".join(why) for t in state.trials if t.ok and (why := state.violations(t))},
        estimate=None if state.recommendation is None else estimate_data(state), parallel=state.parallel,
        predicted=dict(state.predicted) or None,
        **trade_offs(state, best))


def estimate_data(state: SearchState) -> dict[str, Any]:
    """The recommendation's estimate for search-completed, in the objective's own unit (a cost or a
    latency: its interval's ends swap, lower is better)."""
    rec = state.recommendation
    assert rec is not None
    natural = state.spec.objective.natural
    low, high = sorted((natural(rec.low), natural(rec.high)))
    return {"trial_id": rec.trial.trial_id, "value": natural(rec.value), "low": low, "high": high,
            "measurements": rec.measurements}


def trade_offs(state: SearchState, best: TrialResult | None) -> dict[str, Any]:
    """The objective, the recommendation under each objective the trials can be ranked by, the
    Pareto front of p99 vs $ per million requests, and what the user should know (no offline
    knowledge behind the objective)."""
    spec = state.spec

    def meets(t: TrialResult) -> bool:
        return t.ok and not spec.constraints.violations(t.rps, t.p99_ms, state.hourly(t))
    per = {name: t.trial_id for name, t in best_per_objective(spec.objective, state.trials, state.hourly,
                                                               meets).items()}
    if best is not None:
        per[spec.objective.name] = best.trial_id          # the recommendation, however the search chose it
    notice = knowledge_notice(spec.strategy, spec.objective)
    value = None if best is None else spec.objective.natural(state.objective_value(best))
    return {"objective": spec.objective, "objective_value": value,
            "best_per_objective": per, "pareto": pareto_front(state.trials, state.hourly, meets, per),
            "notices": ([notice] if notice else []) + list(state.learnt)}


def failed(state: SearchState) -> SearchFailed:
    return SearchFailed("search", state.stop_reason or "search failed", list(state.trials))


__all__ = ["Decision", "SearchState", "accept_trial", "cancel_reason", "cancel_search", "completed", "decision_events",
           "failed", "rebuild_states", "record_trial", "resolve_parallel", "result_payload", "start_search",
           "trade_offs", "validate_spec", "with_outbox"]
