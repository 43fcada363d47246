"""What search-results says about a search that ended, and the trade-offs the report and the
search-completed payload share."""

from __future__ import annotations

from typing import Any

from schemas.events import SearchCompleted, SearchFailed, TrialResult
from services.domain.objectives import best_per_objective, pareto_front
from services.searcher.search.state import SearchState
from services.searcher.strategies import knowledge_notice

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
            "notices": list(state.notices) + ([notice] if notice else []) + list(state.learnt)}


def failed(state: SearchState) -> SearchFailed:
    return SearchFailed("search", state.stop_reason or "search failed", list(state.trials))
