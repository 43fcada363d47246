"""Served against in-process, per zoo model: the peak RPS a Triton deployment serves within a p99
SLO (perf_analyzer raising the load) divided by the RPS of the in-process closed loop at the same
configuration; and whether the in-process optimum is still the optimum when served, and what
choosing it would be worth there.

    flock /work/brief/heavy.lock nice python -m bench.served_vs_inprocess \
        --models resnet8,mobilenet-v2-tiny,bert-tiny,gru --batches 1,4,16 --out bench/results/served-vs-inprocess

Both modes measure the same model file through the same live backend, one configuration after the
other (closed loop, then served), on the same cores (served: the runner's serving cores; the load
generator on its own core). Figures are comparable within one run only (a shared machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from schemas.events import TrialRequested
from services.domain.pricing import DEFAULT_PRICES
from services.trial_runner.backends import LiveBackend


def run(backend: LiveBackend, name: str, onnx: Path, cfg: dict[str, Any], mode: str, slo_ms: float,
        measure_s: float) -> Any:
    return backend.run(TrialRequested(f"{name}/{mode}", 0, cfg, {"name": name, "format": "onnx", "uri": str(onnx)},
                                      {"kind": "live", "mode": mode, "measure_s": measure_s, "slo_p99_ms": slo_ms},
                                      DEFAULT_PRICES.hourly(cfg), "live-cpu"))


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios, and the in-process optimum judged served (pure: from the measured rows)."""
    ok = [r for r in rows if r["served_rps"] and r["inprocess_rps"]]
    for r in ok:
        r["ratio"] = r["served_rps"] / r["inprocess_rps"]
    if not ok:
        return {"rows": rows}
    inproc_best = max(ok, key=lambda r: r["inprocess_rps"])
    served_best = max(ok, key=lambda r: r["served_rps"])
    return {"rows": rows, "inprocess_optimum": inproc_best["config"], "served_optimum": served_best["config"],
            "same_optimum": inproc_best["config"] == served_best["config"],
            "inprocess_optimum_served_share": inproc_best["served_rps"] / served_best["served_rps"],
            "ratio_min": min(r["ratio"] for r in ok), "ratio_max": max(r["ratio"] for r in ok)}


def render_txt(report: dict[str, Any]) -> str:
    """The report as text: the run's settings, each configuration's figures, each model's verdict."""
    out = [f"served vs in-process, {report['when']}, p99 SLO {report['slo_p99_ms']:g} ms, serving core(s) "
           f"{report['serving_cores']}, client core(s) {report['client_cores']}, dynamic batcher delay "
           f"{report.get('queue_delay_us', 2000)} us, 1-sample requests; in-process: closed loop, batch = batchsize"]
    for name, res in report["models"].items():
        for r in res["rows"]:
            served = (f"{r['served_rps']:8.1f} rps at {r['served_concurrency']} in flight, p99 {r['served_p99_ms']:5.1f} ms"
                      if r["served_rps"] else f"failed: {r['served_reason']}")
            ratio = f"  ratio {r['ratio']:.2f}" if r.get("ratio") else ""
            out.append(f"  {name:18s} batch {r['config']['batchsize']:3d}: in-process {r['inprocess_rps'] or 0:8.1f} rps"
                       f" | served {served}{ratio}")
        if "inprocess_optimum" in res:
            out.append(f"{name}: served/in-process {res['ratio_min']:.2f}-{res['ratio_max']:.2f}; in-process optimum "
                       f"batch {res['inprocess_optimum']['batchsize']}, served optimum batch "
                       f"{res['served_optimum']['batchsize']} ({'same' if res['same_optimum'] else 'different'}); "
                       f"the in-process optimum served gives {res['inprocess_optimum_served_share']:.0%} of the "
                       f"served optimum")
        else:
            out.append(f"{name}: no configuration measured in both modes")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet8,mobilenet-v2-tiny,bert-tiny,gru")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--graph-opt", default="all")
    p.add_argument("--queue-delay-us", type=int, default=2000)
    p.add_argument("--slo-p99-ms", type=float, default=100.0)
    p.add_argument("--measure-s", type=float, default=2.0, help="closed-loop measurement per configuration")
    p.add_argument("--out", type=Path, default=Path("bench/results/served-vs-inprocess"))
    a = p.parse_args(argv)
    from tools.zoo import export_onnx
    work = Path(".falcon/bench-served")
    backend = LiveBackend(work / "compiled", gpus=[])
    batches = [int(b) for b in a.batches.split(",")]
    report: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "slo_p99_ms": a.slo_p99_ms,
                              "queue_delay_us": a.queue_delay_us,
                              "serving_cores": backend.serving_cores[:1], "client_cores": backend.client_cores,
                              "models": {}}
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        onnx = export_onnx(name, work / "onnx" / f"{name}.onnx")
        rows = []
        for b in batches:
            cfg = {"cpus": 1, "batchsize": b, "graph_opt": a.graph_opt}
            closed = run(backend, name, onnx, cfg, "closed-loop", a.slo_p99_ms, a.measure_s)
            served = run(backend, name, onnx, {**cfg, "queue_delay_us": a.queue_delay_us}, "served", a.slo_p99_ms,
                         a.measure_s)
            row = {"config": cfg, "inprocess_rps": closed.rps if closed.ok else None,
                   "inprocess_p99_ms": closed.p99_ms, "served_rps": served.rps if served.ok else None,
                   "served_p99_ms": served.p99_ms, "served_p50_ms": served.p50_ms,
                   "served_concurrency": served.details.get("peak", {}).get("concurrency") if served.ok else None,
                   "served_wall_s": served.details.get("wall_s") if served.ok else None,
                   "served_reason": served.reason, "inprocess_reason": closed.reason}
            rows.append(row)
            print(f"{name} batch {b:3d}: in-process {row['inprocess_rps'] or 0:8.1f} rps (batch p99 "
                  f"{closed.p99_ms or 0:6.1f} ms) | served {row['served_rps'] or 0:8.1f} rps at concurrency "
                  f"{row['served_concurrency']} (p99 {served.p99_ms or 0:6.1f} ms)"
                  + (f" failed: {served.reason}" if not served.ok else ""), flush=True)
        res = compare(rows)
        report["models"][name] = res
        if "inprocess_optimum" in res:
            line = (f"{name}: served/in-process {res['ratio_min']:.2f}-{res['ratio_max']:.2f}; in-process optimum "
                    f"batch {res['inprocess_optimum']['batchsize']}, served optimum batch "
                    f"{res['served_optimum']['batchsize']} ({'same' if res['same_optimum'] else 'different'}); "
                    f"the in-process optimum served gives {res['inprocess_optimum_served_share']:.0%} of the served "
                    f"optimum")
        else:
            line = f"{name}: no configuration measured in both modes"
        print(line, flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    a.out.with_suffix(".txt").write_text(render_txt(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
