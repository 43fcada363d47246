"""The searcher's pure core: the decision taken on each event.

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
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from schemas import Event
from schemas.events import SearchCancelled, TrialRequested, TrialResult
from schemas.upcast import stated
from services.searcher.preflight import Facts, spec_problems
from services.domain.pricing import PricingError
from services.domain.space import SpaceError
from services.domain.spec import SearchSpec
from services.platform.topics import runner_class
from services.knowledge import Knowledge
from services.searcher.estimate import noisy, remeasure
from services.searcher.search.results import result_payload
from services.searcher.search.state import SearchState
from services.searcher.strategies import SearchContext, Strategy, StrategyError, make_strategy

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
                 facts: Facts | None = None, notices: Sequence[str] = ()) -> Decision:
    """``knowledge``: what the offline dataset says about the spec's space (treebuilder), if any;
    ``facts``: the replay table and runner adverts, as the shell could read them (they also set
    how many trials run at once when the spec does not say: see :func:`resolve_parallel`);
    ``notices``: the profiler's, for the search's user (e.g. no KOPs: TVM could not import the model).
    No ``kops`` nor ``operators`` is a search without operator knowledge, not an error."""
    problems = validate_spec(spec, facts)
    state = SearchState(search_id, spec, tuple(kops), tuple(operators), parallel=resolve_parallel(spec, facts),
                        notices=tuple(notices))
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
    # a v1 result does not state its RPS/$ unit: the search's backend measured it, in its unit
    result = stated(result, state.spec.backend.get("kind"))
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
                                       parallel=state.parallel, predicted=dict(state.predicted) or None,
                                       roles=spec.space.roles.to_dict() or None))
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


def cancel_reason(request: SearchCancelled) -> str:
    """The stop reason a cancel leaves (after "cancelled: ")."""
    return f"{request.reason} (by {request.requested_by})"
