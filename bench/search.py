"""Search benchmark: how close to each target table's optimum does a strategy get, trial by trial?

    python -m bench.search --offline DIR --targets DIR --trials T --seeds S --strategies a,b,... --json OUT

--offline: a folder in the falcon-data layout (kop-curves/, models/sources/): the only knowledge
a strategy may learn from before its first trial. --targets: a folder with
models/targets/reg-<model>.csv and models/operators/<model>/operators.csv; every reg-*.csv found
is benchmarked, touched only through the replay trial backend (one lookup per trial). Every
suggestion counts as a trial. OUT: {"trials", "seeds", "results": {strategy: {model: [[best
after trial 1..T] per seed]}}}. Also prints a table and writes a PNG (OUT with .png).

--targets may be repeated (e.g. several noise realisations of the same tables: a model met again is
named ``<model>@<folder>``). --truth DIR: score each trial by the value, in DIR's table of the same
model, of the configuration the search would recommend then (its best posterior mean when the
measurements are noisy, else the best measured so far) - with noisy targets this is what the user
actually gets, not the luckiest measurement. --noise SIGMA: replay the (clean) targets as a noisy
live system, a fresh log-normal error per trial (a re-measurement differs), scored against the
clean table. With --truth or --noise (and the default objective, no constraints) the JSON also
keeps the true value and the key of every trial's configuration (``tried_truth``,
``tried_configs``), and the truly best tried so far is printed: the ceiling of any recommendation
rule on those trials (``python -m bench.noise_ceiling OUT`` asks how accurate an estimate of each
tried configuration must be to come near it).

--parallel Q: Q trials in flight at once, the batch topped up as each result arrives (equal trial
durations, so trial k finishes in round ceil(k/Q) or later); the curves are best-so-far after
every trial in completion order. Also reported per strategy: the $ the search spent and the
rounds (wall time in units of one trial) until it reached .95 and .99 of the optimum.
--cost-aware: the acquisition weighs expected improvement per $ of the trial.

--objective usd-for-load --load RPS | p99 | energy-per-request (default rps-per-usd), optionally
with --max-usd-per-million X / --slo-p99-ms Y constraints: every search optimises that objective,
and each trial is scored by the objective of the configuration the search recommends then (among
trials meeting the constraints) as a fraction of the table's optimum under the same constraints
(1 = the optimum; for a cost, a latency or an energy: optimum / found). Needs tables with the
figure (e.g. bench/live: rps, p99, usd_per_hour columns).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from itertools import accumulate
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.noise_ceiling import recommended
from schemas.events import TrialResult
from services.domain.falcon_data import ModelTable, read_operator_profile
from services.domain.figures import trial_figures
from services.domain.objectives import OBJECTIVES, RPS_PER_USD, Objective, ObjectiveError
from services.domain.pricing import DEFAULT_PRICES
from services.domain.space import Space
from services.domain.spec import DEFAULT_KOP_THRESHOLD, Constraints, SearchSpec, StopRules
from services.knowledge import Knowledge, OfflineDataset
from services.searcher.search import with_predictions
from services.searcher.strategies import STRATEGIES
from services.trial_runner.backends import ReplayBackend
from tools.harness import profiled, simulate

CHECKPOINTS = (1, 3, 6, 8, 15, 16, 30)
TRIAL_SECONDS = 900.0


@dataclass
class Run:
    curve: list[float]          # best (recommended) value after each trial, completion order
    spent: list[float]          # $ spent after each trial
    rounds: list[int]           # round (in trial durations) in which each trial finished
    tried: list[float]          # true value of each trial's configuration (with a truth; else empty)
    tried_configs: list[str]    # ... and its key


def table_trial(row: dict) -> SimpleNamespace:
    """A table row as the objectives read a trial."""
    return SimpleNamespace(**trial_figures(row, ok=True))


def table_optimum(table: ModelTable, objective: Objective, constraints: Constraints) -> float | None:
    """The best objective value (higher is better) of any configuration of the table that meets
    the constraints, priced as the searches price it (the default catalogue); None when none does."""
    best = None
    for cfg in table.space.configs():
        row = table.lookup(cfg)
        if row is None:
            continue
        price = DEFAULT_PRICES.hourly(cfg)
        trial = table_trial(row)
        if constraints.violations(trial.rps, trial.p99_ms, price) or objective.violations(trial, price):
            continue
        v = objective.value(trial, price)
        if v is not None and (best is None or v > best):
            best = v
    return best


def fraction(objective: Objective, value: float, optimum: float) -> float:
    """How close ``value`` is to the optimum, 1 at it: found / optimum for RPS/$, optimum / found
    for a cost, a latency or an energy (the objective's natural quantities)."""
    a, b = objective.natural(value), objective.natural(optimum)
    return float(a / b) if objective.maximise else float(b / a)


def run_one(strategy: str, table_path: Path, ops: list[dict], knowledge: Knowledge, space: Space, trials: int,
            seed: int, backend: ReplayBackend, truth: ModelTable | None = None, parallel: int = 1,
            noise: float = 0.0, cost_aware: bool = False, objective: Objective = Objective(),
            constraints: Constraints = Constraints(), optimum: float | None = None) -> Run:
    """One search, run by the product's own loop (stop rules, failed trials, parallel top-ups and
    the noise-robust recommendation included); a search that stopped early keeps its last value.
    Under another objective than RPS/$ (or with constraints): the recommendation's objective as a
    fraction of ``optimum`` (the table's)."""
    kops, operators = profiled(ops, DEFAULT_KOP_THRESHOLD)
    backend_spec = {"kind": "replay", "table": str(table_path), "trial_seconds": TRIAL_SECONDS}
    if noise > 0:
        backend_spec["noise"] = noise
    spec = SearchSpec(model={"name": table_path.stem, "format": "falcon-profile", "uri": None},
                      backend=backend_spec, space=space, stop=StopRules(trials), strategy=strategy, seed=seed,
                      parallel=parallel, cost_aware=cost_aware, constraints=constraints, objective=objective)
    # the search id seeds the simulated noise: every strategy meets the same k-th measurement error
    sim = simulate(f"bench-{table_path.stem}-{seed}", spec, kops, operators, backend, knowledge)
    state = sim.state

    def score(best: TrialResult | None) -> float:
        """The recommendation's value: its objective as a fraction of the optimum (``optimum``),
        else its RPS/$; the clean one from ``truth`` when given, not the (noisy) measurement."""
        if best is None:
            return 0.0
        row = truth.lookup(best.config) if truth is not None else None
        if optimum is not None:
            v = state.objective_value(best) if truth is None else \
                None if row is None else objective.value(table_trial(row), DEFAULT_PRICES.hourly(best.config))
            return 0.0 if v is None else fraction(objective, v, optimum)
        if truth is not None:
            return float(row["value"]) if row is not None else 0.0
        return float(best.rps_per_usd) if best.rps_per_usd is not None else 0.0
    # what the search recommends after each trial (a noisy search: with what its model expected then)
    curve = [score(with_predictions(replace(state, trials=state.trials[:k]), knowledge).best)
             for k in range(1, len(state.trials) + 1)]
    spent = list(accumulate(t.cost_usd for t in state.trials))
    rounds = [int(np.ceil(t / TRIAL_SECONDS - 1e-9)) for t in sim.finished_at]
    keep = truth is not None and optimum is None
    tried = [score(t) if t.ok else 0.0 for t in state.trials] if keep else []
    pad = trials - len(curve)
    return Run(curve + [curve[-1] if curve else 0.0] * pad, spent + [spent[-1] if spent else 0.0] * pad,
               rounds + [rounds[-1] if rounds else 0] * pad, tried,
               [space.key(t.config) for t in state.trials] if keep else [])


def when_reached(runs: list[Run], level: float, at: str) -> float:
    """Median over runs of the ``at`` ("rounds" or "spent") of the trial after which the
    recommendation first reached ``level`` (inf: never)."""
    out = []
    for r in runs:
        hit = [x for v, x in zip(r.curve, getattr(r, at)) if v >= level]
        out.append(hit[0] if hit else np.inf)
    return float(np.median(out)) if out else np.inf


def cost_table(runs: dict[str, list[Run]]) -> str:
    head = f"{'strategy':18}{'$ spent':>10}{'$ to .95':>10}{'$ to .99':>10}{'rounds->.95':>13}{'rounds->.99':>13}"
    lines = [head, "-" * len(head)]
    for strat, rs in runs.items():
        def fmt(x: float, spec: str) -> str:
            return format(x, spec) if np.isfinite(x) else "never"
        lines.append(f"{strat:18}{np.mean([r.spent[-1] for r in rs]):10.2f}"
                     + "".join(f"{fmt(when_reached(rs, level, 'spent'), '10.2f'):>10}" for level in (.95, .99))
                     + "".join(f"{fmt(when_reached(rs, level, 'rounds'), '13.0f'):>13}" for level in (.95, .99)))
    return "\n".join(lines)


def summarise(results: dict, trials: int) -> str:
    cps = [c for c in CHECKPOINTS if c <= trials]
    head = f"{'strategy':18}" + "".join(f"{'@' + str(c):>7}" for c in cps) + f"{'>=.90@6':>9}{'>=.95@6':>9}{'t->.90':>8}"
    lines = [head, "-" * len(head)]
    for strat, models in results.items():
        runs = np.array([r for seeds in models.values() for r in seeds])   # (runs, trials)
        means = [runs[:, c - 1].mean() for c in cps]
        at6 = runs[:, min(6, trials) - 1]
        reach = [int(np.argmax(r >= 0.9)) + 1 if (r >= 0.9).any() else np.inf for r in runs]
        med = np.median(reach)
        lines.append(f"{strat:18}" + "".join(f"{m:7.3f}" for m in means) + f"{(at6 >= .9).mean():9.2f}"
                     f"{(at6 >= .95).mean():9.2f}" + (f"{med:8.0f}" if np.isfinite(med) else f"{'>' + str(trials):>8}"))
    return "\n".join(lines)


def per_model(results: dict, trials: int) -> str:
    cps = [c for c in (1, 3, 6, 15) if c <= trials]
    lines = []
    for strat, models in results.items():
        for model, seeds in models.items():
            r = np.array(seeds)
            lines.append(f"  {strat:18} {model:22}" + " ".join(f"{r[:, c - 1].mean():.3f}" for c in cps))
    return "\n".join(lines)


def plot(results: dict, trials: int, path: Path, ylabel: str = "mean best norm.(RPS/$) so far") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = np.arange(1, trials + 1)
    for strat, models in sorted(results.items(), key=lambda kv: kv[0] == "falcon"):   # falcon drawn on top
        runs = np.array([r for seeds in models.values() for r in seeds])
        ax.plot(x, runs.mean(0), label=strat, marker="o" if trials <= 15 else None, ms=3,
                lw=2.8 if strat == "falcon" else 1.2, color="black" if strat == "falcon" else None,
                zorder=3 if strat == "falcon" else 2)
    ax.set_xlabel("trials")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0.4, 1.005)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Best configuration found vs trials (mean over targets and seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--offline", type=Path, required=True)
    p.add_argument("--targets", type=Path, required=True, action="append", help="repeatable")
    p.add_argument("--truth", type=Path, help="score the recommended configuration's value in this folder's tables")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--strategies", default="falcon,random,gp-ei,prior")
    p.add_argument("--parallel", type=int, default=1, help="trials in flight at once (Q)")
    p.add_argument("--noise", type=float, default=0.0, help="replay as a noisy live system (log-normal sigma)")
    p.add_argument("--cost-aware", action="store_true", help="acquisition: expected improvement per $")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--objective", choices=OBJECTIVES, default=RPS_PER_USD, help="what every search optimises")
    p.add_argument("--load", type=float, help="requests/s to carry (usd-for-load)")
    p.add_argument("--max-usd-per-million", type=float, help="constraint: $ per million requests at most this")
    p.add_argument("--slo-p99-ms", type=float, help="constraint: p99 latency at most this")
    a = p.parse_args(argv)
    if not 1 <= a.parallel <= a.trials:
        p.error(f"--parallel must be between 1 and --trials ({a.trials}), not {a.parallel}")
    if not 0 <= a.noise < 1:
        p.error(f"--noise must be in [0, 1), not {a.noise}")
    try:
        objective = Objective(a.objective, a.load)
    except ObjectiveError as exc:
        p.error(str(exc))
    constraints = Constraints(a.slo_p99_ms, None, a.max_usd_per_million)
    scored = not objective.is_default or constraints != Constraints()    # fractions of each table's optimum
    if scored and a.truth is not None:
        p.error("--truth scores RPS/$ without constraints only")
    strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        p.error(f"unknown strategies {unknown}; known: {sorted(STRATEGIES)}")
    tables: list[tuple[str, Path, Path]] = []          # (name in the results, table, targets folder)
    for folder in a.targets:
        found = sorted((folder / "models" / "targets").glob("reg-*.csv"))
        if not found:
            p.error(f"no models/targets/reg-*.csv under {folder}")
        names = {n for n, _, _ in tables}
        for path in found:
            model = path.stem.removeprefix("reg-")
            tables.append((f"{model}@{folder.name}" if model in names else model, path, folder))
    dataset = OfflineDataset.from_folder(a.offline)
    knowledge: dict[Space, Knowledge] = {}
    backend = ReplayBackend()
    results: dict[str, dict[str, list[list[float]]]] = {s: {} for s in strategies}
    runs: dict[str, list[Run]] = {s: [] for s in strategies}
    spent: dict[str, dict[str, list[list[float]]]] = {s: {} for s in strategies}
    rounds: dict[str, dict[str, list[list[int]]]] = {s: {} for s in strategies}
    tried: dict[str, dict[str, list[list[float]]]] = {s: {} for s in strategies}
    tried_configs: dict[str, dict[str, list[list[str]]]] = {s: {} for s in strategies}
    optima: dict[str, float | None] = {}
    t0 = time.monotonic()
    for name, path, folder in tables:
        model = path.stem.removeprefix("reg-")
        table = backend.table(str(path))
        truth = None
        if a.truth is not None:
            tpath = a.truth / "models" / "targets" / path.name
            if not tpath.exists():
                p.error(f"--truth: no {tpath}")
            truth = backend.table(str(tpath))         # cached: read once for every realisation
        elif a.noise > 0:
            truth = table                             # noise is added per trial: the table is the truth
        if table.space not in knowledge:
            knowledge[table.space] = Knowledge.build(dataset, table.space)
        prof = folder / "models" / "operators" / model / "operators.csv"
        ops = read_operator_profile(prof) if prof.exists() else []
        optimum = None
        if scored:
            optimum = table_optimum(table, objective, constraints)
            if optimum is None:
                p.error(f"{name}: no configuration of the table meets the constraints or has the objective's figure")
            optima[name] = objective.natural(optimum)
        for strat in strategies:
            done = [run_one(strat, path, ops, knowledge[table.space], table.space, a.trials, seed, backend, truth,
                            a.parallel, a.noise, a.cost_aware, objective, constraints, optimum)
                    for seed in range(a.seeds)]
            runs[strat] += done
            results[strat][name] = [r.curve for r in done]
            spent[strat][name] = [r.spent for r in done]
            rounds[strat][name] = [r.rounds for r in done]
            if any(r.tried for r in done):
                tried[strat][name] = [r.tried for r in done]
                tried_configs[strat][name] = [r.tried_configs for r in done]
    out = {"trials": a.trials, "seeds": a.seeds, "parallel": a.parallel, "noise": a.noise,
           "cost_aware": a.cost_aware, "results": results, "spent_usd": spent, "rounds": rounds}
    if any(tried.values()):     # what a perfect recommender would make of the same trials (bench.noise_ceiling)
        out["tried_truth"] = tried
        out["tried_configs"] = tried_configs
    if scored:
        out.update({"objective": objective.to_dict(), "constraints": constraints.to_dict(), "optima": optima,
                    "score": "the recommendation's objective (meeting the constraints) as a fraction of the "
                             "table's optimum"})
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(out))
    png = a.json.with_suffix(".png")
    what = "mean best norm.(RPS/$)" if not scored else \
        f"mean fraction of the optimum of {objective.describe()}" + \
        (f" under {', '.join(f'{k}={v:g}' for k, v in constraints.to_dict().items() if v is not None)}"
         if constraints != Constraints() else "")
    plot(results, a.trials, png, "mean best norm.(RPS/$) so far" if not scored else "mean fraction of the optimum so far")
    print(f"{len(tables)} targets x {a.seeds} seeds x {a.trials} trials, {a.parallel} in parallel"
          f"{f', noise {a.noise:g}' if a.noise else ''}, {time.monotonic() - t0:.0f}s; {what} after N trials:")
    if scored:
        print("optimum per table (" + objective.unit() + "): "
              + ", ".join(f"{n} {v:.4g}" for n, v in optima.items()))
    print(summarise(results, a.trials))
    print(per_model(results, a.trials))
    if any(tried.values()):
        best_tried = {s: {m: [list(recommended(r, 0.0, a.trials)) for r in runs_] for m, runs_ in models.items()}
                      for s, models in tried.items() if models}
        print("the truly best configuration tried so far (what a perfect recommender would make of the same "
              "trials; see bench.noise_ceiling):")
        print(summarise(best_tried, a.trials))
    print("what the search cost (median over runs; a round = one trial's wall time):")
    print(cost_table(runs))
    print(f"wrote {a.json} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
