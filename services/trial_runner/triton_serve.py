"""The server side of a served trial: one Triton Inference Server (PyTriton's bundled binary) with
the trial's model running in ONNX Runtime inside Triton's Python backend, configured from a
:class:`services.domain.serving.ServingConfig`.

Runs in the serving virtualenv (``.venv-serving``: PyTriton and tritonclient need numpy < 2 and
protobuf < 5, the project's own environment has numpy 2 and protobuf 7), started by the runner as
``.venv-serving/bin/python -m services.trial_runner.triton_serve '<json>'`` in a process group of
its own. It imports nothing of the project but the pure serving mapping and (on SIGTERM) the stdlib-only
:mod:`services.trial_runner.procs`.

Lifetime: it pins itself (and so the tritonserver and Python-backend stubs it starts, which
inherit the affinity) to the serving cores; it asks the kernel for SIGTERM when its parent (the
runner) dies, and on SIGTERM kills its whole process group (itself, tritonserver and the stubs),
so nothing outlives the trial even when the runner is killed with ``kill -9``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1

ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
             "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
             "tensor(bool)": "bool"}


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _kill_group(*_: Any) -> None:
    from services.trial_runner.procs import kill_own_group
    kill_own_group()


def ort_session(model: str, cfg: Any) -> Any:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, cfg.ort_level)
    opts.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if cfg.device == "gpu":
        providers = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
                     if p in ort.get_available_providers()] + providers
    return ort.InferenceSession(model, opts, providers=providers)


def tensors(sess: Any) -> tuple[list[Any], list[Any]]:
    """Triton tensor specs of the session's inputs and outputs, without the batch dimension."""
    import numpy as np
    from pytriton.model_config import Tensor

    def spec(io: Any) -> Any:
        if io.type not in ORT_TYPES:
            raise ValueError(f"{io.name}: ONNX type {io.type} cannot be served")
        dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in io.shape[1:])
        return Tensor(name=io.name, dtype=np.dtype(ORT_TYPES[io.type]), shape=dims)
    return [spec(i) for i in sess.get_inputs()], [spec(o) for o in sess.get_outputs()]


def infer_fn(sess: Any) -> Any:
    from pytriton.decorators import batch
    names = [o.name for o in sess.get_outputs()]

    @batch
    def infer(**inputs: Any) -> dict[str, Any]:
        return dict(zip(names, sess.run(names, inputs)))
    return infer


def serve(req: dict[str, Any]) -> None:
    from pytriton.model_config import DynamicBatcher, ModelConfig
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    from services.domain.serving import ServingConfig
    cfg = ServingConfig(**req["config"])
    sessions = [ort_session(req["model"], cfg) for _ in range(cfg.instances)]
    inputs, outputs = tensors(sessions[0])
    tconf = TritonConfig(http_address="127.0.0.1", http_port=req["http_port"], grpc_address="127.0.0.1",
                         grpc_port=req["grpc_port"], metrics_port=req["metrics_port"], allow_metrics=False,
                         log_verbose=0, exit_on_error=True)
    with Triton(config=tconf, workspace=req.get("workspace"),
                security_config=TritonSecurityConfig(access_token=req["token"])) as triton:
        triton.bind(model_name=req["name"], infer_func=[infer_fn(s) for s in sessions], inputs=inputs,
                    outputs=outputs,
                    config=ModelConfig(max_batch_size=cfg.max_batch_size,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=cfg.queue_delay_us)))
        print(json.dumps({"status": "serving", "pid": os.getpid()}), flush=True)
        triton.serve()


def main(argv: list[str] | None = None) -> int:
    req = json.loads((argv or sys.argv[1:])[0])
    signal.signal(signal.SIGTERM, _kill_group)
    die_with_parent()
    if os.getppid() != req.get("parent_pid", os.getppid()):
        return 1                               # the runner died before the prctl: nothing to serve for
    if req.get("cores"):
        os.sched_setaffinity(0, req["cores"])
    try:
        serve(req)
    except Exception as exc:   # noqa: BLE001 — the runner reads this line as the trial's failure reason
        print(json.dumps({"status": "failed", "reason": f"{type(exc).__name__}: {str(exc)[:500]}"}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
