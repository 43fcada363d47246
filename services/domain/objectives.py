"""What a search optimises: one home for the objective, its unit, and the trade-off the user sees.

- ``rps-per-usd`` (the default, Falcon's): requests per dollar, a trial's ``rps_per_usd`` (a replay
  table's normalised RPS/$, or requests per $ measured live: the trial states which).
- ``usd-for-load``: the cost per hour of carrying a stated load of L requests/s inside the
  constraints: ``ceil(L / RPS)`` copies of the configuration at its price (SageMaker Inference
  Recommender, Vidur-Search). The cheapest answer is not always the best RPS/$ one.
- ``energy-per-request``: joules per request, measured by GPU runners through NVML (BayesTuner);
  never invented where nothing measures it.
- ``p99``: the p99 latency (e.g. under a cost constraint: the fastest configuration one can afford).

Every objective's :meth:`Objective.value` is HIGHER-IS-BETTER (the negative of a cost, a latency
or an energy), so every strategy keeps maximising; :meth:`Objective.natural` gives back the real
quantity for people. The runner keeps reporting what it measured (RPS, p50/p99, energy, price);
the searcher derives the objective from a trial once (``SearchState.objective_value``).

The offline knowledge (KOP curves, source tables, the cost model) predicts RPS/$. It carries over
to ``usd-for-load`` (at a load, cost per hour = L / (RPS/$) before rounding replicas up, so an
expert's RPS/$ becomes ``-1/f`` up to its scale; the cost model predicts RPS, so the rounding is
exact there) and to ``p99`` through the runners' closed loop (one batch in flight, so a request's
latency is about batch size / RPS = batch / (RPS/$ x price), up to the tail's factor, which the
trials measure); ``energy-per-request`` has no offline knowledge behind it (power is not in the
offline data), and the search says so.

Pure: no Kafka, Redis or schemas import (a trial is anything with the :class:`TrialResult` fields).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Protocol, Sequence

import numpy as np

from services.domain.figures import unit_text

RPS_PER_USD, USD_FOR_LOAD, ENERGY, P99 = "rps-per-usd", "usd-for-load", "energy-per-request", "p99"
OBJECTIVES: tuple[str, ...] = (RPS_PER_USD, USD_FOR_LOAD, ENERGY, P99)
HOURS_PER_MONTH = 730.0

# objective -> (the trial's figure it is computed from, the CLI flag, what that figure is)
FIGURES: dict[str, tuple[str, str]] = {
    RPS_PER_USD: ("rps_per_usd", "RPS/$"),
    USD_FOR_LOAD: ("rps", "RPS"),
    P99: ("p99_ms", "p99 latency"),
    ENERGY: ("energy_j_per_request", "energy per request"),
}
# the knowledge an objective has: direct (the offline data predicts it), transformed (it is
# derived from the predicted RPS/$), none
KNOWLEDGE: dict[str, Literal["direct", "transformed", "none"]] = {
    RPS_PER_USD: "direct", USD_FOR_LOAD: "transformed", P99: "transformed", ENERGY: "none"}


class ObjectiveError(ValueError):
    """An objective that cannot be stated like this (one line, says what would be right)."""


class Trial(Protocol):
    """What an objective reads of a trial (``schemas.events.TrialResult`` has it)."""
    trial_id: str
    index: int
    config: Mapping[str, Any]
    status: str
    rps_per_usd: float | None
    rps_per_usd_unit: str | None
    rps: float | None
    p99_ms: float | None
    stability_cv: float | None
    energy_j_per_request: float | None

    @property
    def ok(self) -> bool: ...


def replicas_for(load_rps: float, rps: float | None) -> int | None:
    """Copies of a configuration serving ``rps`` needed to carry ``load_rps``: ceil(L / RPS), at
    least 1; exactly L / RPS when the load is a multiple of the RPS (no float round-up). None
    when the configuration serves nothing (it cannot carry any load)."""
    if rps is None or not math.isfinite(rps) or rps <= 0:
        return None
    x = load_rps / rps
    n = round(x)
    if math.isclose(x, n, rel_tol=1e-9, abs_tol=1e-12):
        return max(1, int(n))
    return max(1, math.ceil(x))


def usd_per_million(rps: float | None, usd_per_hour: float | None) -> float | None:
    """$ per million requests of a configuration running at its measured throughput."""
    if not rps or rps <= 0 or usd_per_hour is None:
        return None
    return usd_per_hour / (rps * 3600.0) * 1e6


def monthly_cost(load_rps: float | None, rps: float | None, usd_per_hour: float) -> tuple[int, float] | None:
    """(replicas, $ per month) to carry ``load_rps`` with copies of a configuration serving ``rps``."""
    if not load_rps:
        return None
    n = replicas_for(load_rps, rps)
    return None if n is None else (n, n * usd_per_hour * HOURS_PER_MONTH)


def _positive_load(load: Any) -> float:
    try:
        x = float(load)
    except (TypeError, ValueError):
        raise ObjectiveError(f"--load must be a number of requests per second, not {load!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise ObjectiveError(f"--load must be a positive number of requests per second, not {load}")
    return x


@dataclass(frozen=True)
class Objective:
    """The objective a search optimises. ``load_rps``: the load the user states (requests/s):
    required by ``usd-for-load``, and with any objective the load the report's monthly cost is
    stated at."""
    name: str = RPS_PER_USD
    load_rps: float | None = None

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVES:
            raise ObjectiveError(f"unknown objective {self.name!r} (known: {', '.join(OBJECTIVES)})")
        if self.load_rps is not None:
            object.__setattr__(self, "load_rps", _positive_load(self.load_rps))
        elif self.name == USD_FOR_LOAD:
            raise ObjectiveError("--objective usd-for-load needs --load RPS (the requests per second to carry)")

    # -- what it is ------------------------------------------------------------------------------
    @property
    def is_default(self) -> bool:
        return self == Objective()

    @property
    def maximise(self) -> bool:
        """Whether the natural quantity is better higher (only RPS/$)."""
        return self.name == RPS_PER_USD

    @property
    def figure(self) -> str:
        """The trial field the objective is computed from."""
        return FIGURES[self.name][0]

    @property
    def knowledge(self) -> Literal["direct", "transformed", "none"]:
        return KNOWLEDGE[self.name]

    def unit(self, rps_per_usd_unit: str | None = None) -> str:
        """The objective's unit, short; ``rps_per_usd_unit``: RPS/$'s, as the search's results state
        it (services/domain/figures.py; None: requests per $)."""
        if self.name == RPS_PER_USD:
            return unit_text(rps_per_usd_unit)[0]
        return {USD_FOR_LOAD: "$/h", P99: "ms", ENERGY: "J/request"}[self.name]

    def describe(self, rps_per_usd_unit: str | None = None) -> str:
        """What is optimised, in words, with its unit and direction."""
        if self.name == RPS_PER_USD:
            return unit_text(rps_per_usd_unit)[1]
        if self.name == USD_FOR_LOAD:
            return f"$ per hour to carry {_number(self.load_rps)} RPS (replicas x price; lower is better)"
        if self.name == P99:
            return "p99 latency in ms (lower is better)"
        return "energy per request in joules, measured by NVML on GPU runners (lower is better)"

    # -- the value ---------------------------------------------------------------------------------
    def value(self, trial: Trial, price_per_hour: float | None) -> float | None:
        """The objective of a finished trial, higher is better; None when the trial failed or
        did not measure what the objective needs (or, for a load, serves no request)."""
        if not trial.ok:
            return None
        if self.name == RPS_PER_USD:
            return trial.rps_per_usd
        if self.name == USD_FOR_LOAD:
            n = replicas_for(self.load_rps, trial.rps)       # type: ignore[arg-type]
            return None if n is None or price_per_hour is None else -(n * float(price_per_hour))
        if self.name == P99:
            return None if trial.p99_ms is None else -float(trial.p99_ms)
        e = getattr(trial, "energy_j_per_request", None)
        return None if e is None else -float(e)

    def natural(self, value: float | None) -> float | None:
        """The real quantity (requests per $, $ per hour, ms, J per request) of a ``value``."""
        if value is None:
            return None
        return value if self.maximise else -value

    def internal(self, natural: float) -> float:
        """A natural quantity (e.g. a target the user states) on the higher-is-better scale."""
        return natural if self.maximise else -natural

    def reached(self, value: float | None, target_natural: float) -> bool:
        """Whether ``value`` meets a target stated in the objective's unit (at least that many
        requests per $; at most that many $/h, ms, J)."""
        return value is not None and value >= self.internal(target_natural)

    def violations(self, trial: Trial, price_per_hour: float | None) -> list[str]:
        """Why a successful trial has no value for this objective (empty: it has one)."""
        if not trial.ok or self.name == RPS_PER_USD:
            return []
        if self.name == USD_FOR_LOAD:
            if trial.rps is None:
                return ["RPS not measured, so the cost of the load is unknown"]
            if trial.rps <= 0:
                return [f"serves no requests, so it cannot carry {_number(self.load_rps)} RPS"]
            return []
        if self.name == P99:
            return [] if trial.p99_ms is not None else ["p99 latency not measured"]
        return [] if getattr(trial, "energy_j_per_request", None) is not None else ["energy not measured"]

    def spread(self, trial: Trial) -> float | None:
        """The relative measurement spread of the objective: the runner's RPS spread carries to
        RPS/$, to a cost at a load and to energy per request (power / RPS); the p99's own spread
        is not measured (None: taken as exact)."""
        return None if self.name == P99 else trial.stability_cv

    # -- knowledge ---------------------------------------------------------------------------------
    def from_rps_per_usd(self, f: np.ndarray, batch: np.ndarray | None = None,
                         usd_per_hour: np.ndarray | None = None) -> np.ndarray | None:
        """Offline predictions of RPS/$ (any positive scale; rows of experts x configurations)
        as predictions of this objective, up to a positive scale; None when the objective cannot
        be derived from RPS/$ (energy; p99 without the configurations' prices). ``batch``,
        ``usd_per_hour``: per configuration (columns).

        - a load: cost per hour L x price / RPS = L / (RPS/$) before replicas are rounded up (the
          trials teach the rounding): ``-1/f``;
        - p99: latency = batch / RPS = batch / (RPS/$ x price) with one batch in flight, as the
          runners measure (the tail's factor over it is learnt from the trials): ``-batch/(f x price)``.

        A configuration predicted to serve (next to) nothing is taken as serving 1/20 of the best."""
        if self.name == RPS_PER_USD:
            return f
        if self.knowledge == "none" or (self.name == P99 and usd_per_hour is None):
            return None
        f = np.asarray(f, dtype=float)
        top = np.max(f, axis=-1, keepdims=True) if f.size else np.ones(1)
        f = np.maximum(f, np.where(top > 0, top, 1.0) / 20.0)
        if self.name == USD_FOR_LOAD:
            return -1.0 / f
        b = np.ones(f.shape[-1]) if batch is None else np.asarray(batch, dtype=float)
        return -b / (f * np.asarray(usd_per_hour, dtype=float))

    def from_rps(self, rps: np.ndarray, usd_per_hour: np.ndarray,
                 batch: np.ndarray | None = None) -> np.ndarray | None:
        """Predicted RPS and prices (the cost model's) as this objective (-inf: serves nothing);
        None when RPS alone does not give it."""
        rps, price = np.asarray(rps, dtype=float), np.asarray(usd_per_hour, dtype=float)
        serves = rps > 0
        safe = np.where(serves, rps, 1.0)
        if self.name == RPS_PER_USD:
            return np.where(serves & (price > 0), rps * 3600.0 / np.where(price > 0, price, 1.0), 0.0)
        if self.name == P99:        # ms: a batch's time with one batch in flight
            b = np.ones(len(rps)) if batch is None else np.asarray(batch, dtype=float)
            return np.where(serves, -1000.0 * b / safe, -np.inf)
        if self.name != USD_FOR_LOAD:
            return None
        n = [replicas_for(self.load_rps, float(r)) for r in rps]      # type: ignore[arg-type]
        return np.array([-np.inf if k is None else -k * p for k, p in zip(n, price)])

    def knowledge_note(self) -> str:
        """How the offline RPS/$ knowledge is read for this objective (for a transformed one)."""
        if self.name == USD_FOR_LOAD:
            return (f"read as the cost of {_number(self.load_rps)} RPS before replicas are rounded up (the cost "
                    f"model predicts RPS, so it rounds exactly); the trials measure the rest")
        if self.name == P99:
            return ("read as latency = batch size / RPS (one batch in flight, as the runners measure); the "
                    "trials measure the tail over it")
        return "used as it is"

    # -- wire ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "load_rps": self.load_rps}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Objective":
        if not d:
            return cls()
        return cls(str(d.get("name") or RPS_PER_USD), d.get("load_rps"))


def _number(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if float(x).is_integer() or x >= 100 else f"{x:.3g}"


# -- the trade-off: several objectives over the same trials ----------------------------------------
def objectives_for(chosen: Objective, trials: Iterable[Trial]) -> list[Objective]:
    """The objectives the trials can be ranked by: RPS/$, the cost at the stated load (when one
    is stated), p99 and energy where measured; the chosen one first."""
    trials = list(trials)
    out = [chosen]
    cands = [Objective(RPS_PER_USD)]
    if chosen.load_rps is not None:
        cands.append(Objective(USD_FOR_LOAD, chosen.load_rps))
    if any(t.ok and t.p99_ms is not None for t in trials):
        cands.append(Objective(P99, chosen.load_rps))
    if any(t.ok and getattr(t, "energy_j_per_request", None) is not None for t in trials):
        cands.append(Objective(ENERGY, chosen.load_rps))
    out += [o for o in cands if o.name != chosen.name]
    return out


def best_per_objective(chosen: Objective, trials: Sequence[Trial], price: Callable[[Trial], float | None],
                       meets: Callable[[Trial], bool]) -> dict[str, Trial]:
    """The recommendation under each objective the trials can be ranked by: the best trial
    that ``meets`` the constraints and has a value (on a tie the higher RPS/$, then the earliest,
    as ``SearchState.ranked``). ``price``: a trial's configuration's $/hour."""
    out: dict[str, Trial] = {}
    for o in objectives_for(chosen, trials):
        scored = [(v, t) for t in trials if meets(t) and (v := o.value(t, price(t))) is not None]
        if scored:
            out[o.name] = max(scored, key=lambda vt: (vt[0], vt[1].rps_per_usd or 0.0, -vt[1].index))[1]
    return out


@dataclass(frozen=True)
class ParetoPoint:
    trial_id: str
    index: int
    config: Mapping[str, Any]
    p99_ms: float
    usd_per_million: float
    rps: float
    best_for: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "index": self.index, "config": dict(self.config), "p99_ms": self.p99_ms,
                "usd_per_million": self.usd_per_million, "rps": self.rps, "best_for": list(self.best_for)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ParetoPoint":
        return cls(str(d["trial_id"]), int(d["index"]), dict(d["config"]), float(d["p99_ms"]),
                   float(d["usd_per_million"]), float(d["rps"]), tuple(d.get("best_for") or ()))


def pareto_front(trials: Sequence[Trial], price: Callable[[Trial], float | None],
                 meets: Callable[[Trial], bool] = lambda t: True,
                 best_for: Mapping[str, str] | None = None) -> list[ParetoPoint]:
    """The trials no other trial beats on both p99 latency and $ per million requests (both
    lower is better), among the successful trials that ``meets`` the constraints and measured
    RPS and p99; cheapest first. ``best_for``: objective name -> trial id of its
    recommendation, marked on the points."""
    marks: dict[str, list[str]] = {}
    for name, tid in (best_for or {}).items():
        marks.setdefault(tid, []).append(name)
    pts = []
    for t in trials:
        if not (t.ok and meets(t) and t.p99_ms is not None and t.rps):
            continue
        per_m = usd_per_million(t.rps, price(t))
        if per_m is not None:
            pts.append((per_m, float(t.p99_ms), t))
    pts.sort(key=lambda p: (p[0], p[1], p[2].index))
    front, best_p99 = [], math.inf
    for per_m, p99, t in pts:
        if p99 < best_p99 or (front and per_m == front[-1].usd_per_million and p99 == front[-1].p99_ms):
            front.append(ParetoPoint(t.trial_id, t.index, dict(t.config), p99, per_m, float(t.rps),
                                     tuple(marks.get(t.trial_id, ()))))
            best_p99 = min(best_p99, p99)
    return front


__all__ = ["ENERGY", "FIGURES", "HOURS_PER_MONTH", "OBJECTIVES", "Objective", "ObjectiveError", "P99",
           "ParetoPoint", "RPS_PER_USD", "USD_FOR_LOAD", "best_per_objective", "monthly_cost", "objectives_for",
           "pareto_front", "replicas_for", "usd_per_million"]
