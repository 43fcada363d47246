"""A search's report as data: the recommendation in serving terms (RPS, p50/p99, $/hour, $ per
million requests), what it saves against the configuration the user runs today
(``--baseline``), the runners-up and their trade-offs, the trial history, where and how long
it was measured. Also the overview of a search the CLI and the dashboard list, and the
best-so-far curve the report plots and the dashboard draws (the noise-robust estimate when
measurements are noisy): one answer for each, wherever it is shown.

Every number carries its unit (:mod:`tools.units`); the objective says which one it is: requests
per dollar (live trials) or a replay table's normalised RPS/$ (0-1, no unit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from schemas.events import TrialResult
from services.domain import objectives
from services.domain.falcon_data import DataError
from services.domain.figures import NORMALISED, TRIAL_FIGURES
from services.domain.objectives import Objective
from services.domain.space import Space, SpaceError
from services.platform.tables import read_model_table
from services.knowledge import Knowledge
from services.searcher.estimate import noisy
from services.searcher.search import SearchState, estimate_data, trade_offs, with_predictions
from tools import units


@dataclass(frozen=True)
class ServingFigures:
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    usd_per_hour: float
    usd_per_million: float | None     # $ per million requests at full load

    @classmethod
    def of(cls, state: SearchState, t: TrialResult) -> "ServingFigures":
        hourly = state.spec.prices.hourly(t.config)
        per_million = hourly / (t.rps * 3600) * 1e6 if t.rps else None
        return cls(t.rps, t.p50_ms, t.p99_ms, hourly, per_million)


def monthly_cost(rps: float | None, usd_per_hour: float, load_rps: float | None) -> tuple[int, float] | None:
    """(replicas, $ per month) to carry ``load_rps`` with copies of a configuration serving ``rps``
    (``services.domain.objectives.monthly_cost``: the objective usd-for-load counts the same)."""
    return objectives.monthly_cost(load_rps, rps, usd_per_hour)


def stated_load(state: SearchState, baseline: "Baseline | None" = None) -> float | None:
    """The load monthly costs are stated at: the objective's --load, else the baseline's
    (--load-rps), else the --min-rps constraint."""
    return state.spec.objective.load_rps or (baseline.load_rps if baseline is not None else None) \
        or state.spec.constraints.min_rps


def parse_config(text: str, space: Space) -> dict[str, Any]:
    """``cpus=2,batchsize=8,graph_opt=all`` as a configuration of ``space`` (SpaceError: why not)."""
    raw: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise SpaceError(f"baseline {text!r}: {part!r} is not knob=value")
        k, v = (x.strip() for x in part.split("=", 1))
        unit = units.KNOB_UNITS.get(k)
        if unit and v.endswith(unit):              # as the output prints it: gpumem=2.4 GB, gpupower=50%
            v = v[:-len(unit)].strip()
        for conv in (int, float):
            try:
                raw[k] = conv(v)
                break
            except ValueError:
                continue
        else:
            raw[k] = v
    try:
        return space.canonical(raw)
    except SpaceError as exc:
        raise SpaceError(f"baseline {text!r} is not a configuration of the search's space: {exc}") from None


@dataclass(frozen=True)
class Baseline:
    """The configuration the user runs today and what is known about it."""
    config: dict[str, Any]
    rps_per_usd: float | None          # in the search's unit (its trials', or the replay table's: normalised)
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    usd_per_hour: float
    source: str                        # where its figures come from
    load_rps: float | None = None      # the load monthly costs are stated at

    @classmethod
    def of(cls, state: SearchState, config: dict[str, Any], load_rps: float | None = None,
           cache_dir: str | Path = ".falcon/cache") -> "Baseline":
        space = state.spec.space
        hourly = state.spec.prices.hourly(config)
        load = load_rps or state.spec.objective.load_rps or state.spec.constraints.min_rps
        for t in state.trials:
            if t.ok and space.key(t.config) == space.key(config):
                return cls(config, t.rps_per_usd, t.rps, t.p50_ms, t.p99_ms, hourly, f"trial {t.index + 1} of this search",
                           load or t.rps)
        table = state.spec.backend.get("table")
        if state.spec.backend.get("kind") == "replay" and table:
            try:
                row = read_model_table(str(table), cache_dir).lookup(config)
            except DataError:
                row = None
            if row is not None:
                return cls(config, row["value"], row.get("rps"), row.get("p50_ms"), row.get("p99_ms"), hourly,
                           "the replay table", load or row.get("rps"))
        return cls(config, None, None, None, None, hourly, "not measured: it was not one of this search's trials",
                   load)


def comparison(state: SearchState, best: TrialResult | None, base: Baseline) -> dict[str, Any]:
    """The recommendation against the baseline, both ways: RPS/$, $ per million requests and the
    monthly cost at the stated load."""
    out: dict[str, Any] = {**asdict(base), "usd_per_million_requests": None, "monthly": None,
                           "recommended_monthly": None, "gain": None, "monthly_saving": None, "verdict": None}
    if base.rps:
        out["usd_per_million_requests"] = base.usd_per_hour / (base.rps * 3600) * 1e6
    if best is None or base.rps_per_usd is None or best.rps_per_usd is None or base.rps_per_usd <= 0:
        out["verdict"] = ("no comparison: " + ("no recommendation" if best is None or best.rps_per_usd is None
                                               else f"the baseline is {base.source}"))
        return out
    out["gain"] = best.rps_per_usd / base.rps_per_usd
    rec_hourly = state.spec.prices.hourly(best.config)
    b, r = monthly_cost(base.rps, base.usd_per_hour, base.load_rps), monthly_cost(best.rps, rec_hourly, base.load_rps)
    if b and r:
        out["monthly"], out["recommended_monthly"] = b, r
        out["monthly_saving"] = b[1] - r[1]
    name = "normalised RPS/$" if state.rps_per_usd_unit == NORMALISED else "requests per dollar"
    verdict = f"{out['gain']:.2f}x the {name}"
    if out["monthly_saving"] is not None:
        verb = "saves" if out["monthly_saving"] >= 0 else "costs"
        verdict += (f"; at {units.rps(base.load_rps)} it {verb} {units.usd(abs(out['monthly_saving']))} a month "
                    f"({units.usd(b[1])} -> {units.usd(r[1])})")
    out["verdict"] = verdict
    return out


def _hardware(state: SearchState) -> str:
    kind = str(state.spec.backend.get("kind"))
    if kind == "replay":
        table = str(state.spec.backend.get("table", ""))
        return f"replayed from the measured table {Path(table.split('?')[0]).name or table} (no hardware used)"
    runners = sorted({t.runner.split("@")[-1] for t in state.trials if t.runner})
    providers = sorted({str(p) for t in state.trials for p in (t.details or {}).get("providers", []) or []})
    text = f"live runner(s) {', '.join(runners) or '-'}"
    return text + (f" with {', '.join(providers)}" if providers else "")


def served(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A served trial's load test as the report and the dashboard show it (None for a replay or
    closed-loop trial): the SLO, the peak within it and the load (concurrency) it was measured at,
    Triton's queue/compute split of a request there, and the throughput-vs-p99 curve by load."""
    d = details or {}
    if d.get("mode") != "served" or not d.get("curve"):
        return None
    slo = float(d["slo_p99_ms"])
    curve = [{k: p.get(k) for k in CURVE_FIELDS} | {"meets_slo": float(p["p99_ms"]) <= slo}
             for p in sorted(d["curve"], key=lambda p: p["concurrency"])]
    peak = d.get("peak") or {}
    split = d.get("server_split_ms") or {}
    queue = peak.get("queue_ms", split.get("queue"))
    compute = peak.get("compute_ms")
    if compute is None and "compute_infer" in split:
        compute = sum(float(split.get(k) or 0.0) for k in ("compute_input", "compute_infer", "compute_output"))
    return {"slo_p99_ms": slo, "curve": curve,
            "peak": ({k: peak.get(k) for k in CURVE_FIELDS} | {"concurrency": int(peak["concurrency"])}
                     if peak.get("rps") and peak.get("concurrency") is not None else None),
            "queue_ms": queue, "compute_ms": compute,
            "split_ms": {k: split[k] for k in SPLIT_FIELDS if split.get(k) is not None},
            "wall_s": d.get("wall_s"), "stop": (d.get("load") or {}).get("stop")}


CURVE_FIELDS = ("concurrency", "rps", "p50_ms", "p99_ms", "queue_ms", "compute_ms")
SPLIT_FIELDS = ("queue", "compute_input", "compute_infer", "compute_output")


def served_text(sv: Mapping[str, Any]) -> str:
    """The recommendation's peak in words: "peak 628 RPS within the p99 SLO of 100 ms, measured
    at 16 requests in flight (p50 23.1 ms, p99 41.7 ms there)"."""
    p = sv.get("peak")
    if not p:
        return f"no load met the p99 SLO of {units.ms(sv['slo_p99_ms'])}"
    return (f"peak {units.rps(p['rps'])} within the p99 SLO of {units.ms(sv['slo_p99_ms'])}, measured at "
            f"{p['concurrency']} request{'s' if p['concurrency'] != 1 else ''} in flight (concurrency "
            f"{p['concurrency']}; p50 {units.ms(p['p50_ms'])}, p99 {units.ms(p['p99_ms'])} there)")


def split_text(sv: Mapping[str, Any]) -> str | None:
    """Triton's own split of a request's time at the peak: "queue 12.0 ms, compute 8.10 ms"."""
    if sv.get("queue_ms") is None and sv.get("compute_ms") is None:
        return None
    return f"queue {units.ms(sv.get('queue_ms'))}, compute {units.ms(sv.get('compute_ms'))} per request"


def _measurement(state: SearchState) -> str:
    b = state.spec.backend
    served = [t.details or {} for t in state.trials if (t.details or {}).get("mode") == "served"]
    if b.get("kind") == "live" and (b.get("mode") == "served" or served):
        slos = [d["slo_p99_ms"] for d in served if d.get("slo_p99_ms") is not None]
        slo = float(slos[0] if slos else b.get("slo_p99_ms") or 100)       # the runner's default SLO: 100 ms
        return (f"served by Triton, perf_analyzer raising the load (requests in flight) until the p99 passes "
                f"{units.ms(slo)}; each trial's peak RPS within that SLO")
    if b.get("kind") == "live":
        return f"{units.seconds(float(b.get('measure_s', 3.0)))} of closed-loop stress test per trial (after warm-up)"
    return f"a simulated {units.seconds(state.spec.trial_seconds)} per trial (deploy + stress test), priced as such"


def summary(state: SearchState, wall_s: float | None = None, baseline: Baseline | None = None) -> dict[str, Any]:
    """What the report says, as data (the CLI's --json and the HTML are both made from it)."""
    ranked = state.ranked()
    best = ranked[0] if ranked else None
    kind = str(state.spec.backend.get("kind"))
    unit = state.rps_per_usd_unit
    obj = state.spec.objective
    load = stated_load(state, baseline)
    by_index = {t.trial_id: t.index + 1 for t in state.trials}

    def row(t: TrialResult) -> dict[str, Any]:
        f = ServingFigures.of(state, t)
        natural = obj.natural(state.objective_value(t))
        monthly = monthly_cost(f.rps, f.usd_per_hour, load)
        return {"trial": t.index + 1, "config": dict(t.config),
                **{name: getattr(t, name) for name in TRIAL_FIGURES},        # every measured figure
                "rps_per_usd_unit": t.rps_per_usd_unit,
                "usd_per_hour": f.usd_per_hour, "usd_per_million_requests": f.usd_per_million,
                "duration_s": t.duration_s, "cost_usd": t.cost_usd, "served": served(t.details),
                "objective_value": natural, "objective_text": units.objective_text(obj, natural, unit),
                "monthly": None if monthly is None else {"replicas": monthly[0], "usd": monthly[1]}}

    trade = trade_offs(state, best)
    per_objective = {}
    for name, tid in trade["best_per_objective"].items():
        t = next(x for x in state.trials if x.trial_id == tid)
        o = obj if name == obj.name else Objective(name, obj.load_rps)
        per_objective[name] = {"trial": by_index[tid], "config": dict(t.config),
                               "text": units.objective_text(o, o.natural(o.value(t, state.hourly(t))), unit)}
    return {
        "search_id": state.search_id, "model": state.spec.model["name"], "status": state.status,
        "stop_reason": state.stop_reason, "strategy": state.spec.strategy, "kops": list(state.kops),
        "backend": kind, "rps_per_usd_unit": unit, "objective": units.objective_title(obj, unit),
        "objective_spec": obj.to_dict(),
        "load_rps": load, "notices": trade["notices"], "best_per_objective": per_objective,
        "pareto": [{**p.to_dict(), "trial": p.index + 1} for p in trade["pareto"]],
        "hardware": _hardware(state), "measurement": _measurement(state), "wall_s": wall_s,
        "constraints": state.spec.constraints.to_dict(), "trials": len(state.trials),
        "spent_usd": state.spent_usd, "recommended": row(best) if best else None, "parallel": state.parallel,
        "estimate": estimate_data(state) if state.recommendation else None,
        "runners_up": [row(t) for t in ranked[1:4]],
        "history": [{**row(t), "status": t.status, "reason": t.reason,
                     "violations": state.violations(t) if t.status == "ok" else []} for t in state.trials],
        "baseline": comparison(state, best, baseline) if baseline is not None else None,
        "closest": [] if best is not None else closest_to_constraints(state),
    }


def closest_to_constraints(state: SearchState) -> list[str]:
    """When no trial met the constraints: how near the best trials came to each of them."""
    ok = [t for t in state.trials if t.ok]
    c = state.spec.constraints
    out = []
    p99 = [t for t in ok if t.p99_ms is not None]
    if c.slo_p99_ms is not None and p99:
        t = min(p99, key=lambda t: t.p99_ms)            # type: ignore[arg-type, return-value]
        out.append(f"The lowest p99 latency measured was {units.ms(t.p99_ms)} (trial {t.index + 1}: "
                   f"{units.config(t.config)}), against an SLO of {units.ms(c.slo_p99_ms)}.")
    rps = [t for t in ok if t.rps is not None]
    if c.min_rps is not None and rps:
        t = max(rps, key=lambda t: t.rps)               # type: ignore[arg-type, return-value]
        out.append(f"The highest throughput measured was {units.rps(t.rps)} (trial {t.index + 1}: "
                   f"{units.config(t.config)}), against the {units.rps(c.min_rps)} required.")
    if not ok and state.trials:
        reasons = sorted({t.reason or "unknown" for t in state.trials})
        out.append(f"Every trial failed: {'; '.join(reasons)[:400]}.")
    return out


PARETO_TITLE = "Latency vs cost: the Pareto front of the tried configurations"


def objective_label(name: str, load_rps: float | None) -> str:
    """How a recommendation under an objective is named for people."""
    return {objectives.RPS_PER_USD: "best RPS/$",
            objectives.USD_FOR_LOAD: f"cheapest for {units.rps(load_rps)}",
            objectives.P99: "lowest p99",
            objectives.ENERGY: "least energy per request"}[name]


def overview(st: SearchState) -> dict[str, Any]:
    """One search at a glance, the facts ``falcon status`` and the dashboard's list both show (each
    picks its fields): status, trials, the best so far in the objective's unit, what it cost."""
    best = st.best
    kind = str(st.spec.backend.get("kind"))
    unit = st.rps_per_usd_unit
    obj = st.spec.objective
    natural = obj.natural(st.objective_value(best)) if best else None
    return {"search_id": st.search_id, "model": st.spec.model.get("name"), "status": st.status,
            "strategy": st.spec.strategy, "trials": len(st.trials), "max_trials": st.spec.stop.max_trials,
            "backend": kind, "objective": obj.name, "objective_title": units.objective_title(obj, unit),
            "best_value": best.rps_per_usd if best else None, "rps_per_usd_unit": unit, "best_objective": natural,
            "best_text": units.objective_text(obj, natural, unit),   # also with no best yet ("-")
            "best_config": best.config if best else None, "best_rps": best.rps if best else None,
            "best_p99_ms": best.p99_ms if best else None, "spent_usd": st.spent_usd,
            "stop_reason": st.stop_reason, "pending": [p.trial_id for p in st.pending], "parallel": st.parallel,
            "kops": list(st.kops), "notices": list(st.notices)}


@dataclass(frozen=True)
class BestSoFar:
    """The objective (in its own unit) after each trial: the best feasible single measurement, and,
    when measurements are noisy, the recommendation's estimate with its 95% interval (what the
    search would recommend then; None where nothing is feasible yet)."""
    measured: list[float | None]
    estimate: list[float | None] | None = None
    low: list[float | None] | None = None
    high: list[float | None] | None = None

    @property
    def curve(self) -> list[float | None]:
        """The one best-so-far curve to show: the estimate when the search is noisy, else the best
        measurement."""
        if self.estimate is not None and any(v is not None for v in self.estimate):
            return self.estimate
        return self.measured


def best_so_far(state: SearchState, knowledge: Knowledge | None = None) -> BestSoFar:
    """``knowledge``: the offline knowledge of the search's space, when at hand (a noisy search's
    estimates shrink towards what its model expected; without it, towards the stored predictions)."""
    obj = state.spec.objective
    measured: list[float | None] = []
    best: float | None = None
    for t in state.trials:
        v = obj.natural(state.objective_value(t)) if state.feasible(t) else None
        if v is not None and (best is None or (v > best if obj.maximise else v < best)):
            best = float(v)
        measured.append(best)
    if not noisy(state.trials, obj.spread):
        return BestSoFar(measured)
    recs = [(with_predictions(replace(state, trials=state.trials[:k]), knowledge) if knowledge is not None
             else replace(state, trials=state.trials[:k])).recommendation for k in range(1, len(state.trials) + 1)]
    ends = [None if r is None else sorted((obj.natural(r.low), obj.natural(r.high))) for r in recs]
    return BestSoFar(measured, [None if r is None else obj.natural(r.value) for r in recs],
                     [None if e is None else e[0] for e in ends], [None if e is None else e[1] for e in ends])
