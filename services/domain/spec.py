"""A search request as the user states it (travels inside model-submitted and kops-identified)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from services.domain.objectives import Objective, usd_per_million
from services.domain.pricing import DEFAULT_PRICES, PriceCatalogue
from services.domain.roles import DEFAULT_ROLES
from services.domain.space import PAPER_SPACE, Space

DEFAULT_KOP_THRESHOLD = 0.05
DEFAULT_TRIAL_SECONDS = 900.0   # a real trial (deploy + stress test) takes ~15 minutes


@dataclass(frozen=True)
class StopRules:
    max_trials: int = 15
    target_value: float | None = None
    budget_usd: float | None = None


@dataclass(frozen=True)
class Constraints:
    """What a recommendation must satisfy, as the user states it: a p99 latency SLO, the peak
    load (minimum RPS) one copy must carry, and a cost ceiling in $ per million requests (at the
    configuration's measured throughput and price). A trial that misses one is never recommended;
    one whose backend did not measure the constrained figure cannot be shown to meet it, so it is
    not recommended either."""
    slo_p99_ms: float | None = None
    min_rps: float | None = None
    max_usd_per_million: float | None = None

    def violations(self, rps: float | None, p99_ms: float | None, usd_per_hour: float | None = None) -> list[str]:
        out = []
        if self.slo_p99_ms is not None:
            if p99_ms is None:
                out.append("p99 latency not measured")
            elif p99_ms > self.slo_p99_ms:
                out.append(f"p99 {p99_ms:.1f} ms > SLO {self.slo_p99_ms:g} ms")
        if self.min_rps is not None:
            if rps is None:
                out.append("RPS not measured")
            elif rps < self.min_rps:
                out.append(f"{rps:.1f} RPS < required {self.min_rps:g}")
        if self.max_usd_per_million is not None:
            per_m = usd_per_million(rps, usd_per_hour)
            if per_m is None:
                out.append("RPS not measured, so the $ per million requests is unknown")
            elif per_m > self.max_usd_per_million:
                out.append(f"${per_m:.3g} per million requests > budget ${self.max_usd_per_million:g}")
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {"slo_p99_ms": self.slo_p99_ms, "min_rps": self.min_rps}
        if self.max_usd_per_million is not None:       # absent unless set: events of older clients unchanged
            out["max_usd_per_million"] = self.max_usd_per_million
        return out


@dataclass(frozen=True)
class SearchSpec:
    model: Mapping[str, Any]
    backend: Mapping[str, Any]
    space: Space = PAPER_SPACE
    prices: PriceCatalogue = DEFAULT_PRICES
    stop: StopRules = field(default_factory=StopRules)
    strategy: str = "falcon"
    seed: int = 0
    kop_threshold: float = DEFAULT_KOP_THRESHOLD
    constraints: Constraints = field(default_factory=Constraints)
    objective: Objective = field(default_factory=Objective)
    parallel: int | None = None       # trials in flight at once (None: the live runners of its class)
    cost_aware: bool = False          # acquisition weighs expected improvement per $ of the trial

    def __post_init__(self) -> None:
        """A space that declares its knob roles prices its own knobs (the roles win over a price
        file's gpu_knob/gpu_mem_knob/cpu_knob)."""
        r = self.space.roles
        if r != DEFAULT_ROLES and (self.prices.gpu_knob, self.prices.gpu_mem_knob, self.prices.cpu_knob) != \
                (r.gpu, r.gpu_mem, r.cpus):
            object.__setattr__(self, "prices", replace(self.prices, gpu_knob=r.gpu, gpu_mem_knob=r.gpu_mem,
                                                       cpu_knob=r.cpus))

    @property
    def trial_seconds(self) -> float:
        return float(self.backend.get("trial_seconds", DEFAULT_TRIAL_SECONDS))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": dict(self.model), "backend": dict(self.backend), "space": self.space.to_dict(),
            "prices": self.prices.to_dict(),
            "stop": {"max_trials": self.stop.max_trials, "target_value": self.stop.target_value,
                     "budget_usd": self.stop.budget_usd},
            "strategy": {"name": self.strategy, "seed": self.seed, "cost_aware": self.cost_aware},
            "kop_threshold": self.kop_threshold, "constraints": self.constraints.to_dict(), "parallel": self.parallel,
            # absent for the default (RPS/$ with no stated load): such a spec reads as before
            **({} if self.objective.is_default else {"objective": self.objective.to_dict()}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchSpec":
        stop = d["stop"]
        return cls(model=dict(d["model"]), backend=dict(d["backend"]), space=Space.from_dict(d["space"]),
                   prices=PriceCatalogue.from_dict(d["prices"]),
                   stop=StopRules(int(stop["max_trials"]), stop.get("target_value"), stop.get("budget_usd")),
                   strategy=str(d["strategy"]["name"]), seed=int(d["strategy"]["seed"]),
                   kop_threshold=float(d["kop_threshold"]),
                   constraints=Constraints(**(d.get("constraints") or {})),
                   parallel=None if d.get("parallel") is None else int(d["parallel"]),
                   cost_aware=bool(d["strategy"].get("cost_aware", False)),
                   objective=Objective.from_dict(d.get("objective")))
