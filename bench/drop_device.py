"""An offline dataset without one device, as for a GPU type new on the market:

    python -m bench.drop_device --offline ../shared/falcon-data --device T4 --out /tmp/no-T4

copies the folder and drops every row of that device from models/sources/*.csv and every point
of it from the kop-curves files that have a GPU axis (falcon-data codes GPU types as 1 M60,
2 K80, 3 T4, 4 V100). Pass the result as ``bench.search --offline`` to measure how the search
does on hardware the offline data never saw."""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from services.knowledge.curves import GPU_CODES

GPU_NUMBERS = {name: code for code, name in GPU_CODES.items()}


def drop_device(src: Path, out: Path, device: str) -> tuple[int, int]:
    """(source rows dropped, curve points dropped)."""
    if device not in GPU_NUMBERS:
        raise SystemExit(f"unknown device {device!r}: falcon-data codes {sorted(GPU_NUMBERS)}")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    rows_dropped = points_dropped = 0
    for f in sorted((out / "models" / "sources").glob("*.csv")):
        rows = [r for r in csv.reader(f.open()) if r]
        keep = [rows[0]] + [r for r in rows[1:] if r[rows[0].index("gputype")] != device]
        rows_dropped += len(rows) - len(keep)
        with f.open("w", newline="") as fh:
            csv.writer(fh).writerows(keep)
    for f in sorted((out / "kop-curves").glob("*/*.csv")):
        axes = f.stem.split("-")[1:3]
        if "GPU" not in axes:
            continue
        col = axes.index("GPU")
        rows = [r for r in csv.reader(f.open()) if r]
        keep = [r for r in rows if int(float(r[col])) != GPU_NUMBERS[device]]
        points_dropped += len(rows) - len(keep)
        with f.open("w", newline="") as fh:
            csv.writer(fh).writerows(keep)
    return rows_dropped, points_dropped


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--offline", type=Path, required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    rows, points = drop_device(a.offline, a.out, a.device)
    print(f"{a.out}: dropped {rows} source rows and {points} KOP-curve points of {a.device}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
