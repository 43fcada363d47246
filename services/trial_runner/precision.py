"""The precision knob applied for real, or refused with the reason: fp32 serves the file as it is;
int8 is ONNX Runtime's dynamic quantisation (weights int8, activations quantised per batch at run
time: ``onnxruntime.quantization.quantize_dynamic``); fp16 converts the graph to float16
(``onnxruntime.transformers.float16``) and is served only where the device has an fp16 path (ONNX
Runtime's CUDA provider). A lower precision changes the answers: :func:`output_deviation` says how
far, on the trial's inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

CPU_FP16_REASON = ("precision fp16 needs a device with an fp16 path: ONNX Runtime's CPU provider has no fp16 "
                   "kernels for most operators (it would cast back to fp32 and measure that), and this runner "
                   "has no CUDA provider")


def precision_refusal(precision: str, providers: Sequence[str]) -> str | None:
    """Why ``precision`` cannot be served with these ONNX Runtime execution providers (None: it can)."""
    if precision == "fp32":
        return None
    gpu = "CUDAExecutionProvider" in providers or "TensorrtExecutionProvider" in providers
    if precision == "fp16":
        return None if gpu else CPU_FP16_REASON
    if precision == "int8":
        if gpu and "TensorrtExecutionProvider" not in providers:
            return ("precision int8 on this GPU needs TensorRT (ONNX Runtime's CUDA provider has no kernels for "
                    "dynamically quantised ConvInteger/MatMulInteger: they would run on the CPU)")
        return None
    return f"precision {precision!r} is not one of fp32, fp16, int8"


def prepare(model: Path, precision: str, cache_dir: Path) -> Path:
    """The ONNX file that serves ``model`` at ``precision`` (cached per model bytes)."""
    if precision == "fp32":
        return model
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    out = cache_dir / f"{digest}-{precision}.onnx"
    if out.is_file():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    if precision == "int8":
        import logging
        from onnxruntime.quantization import QuantType, quantize_dynamic
        logging.getLogger().setLevel(logging.ERROR)        # its "consider pre-processing" advice
        quantize_dynamic(model, tmp, weight_type=QuantType.QInt8)
    elif precision == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
        onnx.save(convert_float_to_float16(onnx.load(str(model)), keep_io_types=True), str(tmp))
    else:
        raise ValueError(f"precision {precision!r} is not one of fp32, fp16, int8")
    tmp.replace(out)
    return out


def output_deviation(reference: Path, variant: Path, batch: int = 4) -> dict[str, Any]:
    """How far the variant's outputs are from the reference's (fp32) on the same inputs (the
    trial's generated inputs, ``batch`` samples): max absolute difference and relative L2 error
    over all outputs."""
    import numpy as np
    import onnxruntime as ort

    from services.trial_runner.stress import _inputs
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ref = ort.InferenceSession(str(reference), opts, providers=["CPUExecutionProvider"])
    var = ort.InferenceSession(str(variant), opts, providers=["CPUExecutionProvider"])
    feeds = _inputs(ref, batch)
    a = [np.asarray(x, dtype=np.float64) for x in ref.run(None, feeds)]
    b = [np.asarray(x, dtype=np.float64) for x in var.run(None, feeds)]
    diff = np.concatenate([(x - y).ravel() for x, y in zip(a, b)])
    norm = float(np.linalg.norm(np.concatenate([x.ravel() for x in a])))
    return {"max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
            "rel_l2": float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff)),
            "samples": batch}
