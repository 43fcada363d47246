"""Target tables extended with knobs no offline table has, and with configurations that fail:

    python -m bench.extend_tables --targets ../shared/falcon-data --out /tmp/ext1e4 [--size 1e4|1e5]

Each ``models/targets/reg-<model>.csv`` (the paper's 1,440 configurations) becomes a table over
those knobs x ``precision`` {fp32, fp16, int8} x ``replicas`` {1, 2, 4} (12,960 configurations;
``--size 1e5`` adds ``queue_ms``, a dynamic-batching delay of 8 values: 103,680). The effects,
each with its reason:

- precision: fp16 runs GEMMs on tensor cores (T4, V100: x1.6 at large batches), where there are
  none it only converts (M60, K80: x0.95); int8 needs INT8 units (T4 x2.2, V100 x1.3 via dp4a);
  M60 and K80 have no int8 path: those configurations cannot start (absent). A small batch is
  overhead-bound, so the gain grows with the batch (40% of it at the smallest batch size).
- replicas: r model instances share the GPU, each reserving ``gpumem``: r x gpumem above the
  device's memory (M60 8, K80 12, T4 16, V100 16 GB) is out of memory, and each replica needs a
  CPU core (r > cpus cannot start); overlapping kernels give r / (1 + 0.6 (r - 1)) the
  throughput while the bill counts r x gpumem of GPU memory (EC2 prices, services.domain.pricing).
- queue_ms: waiting up to q ms to fill a batch helps small batches (up to +15% at q = 100 ms for
  the smallest batch) and costs a little at large ones (up to -2%).

Values are RPS/$ relative to the base table, normalised again so the best is 1. Absent rows are
what the replay backend reports as failed trials ("not in table"). Operator profiles are copied."""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
from pathlib import Path

from services.domain.falcon_data import VALUE_COLUMN, read_csv
from services.domain.pricing import DEFAULT_PRICES

DEVICE_MEMORY_GB = {"M60": 8, "K80": 12, "T4": 16, "V100": 16}
FP16_GAIN = {"T4": 1.6, "V100": 1.6, "M60": 0.95, "K80": 0.95}
INT8_GAIN = {"T4": 2.2, "V100": 1.3}             # M60, K80: no int8 path
PRECISIONS = ("fp32", "fp16", "int8")
REPLICAS = (1, 2, 4)
QUEUE_MS = (0, 1, 2, 5, 10, 20, 50, 100)


def factor(row: dict, batch_rank: float, precision: str, replicas: int, queue_ms: float | None) -> float | None:
    """The extended configuration's RPS/$ relative to the base row's (None: it cannot start)."""
    gpu, mem, cpus = str(row["gputype"]), float(row["gpumem"]), int(row["cpus"])
    if precision == "int8" and gpu not in INT8_GAIN:
        return None
    if replicas * mem > DEVICE_MEMORY_GB[gpu] or replicas > cpus:
        return None
    gain = {"fp32": 1.0, "fp16": FP16_GAIN[gpu], "int8": INT8_GAIN.get(gpu, 1.0)}[precision]
    speed = 1.0 + (gain - 1.0) * (0.4 + 0.6 * batch_rank)
    speed *= replicas / (1.0 + 0.6 * (replicas - 1))
    base = {"cpus": cpus, "gpumem": mem, "gputype": gpu}
    price = DEFAULT_PRICES.hourly({**base, "gpumem": replicas * mem}) / DEFAULT_PRICES.hourly(base)
    if queue_ms is not None:
        q = math.log1p(queue_ms) / math.log1p(max(QUEUE_MS))
        speed *= 1.0 + 0.15 * q * (1.0 - batch_rank) - 0.02 * q * batch_rank
    return speed / price


def extend(src: Path, out: Path, with_queue: bool) -> int:
    columns, rows = read_csv(src)
    knobs = [c for c in columns if c != VALUE_COLUMN]
    batches = sorted({r[columns.index("batchsize")] for r in rows})
    new_columns = [*knobs, "precision", "replicas", *(["queue_ms"] if with_queue else []), VALUE_COLUMN]
    extended = []
    for r in rows:
        d = dict(zip(columns, r))
        rank = batches.index(d["batchsize"]) / max(len(batches) - 1, 1)
        for p in PRECISIONS:
            for n in REPLICAS:
                for q in (QUEUE_MS if with_queue else (None,)):
                    f = factor(d, rank, p, n, q)
                    if f is not None:
                        extended.append([*(d[k] for k in knobs), p, n, *([q] if with_queue else []),
                                         float(d[VALUE_COLUMN]) * f])
    top = max(r[-1] for r in extended)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(new_columns)
        w.writerows([*r[:-1], round(r[-1] / top, 6)] for r in extended)
    return len(extended)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--size", choices=("1e4", "1e5"), default="1e4")
    a = p.parse_args(argv)
    for table in sorted((a.targets / "models" / "targets").glob("reg-*.csv")):
        n = extend(table, a.out / "models" / "targets" / table.name, a.size == "1e5")
        model = table.stem.removeprefix("reg-")
        prof = a.targets / "models" / "operators" / model
        if prof.exists():
            shutil.copytree(prof, a.out / "models" / "operators" / model, dirs_exist_ok=True)
        print(f"{model}: {n} configurations that start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
