"""The searcher's pure core: a search's state and the decision taken on each event.

No Kafka, no Redis: the shell loads a :class:`SearchState`, calls :func:`start_search` or
:func:`record_trial`, stores the new state and publishes what the :class:`Decision` says.
Everything here is deterministic given the state, which is what makes restart-from-Redis exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from schemas import Event
from services.common.pricing import PricingError
from services.common.space import Config, SpaceError
from services.common.spec import SearchSpec
from services.common.topics import runner_class
from services.searcher.strategies import SearchContext, StrategyError, make_strategy

Status = Literal["running", "completed", "failed"]


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    index: int
    config: Config
    status: Literal["ok", "failed"]
    value: float | None
    cost_usd: float
    duration_s: float
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    reason: str | None = None
    stability_cv: float | None = None   # relative spread of the measurement, as the runner saw it

    def to_row(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "index": self.index, "config": dict(self.config),
                "status": self.status, "value": self.value, "rps": self.rps, "p50_ms": self.p50_ms,
                "p99_ms": self.p99_ms, "cost_usd": self.cost_usd, "duration_s": self.duration_s,
                "reason": self.reason, "stability_cv": self.stability_cv}

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> "TrialRecord":
        return cls(trial_id=d["trial_id"], index=int(d["index"]), config=dict(d["config"]), status=d["status"],
                   value=d.get("value"), cost_usd=float(d["cost_usd"]), duration_s=float(d["duration_s"]),
                   rps=d.get("rps"), p50_ms=d.get("p50_ms"), p99_ms=d.get("p99_ms"), reason=d.get("reason"),
                   stability_cv=d.get("stability_cv"))


@dataclass(frozen=True)
class TrialRequest:
    trial_id: str
    index: int
    config: Config
    price_per_hour: float


@dataclass(frozen=True)
class SearchState:
    search_id: str
    spec: SearchSpec
    kops: tuple[str, ...]
    operators: tuple[Mapping[str, Any], ...]
    trials: tuple[TrialRecord, ...] = ()
    pending: TrialRequest | None = None
    status: Status = "running"
    stop_reason: str | None = None
    outbox: tuple[Mapping[str, Any], ...] = ()   # events of the last decision, kept for re-publishing

    @property
    def spent_usd(self) -> float:
        return sum(t.cost_usd for t in self.trials)

    def violations(self, t: TrialRecord) -> list[str]:
        """Why trial ``t`` cannot be recommended under the user's constraints (empty: it can)."""
        return self.spec.constraints.violations(t.rps, t.p99_ms)

    def feasible(self, t: TrialRecord) -> bool:
        return t.status == "ok" and t.value is not None and not self.violations(t)

    @property
    def best(self) -> TrialRecord | None:
        """The recommendation: the best trial that met the constraints (earliest on a tie)."""
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def ranked(self) -> list[TrialRecord]:
        """Feasible trials, best first (the recommendation, then the runners-up)."""
        return sorted((t for t in self.trials if self.feasible(t)), key=lambda t: (-(t.value or 0.0), t.index))

    def observed_values(self) -> list[float | None]:
        """What the strategy is told per trial: the objective, but an infeasible trial counts as
        the worst value seen so far (it must not lure the search, yet its neighbourhood may still
        hold the constrained optimum)."""
        seen = [t.value for t in self.trials if t.status == "ok" and t.value is not None]
        floor = min(seen) if seen else 0.0
        return [None if t.status != "ok" or t.value is None else (t.value if not self.violations(t) else floor)
                for t in self.trials]

    def has_trial(self, trial_id: str) -> bool:
        return any(t.trial_id == trial_id for t in self.trials)

    def to_dict(self) -> dict[str, Any]:
        p = self.pending
        return {"search_id": self.search_id, "spec": self.spec.to_dict(), "kops": list(self.kops),
                "operators": [dict(o) for o in self.operators], "trials": [t.to_row() for t in self.trials],
                "pending": None if p is None else {"trial_id": p.trial_id, "index": p.index,
                                                   "config": dict(p.config), "price_per_hour": p.price_per_hour},
                "status": self.status, "stop_reason": self.stop_reason, "outbox": [dict(e) for e in self.outbox]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchState":
        p = d.get("pending")
        return cls(search_id=d["search_id"], spec=SearchSpec.from_dict(d["spec"]), kops=tuple(d["kops"]),
                   operators=tuple(d["operators"]), trials=tuple(TrialRecord.from_row(t) for t in d["trials"]),
                   pending=None if p is None else TrialRequest(p["trial_id"], int(p["index"]), dict(p["config"]),
                                                               float(p["price_per_hour"])),
                   status=d["status"], stop_reason=d.get("stop_reason"), outbox=tuple(d.get("outbox", ())))


@dataclass(frozen=True)
class Decision:
    state: SearchState
    request: TrialRequest | None = None   # publish trial-requested
    finished: bool = False                # publish search-completed / search-failed (state.status says which)
    duplicate: bool = False               # the event was seen before: re-publish state.outbox, decide nothing
    ignored: str | None = None            # why the event changed nothing (stale, search already over)


def validate_spec(spec: SearchSpec) -> list[str]:
    """Problems that make a search impossible, found before any trial is paid for."""
    problems = []
    try:
        make_strategy(spec.strategy, SearchContext(spec.space, spec.seed))
    except StrategyError as exc:
        problems.append(str(exc))
    gpu_knob = spec.prices.gpu_knob
    if gpu_knob in spec.space.names:
        unpriced = [v for v in spec.space.knob(gpu_knob).values if str(v) not in spec.prices.instances]
        if unpriced:
            problems.append(f"no price for {gpu_knob} value(s) {unpriced}")
    return problems


def start_search(search_id: str, spec: SearchSpec, kops: Sequence[str],
                 operators: Sequence[Mapping[str, Any]], knowledge: Any = None) -> Decision:
    """``knowledge``: what the offline dataset says about the spec's space (treebuilder), if any."""
    problems = validate_spec(spec)
    state = SearchState(search_id, spec, tuple(kops), tuple(operators))
    if problems:
        return Decision(replace(state, status="failed", stop_reason="; ".join(problems)), finished=True)
    return _next(state, knowledge)


def accept_trial(state: SearchState, result: TrialRecord) -> SearchState | Decision:
    """The state with the trial recorded, or the Decision that says why nothing changes."""
    if state.has_trial(result.trial_id):
        return Decision(state, duplicate=True)
    if state.status != "running":
        return Decision(state, ignored=f"search is {state.status}")
    if state.pending is None or state.pending.trial_id != result.trial_id:
        return Decision(state, ignored=f"trial {result.trial_id} was not requested by this search")
    try:
        config = state.spec.space.canonical(result.config)
    except SpaceError as exc:
        return Decision(state, ignored=f"trial result outside the space: {exc}")
    if state.spec.space.key(config) != state.spec.space.key(state.pending.config):
        return Decision(state, ignored=f"trial {result.trial_id} reports another configuration than requested")
    return replace(state, trials=state.trials + (replace(result, config=config),), pending=None)


def record_trial(state: SearchState, result: TrialRecord, knowledge: Any = None) -> Decision:
    accepted = accept_trial(state, result)
    return accepted if isinstance(accepted, Decision) else _next(accepted, knowledge)


def _stop(state: SearchState, reason: str) -> Decision:
    if state.best is None:
        ok = any(t.status == "ok" for t in state.trials)
        reason = f"{reason}; no trial met the constraints" if ok else f"{reason}; no trial succeeded"
        return Decision(replace(state, status="failed", stop_reason=reason, pending=None), finished=True)
    return Decision(replace(state, status="completed", stop_reason=reason, pending=None), finished=True)


def _next(state: SearchState, knowledge: Any = None) -> Decision:
    spec, stop = state.spec, state.spec.stop
    best = state.best
    if stop.target_value is not None and best is not None and best.value is not None \
            and best.value >= stop.target_value:
        return _stop(state, "target")
    if len(state.trials) >= stop.max_trials:
        return _stop(state, "max-trials")
    strategy = make_strategy(spec.strategy, SearchContext(spec.space, spec.seed, state.kops, state.operators,
                                                          knowledge))
    for t, value in zip(state.trials, state.observed_values()):
        strategy.tell(t.config, value, noise=t.stability_cv)
    try:
        config = strategy.ask()
    except StrategyError as exc:
        return Decision(replace(state, status="failed", stop_reason=str(exc), pending=None), finished=True)
    if config is None:
        return _stop(state, "space-exhausted")
    if strategy.converged:
        return _stop(state, "converged")
    try:
        hourly = spec.prices.hourly(config)
    except PricingError as exc:
        return Decision(replace(state, status="failed", stop_reason=str(exc), pending=None), finished=True)
    if stop.budget_usd is not None and state.spent_usd + hourly * spec.trial_seconds / 3600 > stop.budget_usd:
        return _stop(state, "budget")
    index = len(state.trials)
    request = TrialRequest(f"{state.search_id}/t{index}", index, config, hourly)
    return Decision(replace(state, pending=request), request=request)


def decision_events(cause: Event, decision: Decision, producer: str = "searcher") -> list[Event]:
    """The events a decision publishes; ids derive from the cause, so the same decision taken
    again (redelivery, rebuild) yields the same events."""
    s = decision.state
    events = []
    if decision.request is not None:
        r = decision.request
        events.append(cause.caused("trial-requested", {
            "trial_id": r.trial_id, "index": r.index, "config": dict(r.config), "model": dict(s.spec.model),
            "backend": dict(s.spec.backend), "price_per_hour": r.price_per_hour,
            "runner_class": runner_class(str(s.spec.backend["kind"]), r.config, s.spec.prices.gpu_knob)}, producer))
    if decision.finished:
        if s.status == "completed":
            events.append(cause.caused("search-completed", completed_data(s), producer))
        else:
            events.append(cause.caused("search-failed", failed_data(s), producer))
    return events


def with_outbox(decision: Decision, events: Sequence[Event]) -> SearchState:
    return replace(decision.state, outbox=tuple(e.as_dict() for e in events))


def rebuild_states(events: Iterable[Event], knowledge: Callable[[SearchSpec], Any] = lambda spec: None
                   ) -> dict[str, SearchState]:
    """Every search's state rebuilt from the event log alone.

    The log holds the searcher's own decisions (trial-requested, search-completed/-failed, each
    with the id of the event that caused it), so they are replayed as facts, not decided again:
    the result equals what the searcher had stored, outbox included, whatever knowledge is at hand
    now. Only a decision whose events never reached the log (a crash between storing and
    publishing) is taken again by the core; nobody has seen it, so a new one is as consistent."""
    starts: dict[str, Event] = {}
    results: dict[str, list[Event]] = {}
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
        elif e.type in ("trial-requested", "search-completed", "search-failed") and e.causation_id:
            effects.setdefault(e.causation_id, []).append(e)
    states: dict[str, SearchState] = {}
    for sid, start in starts.items():
        try:
            spec = SearchSpec.from_dict(start.data["spec"])
        except ValueError:
            continue                      # the searcher answered it with search-failed, no state
        state = SearchState(sid, spec, tuple(start.data["kops"]), tuple(start.data["operators"]))
        for cause in [start, *results.get(sid, ())]:
            if cause.type == "trial-completed":
                accepted = accept_trial(state, TrialRecord.from_row(cause.data))
                if isinstance(accepted, Decision):
                    continue              # duplicate or stale: it changed nothing then either
                state = accepted
            logged = effects.get(cause.event_id)
            if logged:
                state = _replay(state, logged)
            else:
                d = _next(state, knowledge(spec)) if cause.type == "trial-completed" else \
                    start_search(sid, spec, start.data["kops"], start.data["operators"], knowledge(spec))
                state = with_outbox(d, decision_events(cause, d))
        states[sid] = state
    return states


def _replay(state: SearchState, logged: list[Event]) -> SearchState:
    """Apply a decision as the log recorded it."""
    for e in logged:
        d = e.data
        if e.type == "trial-requested":
            state = replace(state, pending=TrialRequest(d["trial_id"], int(d["index"]), dict(d["config"]),
                                                        float(d["price_per_hour"])))
        elif e.type == "search-completed":
            state = replace(state, status="completed", stop_reason=d["stop_reason"], pending=None)
        else:
            state = replace(state, status="failed", stop_reason=d["reason"], pending=None)
    return replace(state, outbox=tuple(e.as_dict() for e in logged))


def completed_data(state: SearchState) -> dict[str, Any]:
    """Payload of search-completed."""
    best = state.best
    assert best is not None
    return {"best": best.to_row(), "stop_reason": state.stop_reason or "", "trials": [t.to_row() for t in state.trials],
            "spent_usd": state.spent_usd, "strategy": state.spec.strategy, "kops": list(state.kops),
            "runners_up": [t.to_row() for t in state.ranked()[1:4]],
            "model": state.spec.model["name"], "backend_kind": str(state.spec.backend.get("kind")),
            "space": state.spec.space.to_dict(),
            "constraints": state.spec.constraints.to_dict(),
            "infeasible": {t.trial_id: "; ".join(why) for t in state.trials
                           if t.status == "ok" and (why := state.violations(t))}}


def failed_data(state: SearchState) -> dict[str, Any]:
    return {"stage": "search", "reason": state.stop_reason or "search failed",
            "trials": [t.to_row() for t in state.trials]}


__all__ = ["Decision", "SearchState", "TrialRecord", "TrialRequest", "accept_trial", "completed_data", "decision_events",
           "failed_data", "rebuild_states", "record_trial", "start_search", "validate_spec", "with_outbox"]
