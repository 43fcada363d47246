"""Write perturbed copies of target tables (same folder layout), to judge a search where the
offline knowledge is a poor guide:

- ``noise``: every measurement multiplied by a log-normal factor (sigma), as a live stress test
  measures RPS with a few percent of noise; values re-normalised to [0, 1]. The table gains (or
  widens) its ``cv`` column by sigma: the spread a runner measuring such a system would report.
- ``swap-gpus``: the GPU types' measurements are permuted (M60<->V100, K80<->T4), so the new model
  behaves unlike every source model and unlike what the KOP curves say.

    python -m bench.perturb_tables --targets DIR --out DIR [--noise 0.1] [--swap-gpus] [--seed 0]
    python -m bench.search --offline ../shared/falcon-data --targets OUT ...
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np

from services.domain.falcon_data import VALUE_COLUMN, read_csv

SWAP = {"M60": "V100", "V100": "M60", "K80": "T4", "T4": "K80"}


def perturb(columns: list[str], rows: list[list], noise: float, swap_gpus: bool,
            rng: np.random.Generator) -> tuple[list[str], list[list]]:
    vi = columns.index(VALUE_COLUMN)
    values = np.array([float(r[vi]) for r in rows])
    if noise > 0:
        values = values * np.exp(rng.normal(0.0, noise, len(values)))
        values = (values - values.min()) / (values.max() - values.min())
    out = [list(r) for r in rows]
    for r, v in zip(out, values):
        r[vi] = float(v)
    if noise > 0:
        if "cv" not in columns:
            columns = [*columns, "cv"]
            for r in out:
                r.append(0.0)
        ci = columns.index("cv")
        for r in out:
            r[ci] = round(float(np.hypot(float(r[ci] or 0.0), noise)), 4)
    if swap_gpus and "gputype" in columns:
        gi = columns.index("gputype")
        for r in out:
            r[gi] = SWAP.get(str(r[gi]), r[gi])
    return columns, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--noise", type=float, default=0.0, help="sigma of the log-normal measurement noise")
    p.add_argument("--swap-gpus", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    (a.out / "models" / "targets").mkdir(parents=True, exist_ok=True)
    for path in sorted((a.targets / "models" / "targets").glob("reg-*.csv")):
        columns, rows = perturb(*read_csv(path), a.noise, a.swap_gpus, rng)
        with (a.out / "models" / "targets" / path.name).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(rows)
        model = path.stem.removeprefix("reg-")
        prof = a.targets / "models" / "operators" / model
        if prof.exists():
            shutil.copytree(prof, a.out / "models" / "operators" / model, dirs_exist_ok=True)
    print(f"wrote perturbed targets to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
