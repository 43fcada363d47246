"""One live trial, in its own process: pin to N cores, load the model in ONNX Runtime with N
intra-op threads and the requested graph optimisation level, and run a closed-loop stress test
at the requested batch size.

Run as ``python -m services.trial_runner.stress '<json request>'``; prints one JSON
object. A process per trial because core pinning and the runtime's thread pool are fixed at
start, and so a crash of the runtime costs one trial, not the runner.

Why ONNX Runtime and not TVM for the measurement: TVM 0.27 on CPU compiles without scheduling
(naive loops, 10-350x slower than a production runtime) and tuning takes many minutes per
(model, batch) on 2 cores, so its RPS would describe no real deployment. TVM stays the operator
profiler (KOPs); ORT's thread, batch and graph-optimisation knobs are the ones a CPU serving
deployment really turns.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

GRAPH_OPT = ("disabled", "basic", "extended", "all")


def pin_cores(n: int) -> list[int]:
    """Restrict this process to ``n`` of the cores it may use (lowest ids first)."""
    allowed = sorted(os.sched_getaffinity(0))
    if n > len(allowed):
        raise ValueError(f"{n} cores asked for, this machine lets the runner use {len(allowed)}")
    chosen = allowed[:n]
    os.sched_setaffinity(0, chosen)
    return chosen


def _providers(gpu_mem_gb: float | None) -> list[Any]:
    """CPU only, or ONNX Runtime's CUDA provider first (GPU memory capped when asked)."""
    if gpu_mem_gb is None:
        return ["CPUExecutionProvider"]
    import onnxruntime as ort
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ValueError("this ONNX Runtime has no CUDA provider (install onnxruntime-gpu on GPU runners)")
    opts: dict[str, Any] = {"device_id": 0}
    if gpu_mem_gb > 0:
        opts["gpu_mem_limit"] = int(gpu_mem_gb * 2**30)
    return [("CUDAExecutionProvider", opts), "CPUExecutionProvider"]


def _session(model: Path, threads: int, graph_opt: str, cache_dir: Path | None,
             gpu_mem_gb: float | None = None) -> tuple[Any, float, bool]:
    """An ORT session; the optimised graph is cached per (model bytes, level) so a later trial
    with the same model and level skips the optimisation. Returns (session, seconds, cache hit)."""
    import onnxruntime as ort
    level = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
             "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
             "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
             "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[graph_opt]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    path, hit = model, False
    if cache_dir is not None and graph_opt != "disabled" and gpu_mem_gb is None:
        digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
        cached = cache_dir / f"{digest}-{graph_opt}.ort.onnx"
        inputs = cached.with_suffix(".inputs.json")        # the original's inputs, to check the copy against
        if cached.is_file() and inputs.is_file():
            path, hit = cached, True
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        else:
            cache_dir.mkdir(parents=True, exist_ok=True)
            opts.optimized_model_filepath = str(cached)
            opts.graph_optimization_level = level
    else:
        opts.graph_optimization_level = level
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(path), opts, providers=_providers(gpu_mem_gb))
    if cache_dir is not None and graph_opt != "disabled" and gpu_mem_gb is None:
        names = [i.name for i in sess.get_inputs()]
        if not hit:
            inputs.write_text(json.dumps(names))
        elif names != json.loads(inputs.read_text()):
            # ORT saves some old-IR models (initializers listed as inputs) with inputs the original
            # has not (e.g. light_squeezenet's '..._w_0__SHAPE'): that copy cannot be used
            cached.unlink(missing_ok=True)
            inputs.unlink(missing_ok=True)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.execution_mode, opts.log_severity_level = ort.ExecutionMode.ORT_SEQUENTIAL, 3
            opts.graph_optimization_level = level
            sess = ort.InferenceSession(str(model), opts, providers=_providers(gpu_mem_gb))
            hit = False
    return sess, time.perf_counter() - t0, hit


def _inputs(sess: Any, batch: int) -> dict[str, Any]:
    import numpy as np
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        shape = []
        for k, d in enumerate(i.shape):
            if isinstance(d, int) and d > 0:
                if k == 0 and d != batch:
                    raise ValueError(f"input {i.name}'s batch (first) dimension is fixed at {d}: batch size "
                                     f"{batch} cannot be applied (export it with a dynamic first dimension)")
                shape.append(d)
            elif k == 0:
                shape.append(batch)
            else:
                raise ValueError(f"input {i.name} has a symbolic dimension {k} other than the batch")
        if "int" in i.type:
            feeds[i.name] = rng.integers(0, 2, size=shape).astype(np.int64 if "int64" in i.type else np.int32)
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float16 if "float16" in i.type else np.float32)
    return feeds


def stress(model: Path, batch: int, cores: int, graph_opt: str, measure_s: float, warmup_s: float,
           windows: int = 5, cache_dir: Path | None = None, gpu_mem_gb: float | None = None) -> dict[str, Any]:
    """Closed loop, one request batch in flight: RPS = requests done / time; a request's latency
    is its batch's latency. ``windows`` equal slices of the measurement give the stability (CV of
    RPS across slices). On a GPU with NVML, the device's energy over the measurement window
    (``services.trial_runner.energy``) gives joules per request and the mean power."""
    from services.trial_runner.energy import EnergyMeter
    used = pin_cores(cores)
    sess, compile_s, hit = _session(model, cores, graph_opt, cache_dir, gpu_mem_gb)
    feeds = _inputs(sess, batch)
    end = time.perf_counter() + warmup_s
    sess.run(None, feeds)
    while time.perf_counter() < end:
        sess.run(None, feeds)
    lat: list[float] = []
    stamps: list[float] = []
    meter = EnergyMeter.open() if gpu_mem_gb is not None else None
    if meter is not None:
        meter.start()
    t0 = time.perf_counter()
    end = t0 + measure_s
    while True:
        a = time.perf_counter()
        sess.run(None, feeds)
        b = time.perf_counter()
        lat.append(b - a)
        stamps.append(b)
        if b >= end and len(lat) >= windows:
            break
    energy = meter.stop() if meter is not None else None
    elapsed = stamps[-1] - t0
    rps = batch * len(lat) / elapsed
    per_window = []
    w = elapsed / windows
    for k in range(windows):
        n = sum(1 for s in stamps if t0 + k * w < s <= t0 + (k + 1) * w)
        per_window.append(batch * n / w)
    mean = statistics.mean(per_window)
    srt = sorted(lat)
    return {"rps": rps, "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * srt[min(len(srt) - 1, int(round(0.99 * (len(srt) - 1))))],
            "cv": statistics.pstdev(per_window) / mean if mean > 0 else None, "batches": len(lat),
            "measured_s": elapsed, "compile_s": compile_s, "compile_cached": hit, "cores": used,
            "threads": cores, "graph_opt": graph_opt, "providers": list(sess.get_providers()),
            "energy_j_per_request": None if energy is None else energy.joules / (batch * len(lat)),
            "mean_power_w": None if energy is None else energy.mean_power_w,
            "energy_source": None if energy is None else energy.source}


def main(argv: list[str] | None = None) -> int:
    req = json.loads((argv or sys.argv[1:])[0])
    try:
        out = stress(Path(req["model"]), int(req["batch"]), int(req["cores"]), str(req["graph_opt"]),
                     float(req["measure_s"]), float(req.get("warmup_s", 1.0)), int(req.get("windows", 5)),
                     Path(req["cache_dir"]) if req.get("cache_dir") else None, req.get("gpu_mem_gb"))
        print(json.dumps({"status": "ok", **out}))
    except Exception as exc:   # noqa: BLE001 — reported to the parent as the trial's failure reason
        print(json.dumps({"status": "failed", "reason": f"{type(exc).__name__}: {str(exc)[:500]}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
