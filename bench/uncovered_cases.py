"""Benchmark cases with knobs no offline knowledge covers, and the searches run on them:

    python -m bench.uncovered_cases --offline ../shared/falcon-data --targets ../shared/falcon-data \
        --sizes 1e4,1e5,1e6 --seeds 3 --trials 15 --strategies falcon,gp-ei,random --json OUT

Each public target table (``models/targets/reg-<model>.csv``: the paper's 1,440 configurations)
is extended with knobs that neither the offline tables and curves nor the operator cost model
know (``services.knowledge.cost_model.Knobs`` lists the ones it models), so every strategy has to
learn them online. A case is a function, not a written table: the value of a configuration is
the base table's RPS/$ at its covered knobs times the uncovered knobs' factors, computed on
demand (a 10^6 table is never written; ``--write DIR`` writes the 10^4 and 10^5 ones as CSV for
``bench.search``). Values are normalised so each case's optimum is 1; configurations that cannot
start are failed trials.

The effects (magnitudes drawn per target from ``--case-seed``, within the ranges below; the
ranges are what such knobs do on real servers, not fitted to any search):

- ``opt_level`` (graph optimisation level 0..3), *monotone*: throughput x (1 + g s(level)),
  s = 0, .55, .85, 1 (diminishing returns: fusion first, layout passes after); g in [.06, .25].
- ``queue_delay_us`` (dynamic batcher's max queue delay), *interacts with the batch*: waiting
  lets the server fill large batches, so throughput x (1 + a b (1 - exp(-q / tau))) with b the
  batch size's rank in [0, 1], a in [.2, .45], tau in [1, 5] ms; and a long wait idles a
  server that batches little: x (1 - c (q / q_max) (1 - b)), c in [.1, .3].
- ``threads`` (intra-op threads per instance), *interacts with the cores*: the host share h
  (in [.2, .5]) of a request's time runs on min(threads, cpus) cores; threads above the cores
  oversubscribe them: x ((1 - h) + h sqrt(min(t, cpus) / cpus) (min(1, cpus / t))^.6).
- ``instances`` (model instances sharing the GPU), *coupled to the price*: throughput x
  n / (1 + alpha (n - 1)) with alpha = .3 + .6 b (a GPU busy with large batches gains little
  from a second instance), each instance bills extra host cores and memory: price x (1 + kappa
  (n - 1)), kappa in [.1, .3]; n x gpumem beyond the device's memory cannot start.

Sizes (knobs added to the 1,440 covered configurations): 1e4: opt_level {0, 2}, queue_delay_us
{0, 2000}, instances {1, 2} (11,520); 1e5: opt_level {0..3}, queue_delay_us {0, 500, 2000, 5000,
10000, 20000}, instances {1..4} (138,240); 1e6: 1e5's with queue_delay_us {0, 250, 500, 1000,
2000, 5000, 10000, 20000} and threads {1, 2, 4, 8, 16} (921,600).

Each (case, strategy, seed) runs through the searcher's own loop (``start_search`` /
``record_trial``, as ``bench.scale``); the score after each trial is the best value measured so
far as a fraction of the case's optimum. Prints a table of means after 1/3/6/8/15 trials per size
and strategy, and per target; every decision is timed (p50/p99) and the process's peak RSS is
reported."""

from __future__ import annotations

import argparse
import csv
import json
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from services.domain.falcon_data import VALUE_COLUMN, read_csv, read_operator_profile
from services.domain.figures import NORMALISED
from services.domain.pricing import DEFAULT_PRICES
from services.domain.space import Space

DEVICE_MEMORY_GB = {"M60": 8, "K80": 12, "T4": 16, "V100": 16}
OPT_GAIN = (0.0, 0.55, 0.85, 1.0)           # share of the graph optimiser's full gain per level
SIZES: dict[str, dict[str, list[Any]]] = {
    "1e4": {"opt_level": [0, 2], "queue_delay_us": [0, 2000], "instances": [1, 2]},
    "1e5": {"opt_level": [0, 1, 2, 3], "queue_delay_us": [0, 500, 2000, 5000, 10000, 20000],
            "instances": [1, 2, 3, 4]},
    "1e6": {"opt_level": [0, 1, 2, 3], "queue_delay_us": [0, 250, 500, 1000, 2000, 5000, 10000, 20000],
            "threads": [1, 2, 4, 8, 16], "instances": [1, 2, 3, 4]},
}
CHECKPOINTS = (1, 3, 6, 8, 15)


@dataclass(frozen=True)
class Effects:
    """One case's effect magnitudes (drawn from the case seed within the documented ranges)."""
    opt_gain: float
    queue_gain: float
    queue_tau_us: float
    queue_idle: float
    host_share: float
    instance_bill: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Effects":
        return cls(opt_gain=rng.uniform(0.06, 0.25), queue_gain=rng.uniform(0.2, 0.45),
                   queue_tau_us=rng.uniform(1000, 5000), queue_idle=rng.uniform(0.1, 0.3),
                   host_share=rng.uniform(0.2, 0.5), instance_bill=rng.uniform(0.1, 0.3))


class Case:
    """A target table extended with uncovered knobs (module doc): ``value(config)`` is the
    configuration's RPS/$ relative to the case's optimum, None when it cannot start."""

    def __init__(self, table: Path, size: str, case_seed: int = 0) -> None:
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r} (known: {sorted(SIZES)})")
        columns, rows = read_csv(table)
        self.model = table.stem.removeprefix("reg-")
        self.size = size
        self.covered = [c for c in columns if c != VALUE_COLUMN]
        self.extra = SIZES[size]
        seed = [case_seed, *(ord(ch) for ch in self.model)]
        self.effects = Effects.draw(np.random.default_rng(seed))
        values = {c: sorted({r[columns.index(c)] for r in rows}, key=lambda v: (isinstance(v, str), v))
                  for c in self.covered}
        knobs = [{"name": c, "values": v, **({"kind": "categorical"} if isinstance(v[0], str) else {})}
                 for c, v in values.items()]
        knobs += [{"name": n, "values": v} for n, v in self.extra.items()]
        self.space = Space.from_dict({"knobs": knobs})
        self.base = {tuple(r[columns.index(c)] for c in self.covered): float(r[columns.index(VALUE_COLUMN)])
                     for r in rows}
        self.batches = values["batchsize"]
        self.optimum = 1.0
        self.optimum = float(np.nanmax(self.all_values()))

    def factor(self, config: Mapping[str, Any]) -> float | None:
        """RPS/$ of the configuration relative to the base row's at its covered knobs."""
        e = self.effects
        b = self.batches.index(config["batchsize"]) / max(len(self.batches) - 1, 1)
        speed, price = 1.0, 1.0
        if "opt_level" in config:
            speed *= 1.0 + e.opt_gain * OPT_GAIN[int(config["opt_level"])]
        if "queue_delay_us" in config:
            q = float(config["queue_delay_us"])
            q_max = float(max(self.extra["queue_delay_us"]))
            speed *= 1.0 + e.queue_gain * b * (1.0 - math.exp(-q / e.queue_tau_us))
            speed *= 1.0 - e.queue_idle * (q / q_max) * (1.0 - b)
        if "threads" in config:
            t, cpus = float(config["threads"]), float(config["cpus"])
            used = math.sqrt(min(t, cpus) / cpus) * min(1.0, cpus / t) ** 0.6
            speed *= (1.0 - e.host_share) + e.host_share * used
        if "instances" in config:
            n = int(config["instances"])
            if n * float(config["gpumem"]) > DEVICE_MEMORY_GB[str(config["gputype"])]:
                return None
            speed *= n / (1.0 + (0.3 + 0.6 * b) * (n - 1))
            price *= 1.0 + e.instance_bill * (n - 1)
        return speed / price

    def value(self, config: Mapping[str, Any]) -> float | None:
        base = self.base.get(tuple(config[c] for c in self.covered))
        f = self.factor(config)
        return None if base is None or f is None else base * f / self.optimum

    def all_values(self) -> np.ndarray:
        """Every configuration's value (NaN: cannot start), space order; computed per covered
        configuration over the product of the uncovered values (a 10^6 case in seconds)."""
        extra = list(self.extra)
        combos = [dict(zip(extra, vs)) for vs in np.array(np.meshgrid(*self.extra.values(), indexing="ij"),
                                                          dtype=object).reshape(len(extra), -1).T]
        out = np.full(self.space.size, np.nan)
        covered_space = self.space.subspace(tuple(self.covered))
        rows_extra = np.array([[self.space.knob(n).index_of(c[n]) for n in extra] for c in combos])
        for cfg in covered_space.configs():
            base = self.base.get(tuple(cfg[c] for c in self.covered))
            if base is None:
                continue
            cov_rows = np.array([self.space.knob(c).index_of(cfg[c]) for c in self.covered])
            rows = np.hstack([np.tile(cov_rows, (len(combos), 1)), rows_extra])
            f = np.array([np.nan if (x := self.factor({**cfg, **c})) is None else x for c in combos])
            out[self.space.indices_of(rows)] = base * f / self.optimum
        return out

    def write(self, path: Path) -> int:
        """The case as a target table (bench.search's layout); returns the rows written."""
        vals = self.all_values()
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*self.space.names, VALUE_COLUMN])
            for i in np.flatnonzero(~np.isnan(vals)):
                c = self.space.config_at(int(i))
                w.writerow([*(c[k] for k in self.space.names), round(float(vals[i]), 6)])
                n += 1
        return n


def run_search(case: Case, strategy: str, seed: int, trials: int, knowledge: Any,
               operators: list[dict[str, Any]]) -> dict[str, Any]:
    """One search on the case through the searcher's loop: the best-so-far curve and decision times."""
    from schemas.events import TrialRequested, TrialResult
    from services.domain.spec import DEFAULT_KOP_THRESHOLD, SearchSpec, StopRules
    from services.searcher import search as _s
    from tools.harness import profiled

    kops, ops = profiled(operators, DEFAULT_KOP_THRESHOLD)
    spec = SearchSpec(model={"name": case.model, "format": "falcon-profile", "uri": None},
                      backend={"kind": "replay", "table": f"uncovered-{case.size}", "trial_seconds": 900.0},
                      space=case.space, stop=StopRules(trials), strategy=strategy, seed=seed)

    def run(r: TrialRequested) -> TrialResult:
        v = case.value(r.config)
        price = DEFAULT_PRICES.hourly(r.config)
        if v is None:
            return r.failed("does not start")
        return r.result("ok", rps_per_usd=v, rps_per_usd_unit=NORMALISED, cost_usd=price / 4, duration_s=900.0)
    times = []
    t = time.perf_counter()
    d = _s.start_search(f"uncovered-{case.model}-{case.size}-{seed}", spec, kops, ops, knowledge)
    times.append(time.perf_counter() - t)
    while d.request is not None:
        result = run(d.request)
        t = time.perf_counter()
        d = _s.record_trial(d.state, result, knowledge)
        times.append(time.perf_counter() - t)
    curve, best = [], 0.0
    for x in d.state.trials:
        if x.ok and x.rps_per_usd is not None:
            best = max(best, float(x.rps_per_usd))
        curve.append(best)
    curve += [best] * (trials - len(curve))
    return {"curve": curve, "times": times, "notices": list(d.state.learnt)}


def summarise(results: dict[str, dict[str, dict[str, list[list[float]]]]], trials: int) -> str:
    cps = [c for c in CHECKPOINTS if c <= trials]
    head = f"{'size':5} {'strategy':10}" + "".join(f"{'@' + str(c):>7}" for c in cps)
    lines = [head, "-" * len(head)]
    for size, per in results.items():
        for strat, models in per.items():
            runs = np.array([r for seeds in models.values() for r in seeds])
            lines.append(f"{size:5} {strat:10}" + "".join(f"{runs[:, c - 1].mean():7.3f}" for c in cps))
    lines.append("per target (@1 @3 @6 @15):")
    for size, per in results.items():
        for strat, models in per.items():
            for model, seeds in models.items():
                r = np.array(seeds)
                lines.append(f"  {size:5} {strat:10} {model:14}" + " ".join(
                    f"{r[:, c - 1].mean():.3f}" for c in (1, 3, 6, 15) if c <= trials))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--offline", type=Path, required=True)
    p.add_argument("--targets", type=Path, required=True)
    p.add_argument("--sizes", default="1e4,1e5,1e6")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=15)
    p.add_argument("--strategies", default="falcon,gp-ei,random")
    p.add_argument("--case-seed", type=int, default=0, help="draws the effect magnitudes")
    p.add_argument("--models", help="comma-separated subset of the targets")
    p.add_argument("--json", type=Path)
    p.add_argument("--write", type=Path, help="write the 1e4/1e5 cases as target tables here and exit")
    a = p.parse_args(argv)
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        p.error(f"unknown sizes {bad} (known: {sorted(SIZES)})")
    tables = sorted((a.targets / "models" / "targets").glob("reg-*.csv"))
    if a.models:
        keep = {m.strip() for m in a.models.split(",")}
        tables = [t for t in tables if t.stem.removeprefix("reg-") in keep]
    if not tables:
        p.error(f"no models/targets/reg-*.csv under {a.targets}")
    if a.write:
        for size in sizes:
            if size == "1e6":
                print("1e6: not written (a 10^6-row CSV; the benchmark computes it on demand)")
                continue
            for t in tables:
                n = Case(t, size, a.case_seed).write(a.write / size / "models" / "targets" / t.name)
                print(f"{size} {t.stem}: {n} rows")
        return 0
    from services.knowledge import Knowledge, OfflineDataset
    from services.searcher.strategies import STRATEGIES
    strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        p.error(f"unknown strategies {unknown}; known: {sorted(STRATEGIES)}")
    dataset = OfflineDataset.from_folder(a.offline)
    results: dict[str, dict[str, dict[str, list[list[float]]]]] = {}
    times: dict[str, dict[str, list[float]]] = {}
    notices: dict[str, list[str]] = {}
    t0 = time.monotonic()
    for size in sizes:
        results[size] = {s: {} for s in strategies}
        times[size] = {s: [] for s in strategies}
        knowledge = None
        for t in tables:
            case = Case(t, size, a.case_seed)
            if knowledge is None:           # every target of a size has the same space
                knowledge = Knowledge.build(dataset, case.space)
            prof = a.targets / "models" / "operators" / case.model / "operators.csv"
            ops = read_operator_profile(prof) if prof.exists() else []
            for strat in strategies:
                runs = [run_search(case, strat, seed, a.trials, knowledge, ops) for seed in range(a.seeds)]
                results[size][strat][case.model] = [r["curve"] for r in runs]
                times[size][strat] += [x for r in runs for x in r["times"]]
                if strat == "falcon" and runs[0]["notices"]:
                    notices[f"{size}/{case.model}"] = runs[0]["notices"]
        print(f"{size}: {Case(tables[0], size, a.case_seed).space.size} configurations, "
              f"{time.monotonic() - t0:.0f}s so far", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(tables)} targets x {a.seeds} seeds x {a.trials} trials; best so far / optimum, mean:")
    print(summarise(results, a.trials))
    print("decision time (s) p50 / p99:")
    for size, per in times.items():
        for strat, ts in per.items():
            print(f"  {size:5} {strat:10} {np.median(ts):.3f} / {np.percentile(ts, 99):.3f}")
    print(f"peak RSS of the process: {peak:.0f} MiB")
    for where, ns in notices.items():
        print(f"{where} (falcon, seed 0): " + " | ".join(ns))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"trials": a.trials, "seeds": a.seeds, "case_seed": a.case_seed,
                                      "results": results, "peak_rss_mib": peak, "notices": notices,
                                      "decision_s": {s: {k: {"p50": float(np.median(v)),
                                                             "p99": float(np.percentile(v, 99))}
                                                         for k, v in per.items()} for s, per in times.items()}}))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
