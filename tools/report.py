"""A search's report for people: the recommendation in serving terms (RPS, p99, $/hour, $ per
million requests), the runners-up and their trade-offs, the trial history, and plots (best so
far vs trial, the search path over two knobs like the paper's Fig. 13, the KOPs and their
resource curves). Pure: a SearchState (and the offline knowledge, when at hand) in, files out (``falcon report``).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from schemas.events import TrialResult
from services.knowledge import Knowledge
from services.searcher.search import SearchState


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


def summary(state: SearchState) -> dict[str, Any]:
    """What the report says, as data (the CLI's --json and the HTML are both made from it)."""
    ranked = state.ranked()
    best = ranked[0] if ranked else None

    def row(t: TrialResult) -> dict[str, Any]:
        f = ServingFigures.of(state, t)
        return {"trial": t.index + 1, "config": dict(t.config), "value": t.value, "rps": f.rps, "p50_ms": f.p50_ms,
                "p99_ms": f.p99_ms, "usd_per_hour": f.usd_per_hour, "usd_per_million_requests": f.usd_per_million,
                "stability_cv": t.stability_cv}

    return {
        "search_id": state.search_id, "model": state.spec.model["name"], "status": state.status,
        "stop_reason": state.stop_reason, "strategy": state.spec.strategy, "kops": list(state.kops),
        "constraints": state.spec.constraints.to_dict(), "trials": len(state.trials),
        "spent_usd": state.spent_usd, "recommended": row(best) if best else None,
        "runners_up": [row(t) for t in ranked[1:4]],
        "history": [{**row(t), "status": t.status, "reason": t.reason,
                     "violations": state.violations(t) if t.status == "ok" else []} for t in state.trials],
    }


# -- plots -------------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_progress(state: SearchState, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = np.arange(1, len(state.trials) + 1)
    vals = [t.value if state.feasible(t) else np.nan for t in state.trials]
    best = np.fmax.accumulate(np.where(np.isnan(vals), -np.inf, vals)) if len(vals) else np.array([])
    best = np.where(np.isinf(best), np.nan, best)
    ax.plot(x, best, "-o", color="black", lw=2, ms=4, label="best so far (meets constraints)")
    ok = [(i + 1, t.value) for i, t in enumerate(state.trials) if t.status == "ok" and t.value is not None]
    bad = [(i + 1, t.value) for i, t in enumerate(state.trials)
           if t.status == "ok" and t.value is not None and not state.feasible(t)]
    if ok:
        ax.scatter(*zip(*ok), s=18, color="tab:blue", zorder=3, label="trial")
    if bad:
        ax.scatter(*zip(*bad), s=40, marker="x", color="tab:red", zorder=4, label="misses a constraint")
    ax.set_xlabel("trial")
    ax.set_ylabel("RPS/$ (objective)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Best configuration found vs trials")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def path_knobs(state: SearchState) -> tuple[str, str]:
    """The two knobs the search path is drawn over: the ones its trials varied most (ties: the
    larger knobs), so the picture shows where the search moved."""
    space = state.spec.space
    cand = [k for k in space.knobs if len(k.values) > 1]
    if len(cand) < 2:
        cand = list(space.knobs) * 2
    moved = {k.name: len({str(t.config.get(k.name)) for t in state.trials}) for k in cand}
    ordered = sorted(cand, key=lambda k: (-moved[k.name], -len(k.values), k.name))
    return ordered[0].name, ordered[1].name


def plot_path(state: SearchState, path: Path) -> tuple[str, str]:
    plt = _plt()
    kx, ky = path_knobs(state)
    space = state.spec.space
    xs, ys = space.knob(kx).values, space.knob(ky).values
    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [(xs.index(t.config[kx]) if t.config[kx] in xs else 0, ys.index(t.config[ky]) if t.config[ky] in ys else 0)
           for t in state.trials]
    if pts:
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, size=(len(pts), 2))
        p = np.array(pts, float) + jitter
        ax.plot(p[:, 0], p[:, 1], "-", color="grey", lw=1, alpha=0.7)
        vals = np.array([t.value if t.value is not None else np.nan for t in state.trials], float)
        done = ~np.isnan(vals)
        sc = ax.scatter(p[done, 0], p[done, 1], c=vals[done], cmap="viridis", s=90, zorder=3, edgecolors="black")
        if (~done).any():
            ax.scatter(p[~done, 0], p[~done, 1], marker="x", s=60, color="grey", zorder=3, label="failed trial")
        for i, (px, py) in enumerate(p):
            ax.annotate(str(i + 1), (px, py), xytext=(7, 6), textcoords="offset points", fontsize=8, zorder=4)
        fig.colorbar(sc, ax=ax, label="RPS/$")
        best = state.best
        if best is not None:
            bx, by = p[best.index]
            ax.scatter([bx], [by], s=300, facecolors="none", edgecolors="red", lw=2, zorder=5, label="recommended")
            ax.legend(loc="best", fontsize=8, framealpha=0.6)
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlim(-0.6, len(xs) - 0.4)
    ax.set_ylim(-0.6, len(ys) - 0.4)
    ax.set_xlabel(kx)
    ax.set_ylabel(ky)
    ax.set_title(f"Search path over {kx} x {ky} (numbers: trial order)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return kx, ky


def plot_kops(state: SearchState, knowledge: Knowledge | None, path: Path) -> None:
    """Left: the operator profile (time share; KOPs highlighted). Right: each KOP's resource
    curve along its most important knob (mean predicted RPS/$ from the offline curves), when the
    offline knowledge covers it."""
    plt = _plt()
    ops = sorted(state.operators, key=lambda o: -float(o.get("time_share") or 0))[:10]
    curves = [] if knowledge is None else [(op, knowledge.operators[op]) for op in state.kops
                                           if op in knowledge.operators]
    curves = curves[:3]
    fig, axes = plt.subplots(1, 1 + len(curves), figsize=(5 + 3.6 * len(curves), 3.6), squeeze=False)
    ax = axes[0][0]
    if ops:
        names = [str(o["op"]) for o in ops][::-1]
        shares = [float(o.get("time_share") or 0) for o in ops][::-1]
        colors = ["tab:orange" if n in state.kops else "tab:grey" for n in names]
        ax.barh(names, shares, color=colors)
        ax.set_xlabel("share of compute time")
        ax.set_title("Operator profile (orange: KOPs)")
    else:
        ax.text(0.5, 0.5, "no operator profile", ha="center", va="center")
        ax.set_axis_off()
    space = state.spec.space
    for j, (op, oc) in enumerate(curves, start=1):
        ax = axes[0][j]
        knob = oc.kept[0] if oc.kept else max(oc.importance, key=oc.importance.get)
        levels = space.knob(knob).values
        col = [c[knob] for c in space.configs()]
        means = [float(np.mean([s for s, v in zip(oc.score, col) if v == lv])) for lv in levels]
        ax.plot([str(v) for v in levels], means, "-o", color="tab:orange")
        ax.set_xlabel(f"{knob} ({oc.importance.get(knob, 0):.0%} of its variance)")
        ax.set_ylabel("predicted RPS/$ (offline curves)")
        shapes = ", ".join(sorted(set(oc.shapes.values())))
        ax.set_title(f"{op}: kept {', '.join(oc.kept)}\nshapes: {shapes}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- html --------------------------------------------------------------------------------------
def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, spec)
    return html.escape(str(v))


def _cfg(c: dict[str, Any]) -> str:
    return ", ".join(f"{html.escape(str(k))}={html.escape(str(v))}" for k, v in c.items())


def _rps(r: dict[str, Any]) -> str:
    """RPS with the runner's measured spread, when it reported one."""
    cv = r.get("stability_cv")
    return _fmt(r["rps"]) + (f" ±{cv * 100:.0f}%" if cv is not None and r["rps"] is not None else "")


def _rows(rows: Sequence[dict[str, Any]], extra: bool = False) -> str:
    out = []
    for r in rows:
        cells = [str(r["trial"]), _cfg(r["config"]), _fmt(r["value"]), _rps(r), _fmt(r["p99_ms"]),
                 _fmt(r["usd_per_hour"], ".4f"), _fmt(r["usd_per_million_requests"], ".4f")]
        if extra:
            note = r["reason"] if r["status"] != "ok" else "; ".join(r["violations"])
            cells.append(html.escape(note or ""))
        cls = ' class="bad"' if extra and (r["status"] != "ok" or r["violations"]) else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(out)


CSS = """body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f2f2f2}
.rec{background:#eef8ee;border:1px solid #9c9;padding:12px 16px;border-radius:6px}
.big{font-size:20px;font-weight:600}.bad td{color:#a33}.muted{color:#777;font-size:12px}img{max-width:100%}"""


def render_html(s: dict[str, Any], images: dict[str, str]) -> str:
    head = "<tr><th>trial</th><th>configuration</th><th>RPS/$</th><th>RPS</th><th>p99 ms</th><th>$/hour</th>" \
           "<th>$ per 1M requests</th>"
    rec = s["recommended"]
    cons = ", ".join(f"{k}={v}" for k, v in s["constraints"].items() if v is not None) or "none"
    if rec:
        rec_html = (f'<div class="rec"><div class="big">{_cfg(rec["config"])}</div>'
                    f'<p>{_rps(rec)} RPS, p99 {_fmt(rec["p99_ms"])} ms, ${_fmt(rec["usd_per_hour"], ".4f")}/hour, '
                    f'${_fmt(rec["usd_per_million_requests"], ".4f")} per million requests; objective '
                    f'{_fmt(rec["value"])} RPS/$ (trial {rec["trial"]})</p></div>')
    else:
        rec_html = f'<div class="rec bad">No recommendation: {html.escape(str(s["stop_reason"]))}</div>'
    ups = ("<p>Close alternatives, should the recommendation be unavailable or another trade-off be wanted "
           "(e.g. lower latency for a little more cost):</p><table>" + head + "</tr>" +
           _rows(s["runners_up"]) + "</table>") if s["runners_up"] else "<p>No other trial met the constraints.</p>"
    imgs = "".join(f'<h2>{html.escape(title)}</h2><img src="{html.escape(src)}" alt="{html.escape(title)}">'
                   for title, src in images.items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Falcon report {html.escape(s['search_id'])}</title>
<style>{CSS}</style></head><body>
<h1>Serving configuration for {html.escape(s['model'])}</h1>
<p class="muted">search {html.escape(s['search_id'])} &middot; {html.escape(str(s['status']))} ({html.escape(str(s['stop_reason']))})
&middot; strategy {html.escape(s['strategy'])} &middot; {s['trials']} trials, ${s['spent_usd']:.4f} spent
&middot; KOPs: {html.escape(', '.join(s['kops']) or 'none')} &middot; constraints: {html.escape(cons)}</p>
<h2>Recommended configuration</h2>{rec_html}
<h2>Runners-up</h2>{ups}
{imgs}
<h2>Trial history</h2><table>{head}<th>note</th></tr>{_rows(s['history'], extra=True)}</table>
<p class="muted">RPS/$ is the objective (requests served per dollar). $ per million requests assumes the
configuration runs at the measured throughput. Rows in red failed or missed a constraint and are never recommended.</p>
</body></html>"""


def write_report(state: SearchState, out_dir: Path, knowledge: Knowledge | None = None) -> dict[str, Any]:
    """Write report.html, the PNGs beside it and summary.json; returns the summary with paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s = summary(state)
    images: dict[str, str] = {}
    plot_progress(state, out_dir / "progress.png")
    images["Best RPS/$ so far vs trial"] = "progress.png"
    if state.trials:
        kx, ky = plot_path(state, out_dir / "path.png")
        images[f"Search path ({kx} x {ky})"] = "path.png"
    plot_kops(state, knowledge, out_dir / "kops.png")
    images["KOPs and their resource curves"] = "kops.png"
    (out_dir / "report.html").write_text(render_html(s, images))
    s["files"] = {"html": str(out_dir / "report.html"), **{k: str(out_dir / v) for k, v in images.items()}}
    (out_dir / "summary.json").write_text(json.dumps(s, indent=2, default=str))
    return s
