"""The report's plots (matplotlib, PNG): best so far vs trial, the search path over two knobs
like the paper's Fig. 13, the KOPs and their resource curves, and the latency/cost Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from schemas.events import TrialResult
from services.domain import objectives
from services.domain.figures import NORMALISED
from services.domain.objectives import Objective
from services.knowledge import Knowledge
from services.searcher.search import SearchState
from tools import units
from tools.report.summary import best_so_far, objective_label


def _constrained(state: SearchState) -> bool:
    """Whether the user set a constraint (else "met the constraints" means nothing to them)."""
    return any(v is not None for v in state.spec.constraints.to_dict().values())

def _plt() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _value_formatter(unit: str, obj: Objective | None = None) -> Any:
    from matplotlib.ticker import FuncFormatter
    if obj is not None and obj.name == objectives.USD_FOR_LOAD:
        return FuncFormatter(lambda v, _: units.usd_per_hour(v))
    if obj is not None and obj.name == objectives.P99:
        return FuncFormatter(lambda v, _: units.ms(v))
    if obj is not None and obj.name == objectives.ENERGY:
        return FuncFormatter(lambda v, _: f"{units.sig(v, 3)} J")
    if unit == NORMALISED:
        return FuncFormatter(lambda v, _: f"{v:.2f}")
    return FuncFormatter(lambda v, _: units.number(v, 3).replace(" million", "M").replace(" billion", "B"))


def _value_label(unit: str, obj: Objective | None = None) -> str:
    if obj is not None and obj.name == objectives.USD_FOR_LOAD:
        return f"$/hour for {units.rps(obj.load_rps)}"
    if obj is not None and obj.name == objectives.P99:
        return "p99 latency"
    if obj is not None and obj.name == objectives.ENERGY:
        return "energy per request"
    return "normalised RPS/$ (table's best = 1)" if unit == NORMALISED else "requests per $"


def _natural(state: SearchState, t: TrialResult) -> float:
    """Trial ``t``'s objective in its own unit (NaN: none)."""
    v = state.spec.objective.natural(state.objective_value(t))
    return np.nan if v is None else float(v)


def _array(values: list[float | None] | None) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values or []], float)


def plot_progress(state: SearchState, path: Path, knowledge: Knowledge | None = None) -> None:
    from matplotlib.ticker import MaxNLocator
    plt = _plt()
    unit = state.rps_per_usd_unit
    obj = state.spec.objective
    fig, ax = plt.subplots(figsize=(10, 4.2))
    x = np.arange(1, len(state.trials) + 1)
    curve = best_so_far(state, knowledge)
    best = _array(curve.measured)
    if curve.estimate is not None:     # noisy: the recommendation is the best estimate
        est, low, high = _array(curve.estimate), _array(curve.low), _array(curve.high)
        if not np.isnan(est).all():
            ax.fill_between(x, low, high, color="black", alpha=0.08, label="its 95% interval")
            ax.plot(x, est, "-o", color="black", lw=2, ms=4, label="recommendation's estimate")
            ax.plot(x, best, "--", color="grey", lw=1, label="best single measurement")
    elif len(best) and not np.isnan(best).all():
        ax.plot(x, best, "-o", color="black", lw=2, ms=4,
                label="best so far (meets constraints)" if _constrained(state) else "best so far")
    elif len(best):
        ax.text(0.5, 0.5, "no trial met the constraints" if _constrained(state) and any(t.ok for t in state.trials)
                else "every trial failed", transform=ax.transAxes, ha="center", va="center",
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
    ax.set_ylabel(_value_label(unit, obj) + ("" if obj.maximise else " (lower is better)"))
    ax.yaxis.set_major_formatter(_value_formatter(unit, obj))
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
    unit = state.rps_per_usd_unit
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
        failed_at: dict[tuple[float, float], list[str]] = {}
        for i, (px, py) in enumerate(p):
            number = str(state.trials[i].index + 1)            # as the report's tables number it
            if not done[i]:       # beside its red X, not under it (several failed in one cell: "1,6")
                failed_at.setdefault((float(px), float(py)), []).append(number)
                continue
            frac = 1.0 if hi == lo else (vals[i] - lo) / (hi - lo)
            light = hi == lo or (frac > 0.55 if obj.maximise else frac < 0.45)
            ax.annotate(number, (px, py), xytext=(0, 0), textcoords="offset points", fontsize=7, zorder=6,
                        ha="center", va="center", color="black" if light else "white", fontweight="bold")
        for (px, py), numbers in failed_at.items():
            ax.annotate(",".join(numbers), (px, py), xytext=(7, 5), textcoords="offset points", fontsize=8,
                        zorder=6, ha="left", va="bottom", color="tab:red", fontweight="bold")
        if done.any():
            cb = fig.colorbar(sc, ax=ax, format=_value_formatter(unit, obj), pad=0.02)
            cb.set_label(_value_label(unit, obj))
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
    unit = state.rps_per_usd_unit
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
        ax.set_ylabel(f"best {_value_label(unit, state.spec.objective)} measured")
        ax.yaxis.set_major_formatter(_value_formatter(unit, state.spec.objective))
        why = "no offline KOP curve covers this space" if state.kops else "the model has no KOPs"
        ax.set_title(f"Measured in this search along {knob}\n({why})", fontsize=9)
        ax.grid(alpha=0.3)
        shown = "measured"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return shown


MARKERS = {objectives.RPS_PER_USD: ("s", "tab:green"), objectives.USD_FOR_LOAD: ("D", "tab:purple"),
           objectives.P99: ("^", "tab:blue"), objectives.ENERGY: ("P", "tab:olive")}


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


SERVED_COLOURS = ("#2e7d32", "#4a6fa5", "#b8860b", "#7b4ea3")


def plot_served_curves(curves: list[tuple[str, Mapping[str, Any]]], path: Path) -> bool:
    """Served trials' throughput vs p99 (one line per trial, the first being the recommendation,
    drawn boldest), with the SLO line and each trial's peak within it circled. ``curves``: (label,
    the trial's ``served`` summary, :func:`tools.report.summary.served`). False (nothing written)
    when no trial was served."""
    curves = [(label, sv) for label, sv in curves if sv and sv.get("curve")]
    if not curves:
        return False
    plt = _plt()
    slo = float(curves[0][1]["slo_p99_ms"])
    fig, ax = plt.subplots(figsize=(10, 4.8))
    top_rps, top_p99 = 0.0, 0.0
    for i, (label, sv) in enumerate(curves):
        colour, lead = SERVED_COLOURS[i % len(SERVED_COLOURS)], i == 0
        pts = sv["curve"]
        xs, ys = [p["p99_ms"] for p in pts], [p["rps"] for p in pts]
        top_rps, top_p99 = max(top_rps, *ys), max(top_p99, *xs)
        ax.plot(xs, ys, "-", color=colour, lw=2.2 if lead else 1.2, alpha=1.0 if lead else 0.8, zorder=2 if lead else 1,
                label=label)
        ok = [(x, y) for x, y, p in zip(xs, ys, pts) if p["meets_slo"]]
        bad = [(x, y) for x, y, p in zip(xs, ys, pts) if not p["meets_slo"]]
        if ok:
            ax.scatter(*zip(*ok), s=30 if lead else 18, color=colour, zorder=3)
        if bad:
            ax.scatter(*zip(*bad), s=40 if lead else 24, marker="x", color="#c0504d", zorder=3)
        if lead:        # the load (requests in flight) of each level, on the recommendation's line
            for x, y, p in zip(xs, ys, pts):
                ax.annotate(str(p["concurrency"]), (x, y), textcoords="offset points", xytext=(5, -11), fontsize=8,
                            color="#444")
        peak = sv.get("peak")
        if peak:
            ax.scatter([peak["p99_ms"]], [peak["rps"]], s=160 if lead else 90, facecolors="none", edgecolors=colour,
                       lw=2, zorder=4)
            if lead:
                ax.annotate(f"peak {units.rps(peak['rps'])} at {peak['concurrency']} in flight",
                            (peak["p99_ms"], peak["rps"]), textcoords="offset points", xytext=(-60, 12), fontsize=9,
                            color=colour, fontweight="bold")
    ax.axvline(slo, color="#c0504d", ls="--", lw=1.3, label=f"SLO: p99 at most {units.ms(slo)}")
    ax.set_ylim(0, top_rps * 1.2)
    ax.set_xlim(0, max(slo * 1.15, top_p99 * 1.05))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: units.ms(v)))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: units.number(v, 3)))
    ax.set_xlabel("p99 latency (client side)")
    ax.set_ylabel("throughput (RPS)")
    ax.set_title("Throughput vs p99 as the load rises (numbers: requests in flight; circled: peak within the SLO; "
                 "x: past the SLO)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
