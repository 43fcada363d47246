"""Cost-model benchmark: how well does the operator cost model rank a measured table's
configurations by RPS/$, before any trial and after calibrating on 3 measured ones?

    python -m bench.cost_model [--live bench/live] [--data ../shared/falcon-data] [--json OUT]
                               [--calibrate-n 3] [--draws 20] [--seed 0] [--tvm]

For every models/targets/reg-<model>.csv under --live and --data (either may be given alone;
'none' skips one), with the model's operators.csv (time shares only): Spearman rank correlation
between predicted RPS/$ and the table's ``norm.(rps/budget)`` over all its configurations
(uncalibrated), then the mean (and spread) over --draws random choices of --calibrate-n measured
configurations of the same correlation on the other configurations after calibrating on those
(and, like for like, the uncalibrated model's on the same held-out sets). ``top1`` is the
measured value (share of the table's best) of the configuration the model ranks first.

Live tables (measured on this machine's CPU): the device is this CPU (hardware entry
EPYC-Zen5), time shares taken as measured there, the knob graph_opt is unknown to the model
(neutral). falcon-data targets: the paper's GPU space, time shares taken as measured on a T4.
Prices: deploy/config/ec2-prices.yaml. --tvm: also the live zoo models with the profiler's
static FLOPs and bytes (TVM, ~10 s per model) instead of time shares.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

from services.domain.falcon_data import load_model_table, read_operator_profile
from services.domain.pricing import PriceCatalogue
from services.knowledge.cost_model import CostModel, OperatorCost, operators_from_calls
from services.knowledge.hardware import DEFAULT_HARDWARE, HardwareCatalogue

REPO = Path(__file__).resolve().parents[1]
HOST_CPU = "EPYC-Zen5"


def _spearman(pred: np.ndarray, truth: np.ndarray) -> float:
    if np.ptp(pred) == 0 or np.ptp(truth) == 0:
        return 0.0
    return float(spearmanr(pred, truth).statistic)


def _top1(pred: np.ndarray, truth: np.ndarray, best: float) -> float:
    """Measured value (share of the best) of the configuration ranked first; ties (a neutral
    knob such as graph_opt) broken at random, i.e. the mean over the tied ones."""
    top = pred >= pred.max() * (1 - 1e-9)
    return float(truth[top].mean()) / best if best > 0 else 0.0


def evaluate(model: CostModel, configs: Sequence[Mapping[str, Any]], truth: np.ndarray, calibrate_n: int,
             draws: int, rng: np.random.Generator) -> dict[str, Any]:
    pred = model.predict(configs)
    best = float(truth.max())
    out: dict[str, Any] = {"configs": len(configs), "knowledge": model.knowledge,
                           "spearman": _spearman(pred, truth), "top1": _top1(pred, truth, best),
                           "infeasible_predicted": int((pred <= 0).sum())}
    cal, uncal, top1 = [], [], []
    for _ in range(draws):
        picked = rng.choice(len(configs), size=calibrate_n, replace=False)
        rest = np.setdiff1d(np.arange(len(configs)), picked)
        calibrated = model.calibrate([(configs[i], float(truth[i])) for i in picked])
        cpred = calibrated.predict([configs[i] for i in rest])
        cal.append(_spearman(cpred, truth[rest]))
        uncal.append(_spearman(pred[rest], truth[rest]))
        top1.append(_top1(cpred, truth[rest], best))
    out.update({"spearman_calibrated": float(np.mean(cal)), "spearman_calibrated_sd": float(np.std(cal)),
                "spearman_uncalibrated_heldout": float(np.mean(uncal)), "top1_calibrated": float(np.mean(top1))})
    return out


def tables(root: Path) -> list[tuple[str, Path, Path]]:
    """(model, table, operators.csv) of every target table with an operator profile."""
    found = []
    for path in sorted((root / "models" / "targets").glob("reg-*.csv")):
        model = path.stem.removeprefix("reg-")
        ops = root / "models" / "operators" / model / "operators.csv"
        if ops.is_file():
            found.append((model, path, ops))
    return found


def run_set(label: str, root: Path, hardware: HardwareCatalogue, prices: PriceCatalogue, reference: str,
            calibrate_n: int, draws: int, seed: int,
            static_ops: Mapping[str, list[OperatorCost]] | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for model, path, ops_path in tables(root):
        table = load_model_table(path)
        configs = [c for c in table.space.configs() if table.lookup(c) is not None]
        truth = np.array([float(table.lookup(c)["value"]) for c in configs])   # type: ignore[index]
        operators: Sequence[Any] = read_operator_profile(ops_path)
        if static_ops is not None:
            if model not in static_ops:
                continue
            operators = static_ops[model]
        cm = CostModel(operators, hardware, prices.hourly, reference_device=reference)
        results[model] = evaluate(cm, configs, truth, calibrate_n, draws, np.random.default_rng(seed))
        r = results[model]
        print(f"  {label:14} {model:20} {r['knowledge']:10} n={r['configs']:5d}  spearman {r['spearman']:+.3f}  "
              f"calibrated({calibrate_n}) {r['spearman_calibrated']:+.3f} ±{r['spearman_calibrated_sd']:.3f} "
              f"(uncal. same held-out {r['spearman_uncalibrated_heldout']:+.3f})  top1 {r['top1']:.3f} -> "
              f"{r['top1_calibrated']:.3f}", flush=True)
    return results


def static_profiles(names: Sequence[str]) -> dict[str, list[OperatorCost]]:
    from services.profiler.tvm_profile import ProfilerError, profile_model
    out = {}
    for name in names:
        try:
            prof = profile_model(name, batch=1, measure=False)
        except (ProfilerError, KeyError, ValueError) as exc:
            print(f"  {name}: no static profile ({exc})", file=sys.stderr)
            continue
        out[name] = operators_from_calls(prof.calls)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cost_model", description=__doc__.split("\n\n")[0])
    p.add_argument("--live", default="bench/live", help="live tables folder ('none' to skip)")
    p.add_argument("--data", default="../shared/falcon-data", help="falcon-data folder ('none' to skip)")
    p.add_argument("--prices", type=Path, default=REPO / "deploy" / "config" / "ec2-prices.yaml")
    p.add_argument("--calibrate-n", type=int, default=3)
    p.add_argument("--draws", type=int, default=20, help="random calibration sets per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tvm", action="store_true", help="also: live models with TVM static FLOPs/bytes")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    prices = PriceCatalogue.from_file(a.prices)
    report: dict[str, Any] = {"calibrate_n": a.calibrate_n, "draws": a.draws, "seed": a.seed, "sets": {}}
    print(f"Spearman(predicted RPS/$, measured) per model; calibrated: mean ± sd over {a.draws} draws of "
          f"{a.calibrate_n} configurations, scored on the rest")
    if a.live != "none":
        live = Path(a.live)
        if not tables(live):
            p.error(f"no models/targets/reg-*.csv with operators under {live}")
        host = replace(DEFAULT_HARDWARE, default_cpu=HOST_CPU)     # live tables: this machine's CPU
        report["sets"]["live"] = run_set("live", live, host, prices, HOST_CPU, a.calibrate_n, a.draws, a.seed)
        if a.tvm:
            static = static_profiles([m for m, _, _ in tables(live)])
            report["sets"]["live-tvm-static"] = run_set("live(static)", live, host, prices, HOST_CPU,
                                                        a.calibrate_n, a.draws, a.seed, static)
    if a.data != "none":
        data = Path(a.data)
        if not tables(data):
            p.error(f"no models/targets/reg-*.csv with operators under {data}")
        report["sets"]["falcon-data"] = run_set("falcon-data", data, DEFAULT_HARDWARE, prices, "T4",
                                                a.calibrate_n, a.draws, a.seed)
    for name, res in report["sets"].items():
        if res:
            print(f"  {name:14} mean spearman {np.mean([r['spearman'] for r in res.values()]):+.3f}, "
                  f"calibrated {np.mean([r['spearman_calibrated'] for r in res.values()]):+.3f}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
