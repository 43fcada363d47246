"""One served trial of a zoo model at one configuration, printed: the quickest way to see what a
configuration serves (and to compare two trees' trials side by side, as
bench/results/served-direct-vs-pytriton.txt did).

    python -m bench.served_trial resnet8 '{"batchsize": 16, "queue_delay_us": 2000}' [--slo-p99-ms 100]

Run it under the shared lock on a shared machine (flock /work/brief/heavy.lock nice ...)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.served_trial", description=__doc__.splitlines()[0])
    p.add_argument("model", help="a zoo model (tools/zoo.py)")
    p.add_argument("config", help="the knob values, as JSON (absent knobs take the served defaults)")
    p.add_argument("--slo-p99-ms", type=float, default=100.0)
    a = p.parse_args(argv)
    try:
        config = json.loads(a.config)
        assert isinstance(config, dict)
    except (ValueError, AssertionError):
        p.error(f"config must be a JSON object of knob values, not {a.config!r}")
    from schemas.events import TrialRequested
    from services.trial_runner.backends import LiveBackend
    from tools import zoo
    if a.model not in zoo.ZOO:
        p.error(f"unknown zoo model {a.model!r}: one of {', '.join(sorted(zoo.ZOO))}")
    with tempfile.TemporaryDirectory() as tmp:
        model = zoo.export_onnx(a.model, Path(tmp) / f"{a.model}.onnx")
        backend = LiveBackend(Path(tmp) / "cache", gpus=[])
        t0 = time.monotonic()
        r = backend.run(TrialRequested("bench/0", 0, config, {"name": a.model, "format": "onnx", "uri": str(model)},
                                       {"kind": "live", "slo_p99_ms": a.slo_p99_ms}, 0.0425))
        wall = time.monotonic() - t0
    if r.status != "ok":
        print(f"failed after {wall:.1f} s: {r.reason}")
        return 1
    d = r.details
    peak = d["peak"]
    print(f"{a.model} {json.dumps(d['serving'])}")
    print(f"peak {r.rps:,.0f}/s within p99 {a.slo_p99_ms:g} ms at concurrency {peak['concurrency']} "
          f"(p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms; measurements {peak['measurements_rps']})")
    print(f"server split at the peak (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in d["server_split_ms"].items()))
    print(f"wall {wall:.1f} s: " + ", ".join(f"{k} {v:.1f}" for k, v in d["wall_s"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
