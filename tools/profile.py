"""Operator profile and KOPs of one model (``falcon profile MODEL``): what the profiler service
computes for a submission, for a model file or a zoo model name, as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.profiler.kops import identify_kops
from services.profiler.tvm_profile import profile_model


def profile_report(model: str, batch: int = 1, target: str = "llvm", threshold: float = 0.05,
                   memory_threshold: float | None = None, measure: bool = True,
                   budget_s: float = 120.0, trust_pickle: bool = False) -> dict[str, Any]:
    """``model``: an ONNX / .pt2 file, or a zoo model name (exported here with torch)."""
    source: Any = model
    if not (Path(model).suffix in (".onnx", ".pt2") or Path(model).exists()):
        from tools import zoo
        zoo.get(model)          # ZooError with the list of names
        source = zoo.export_program(model, batch)
    prof = profile_model(source, batch, target, measure=measure, budget_s=budget_s, trust_pickle=trust_pickle,
                         name=model if source is not model else None)
    ops = prof.operators()
    return {"model": prof.model, "batch": batch, "target": target,
            "measured": prof.measured, "time_from": "measured" if prof.measured else "flops",
            "operators": ops, "kops": identify_kops(ops, threshold, memory_threshold),
            "threshold": threshold, "memory_threshold": threshold if memory_threshold is None else memory_threshold,
            "import_s": round(prof.import_s, 3), "compile_s": round(prof.compile_s, 3), "runs": prof.runs,
            "run_cv": prof.run_cv, "latency_ms": None if prof.latency_s is None else 1000 * prof.latency_s}


def format_profile(rep: dict[str, Any]) -> str:
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
