"""How accurate must a search's estimate of each tried configuration be for its recommendation
to reach a given level? Under noise the recommendation can only be as good as the estimates it
ranks: this asks, on the very trials a benchmark ran (``tried_truth`` in a ``bench.search``
JSON written with --truth or --noise under the default objective), what the recommendation would
be worth if every distinct configuration tried so far were known to within a relative error s
(log-normal, independent) and the best estimate recommended: s = 0 is the truly best tried; s =
the measurement noise is one measurement of each and no model (with --noise a search that
re-measured could average below that).

    python -m bench.noise_ceiling OUT.json [--errors 0,0.02,0.035,0.05,0.07,0.1,0.15] [--draws 200]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

CHECKPOINTS = (1, 3, 6, 8, 15, 30)


def recommended(tried: list[float], error: float, trials: int, rng: np.random.Generator | None = None,
                configs: list[str] | None = None) -> np.ndarray:
    """True value of the best-estimated configuration after each trial, padded to ``trials``, for
    one error draw (``rng``: needed when ``error`` > 0; with 0 this is the truly best tried so
    far). ``configs``: each trial's configuration; a configuration measured again is still one."""
    out, seen, values, est = [], [], [], []
    for i, v in enumerate(tried):
        key = configs[i] if configs else v
        if key not in seen:
            seen.append(key)
            values.append(v)
            est.append(v * float(np.exp(rng.normal(0.0, error))) if error > 0 else v)
        out.append(values[int(np.argmax(est))])
    return np.array(out + [out[-1] if out else 0.0] * (trials - len(out)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", type=Path)
    p.add_argument("--errors", default="0,0.02,0.035,0.05,0.07,0.1,0.15")
    p.add_argument("--draws", type=int, default=200)
    a = p.parse_args(argv)
    data = json.loads(a.json.read_text())
    if "tried_truth" not in data:
        p.error(f"{a.json} has no tried_truth: write it with bench.search --truth DIR or --noise SIGMA "
                "(default objective, no constraints)")
    trials = int(data["trials"])
    errors = [float(e) for e in a.errors.split(",")]
    rng = np.random.default_rng(0)
    cps = [c for c in CHECKPOINTS if c <= trials]
    print(f"mean true value of the recommendation if each tried configuration were known to within s ({a.json.name}):")
    print(f"{'strategy':12}{'s':>7}" + "".join(f"{'@' + str(c):>7}" for c in cps))
    for strat, models in data["tried_truth"].items():
        runs = [r for seeds in models.values() for r in seeds]
        keys = [c for seeds in data.get("tried_configs", {}).get(strat, {}).values() for c in seeds] \
            or [None] * len(runs)
        actual = np.array([r for seeds in data["results"][strat].values() for r in seeds])
        for e in errors:
            curves = np.array([recommended(r, e, trials, rng, k) for r, k in zip(runs, keys)
                               for _ in range(1 if e == 0 else a.draws)])
            print(f"{strat:12}{e:7.3f}" + "".join(f"{curves[:, c - 1].mean():7.3f}" for c in cps))
        print(f"{strat:12}{'':7}" + "".join(f"{actual[:, c - 1].mean():7.3f}" for c in cps)
              + "   <- its recommendation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
