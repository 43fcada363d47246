"""Operator profile and KOPs of one model, from the command line.

    python -m services.profiler.profile MODEL [--json] [--threshold 0.05] [--batch 1] [--static]
    python -m services.profiler.profile --list-zoo

MODEL is an ONNX file or a zoo model name. Prints the per-operator table (time share, memory
share, FLOPs) and the KOPs; with --json one JSON object with "operators" and "kops".
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.profiler.kops import identify_kops
from services.profiler.tvm_profile import profile_model


def profile_report(model: str, batch: int = 1, target: str = "llvm", threshold: float = 0.05,
                   memory_threshold: float | None = None, measure: bool = True,
                   budget_s: float = 120.0, trust_pickle: bool = False) -> dict[str, Any]:
    prof = profile_model(model, batch, target, measure=measure, budget_s=budget_s, trust_pickle=trust_pickle)
    ops = prof.operators()
    return {"model": prof.model, "batch": batch, "target": target,
            "measured": prof.measured, "time_from": "measured" if prof.measured else "flops",
            "operators": ops, "kops": identify_kops(ops, threshold, memory_threshold),
            "threshold": threshold, "memory_threshold": threshold if memory_threshold is None else memory_threshold,
            "import_s": round(prof.import_s, 3), "compile_s": round(prof.compile_s, 3), "runs": prof.runs,
            "run_cv": prof.run_cv, "latency_ms": None if prof.latency_s is None else 1000 * prof.latency_s}


def _table(rep: dict[str, Any]) -> str:
    lines = [f"{rep['model']} (batch {rep['batch']}, {rep['target']}, time shares "
             f"{'measured' if rep['measured'] else 'from FLOPs'})",
             f"{'operator':22}{'time':>8}{'memory':>8}{'GFLOPs':>9}{'calls':>7}  KOP"]
    for o in rep["operators"]:
        fl = "" if o["flops"] is None else f"{o['flops'] / 1e9:9.3f}"
        lines.append(f"{o['op']:22}{o['time_share']:8.1%}{o['memory_share']:8.1%}{fl:>9}{o['calls']:7d}  "
                     f"{'*' if o['op'] in rep['kops'] else ''}")
    lines.append(f"KOPs (>= {rep['threshold']:.0%} time and >= {rep['memory_threshold']:.0%} memory): "
                 f"{', '.join(rep['kops']) or 'none'}")
    if rep["measured"]:
        lines.append(f"import {rep['import_s']:.1f} s, compile {rep['compile_s']:.1f} s, {rep['runs']} timed runs, "
                     f"CV {rep['run_cv']:.3f}, {rep['latency_ms']:.1f} ms per inference (unscheduled TVM)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.profiler.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help="ONNX file or zoo model name")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threshold", type=float, default=0.05, help="KOP threshold on time share (paper: 0.05)")
    p.add_argument("--memory-threshold", type=float, default=None, help="KOP threshold on memory share "
                   "(default: --threshold)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--target", choices=("llvm", "cuda"), default="llvm")
    p.add_argument("--static", action="store_true", help="no run: time shares estimated from FLOPs")
    p.add_argument("--budget-s", type=float, default=120.0, help="time limit for the timed runs")
    p.add_argument("--trust-torch-archive", action="store_true",
                   help="allow a .pt2 file (torch.export.load may unpickle its weights: trusted files only)")
    p.add_argument("--list-zoo", action="store_true", help="list the built-in zoo models")
    a = p.parse_args(argv)
    if a.list_zoo:
        from services.profiler.zoo import ZOO
        if a.json:
            print(json.dumps([{"name": m.name, "family": m.family, "tiny": m.tiny, "note": m.note}
                              for m in ZOO.values()]))
        else:
            for m in ZOO.values():
                print(f"{m.name:20}{m.family:13}{'tiny  ' if m.tiny else '      '}{m.note}")
        return 0
    if not a.model:
        p.error("MODEL is required (or --list-zoo)")
    try:
        rep = profile_report(a.model, a.batch, a.target, a.threshold, a.memory_threshold, not a.static, a.budget_s,
                             a.trust_torch_archive)
    except ValueError as exc:    # ProfilerError, ZooError, ProfileError
        if a.json:
            print(json.dumps({"error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(rep) if a.json else _table(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
