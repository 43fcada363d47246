"""A served trial's throughput-vs-p99 curve with the SLO line (what the report and the dashboard
show per served trial; the data is the trial's ``details.curve`` and ``details.slo_p99_ms``,
docs/served-trials.md). Kept apart from the report so either can draw it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


def curve_points(details: Mapping[str, Any]) -> list[tuple[float, float, int, bool]]:
    """(p99 ms, rps, concurrency, meets SLO) per measured load level, by concurrency; empty for a
    trial that is not served (closed-loop trials have no curve)."""
    if details.get("mode") != "served":
        return []
    return [(float(p["p99_ms"]), float(p["rps"]), int(p["concurrency"]), bool(p.get("meets_slo")))
            for p in sorted(details.get("curve") or (), key=lambda p: p["concurrency"])]


def plot_served_curve(details: Mapping[str, Any], path: Path, title: str = "") -> bool:
    """Draw the curve to ``path`` (PNG); False (nothing written) when the trial has no curve."""
    pts = curve_points(details)
    if not pts:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    slo = float(details["slo_p99_ms"])
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color="#4a6fa5", lw=1.5, zorder=1)
    for p99, rps, c, ok in pts:
        ax.scatter([p99], [rps], s=28, color="#4a6fa5" if ok else "#c0504d", zorder=2)
        ax.annotate(str(c), (p99, rps), textcoords="offset points", xytext=(4, -11), fontsize=7, color="#555")
    ax.set_ylim(0, max(p[1] for p in pts) * 1.2)
    ax.axvline(slo, color="#c0504d", ls="--", lw=1.2)
    ax.text(slo, ax.get_ylim()[1], f" SLO p99 {slo:g} ms", color="#c0504d", va="top", fontsize=8)
    peak = details.get("peak") or {}
    if peak.get("rps"):
        ax.scatter([peak["p99_ms"]], [peak["rps"]], s=110, facecolors="none", edgecolors="#2e7d32", lw=1.8, zorder=3)
        ax.annotate(f"peak {peak['rps']:.0f}/s at {peak['concurrency']} in flight", (peak["p99_ms"], peak["rps"]),
                    textcoords="offset points", xytext=(-40, 10), fontsize=8, color="#2e7d32")
    ax.set_xlabel("p99 latency (ms, client side)")
    ax.set_ylabel("throughput (samples/s)")
    ax.set_xlim(left=0, right=max(slo * 1.15, max(p[0] for p in pts) * 1.05))
    ax.set_title(title or "served trial: throughput vs p99 (labels: requests in flight)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
