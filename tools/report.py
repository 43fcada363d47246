"""A search's report for people: the recommendation in serving terms (RPS, p50/p99, $/hour, $ per
million requests), what it saves against the configuration the user runs today (``--baseline``),
the runners-up and their trade-offs, the trial history, where and how long it was measured, and
plots (best so far vs trial, the search path over two knobs like the paper's Fig. 13, the KOPs
and their resource curves). Pure: a SearchState (and the offline knowledge, when at hand) in,
files out (``falcon report``).

Every number carries its unit (:mod:`tools.units`); the objective says which one it is: requests
per dollar (live trials) or a replay table's normalised RPS/$ (0-1, no unit).
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from schemas.events import TrialResult
from services.common import objectives
from services.common.falcon_data import DataError, read_model_table
from services.common.objectives import HOURS_PER_MONTH, Objective
from services.common.space import Space, SpaceError
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
    (``services.common.objectives.monthly_cost``: the objective usd-for-load counts the same)."""
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
    value: float | None
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
                return cls(config, t.value, t.rps, t.p50_ms, t.p99_ms, hourly, f"trial {t.index + 1} of this search",
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
    kind = str(state.spec.backend.get("kind"))
    out: dict[str, Any] = {**asdict(base), "usd_per_million_requests": None, "monthly": None,
                           "recommended_monthly": None, "gain": None, "monthly_saving": None, "verdict": None}
    if base.rps:
        out["usd_per_million_requests"] = base.usd_per_hour / (base.rps * 3600) * 1e6
    if best is None or base.value is None or best.value is None or base.value <= 0:
        out["verdict"] = ("no comparison: " + ("no recommendation" if best is None or best.value is None
                                               else f"the baseline is {base.source}"))
        return out
    out["gain"] = best.value / base.value
    rec_hourly = state.spec.prices.hourly(best.config)
    b, r = monthly_cost(base.rps, base.usd_per_hour, base.load_rps), monthly_cost(best.rps, rec_hourly, base.load_rps)
    if b and r:
        out["monthly"], out["recommended_monthly"] = b, r
        out["monthly_saving"] = b[1] - r[1]
    name = "requests per dollar" if not units.is_normalised(kind) else "normalised RPS/$"
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


def _measurement(state: SearchState) -> str:
    b = state.spec.backend
    if b.get("kind") == "live":
        return f"{units.seconds(float(b.get('measure_s', 3.0)))} of closed-loop stress test per trial (after warm-up)"
    return f"a simulated {units.seconds(state.spec.trial_seconds)} per trial (deploy + stress test), priced as such"


def summary(state: SearchState, wall_s: float | None = None, baseline: Baseline | None = None) -> dict[str, Any]:
    """What the report says, as data (the CLI's --json and the HTML are both made from it)."""
    ranked = state.ranked()
    best = ranked[0] if ranked else None
    kind = str(state.spec.backend.get("kind"))
    obj = state.spec.objective
    load = stated_load(state, baseline)
    by_index = {t.trial_id: t.index + 1 for t in state.trials}

    def row(t: TrialResult) -> dict[str, Any]:
        f = ServingFigures.of(state, t)
        natural = obj.natural(state.objective_value(t))
        monthly = monthly_cost(f.rps, f.usd_per_hour, load)
        return {"trial": t.index + 1, "config": dict(t.config), "value": t.value, "rps": f.rps, "p50_ms": f.p50_ms,
                "p99_ms": f.p99_ms, "usd_per_hour": f.usd_per_hour, "usd_per_million_requests": f.usd_per_million,
                "stability_cv": t.stability_cv, "duration_s": t.duration_s, "cost_usd": t.cost_usd,
                "objective_value": natural, "objective_text": units.objective_text(obj, natural, kind),
                "energy_j_per_request": t.energy_j_per_request, "mean_power_w": t.mean_power_w,
                "monthly": None if monthly is None else {"replicas": monthly[0], "usd": monthly[1]}}

    trade = trade_offs(state, best)
    per_objective = {}
    for name, tid in trade["best_per_objective"].items():
        t = next(x for x in state.trials if x.trial_id == tid)
        o = obj if name == obj.name else Objective(name, obj.load_rps)
        per_objective[name] = {"trial": by_index[tid], "config": dict(t.config),
                               "text": units.objective_text(o, o.natural(o.value(t, state.hourly(t))), kind)}
    return {
        "search_id": state.search_id, "model": state.spec.model["name"], "status": state.status,
        "stop_reason": state.stop_reason, "strategy": state.spec.strategy, "kops": list(state.kops),
        "backend": kind, "objective": units.objective_title(obj, kind), "objective_spec": obj.to_dict(),
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


# -- plots -------------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _value_formatter(kind: str, obj: Objective | None = None) -> Any:
    from matplotlib.ticker import FuncFormatter
    if obj is not None and obj.name == objectives.USD_FOR_LOAD:
        return FuncFormatter(lambda v, _: units.usd_per_hour(v))
    if obj is not None and obj.name == objectives.P99:
        return FuncFormatter(lambda v, _: units.ms(v))
    if obj is not None and obj.name == objectives.ENERGY:
        return FuncFormatter(lambda v, _: f"{units.sig(v, 3)} J")
    if units.is_normalised(kind):
        return FuncFormatter(lambda v, _: f"{v:.2f}")
    return FuncFormatter(lambda v, _: units.number(v, 3).replace(" million", "M").replace(" billion", "B"))


def _value_label(kind: str, obj: Objective | None = None) -> str:
    if obj is not None and obj.name == objectives.USD_FOR_LOAD:
        return f"$/hour for {units.rps(obj.load_rps)}"
    if obj is not None and obj.name == objectives.P99:
        return "p99 latency"
    if obj is not None and obj.name == objectives.ENERGY:
        return "energy per request"
    return "normalised RPS/$ (table's best = 1)" if units.is_normalised(kind) else "requests per $"


def _natural(state: SearchState, t: TrialResult) -> float:
    """Trial ``t``'s objective in its own unit (NaN: none)."""
    v = state.spec.objective.natural(state.objective_value(t))
    return np.nan if v is None else float(v)


def plot_progress(state: SearchState, path: Path, knowledge: Knowledge | None = None) -> None:
    from matplotlib.ticker import MaxNLocator
    plt = _plt()
    kind = str(state.spec.backend.get("kind"))
    obj = state.spec.objective
    fig, ax = plt.subplots(figsize=(10, 4.2))
    x = np.arange(1, len(state.trials) + 1)
    vals = [_natural(state, t) if state.feasible(t) else np.nan for t in state.trials]
    if obj.maximise:
        best = np.fmax.accumulate(np.where(np.isnan(vals), -np.inf, vals)) if len(vals) else np.array([])
    else:
        best = np.fmin.accumulate(np.where(np.isnan(vals), np.inf, vals)) if len(vals) else np.array([])
    best = np.where(np.isinf(best), np.nan, best)
    if noisy(state.trials, state.spec.objective.spread):   # the recommendation is the best estimate
        recs = [(with_predictions(replace(state, trials=state.trials[:k]), knowledge) if knowledge is not None
                 else replace(state, trials=state.trials[:k])).recommendation for k in range(1, len(state.trials) + 1)]
        natural = state.spec.objective.natural
        est = np.array([np.nan if r is None else natural(r.value) for r in recs])
        ends = np.array([[np.nan, np.nan] if r is None else sorted((natural(r.low), natural(r.high))) for r in recs])
        low, high = ends[:, 0], ends[:, 1]
        if not np.isnan(est).all():
            ax.fill_between(x, low, high, color="black", alpha=0.08, label="its 95% interval")
            ax.plot(x, est, "-o", color="black", lw=2, ms=4, label="recommendation's estimate")
            ax.plot(x, best, "--", color="grey", lw=1, label="best single measurement")
    elif len(best) and not np.isnan(best).all():
        ax.plot(x, best, "-o", color="black", lw=2, ms=4, label="best so far (meets constraints)")
    elif len(best):
        ax.text(0.5, 0.5, "no trial met the constraints", transform=ax.transAxes, ha="center", va="center",
                fontsize=13, color="tab:red", alpha=0.8)
    shown = [(i + 1, _natural(state, t), t) for i, t in enumerate(state.trials) if t.status == "ok"]
    ok = [(i, v) for i, v, _ in shown if not np.isnan(v)]
    bad = [(i, v) for i, v, t in shown if not np.isnan(v) and not state.feasible(t)]
    failed = [i + 1 for i, t in enumerate(state.trials) if not t.ok]
    if ok:
        ax.scatter(*zip(*ok), s=22, color="tab:blue", zorder=3, label="trial")
    if bad:
        ax.scatter(*zip(*bad), s=50, marker="x", color="tab:red", zorder=4, label="misses a constraint")
    if failed:
        for i, f in enumerate(failed):
            ax.axvline(f, color="tab:red", alpha=0.25, lw=6, label="failed trial" if i == 0 else None)
    ax.set_xlabel("trial")
    ax.set_ylabel(_value_label(kind, obj) + ("" if obj.maximise else " (lower is better)"))
    ax.yaxis.set_major_formatter(_value_formatter(kind, obj))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(state.trials):
        ax.set_xlim(0.5, len(state.trials) + 0.5)
    ax.grid(alpha=0.3)
    # beside the axes, never over the data
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.set_title("Best configuration found vs trials")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def path_knobs(state: SearchState) -> tuple[str, str]:
    """The two knobs the search path is drawn over: the pair that tells the trials apart best
    (most distinct cells), then the knobs the trials varied most (ties: the larger knobs), so the
    picture shows where the search moved and few trials share a point."""
    space = state.spec.space
    cand = [k for k in space.knobs if len(k.values) > 1]
    if len(cand) < 2:
        cand = list(space.knobs) * 2
    moved = {k.name: len({str(t.config.get(k.name)) for t in state.trials}) for k in cand}
    ordered = sorted(cand, key=lambda k: (-moved[k.name], -len(k.values), k.name))
    rank = {k.name: i for i, k in enumerate(ordered)}
    best_pair, best_key = (ordered[0].name, ordered[1].name), None
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if a.name == b.name:
                continue
            cells = len({(str(t.config.get(a.name)), str(t.config.get(b.name))) for t in state.trials})
            key = (-cells, rank[a.name] + rank[b.name])
            if best_key is None or key < best_key:
                best_pair, best_key = (a.name, b.name), key
    return best_pair


def plot_path(state: SearchState, path: Path) -> tuple[str, str]:
    plt = _plt()
    kind = str(state.spec.backend.get("kind"))
    kx, ky = path_knobs(state)
    space = state.spec.space
    xs, ys = list(space.knob(kx).values), list(space.knob(ky).values)
    fig, ax = plt.subplots(figsize=(10, 5.2))
    cells: dict[tuple[int, int], list[int]] = {}
    pts = []
    for i, t in enumerate(state.trials):
        cx = xs.index(t.config[kx]) if t.config[kx] in xs else 0
        cy = ys.index(t.config[ky]) if t.config[ky] in ys else 0
        cells.setdefault((cx, cy), []).append(i)
        pts.append((cx, cy))
    if pts:
        p = np.array(pts, float)
        # trials sharing a cell (they differ in a knob not drawn) are spread on a small circle
        for members in cells.values():
            if len(members) > 1:
                for j, idx in enumerate(members):
                    a = 2 * np.pi * j / len(members)
                    p[idx] += 0.16 * np.array([np.cos(a), np.sin(a)])
        ax.plot(p[:, 0], p[:, 1], "-", color="grey", lw=1, alpha=0.6)
        obj = state.spec.objective
        vals = np.array([_natural(state, t) for t in state.trials], float)
        done = ~np.isnan(vals)
        sc = ax.scatter(p[done, 0], p[done, 1], c=vals[done], cmap="viridis" if obj.maximise else "viridis_r",
                        s=110, zorder=3, edgecolors="black")
        if (~done).any():
            ax.scatter(p[~done, 0], p[~done, 1], marker="x", s=70, color="tab:red", zorder=3, label="failed trial")
        missed = np.array([t.ok and not state.feasible(t) for t in state.trials])
        if missed.any():
            ax.scatter(p[missed, 0], p[missed, 1], s=190, facecolors="none", edgecolors="tab:red", lw=1.5,
                       linestyle="--", zorder=4, label="misses a constraint")
        # trial numbers inside the markers, dark on light colours and light on dark ones
        lo, hi = (np.nanmin(vals), np.nanmax(vals)) if done.any() else (0.0, 1.0)
        for i, (px, py) in enumerate(p):
            frac = 1.0 if hi == lo else (vals[i] - lo) / (hi - lo)
            light = done[i] and (hi == lo or (frac > 0.55 if obj.maximise else frac < 0.45))
            ax.annotate(str(i + 1), (px, py), xytext=(0, 0), textcoords="offset points", fontsize=7, zorder=6,
                        ha="center", va="center", color="black" if light or not done[i] else "white",
                        fontweight="bold")
        if done.any():
            cb = fig.colorbar(sc, ax=ax, format=_value_formatter(kind, obj), pad=0.02)
            cb.set_label(_value_label(kind, obj))
        best = state.best
        if best is not None:
            bx, by = p[best.index]
            ax.scatter([bx], [by], s=380, facecolors="none", edgecolors="red", lw=2, zorder=5, label="recommended")
        if best is not None or (~done).any() or missed.any():
            ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=2, fontsize=9, frameon=False)
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlim(-0.6, len(xs) - 0.4)
    ax.set_ylim(-0.6, len(ys) - 0.4)
    ax.set_xlabel(kx)
    ax.set_ylabel(ky)
    others = [n for n in space.names if n not in (kx, ky)]
    ax.set_title(f"Search path over {kx} x {ky} (numbers: trial order"
                 + (f"; trials differing only in {', '.join(others)} share a cell)" if others else ")"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return kx, ky


def _measured_along(state: SearchState) -> tuple[str, list[Any], list[float]] | None:
    """The knob whose levels the search's own trials tell apart most, with the best objective
    seen at each level (a resource curve measured for this model, where no offline curve covers
    the space)."""
    scored = [(t, v) for t in state.trials if t.ok and (v := state.objective_value(t)) is not None]
    best = None
    for k in state.spec.space.knobs:
        levels = [v for v in k.values if any(t.config.get(k.name) == v for t, _ in scored)]
        if len(levels) < 2:
            continue
        tops = [max(x for t, x in scored if t.config.get(k.name) == v) for v in levels]
        spread = max(tops) - min(tops)
        if best is None or spread > best[0]:
            best = (spread, k.name, levels, [float(state.spec.objective.natural(x)) for x in tops])
    return None if best is None else best[1:]   # type: ignore[return-value]


def plot_kops(state: SearchState, knowledge: Knowledge | None, path: Path) -> str:
    """Left: the operator profile (time share; KOPs highlighted). Right: each KOP's resource
    curve along its most important knob (mean predicted RPS/$ from the offline curves), when the
    offline knowledge covers the space; else the curve this search measured along the knob its
    trials tell apart most. Returns what the right-hand panels show."""
    plt = _plt()
    kind = str(state.spec.backend.get("kind"))
    ops = sorted(state.operators, key=lambda o: -float(o.get("time_share") or 0))[:10]
    curves = [] if knowledge is None else [(op, knowledge.operators[op]) for op in state.kops
                                           if op in knowledge.operators]
    curves = curves[:3]
    measured = None if curves else _measured_along(state)
    panels = len(curves) or (1 if measured else 0)
    fig, axes = plt.subplots(1, 1 + panels, figsize=(10 if panels <= 1 else 12, 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2] + [1] * panels})
    ax = axes[0][0]
    if ops:
        names = [str(o["op"]) for o in ops][::-1]
        shares = [float(o.get("time_share") or 0) for o in ops][::-1]
        colors = ["tab:orange" if n in state.kops else "tab:grey" for n in names]
        ax.barh(names, shares, color=colors)
        ax.set_xlabel("share of compute time")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
        ax.set_title("Operator profile (orange: KOPs)")
    else:
        ax.text(0.5, 0.5, "no operator profile", ha="center", va="center")
        ax.set_axis_off()
    space = state.spec.space
    shown = "none"
    for j, (op, oc) in enumerate(curves, start=1):
        ax = axes[0][j]
        knob = oc.kept[0] if oc.kept else max(oc.importance, key=oc.importance.get)
        levels = space.knob(knob).values
        col = [c[knob] for c in space.configs()]
        means = [float(np.mean([s for s, v in zip(oc.score, col) if v == lv])) for lv in levels]
        ax.plot([str(v) for v in levels], means, "-o", color="tab:orange")
        ax.set_xlabel(f"{knob} ({oc.importance.get(knob, 0):.0%} of its variance)")
        ax.set_ylabel("predicted RPS/$ (offline curves, 0-1)")
        shapes = ", ".join(sorted(set(oc.shapes.values())))
        ax.set_title(f"{op}: kept {', '.join(oc.kept)}\nshapes: {shapes}", fontsize=9)
        ax.grid(alpha=0.3)
        shown = "offline"
    if measured:
        knob, levels, means = measured
        ax = axes[0][1]
        ax.plot([str(v) for v in levels], means, "-o", color="tab:blue")
        ax.set_xlabel(knob)
        ax.set_ylabel(f"best {_value_label(kind, state.spec.objective)} measured")
        ax.yaxis.set_major_formatter(_value_formatter(kind, state.spec.objective))
        ax.set_title(f"Measured in this search along {knob}\n(no offline KOP curve covers this space)", fontsize=9)
        ax.grid(alpha=0.3)
        shown = "measured"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return shown


PARETO_TITLE = "Latency vs cost: the Pareto front of the tried configurations"
MARKERS = {objectives.RPS_PER_USD: ("s", "tab:green"), objectives.USD_FOR_LOAD: ("D", "tab:purple"),
           objectives.P99: ("^", "tab:blue"), objectives.ENERGY: ("P", "tab:olive")}


def objective_label(name: str, load_rps: float | None) -> str:
    """How a recommendation under an objective is named for people."""
    return {objectives.RPS_PER_USD: "best RPS/$",
            objectives.USD_FOR_LOAD: f"cheapest for {units.rps(load_rps)}",
            objectives.P99: "lowest p99",
            objectives.ENERGY: "least energy per request"}[name]


def plot_pareto(state: SearchState, s: Mapping[str, Any], path: Path) -> bool:
    """p99 latency vs $ per million requests of every successful trial that measured both: the
    front (no other trial is both faster and cheaper) joined, the rest grey, trials that miss a
    constraint crossed, and the recommendation under each objective marked. False when no trial
    measured RPS and p99 (nothing to draw)."""
    rows = [r for r in s["history"] if r["status"] == "ok" and r["p99_ms"] is not None
            and r["usd_per_million_requests"] is not None]
    if not rows:
        return False
    plt = _plt()
    from matplotlib.ticker import FuncFormatter
    fig, ax = plt.subplots(figsize=(10, 5.2))
    front = {p["trial"] for p in s["pareto"]}
    ok = [r for r in rows if not r["violations"] and r["trial"] not in front]
    bad = [r for r in rows if r["violations"]]
    if ok:
        ax.scatter([r["usd_per_million_requests"] for r in ok], [r["p99_ms"] for r in ok], s=40, color="0.6",
                   zorder=2, label="tried (dominated)")
    if bad:
        ax.scatter([r["usd_per_million_requests"] for r in bad], [r["p99_ms"] for r in bad], s=50, marker="x",
                   color="tab:red", zorder=2, label="misses a constraint")
    if s["pareto"]:
        px = [p["usd_per_million"] for p in s["pareto"]]
        py = [p["p99_ms"] for p in s["pareto"]]
        ax.plot(px, py, "-", drawstyle="steps-post", color="black", lw=1.2, zorder=3)
        ax.scatter(px, py, s=60, color="black", zorder=4, label="Pareto front")
    chosen = s["objective_spec"]["name"]
    at = {r["trial"]: r for r in rows}
    for name, rec in s["best_per_objective"].items():
        r = at.get(rec["trial"])
        if r is None:
            continue        # e.g. RPS/$ on a table without latency: not on these axes
        marker, color = MARKERS[name]
        big = name == chosen
        ax.scatter([r["usd_per_million_requests"]], [r["p99_ms"]], s=260 if big else 150, marker=marker,
                   facecolors="none", edgecolors="red" if big else color, lw=2.4 if big else 1.8, zorder=5,
                   label=f"{objective_label(name, s.get('load_rps'))}" + (" (the objective)" if big else ""))
    for r in rows:
        ax.annotate(str(r["trial"]), (r["usd_per_million_requests"], r["p99_ms"]), xytext=(5, 4),
                    textcoords="offset points", fontsize=7, color="0.25")
    xs = [r["usd_per_million_requests"] for r in rows]
    ys = [r["p99_ms"] for r in rows]
    if max(xs) / max(min(xs), 1e-12) > 8:
        ax.set_xscale("log")
    if max(ys) / max(min(ys), 1e-12) > 8:
        ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: units.usd(v)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: units.ms(v)))
    ax.set_xlabel("$ per million requests (at the measured RPS and the configuration's price)")
    ax.set_ylabel("p99 latency")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.set_title("p99 latency vs cost per request (lower-left is better; numbers: trials)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _pareto_html(s: Mapping[str, Any], image: str | None, kind: str) -> str:
    """The trade-off section: the recommendation per objective, the front as a plot and a table."""
    load = s.get("load_rps")
    chosen = s["objective_spec"]["name"]
    per = s["best_per_objective"]
    recs = "".join(
        f'<li><span class="mark{" chosen" if name == chosen else ""}">{html.escape(objective_label(name, load))}'
        f'</span> trial {r["trial"]}: {_cfg(r["config"])} ({html.escape(r["text"])})'
        + (" <b>the recommendation</b>" if name == chosen else "") + "</li>" for name, r in per.items())
    head = f"<h2>{html.escape(PARETO_TITLE)}</h2>"
    intro = ("<p>Each objective's recommendation among the trials that met the constraints:</p><ul>" + recs + "</ul>"
             if recs else "")
    if not s["pareto"]:
        return head + intro + ("<p>No trial measured both RPS and p99 latency, so there is no latency/cost front "
                               "(a replay table without those columns measures neither).</p>")
    hist = {r["trial"]: r for r in s["history"]}
    rows = []
    for p in s["pareto"]:
        r = hist.get(p["trial"], {})
        m = r.get("monthly")
        marks = "".join(f'<span class="mark{" chosen" if n == chosen else ""}">{html.escape(objective_label(n, load))}'
                        f'</span>' for n in p["best_for"])
        rows.append(f'<tr><td>{p["trial"]}</td><td>{_cfg(p["config"])}</td><td>{html.escape(units.ms(p["p99_ms"]))}</td>'
                    f'<td>{html.escape(units.usd(p["usd_per_million"]))}</td><td>{html.escape(units.rps(p["rps"]))}</td>'
                    f'<td>{html.escape(units.usd_per_hour(r.get("usd_per_hour")))}</td>'
                    + (f'<td>{html.escape(units.usd(m["usd"]))} ({m["replicas"]})</td>' if load else "")
                    + f"<td>{marks}</td></tr>")
    table = ("<table><tr><th>trial</th><th>configuration</th><th>p99</th><th>$ per 1M requests</th><th>RPS</th>"
             "<th>$/hour</th>" + (f"<th>monthly at {html.escape(units.rps(load))} (replicas)</th>" if load else "")
             + "<th>recommended for</th></tr>" + "".join(rows) + "</table>")
    img = f'<img src="{html.escape(image)}" alt="{html.escape(PARETO_TITLE)}">' if image else ""
    return (head + intro + img + "<p>The front, cheapest first: going down the table buys latency with money. "
            "A configuration not on it is beaten on both by one that is." + ("" if load else
            " (State a load, --load, to see the monthly cost of each.)") + "</p>" + table)


# -- html --------------------------------------------------------------------------------------
def _cfg(c: Mapping[str, Any]) -> str:
    return html.escape(units.config(dict(c)))


def _rps(r: Mapping[str, Any]) -> str:
    """RPS with the runner's measured spread, when it reported one."""
    cv = r.get("stability_cv")
    return html.escape(units.rps(r["rps"])) + (f" ±{cv * 100:.0f}%" if cv is not None and r["rps"] is not None
                                                 else "")


def _objective_cell(v: float | None, kind: str) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if units.is_normalised(kind) else html.escape(units.req_per_usd(v))


def _rows(rows: Sequence[Mapping[str, Any]], kind: str, extra: bool = False,
          columns: Sequence[str] = ()) -> str:
    """Trial rows; ``columns``: optional ones, "objective" (the search's objective when it is not
    RPS/$), "energy" (J per request, where measured)."""
    out = []
    for r in rows:
        cells = [str(r["trial"]), _cfg(r["config"])]
        if "objective" in columns:
            cells.append(html.escape(r.get("objective_text") or "-"))
        cells += [_objective_cell(r["value"], kind), _rps(r),
                  html.escape(units.ms(r["p50_ms"])), html.escape(units.ms(r["p99_ms"])),
                  html.escape(units.usd_per_hour(r["usd_per_hour"])),
                  html.escape(units.usd(r["usd_per_million_requests"]))]
        if "energy" in columns:
            e, w = r.get("energy_j_per_request"), r.get("mean_power_w")
            cells.append("not measured" if e is None else
                         html.escape(f"{units.sig(e, 3)} J ({units.sig(w, 3)} W)" if w is not None else
                                     f"{units.sig(e, 3)} J"))
        if extra:
            note = r["reason"] if r["status"] != "ok" else "; ".join(r["violations"])
            cells.append(html.escape(note or ""))
        cls = ' class="bad"' if extra and (r["status"] != "ok" or r["violations"]) else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1240px;padding:0 24px;color:#222}
h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin-top:30px}
table{border-collapse:collapse;font-size:13px;width:100%}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f2f2f2}
td.num,th.num{text-align:right}
.rec{background:#eef8ee;border:1px solid #9c9;padding:12px 16px;border-radius:6px}
.none{background:#fdeeee;border:1px solid #d99;padding:12px 16px;border-radius:6px;color:#822}
.base{background:#eef3fb;border:1px solid #9ab;padding:12px 16px;border-radius:6px}
.big{font-size:20px;font-weight:600}.bad td{color:#a33}.muted{color:#666;font-size:13px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;font-size:14px;margin:12px 0}
dl.facts dt{color:#666}dl.facts dd{margin:0}
img{width:100%;height:auto;border:1px solid #eee}
.notice{background:#fdf5d8;border:1px solid #dcb84f;padding:8px 14px;border-radius:6px;font-size:14px}
.mark{display:inline-block;background:#333;color:#fff;border-radius:4px;padding:0 6px;margin:0 4px 2px 0;font-size:12px}
.mark.chosen{background:#c0392b}"""


def _baseline_html(b: Mapping[str, Any], rec: Mapping[str, Any] | None, kind: str) -> str:
    if b is None:
        return ""
    head = f'<h2>Against what you run today</h2><div class="base"><p>Baseline <b>{_cfg(b["config"])}</b> ' \
           f'({html.escape(b["source"])}).</p>'
    if b.get("gain") is None or rec is None:
        return head + f'<p>{html.escape(str(b["verdict"]))}</p></div>'
    load = b.get("load_rps")

    def monthly(m: Any) -> str:
        return "-" if not m else f"{units.usd(m[1])} ({m[0]} replica{'s' if m[0] != 1 else ''})"
    rows = [("objective", _objective_cell(b["value"], kind), _objective_cell(rec["value"], kind)),
            ("RPS", _rps(b), _rps(rec)),
            ("p99 latency", units.ms(b.get("p99_ms")), units.ms(rec.get("p99_ms"))),
            ("$/hour", units.usd_per_hour(b["usd_per_hour"]), units.usd_per_hour(rec["usd_per_hour"])),
            ("$ per million requests", units.usd(b.get("usd_per_million_requests")),
             units.usd(rec.get("usd_per_million_requests"))),
            (f"monthly cost at {units.rps(load)}" if load else "monthly cost (give --load-rps)",
             monthly(b.get("monthly")), monthly(b.get("recommended_monthly")))]
    table = "<table><tr><th></th><th>baseline</th><th>recommended</th></tr>" + "".join(
        f"<tr><td>{html.escape(n)}</td><td>{x}</td><td>{y}</td></tr>" for n, x, y in rows) + "</table>"
    return head + f'<p class="big">{html.escape(str(b["verdict"]))}</p>{table}' \
        f'<p class="muted">Monthly cost: {HOURS_PER_MONTH:.0f} hours of as many copies of the configuration as the ' \
        f'load needs at its measured RPS.</p></div>'


def _estimate_html(e: Mapping[str, Any] | None, s: Mapping[str, Any]) -> str:
    """What the search believes the recommendation is worth, when measurements were noisy (in the
    objective's own unit)."""
    if not e or e["high"] <= e["low"]:
        return ""
    obj = Objective.from_dict(s.get("objective_spec")) if s.get("objective_spec") else Objective()

    def text(v: float) -> str:
        return html.escape(units.objective_text(obj, v, s["backend"]))
    n = int(e["measurements"])
    return (f'<p id="estimate">Estimated objective {text(e["value"])} (95% interval {text(e["low"])} to '
            f'{text(e["high"])}), from {n} measurement{"s" if n != 1 else ""} of this configuration, shrunk '
            f'towards what the search expected of it. The runners reported measurement noise, so the '
            f'recommendation and its runners-up are ranked by this estimate, not by their single luckiest '
            f'measurement.</p>')


def render_html(s: Mapping[str, Any], images: Mapping[str, str]) -> str:
    kind = s["backend"]
    obj = Objective.from_dict(s.get("objective_spec"))
    obj_head = "norm. RPS/$" if units.is_normalised(kind) else "req/$"
    columns = (["objective"] if not obj.is_default and obj.name != objectives.RPS_PER_USD else []) + \
        (["energy"] if any(r.get("energy_j_per_request") is not None for r in s["history"]) else [])
    head = ("<tr><th>trial</th><th>configuration</th>"
            + (f"<th>objective ({html.escape(obj.unit(kind))})</th>" if "objective" in columns else "")
            + f"<th>{obj_head}</th><th>RPS</th><th>p50</th><th>p99</th><th>$/hour</th><th>$ per 1M requests</th>"
            + ("<th>energy per request (mean power)</th>" if "energy" in columns else ""))
    rec = s["recommended"]
    c = s["constraints"]
    load = s.get("load_rps")
    cons = ", ".join(x for x in (f"p99 latency at most {units.ms(c['slo_p99_ms'])}" if c.get("slo_p99_ms") else None,
                                 f"at least {units.rps(c['min_rps'])}" if c.get("min_rps") else None,
                                 f"at most {units.usd(c['max_usd_per_million'])} per million requests"
                                 if c.get("max_usd_per_million") else None) if x) or "none"
    if rec:
        figures = [_rps(rec) if rec["rps"] is not None else None,
                   f"p50 {units.ms(rec['p50_ms'])}" if rec["p50_ms"] is not None else None,
                   f"p99 {units.ms(rec['p99_ms'])}" if rec["p99_ms"] is not None else None,
                   units.usd_per_hour(rec["usd_per_hour"]),
                   f"{units.usd(rec['usd_per_million_requests'])} per million requests"
                   if rec["usd_per_million_requests"] is not None else None]
        missing = "" if rec["rps"] is not None else \
            " (the replay table has no RPS or latency columns: only the normalised objective is known)"
        m = rec.get("monthly")
        monthly = "" if not load else (
            f'<p class="big">{html.escape(units.usd(m["usd"]))} a month at {html.escape(units.rps(load))} '
            f'({m["replicas"]} replica{"s" if m["replicas"] != 1 else ""} x '
            f'{html.escape(units.usd_per_hour(rec["usd_per_hour"]))} x {HOURS_PER_MONTH:.0f} h)</p>' if m else
            f'<p>Monthly cost at {html.escape(units.rps(load))}: unknown (RPS not measured)</p>')
        rec_html = (f'<div class="rec"><div class="big">{_cfg(rec["config"])}</div>'
                    f'<p>{", ".join(f for f in figures if f)}; objective '
                    f'{html.escape(rec.get("objective_text") or units.objective(rec["value"], kind))} '
                    f'(trial {rec["trial"]}){missing}</p>{monthly}{_estimate_html(s.get("estimate"), s)}</div>')
    else:
        closest = "".join(f"<p>{html.escape(c)}</p>" for c in s.get("closest", []))
        rec_html = f'<div class="none"><div class="big">No recommendation</div>' \
                   f'<p>{html.escape(str(s["stop_reason"]))}</p>{closest}</div>'
    ups = ("<p>Close alternatives, should the recommendation be unavailable or another trade-off be wanted "
           "(e.g. lower latency for a little more cost):</p><table>" + head + "</tr>" +
           _rows(s["runners_up"], kind, columns=columns) + "</table>") if s["runners_up"] else \
        "<p>No other trial met the constraints.</p>"
    imgs = "".join(f'<h2>{html.escape(title)}</h2><img src="{html.escape(src)}" alt="{html.escape(title)}">'
                   for title, src in images.items() if title != PARETO_TITLE)
    facts = [("search", s["search_id"]), ("status", f"{s['status']} ({s['stop_reason']})"),
             ("objective", s["objective"]),
             *([("load", f"{units.rps(load)} (monthly costs are stated at it)")] if load else []),
             ("trials", f"{s['trials']} ({units.usd(s['spent_usd'])} spent on them)"
              + (f", {s['parallel']} at a time" if (s.get("parallel") or 1) > 1 else "")),
             ("hardware", s["hardware"]), ("measurement", s["measurement"]),
             ("wall time", units.seconds(s["wall_s"]) + " from submission to result" if s.get("wall_s") is not None
              else "-"),
             ("strategy", s["strategy"]), ("KOPs", ", ".join(s["kops"]) or "none"), ("constraints", cons)]
    facts_html = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Falcon report {html.escape(s['search_id'])}</title>
<style>{CSS}</style></head><body>
<h1>Serving configuration for {html.escape(s['model'])}</h1>
<dl class="facts">{facts_html}</dl>
{"".join(f'<p class="notice">{html.escape(n)}</p>' for n in s.get("notices", []))}
<h2>Recommended configuration</h2>{rec_html}
{_export_html(s) if rec else ""}
{_baseline_html(s.get("baseline"), rec, kind)}
<h2>Runners-up</h2>{ups}
{_pareto_html(s, images.get(PARETO_TITLE), kind)}
{imgs}
<h2>Trial history</h2><table>{head}<th>note</th></tr>{_rows(s['history'], kind, extra=True, columns=columns)}</table>
<p class="muted">The objective is {html.escape(s['objective'])}{'' if units.is_normalised(kind) else ' (requests served per dollar)'}.
$ per million requests assumes the configuration runs at its measured throughput. Rows in red failed or missed a
constraint and are never recommended.</p>
</body></html>"""


def _export_html(s: Mapping[str, Any]) -> str:
    """How to deploy the recommendation (``falcon export``; docs/export.md): the command, and the
    downloads the dashboard serves beside this report."""
    sid = html.escape(s["search_id"])
    if s["backend"] != "live":
        return ('<p id="export" class="muted">No export: a replay table\'s recommendation was never served, so '
                'there is no measured deployment to hand over (run a live search to export one).</p>')
    load = f"?load={s['load_rps']}" if s.get("load_rps") else ""
    links = " · ".join(f'<a href="../export/{f}.zip{load}">{f}</a>' for f in ("triton", "kserve", "k8s", "compose"))
    return (f'<p id="export">Deploy it: <code>falcon export {sid} --format triton|kserve|k8s|compose '
            f'[--load RPS]</code> writes a Triton model repository entry, a KServe InferenceService, a Kubernetes '
            f'Deployment + Service + HPA or a compose file, sized for the load. From the dashboard: {links} '
            f'(zip).</p>')


def write_report(state: SearchState, out_dir: Path, knowledge: Knowledge | None = None, wall_s: float | None = None,
                 baseline: Baseline | None = None) -> dict[str, Any]:
    """Write report.html, the PNGs beside it and summary.json; returns the summary with paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s = summary(state, wall_s, baseline)
    images: dict[str, str] = {}
    plot_progress(state, out_dir / "progress.png", knowledge)
    obj = state.spec.objective
    images[f"Best {_value_label(s['backend'], obj if not obj.is_default else None)} so far vs trial"
           .replace("normalised RPS/$ (table's best = 1)", "normalised RPS/$")] = "progress.png"
    if state.trials:
        kx, ky = plot_path(state, out_dir / "path.png")
        images[f"Search path ({kx} x {ky})"] = "path.png"
    if plot_pareto(state, s, out_dir / "pareto.png"):
        images[PARETO_TITLE] = "pareto.png"
    shown = plot_kops(state, knowledge, out_dir / "kops.png")
    images["KOPs and their resource curves" if shown != "measured" else
           "KOPs, and the resource curve measured in this search"] = "kops.png"
    (out_dir / "report.html").write_text(render_html(s, images))
    s["files"] = {"html": str(out_dir / "report.html"), **{k: str(out_dir / v) for k, v in images.items()}}
    (out_dir / "summary.json").write_text(json.dumps(s, indent=2, default=str))
    return s
