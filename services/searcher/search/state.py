"""A search's state: the trials so far, those in flight, the outbox of the last decision, and
what follows from them (feasibility, the objective per trial, the recommendation). Stored in
Redis by the searcher's shell (``services/searcher/store.py``), with the migrations of older
stored shapes in :meth:`SearchState.from_dict` (e.g. trials stored with v1's ``value``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Mapping

from schemas.events import TrialRequested, TrialResult
from schemas.upcast import trial_row_v2
from services.domain.figures import RpsPerUsdUnit, stated_unit
from services.domain.pricing import PricingError
from services.domain.spec import SearchSpec
from services.searcher.estimate import Estimate, estimate

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
    notices: tuple[str, ...] = ()               # what its user should know (e.g. it began without knowledge)
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
        """The search's objective for trial ``t``, higher is better (services/domain/objectives.py):
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

    @property
    def rps_per_usd_unit(self) -> RpsPerUsdUnit:
        """The unit of its trials' RPS/$, as they state it; a search with no result stating one yet:
        the unit its backend measures in (services/domain/figures.py ``stated_unit``)."""
        return next((t.rps_per_usd_unit for t in self.trials if t.rps_per_usd_unit is not None),
                    stated_unit(self.spec.backend.get("kind")))

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
                **({"notices": list(self.notices)} if self.notices else {}), "learnt": list(self.learnt)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], spec: SearchSpec | None = None) -> "SearchState":
        """``spec``: the search's spec when the caller has it parsed already (it never changes)."""
        spec = spec or SearchSpec.from_dict(d["spec"])
        p = d.get("pending") or []
        pending = [p] if isinstance(p, Mapping) else list(p)       # one dict: stored before parallel trials
        return cls(search_id=d["search_id"], spec=spec, kops=tuple(d["kops"]), operators=tuple(d["operators"]),
                   # stored before results stated their RPS/$ unit: value -> rps_per_usd, in the
                   # unit of the search's backend
                   trials=tuple(TrialResult.from_data(trial_row_v2(t, spec.backend.get("kind")))
                                for t in d["trials"]),
                   pending=tuple(TrialRequested.from_data({"model": spec.model, "backend": spec.backend, **x})
                                 for x in pending),
                   status=d["status"], stop_reason=d.get("stop_reason"), outbox=tuple(d.get("outbox", ())),
                   parallel=int(d.get("parallel") or 1),
                   # stored before several trials could be pending: the request is in the outbox
                   pending_events=tuple(d["pending_events"] if "pending_events" in d else
                                        (e for e in d.get("outbox", ()) if e.get("type") == "trial-requested")),
                   predicted={str(k): float(v) for k, v in (d.get("predicted") or {}).items()},
                   notices=tuple(str(n) for n in d.get("notices") or ()),
                   learnt=tuple(str(x) for x in d.get("learnt") or ()))
