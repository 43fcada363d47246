"""Model intake: what a submitted ONNX model can take, known at submission instead of from failed
paid trials.

- :func:`read_signature` reads the model's inputs (names, shapes, dtypes) and the batch dimension
  when the graph fixes it (every fed input's first dimension the same number). A file that is not
  an ONNX model is an :class:`IntakeError` (exit 2, before anything is published).
- :func:`make_batch_dynamic` rewrites a fixed first dimension as a symbolic ``batch`` (inputs,
  outputs, and ``Reshape`` targets that spell the batch out), and keeps the result only when ONNX
  Runtime runs it at another batch size and answers with that many rows.
- :func:`fit_batch_knob` (pure) narrows a space's ``batchsize`` knob to the one size a model
  that stays fixed can take, or refuses in one line with the fix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.domain.space import Knob, Space

BATCH_KNOB = "batchsize"          # the batch role's default name (a space's own batch knob: space.roles.batch)
_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
           11: "float64", 16: "bfloat16"}


class IntakeError(ValueError):
    """The file cannot be searched as submitted (one line, exit 2)."""


@dataclass(frozen=True)
class Input:
    name: str
    shape: tuple[int | str | None, ...]      # a number, a symbolic name, or None (unknown)
    dtype: str

    def text(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype}[{dims}]"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Input, ...]
    fixed_batch: int | None          # the first dimension every input fixes, None when it is free

    def text(self) -> str:
        return ", ".join(i.text() for i in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [{"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in self.inputs],
                "fixed_batch": self.fixed_batch}


def _load(path: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError, UnicodeDecodeError) as exc:
        why = (str(exc).splitlines() or [""])[0][:80] or type(exc).__name__
        raise IntakeError(f"{path.name} is not an ONNX model (it does not parse: {why}); "
                          "export it with torch.onnx.export or tf2onnx") from None
    if not model.graph.node or not model.graph.input:
        raise IntakeError(f"{path.name} is not an ONNX model (no graph: no nodes or no inputs); "
                          "export it with torch.onnx.export or tf2onnx")
    return model


def _fed_inputs(model: Any) -> list[Any]:
    """The inputs a caller must feed (old IR versions list the initializers among the inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _dim(d: Any) -> int | str | None:
    if d.HasField("dim_value"):
        return int(d.dim_value)
    return d.dim_param or None


def signature_of(model: Any) -> Signature:
    inputs = []
    for i in _fed_inputs(model):
        t = i.type.tensor_type
        inputs.append(Input(i.name, tuple(_dim(d) for d in t.shape.dim), _DTYPES.get(t.elem_type, str(t.elem_type))))
    firsts = {i.shape[0] if i.shape else None for i in inputs}
    fixed = next(iter(firsts)) if len(firsts) == 1 and isinstance(next(iter(firsts)), int) else None
    return Signature(tuple(inputs), fixed)


def read_signature(path: str | Path) -> Signature:
    """The model's inputs and fixed batch; IntakeError when the file is not an ONNX model."""
    p = Path(path)
    if not p.is_file():
        raise IntakeError(f"model file {p} does not exist")
    return signature_of(_load(p))


def _patched(model: Any, batch: int) -> Any:
    """A copy whose first dimension is the symbolic ``batch`` wherever the graph spelt ``batch``."""
    import numpy as np
    from onnx import numpy_helper
    m = type(model)()
    m.CopyFrom(model)
    for i in _fed_inputs(m):
        i.type.tensor_type.shape.dim[0].dim_param = "batch"
    for o in m.graph.output:
        dims = o.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].dim_param = "batch"
    del m.graph.value_info[:]                  # intermediate shapes inferred for the fixed batch
    inits = {t.name: t for t in m.graph.initializer}
    consts = {n.output[0]: n for n in m.graph.node if n.op_type == "Constant" and n.attribute}
    for node in m.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        target = node.input[1]
        if target in inits:
            arr = numpy_helper.to_array(inits[target])
            if arr.ndim == 1 and arr.size and arr[0] == batch:
                arr = arr.copy()
                arr[0] = 0                     # 0: keep the input's first dimension (the batch)
                inits[target].CopyFrom(numpy_helper.from_array(arr.astype(np.int64), target))
        elif target in consts:
            attr = consts[target].attribute[0]
            if attr.name == "value":
                arr = numpy_helper.to_array(attr.t)
                if arr.ndim == 1 and arr.size and arr[0] == batch:
                    arr = arr.copy()
                    arr[0] = 0
                    attr.t.CopyFrom(numpy_helper.from_array(arr.astype(np.int64), attr.t.name))
    return m


def _runs_at(model_bytes: bytes, sig: Signature, batch: int) -> str | None:
    """None when ONNX Runtime runs the model at ``batch`` and every output has ``batch`` rows."""
    import numpy as np
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    rng = np.random.default_rng(0)
    try:
        sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        feeds = {}
        for i in sig.inputs:
            shape = [batch] + [d if isinstance(d, int) else 1 for d in i.shape[1:]]
            dtype = np.dtype(i.dtype) if i.dtype in ("float32", "float16", "float64", "int32", "int64") \
                else np.float32
            feeds[i.name] = (rng.integers(0, 2, size=shape) if dtype.kind == "i"
                             else rng.standard_normal(shape)).astype(dtype)
        outs = sess.run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - ORT's errors have no common base: any of them means "no"
        return str(exc).splitlines()[0][:160]
    bad = [o.shape for o in outs if not o.shape or o.shape[0] != batch]
    return f"outputs of shape {bad[0]} at batch {batch}" if bad else None


def make_batch_dynamic(path: str | Path, out_dir: Path, sig: Signature | None = None) -> tuple[Path | None, str]:
    """A copy of the model with a dynamic batch dimension, written under ``out_dir`` (named by the
    original's digest, so a second submission reuses it), or (None, why not)."""
    p = Path(path)
    model = _load(p)
    sig = sig or signature_of(model)
    if sig.fixed_batch is None:
        return None, "the batch dimension is already free"
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
    target = out_dir / f"{p.stem}-dynamic-batch-{digest}.onnx"
    if target.is_file():
        return target, "the copy checked at an earlier submission"
    data = _patched(model, sig.fixed_batch).SerializeToString()
    other = sig.fixed_batch + 1
    why = _runs_at(data, sig, other) or _runs_at(data, sig, sig.fixed_batch)
    if why is not None:
        return None, why
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target, f"checked with ONNX Runtime at batch {other}"


def fit_batch_knob(space: Space, fixed_batch: int, model_name: str) -> tuple[Space, str]:
    """The space with its batch knob narrowed to the one size the model takes, and a notice; an
    IntakeError (one line, with the fix) when the knob does not offer that size."""
    batch = space.roles.batch                   # the space's batch knob (its role: services/domain/roles.py)
    if batch not in space.names:
        return space, ""
    knob = space.knob(batch)
    if list(knob.values) == [fixed_batch]:
        return space, ""
    if fixed_batch not in knob.values:
        raise IntakeError(f"{model_name}'s batch dimension is fixed at {fixed_batch} and the space's {batch} "
                          f"knob {list(knob.values)} does not offer it: export the model with a dynamic first "
                          f"dimension, or set '{batch}: [{fixed_batch}]' under knobs: in the space file")
    if space.rules:
        raise IntakeError(f"{model_name}'s batch dimension is fixed at {fixed_batch}: export the model with a "
                          f"dynamic first dimension, or set '{batch}: [{fixed_batch}]' under knobs: in the "
                          "space file (a space with rules is not narrowed for you)")
    knobs = tuple(Knob(k.name, (fixed_batch,), k.kind) if k.name == batch else k for k in space.knobs)
    dropped = ", ".join(str(v) for v in knob.values if v != fixed_batch)
    return Space(knobs, roles=space.roles), (f"{model_name}'s batch dimension is fixed at {fixed_batch}: the search tries "
                          f"{batch}={fixed_batch} only (not {dropped}); export the model with a dynamic first "
                          "dimension to search batch sizes")


__all__ = ["BATCH_KNOB", "Input", "IntakeError", "Signature", "fit_batch_knob", "make_batch_dynamic",
           "read_signature", "signature_of"]
