"""Measure a live space exhaustively for zoo models: the ground truth a live search is judged on.

    python -m bench.live_table --models resnet8,bert-tiny,gru --space deploy/config/live-cpu-space.yaml \
        --out bench/live [--measure-s 2] [--repeats 1]

Every configuration is run by the live trial backend (the same code a live trial runs) and
written in the falcon-data layout: OUT/models/targets/reg-<model>.csv (knob columns,
norm.(rps/budget) = RPS/$ over the table's best, then raw rps, p50_ms, p99_ms, usd_per_hour, cv)
and OUT/models/operators/<model>/operators.csv (the TVM operator profile), so
``python -m bench.search --targets OUT`` runs on it. Prints per model the optimum, compile
times and the stability (CV of RPS) of the measurements.

``--top-repeats K,R`` then re-measures the K best configurations of the pass R more times,
interleaved (round robin, so a slow spell of the shared machine hits them alike), and writes the
truth table to TRUTH/models/targets/reg-<model>.csv (default TRUTH: OUT-truth): the mean of the
R+1 measurements for those K, the pass's single measurement for the rest. A search replayed on
OUT's tables (single measurements, as a live trial sees them) and scored with ``--truth TRUTH``
is judged on means, not on the luckiest measurement of one pass. Every measurement is kept in
reg-<model>.meta.json (``top``).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

from services.domain.pricing import DEFAULT_PRICES
from services.domain.serving import LIVE_MODES
from services.domain.space import Space
from schemas.events import TrialRequested
from services.trial_runner.backends import LiveBackend


def measure_once(name: str, onnx: Path, cfg: dict, trial_id: str, backend: LiveBackend, mode: str,
                 measure_s: float, slo_p99_ms: float):
    out = backend.run(TrialRequested(trial_id, 0, cfg, {"name": name, "format": "onnx", "uri": str(onnx)},
                                     {"kind": "live", "mode": mode, "measure_s": measure_s,
                                      "slo_p99_ms": slo_p99_ms}, DEFAULT_PRICES.hourly(cfg), "live-cpu"))
    if out.status != "ok":
        raise RuntimeError(f"{name} {dict(cfg)}: {out.reason}")
    return out


def measure_model(name: str, onnx: Path, space: Space, measure_s: float, repeats: int,
                  backend: LiveBackend, mode: str = "served", slo_p99_ms: float = 100.0) -> list[dict]:
    rows = []
    for i, cfg in enumerate(space.configs()):
        price = DEFAULT_PRICES.hourly(cfg)
        outs = [measure_once(name, onnx, cfg, f"{name}/{i}/{r}", backend, mode, measure_s, slo_p99_ms)
                for r in range(repeats)]
        rps = statistics.median(o.rps for o in outs)
        rows.append({**cfg, "rps": rps, "p50_ms": statistics.median(o.p50_ms for o in outs),
                     "p99_ms": statistics.median(o.p99_ms for o in outs), "usd_per_hour": price,
                     "cv": statistics.median(o.stability_cv or 0.0 for o in outs),
                     "compile_s": max(o.details.get("compile_s") or o.details.get("wall_s", {}).get("start", 0.0)
                                      for o in outs), "rps_per_usd": rps / price})
        print(f"  {name} {dict(cfg)}: {rps:9.1f} rps  p99 {rows[-1]['p99_ms']:7.2f} ms  cv {rows[-1]['cv']:.3f}",
              flush=True)
    return rows


def remeasure_top(name: str, onnx: Path, space: Space, rows: list[dict], k: int, r: int, backend: LiveBackend,
                  mode: str, measure_s: float, slo_p99_ms: float) -> tuple[list[dict], list[dict]]:
    """The truth rows (the K best of ``rows`` re-measured R more times, round robin, as their mean)
    and the record of every measurement of those K."""
    top = sorted(range(len(rows)), key=lambda i: -rows[i]["rps_per_usd"])[:k]
    seen = {i: [rows[i]["rps"]] for i in top}
    for rep in range(r):
        for i in top:
            cfg = {n: rows[i][n] for n in space.names}
            out = measure_once(name, onnx, cfg, f"{name}/top{i}/{rep}", backend, mode, measure_s, slo_p99_ms)
            seen[i].append(out.rps)
            print(f"  {name} again {cfg}: {out.rps:9.1f} rps", flush=True)
    truth = [dict(row) for row in rows]
    record = []
    for i in top:
        mean = statistics.fmean(seen[i])
        truth[i].update(rps=mean, rps_per_usd=mean / truth[i]["usd_per_hour"],
                        cv=statistics.pstdev(seen[i]) / mean if mean else 0.0)
        record.append({"config": {n: rows[i][n] for n in space.names}, "rps": [round(x, 3) for x in seen[i]],
                       "mean": round(mean, 3), "cv": round(truth[i]["cv"], 4)})
    return truth, record


def write_table(rows: list[dict], space: Space, path: Path) -> None:
    best = max(r["rps_per_usd"] for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*space.names, "norm.(rps/budget)", "rps", "p50_ms", "p99_ms", "usd_per_hour", "cv"])
        for r in rows:
            w.writerow([*(r[k] for k in space.names), f"{r['rps_per_usd'] / best:.6f}", f"{r['rps']:.3f}",
                        f"{r['p50_ms']:.4f}", f"{r['p99_ms']:.4f}", f"{r['usd_per_hour']:.6f}", f"{r['cv']:.4f}"])


def write_operators(name: str, path: Path) -> list[str]:
    from tools.profile import profile_report
    rep = profile_report(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["op_name", "running time percentage"])
        for o in rep["operators"]:
            w.writerow([o["op"], f"{100 * o['time_share']:.4f}"])
    return rep["kops"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet8,bert-tiny,gru")
    p.add_argument("--space", type=Path, default=Path("deploy/config/live-cpu-space.yaml"))
    p.add_argument("--out", type=Path, default=Path("bench/live"))
    p.add_argument("--measure-s", type=float, default=2.0, help="closed-loop mode: seconds per measurement")
    p.add_argument("--mode", choices=LIVE_MODES, default="closed-loop",
                   help="live trial mode (served: Triton + perf_analyzer, the peak RPS within --slo-p99-ms; "
                        "use --space deploy/config/live-served-space.yaml)")
    p.add_argument("--slo-p99-ms", type=float, default=100.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--top-repeats", default="", metavar="K,R",
                   help="re-measure the K best configurations R more times, interleaved, into a truth table")
    p.add_argument("--truth-out", type=Path, help="where the truth tables go (default: OUT-truth)")
    p.add_argument("--role", choices=("targets", "sources"), default="targets",
                   help="write models/targets (judged on) or models/sources (offline knowledge for the space)")
    a = p.parse_args(argv)
    top_k = top_r = 0
    if a.top_repeats:
        try:
            top_k, top_r = (int(x) for x in a.top_repeats.split(","))
        except ValueError:
            p.error(f"--top-repeats: K,R (two whole numbers), not {a.top_repeats!r}")
    truth_out = a.truth_out or a.out.with_name(a.out.name + "-truth")
    from tools.zoo import export_onnx
    space = Space.from_file(a.space)
    backend = LiveBackend(a.out / ".compiled")
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        t0 = time.monotonic()
        onnx = export_onnx(name, a.out / "onnx" / f"{name}.onnx")
        kops = write_operators(name, a.out / "models" / "operators" / name / "operators.csv") \
            if a.role == "targets" else []
        rows = measure_model(name, onnx, space, a.measure_s, a.repeats, backend, a.mode, a.slo_p99_ms)
        write_table(rows, space, a.out / "models" / a.role / f"reg-{name}.csv")
        record: list[dict] = []
        if top_k and top_r:
            truth, record = remeasure_top(name, onnx, space, rows, top_k, top_r, backend, a.mode, a.measure_s,
                                          a.slo_p99_ms)
            write_table(truth, space, truth_out / "models" / a.role / f"reg-{name}.csv")
        meta = {"model": name, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mode": a.mode,
                "space": str(a.space), "repeats": a.repeats, "slo_p99_ms": a.slo_p99_ms if a.mode == "served" else None,
                "cv_median": statistics.median(r["cv"] for r in rows), "cv_max": max(r["cv"] for r in rows),
                "seconds": round(time.monotonic() - t0, 1), "top": record}
        (a.out / "models" / a.role / f"reg-{name}.meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        best = max(rows, key=lambda r: r["rps_per_usd"])
        cvs = [r["cv"] for r in rows]
        print(f"{name}: KOPs {kops}; optimum {({k: best[k] for k in space.names})} "
              f"{best['rps']:.0f} rps at ${best['usd_per_hour']:.4f}/h; CV of RPS median {statistics.median(cvs):.3f} "
              f"max {max(cvs):.3f}; compile (ORT session) max {max(r['compile_s'] for r in rows):.2f} s; "
              f"{len(rows)} configurations in {time.monotonic() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
