"""How search cost grows with the space: knowledge build time, decision time and peak memory.

    python -m bench.scale --sizes 1e3,1e4,1e5,1e6 [--strategies falcon,gp-ei,random] [--trials 30] [--json OUT]

Per size, a space made of the paper's knobs (gputype over the hardware catalogue's cloud GPUs)
plus knobs no offline table has (precision, replicas, a dynamic-batching delay, threads) until it
reaches the size; the offline knowledge is the falcon-data folder (its tables cover the paper's
knobs only). Each (size, strategy) runs in a fresh process: the knowledge is built, then a
30-trial search runs through the searcher's own loop (``start_search``/``record_trial``) against
a synthetic objective (roofline-like in batch and GPU, with effects for the other knobs and
configurations that do not start); every decision is timed. Prints one row per (size,
strategy): build s, decision p50/p99 s, peak RSS MiB, best value found."""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "falcon-data"
# knob value lists, in order; a size takes knobs from the front until it is reached
BASE = {"batchsize": [4, 8, 16, 32, 64, 128], "cpus": [1, 2, 3, 4, 5], "gpumem": [0.8, 1.2, 1.6, 2.4],
        "gpupower": [50, 75, 100], "gputype": ["M60", "K80", "T4", "V100"]}
EXTRA = {"precision": ["fp32", "fp16", "int8"], "replicas": [1, 2, 4],
         "queue_ms": [0, 1, 2, 5, 10, 20, 50, 100], "threads": [1, 2, 3, 4, 6, 8, 12, 16, 24]}


def make_space(size: float) -> Any:
    from services.domain.space import Space
    knobs = dict(BASE)
    if size < 1440:                      # smaller than the paper's space: fewer power caps
        knobs["gpupower"] = [50, 100]
    n = math.prod(len(v) for v in knobs.values())
    for name, values in EXTRA.items():
        if n * 1.5 > size:
            break
        knobs[name] = values
        n *= len(values)
    return Space.from_dict({"knobs": [{"name": k, "values": v, **({"kind": "categorical"} if isinstance(v[0], str)
                                                                    else {})} for k, v in knobs.items()]})


def objective(config: Mapping[str, Any]) -> float | None:
    """A synthetic RPS/$ (None: the configuration does not start): throughput grows with the
    batch until the GPU saturates, GPUs differ, fp16/int8 help where the device has the units,
    replicas help with diminishing returns but need cores and GPU memory."""
    gpu = {"M60": 0.5, "K80": 0.55, "T4": 1.0, "V100": 0.95}[config["gputype"]]
    b = math.log2(config["batchsize"]) / 7
    v = gpu * (0.3 + 0.7 * b / (0.3 + b)) * (1.0 - 0.03 * (config["cpus"] - 2) ** 2) * (1.1 - 0.1 * config["gpumem"])
    v *= 1.0 - 0.1 * abs(config["gpupower"] - 75) / 25
    prec = config.get("precision", "fp32")
    if prec != "fp32":
        if config["gputype"] in ("M60", "K80"):
            return None if prec == "int8" else v * 0.9
        v *= {"fp16": 1.5, "int8": 1.9}[prec]
    r = config.get("replicas", 1)
    if r > config["cpus"] or r * config["gpumem"] > 8:
        return None
    v *= r / (1 + 0.6 * (r - 1)) / (1 + 0.2 * (r - 1))
    v *= 1 + 0.05 * math.log1p(config.get("queue_ms", 0)) * (1 - b)
    v *= 1 - 0.01 * abs(math.log2(config.get("threads", 4)) - 2)
    return v


def run_case(size: float, strategy: str, trials: int, seed: int) -> dict[str, Any]:
    """One (size, strategy) in this process; returns its figures."""
    from schemas.events import TrialRequested, TrialResult
    from services.domain.figures import NORMALISED
    from services.domain.spec import SearchSpec, StopRules
    from services.knowledge import Knowledge, OfflineDataset
    from services.searcher.search import record_trial, start_search

    space = make_space(size)
    t0 = time.perf_counter()
    knowledge = Knowledge.build(OfflineDataset.from_folder(DATA), space)
    build_s = time.perf_counter() - t0
    spec = SearchSpec(model={"name": "synthetic", "format": "falcon-profile", "uri": None},
                      backend={"kind": "replay", "table": "synthetic", "trial_seconds": 900.0}, space=space,
                      stop=StopRules(trials), strategy=strategy, seed=seed)
    ops = [{"op": "conv2d", "time_share": 0.8, "memory_share": None, "flops": None},
           {"op": "relu", "time_share": 0.2, "memory_share": None, "flops": None}]

    def run(r: TrialRequested) -> TrialResult:
        v = objective(r.config)
        return r.result("ok", rps_per_usd=v, rps_per_usd_unit=NORMALISED, cost_usd=0.1, duration_s=900.0) \
            if v is not None else r.failed("does not start")
    times = []
    t = time.perf_counter()
    d = start_search("scale", spec, ["conv2d", "relu"], ops, knowledge)
    times.append(time.perf_counter() - t)
    while d.request is not None:
        result = run(d.request)
        t = time.perf_counter()
        d = record_trial(d.state, result, knowledge)
        times.append(time.perf_counter() - t)
    best = max((x.rps_per_usd for x in d.state.trials if x.ok and x.rps_per_usd is not None), default=0.0)
    return {"size": space.size, "strategy": strategy, "build_s": build_s, "decision_p50_s": float(np.median(times)),
            "decision_p99_s": float(np.percentile(times, 99)), "decisions": len(times),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "best": best, "failed_trials": sum(1 for x in d.state.trials if not x.ok), "stop": d.state.stop_reason}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1e3,1e4,1e5,1e6")
    p.add_argument("--strategies", default="falcon,gp-ei,morphling,random")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path)
    p.add_argument("--case", help=argparse.SUPPRESS)          # size,strategy: run one case here
    a = p.parse_args(argv)
    if a.case:
        size, strategy = a.case.split(",")
        print(json.dumps(run_case(float(size), strategy, a.trials, a.seed)))
        return 0
    rows = []
    print(f"{'size':>9} {'strategy':10} {'build s':>8} {'p50 s':>7} {'p99 s':>7} {'peak MiB':>9} {'best':>6} {'failed':>6}")
    for size in (float(s) for s in a.sizes.split(",")):
        for strategy in (s.strip() for s in a.strategies.split(",")):
            out = subprocess.run([sys.executable, "-m", "bench.scale", "--case", f"{size},{strategy}", "--trials",
                                  str(a.trials), "--seed", str(a.seed)], capture_output=True, text=True, cwd=REPO)
            if out.returncode != 0:
                print(f"{size:9.0e} {strategy:10} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{r['size']:9d} {strategy:10} {r['build_s']:8.1f} {r['decision_p50_s']:7.2f} "
                  f"{r['decision_p99_s']:7.2f} {r['peak_rss_mib']:9.0f} {r['best']:6.3f} {r['failed_trials']:6d}",
                  flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"trials": a.trials, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
