"""The Triton model repository a served trial deploys, and the backend directory Triton runs it
with: the same entry ``falcon export`` ships (``services.domain.triton_repo``'s configuration on
the Python backend, ``triton_model.py`` as ``1/model.py``, the model file in the trial's
precision). So a trial measures what the export deploys.

The server is nvidia-pytriton's bundled ``tritonserver``, used directly (not through PyTriton's
proxy): it has the Python backend only, whose stub for the serving interpreter's Python version
PyTriton keeps apart (``python_backend_stubs/<X.Y>/``); :func:`backend_dir` lays the backend out
with that stub, once per runner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from services.domain.serving import ServingConfig
from services.domain.triton_repo import MODEL_FILE, Tensor, config_pbtxt

MODEL_PY = Path(__file__).with_name("triton_model.py")
# ONNX TensorProto element types -> Triton data types
TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
                7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 12: "TYPE_UINT32",
                13: "TYPE_UINT64", 16: "TYPE_BF16"}
BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


class ModelIOError(ValueError):
    """The model's inputs and outputs cannot be declared to Triton (the message says why)."""


def onnx_io(path: Path) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The model's inputs and outputs as Triton declares them (the first dimension is the batch;
    a named or unknown dimension is -1). Initialisers listed as inputs are not inputs."""
    import onnx
    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as exc:       # noqa: BLE001 - onnx raises DecodeError and others for a bad file
        raise ModelIOError(f"the model file {path} cannot be read as ONNX: {exc}") from None
    inits = {i.name for i in m.graph.initializer}

    def tensor(v: Any) -> Tensor:
        t = v.type.tensor_type
        if t.elem_type not in TRITON_TYPES:
            raise ModelIOError(f"the model's tensor {v.name!r} has an ONNX type ({t.elem_type}) Triton cannot serve")
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in t.shape.dim)
        return Tensor(v.name, TRITON_TYPES[t.elem_type], dims[1:])
    return (tuple(tensor(v) for v in m.graph.input if v.name not in inits),
            tuple(tensor(v) for v in m.graph.output))


def write_entry(repo: Path, name: str, model: Path, config: ServingConfig,
                gpu_mem_bytes: int | None = None) -> Path:
    """Write the repository entry ``repo/name`` serving ``model`` (already in the trial's
    precision) with ``config`` on the Python backend; returns the entry's directory."""
    inputs, outputs = onnx_io(model)
    entry = repo / name
    (entry / "1").mkdir(parents=True, exist_ok=True)
    (entry / "config.pbtxt").write_text(config_pbtxt(name, config, inputs, outputs, "python", gpu_mem_bytes))
    shutil.copyfile(MODEL_PY, entry / "1" / "model.py")
    dest = entry / "1" / MODEL_FILE
    try:
        os.link(model, dest)                     # same file system: no copy of a large model
    except OSError:
        shutil.copyfile(model, dest)
    return entry


def backend_dir(site: Path, python_version: str, dest: Path) -> Path:
    """Triton's backend directory for the bundled server: its Python backend with the stub built
    for ``python_version`` (the serving interpreter's X.Y). Laid out once under ``dest``."""
    bundled = site / "pytriton" / "tritonserver"
    python = dest / "python"
    stub = bundled / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.is_file():
        raise FileNotFoundError(f"nvidia-pytriton has no Python backend stub for Python {python_version} ({stub})")
    if not (python / "triton_python_backend_stub").is_file():
        tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "python").mkdir(parents=True)
        for f in BACKEND_FILES:
            shutil.copy2(bundled / "backends" / "python" / f, tmp / "python" / f)
        shutil.copy2(stub, tmp / "python" / "triton_python_backend_stub")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)                         # whole or absent, for a second runner on the machine
    return dest
