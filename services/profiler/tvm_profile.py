"""Operator profile of a model with Apache TVM 0.27 (Relax): which operators take the time and
the memory, hence the model's key operators (KOPs).

Two views, as the paper uses them:
- static: lower the model with no fusion (one PrimFunc per Relax operator) and read every
  ``call_tir`` site: operator kind, FLOPs (TIR estimate), input/weight/output bytes. No run is
  needed; it gives memory shares and a first KOP estimate from FLOPs.
- measured: compile for the host (``llvm``; ``cuda`` when asked and present) and time every
  operator call through ``VirtualMachine.set_instrument`` (0.27 has no VM profiler), repeated until
  the total time is stable. Shares are taken from the sum of operator times, so the
  instrumentation's own overhead does not count.

Plain ``tvm.compile`` does no scheduling on CPU (naive loops): absolute times are far from a
tuned runtime's, but which operators dominate is what the KOP rule needs, and that matches the
paper's Table 3 (CNN -> conv2d, BERT -> dense). Imports TVM lazily: it is heavy (~300 MB).
"""

from __future__ import annotations

import importlib.util
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from services.domain.operators import normalise_op

# Relax/TIR spellings of the same thing as the paper's operator names (beyond common.operators)
_KIND = {"relu6": "relu"}


class ProfilerError(ValueError):
    """The model cannot be imported, compiled or run: a reason a person can act on."""


class TvmCannotProfile(ProfilerError):
    """TVM itself cannot import, compile or run a model that its format's parser read (an operator
    its frontend lacks, a lowering it cannot do): the model may still be servable, only its
    operator profile is out of reach. ``stage``: import, compile or run."""

    def __init__(self, model: str, stage: str, exc: BaseException, target: str | None = None) -> None:
        lines = str(exc).strip().splitlines()
        self.model, self.stage = model, stage
        self.why = f"{type(exc).__name__}: {(lines[-1] if lines else '').strip()[:300]}".rstrip(": ")
        super().__init__(f"TVM cannot {stage} {model}{f' for {target}' if target else ''}: {self.why}")

    def notice(self) -> str:
        """One line for the search's notices: what TVM could not do, and that the search goes on."""
        return (f"TVM {tvm_version()} cannot {self.stage} {self.model} ({self.why}): searching without "
                f"operator knowledge (no KOPs, so no KOP curves or trees)")


def tvm_version() -> str:
    """'0.27' for apache-tvm 0.27.0.post1 (the installed TVM's major.minor)."""
    try:
        from importlib.metadata import version
        return ".".join(version("apache-tvm").split(".")[:2])
    except Exception:   # noqa: BLE001 — a name for a message; never worth an error
        return "(unknown version)"


@dataclass
class OpCall:
    """One operator call site of the model's main function."""
    func: str            # PrimFunc name, as the VM instrument sees it
    kind: str            # operator kind, in the vocabulary of the KOP curves
    flops: float | None
    input_bytes: int
    weight_bytes: int
    output_bytes: int

    @property
    def bytes(self) -> int:
        return self.input_bytes + self.weight_bytes + self.output_bytes


@dataclass
class Profile:
    model: str
    batch: int
    target: str
    calls: list[OpCall]
    op_seconds: dict[str, float] = field(default_factory=dict)   # PrimFunc -> seconds per inference
    import_s: float = 0.0
    compile_s: float = 0.0
    runs: int = 0
    run_cv: float | None = None       # coefficient of variation of the total over the kept runs
    latency_s: float | None = None    # median inference time (sum of operator times)

    def operators(self) -> list[dict[str, Any]]:
        """Per operator kind: time share (measured, else FLOPs share), memory share, FLOPs;
        largest time share first."""
        kinds: dict[str, dict[str, float]] = {}
        flops_known = all(c.flops is not None for c in self.calls)
        for c in self.calls:
            k = kinds.setdefault(c.kind, {"bytes": 0.0, "flops": 0.0, "time": 0.0, "calls": 0})
            k["bytes"] += c.bytes
            k["flops"] += c.flops or 0.0
            k["calls"] += 1
        # a PrimFunc shared by several call sites is timed once per call: spread evenly
        sites: dict[str, int] = {}
        for c in self.calls:
            sites[c.func] = sites.get(c.func, 0) + 1
        for c in self.calls:
            kinds[c.kind]["time"] += self.op_seconds.get(c.func, 0.0) / sites[c.func]
        total_t = sum(k["time"] for k in kinds.values())
        total_b = sum(k["bytes"] for k in kinds.values()) or 1.0
        total_f = sum(k["flops"] for k in kinds.values()) or 1.0
        rows = []
        for kind, k in kinds.items():
            share = k["time"] / total_t if total_t > 0 else k["flops"] / total_f
            rows.append({"op": kind, "time_share": share, "memory_share": k["bytes"] / total_b,
                         "flops": k["flops"] if flops_known else None, "calls": int(k["calls"]),
                         "seconds": k["time"] if total_t > 0 else None})
        return sorted(rows, key=lambda r: (-r["time_share"], r["op"]))

    @property
    def measured(self) -> bool:
        return bool(self.op_seconds)


def op_kind(func_name: str) -> str:
    """'conv2d3' -> 'conv2d', 'matmul12' -> 'dense', 'transpose1' -> 'transpose'."""
    m = re.fullmatch(r"(.*\dd)\d*", func_name)       # conv2d1 -> conv2d, max_pool2d12 -> max_pool2d
    base = m.group(1) if m else re.sub(r"\d+$", "", func_name)
    base = base.rstrip("_").removeprefix("tir_")      # tir_sigmoid, tir_clip: TIR intrinsics
    return _KIND.get(base, normalise_op(base))


# ---- getting a Relax module ----------------------------------------------------------------
def onnx_inputs(path: Path, batch: int) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, static shape, dtype) of an ONNX model's inputs, the batch (first symbolic) dim set."""
    import onnx
    from onnx import helper
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    out = []
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        t = inp.type.tensor_type
        shape = []
        for i, d in enumerate(t.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(batch)
            else:
                raise ProfilerError(f"{path.name}: input {inp.name} has a symbolic dimension {i} "
                                    f"({d.dim_param or '?'}) other than the batch; export it with static shapes")
        out.append((inp.name, tuple(shape), str(helper.tensor_dtype_to_np_dtype(t.elem_type))))
    return out


def _relax_from_onnx(path: Path, batch: int) -> Any:
    import onnx
    from tvm.relax.frontend.onnx import from_onnx
    shapes = {n: s for n, s, _ in onnx_inputs(path, batch)}
    try:
        return from_onnx(onnx.load(str(path)), shape_dict=shapes, keep_params_in_input=False)
    except Exception as exc:   # noqa: BLE001 — TVM raises many kinds; the user needs the reason
        raise TvmCannotProfile(path.name, "import", exc) from None


def _relax_from_torch_export(path: Path, trust_pickle: bool) -> Any:
    """A ``torch.export.save`` archive (.pt2): the way in for GRU/LSTM, which TVM's ONNX frontend
    rejects. Its shapes are the ones it was exported with. torch.export.load falls back to
    unpickling the archive's weights (code execution for a crafted file), so it is read only
    when the caller trusts the file's author."""
    if not trust_pickle:
        raise ProfilerError(f"{path.name}: torch.export archives can contain pickled data, which this service "
                            f"does not load from untrusted submitters; submit ONNX, or enable "
                            f"FALCON_TRUST_TORCH_ARCHIVES=1 (profile CLI: --trust-torch-archive) for trusted ones")
    import torch
    from tvm.relax.frontend.torch import from_exported_program
    try:
        ep = torch.export.load(str(path))
    except Exception as exc:   # noqa: BLE001
        raise ProfilerError(f"{path.name} is not a torch.export archive: {type(exc).__name__}: "
                            f"{str(exc)[:200]}") from None
    try:
        return from_exported_program(ep, keep_params_as_input=False)
    except Exception as exc:   # noqa: BLE001 — torch read it: an operator TVM's frontend lacks
        raise TvmCannotProfile(path.name, "import", exc) from None


def load_relax(model: str | Path | Any, batch: int = 1, trust_pickle: bool = False, fmt: str | None = None
               ) -> tuple[Any, str]:
    """(Relax IRModule, display name) for an ONNX file, a torch.export archive (.pt2), or an
    in-memory ``torch.export.ExportedProgram`` (how tools hand over zoo models); ``fmt``
    ('onnx' | 'torch-export') overrides the file suffix."""
    if not isinstance(model, (str, Path)):
        from tvm.relax.frontend.torch import from_exported_program
        return from_exported_program(model, keep_params_as_input=False), type(model).__name__
    p = Path(model)
    if not p.is_file():
        raise ProfilerError(f"model file {p} does not exist")
    if fmt == "torch-export" or (fmt is None and p.suffix == ".pt2"):
        return _relax_from_torch_export(p, trust_pickle), p.stem
    return _relax_from_onnx(p, batch), p.stem


def example_inputs(mod: Any, seed: int = 0) -> list[np.ndarray]:
    """Random tensors matching ``main``'s parameters (token ids stay small: any vocabulary fits)."""
    rng = np.random.default_rng(seed)
    out = []
    for param in mod["main"].params:
        ty = param.ty
        shape = tuple(int(s) for s in ty.shape.values)
        dtype = str(ty.dtype)
        if "int" in dtype:
            out.append(rng.integers(0, 2, size=shape).astype(dtype))
        else:
            out.append(rng.standard_normal(shape).astype(dtype))
    return out


# ---- static analysis -----------------------------------------------------------------------
def lower_unfused(mod: Any) -> Any:
    """One PrimFunc per Relax operator (no fusion), constants folded: the profile's granularity.
    Batch norms that follow a convolution are folded into it first, as every serving runtime
    (and an ONNX export) does; the rest are decomposed into their elementwise ops."""
    import tvm
    from tvm import relax
    seq = tvm.transform.Sequential([relax.transform.FoldBatchnormToConv2D(), relax.transform.FoldConstant(),
                                    relax.transform.DecomposeOpsForInference(), relax.transform.LegalizeOps(),
                                    relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant()])
    return seq(mod)


def _nbytes(sinfo: Any) -> int:
    from tvm import relax
    if isinstance(sinfo, relax.TupleType):
        return sum(_nbytes(f) for f in sinfo.fields)
    shape = getattr(sinfo, "shape", None)
    if shape is None or not hasattr(shape, "values"):
        return 0
    n = 1
    for s in shape.values:
        n *= int(s)
    bits = {"float32": 32, "float16": 16, "int64": 64, "int32": 32, "bool": 8, "float64": 64, "int8": 8,
            "uint8": 8, "bfloat16": 16}.get(str(sinfo.dtype), 32)
    return n * bits // 8


def static_calls(lowered: Any) -> list[OpCall]:
    import tvm
    from tvm import relax
    from tvm.relax.analysis import post_order_visit
    call_tir = tvm.ir.Op.get("relax.call_tir")
    found: list[Any] = []
    post_order_visit(lowered["main"].body,
                     lambda e: found.append(e) if isinstance(e, relax.Call) and e.op.same_as(call_tir) else None)
    calls = []
    for c in found:
        gv = c.args[0]
        args = c.args[1].fields if isinstance(c.args[1], relax.Tuple) else [c.args[1]]
        weights = sum(_nbytes(a.ty) for a in args if isinstance(a, tvm.ir.expr.Constant))
        inputs = sum(_nbytes(a.ty) for a in args if not isinstance(a, tvm.ir.expr.Constant))
        out = _nbytes(c.ty_args[0])
        try:
            flops = float(tvm.s_tir.analysis.estimate_tir_flops(tvm.IRModule({"main": lowered[gv]})))
        except Exception:   # noqa: BLE001 — an estimate we cannot get is 'unknown', not an error
            flops = None
        calls.append(OpCall(gv.name_hint, op_kind(gv.name_hint), flops, inputs, weights, out))
    return calls


# ---- measurement ---------------------------------------------------------------------------
def host_target(cores: int | None = None) -> Any:
    import os

    import tvm
    from tvm.target import codegen
    return tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(),
                              "num-cores": int(cores or os.cpu_count() or 1)})


def make_target(kind: str) -> Any:
    import tvm
    if kind == "llvm":
        return host_target()
    if kind == "cuda":
        if not tvm.cuda(0).exist:
            raise ProfilerError("target cuda asked for, but this machine has no CUDA GPU")
        return tvm.target.Target({"kind": "cuda", "arch": "sm_" + tvm.cuda(0).compute_version.replace(".", "")})
    raise ProfilerError(f"unknown target {kind!r} (llvm or cuda)")


def compile_module(lowered: Any, target_kind: str) -> Any:
    import tvm
    target = make_target(target_kind)
    mod = lowered
    if target_kind == "cuda":   # GPU kernels must be scheduled (thread binding): DLight's defaults
        from tvm.s_tir import dlight as dl
        with target:
            mod = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(),
                                          dl.gpu.GeneralReduction(), dl.gpu.Fallback())(mod)
    return tvm.compile(mod, target)


def time_operators(executable: Any, target_kind: str, inputs: Sequence[np.ndarray], min_runs: int = 3,
                   max_runs: int = 30, tolerance: float = 0.05, budget_s: float = 120.0
                   ) -> tuple[dict[str, float], int, float | None]:
    """Median seconds per PrimFunc per inference, runs kept, CV of the per-run total.

    Runs (after one warm-up) until the last ``min_runs`` totals vary by less than
    ``tolerance`` (coefficient of variation), ``max_runs`` or the time budget."""
    import tvm
    from tvm import relax
    dev = tvm.cuda(0) if target_kind == "cuda" else tvm.cpu(0)
    vm = relax.VirtualMachine(executable, dev)
    args = [tvm.runtime.tensor(a, dev) for a in inputs]
    current: dict[str, float] = {}
    started: dict[str, float] = {}
    sync = dev.sync if target_kind == "cuda" else (lambda: None)

    def instrument(func: Any, name: str, before: bool, ret: Any, *a: Any) -> int:
        if name.startswith("vm.builtin."):
            return 0
        if before:
            sync()
            started[name] = time.perf_counter()
        else:
            sync()
            current[name] = current.get(name, 0.0) + time.perf_counter() - started[name]
        return 0

    vm["main"](*args)   # warm-up, uninstrumented
    vm.set_instrument(instrument)
    runs: list[dict[str, float]] = []
    t_end = time.monotonic() + budget_s
    cv = None
    while len(runs) < max_runs:
        current = {}
        vm["main"](*args)
        runs.append(current)
        totals = [sum(r.values()) for r in runs[-min_runs:]]
        if len(runs) >= min_runs:
            cv = statistics.pstdev(totals) / statistics.mean(totals) if statistics.mean(totals) > 0 else 0.0
            if cv <= tolerance or time.monotonic() > t_end:
                break
    kept = runs[-min_runs:] if len(runs) >= min_runs else runs
    names = {n for r in kept for n in r}
    return {n: statistics.median(r.get(n, 0.0) for r in kept) for n in names}, len(runs), cv


def profile_model(model: str | Path | Any, batch: int = 1, target: str = "llvm", measure: bool = True,
                  budget_s: float = 120.0, trust_pickle: bool = False, fmt: str | None = None,
                  name: str | None = None) -> Profile:
    """Import, lower, analyse and (unless ``measure`` is False) compile and time ``model`` (a
    model file, or an exported program; see :func:`load_relax`)."""
    t0 = time.perf_counter()
    if importlib.util.find_spec("tvm") is None:
        raise ProfilerError("Apache TVM is not installed here (pip install apache-tvm==0.27.0.post1 "
                            "apache-tvm-ffi==0.1.14.post1)")
    mod, found_name = load_relax(model, batch, trust_pickle, fmt)
    name = name or found_name
    try:
        lowered = lower_unfused(mod)
        calls = static_calls(lowered)
    except Exception as exc:   # noqa: BLE001 — imported, but an operator TVM cannot lower (legalise)
        raise TvmCannotProfile(name, "compile", exc) from None
    prof = Profile(name, batch, target, calls, import_s=time.perf_counter() - t0)
    if not prof.calls:
        raise ProfilerError(f"{name}: no operators found in the model's main function")
    if measure:
        t1 = time.perf_counter()
        try:
            ex = compile_module(lowered, target)
        except ProfilerError:
            raise
        except Exception as exc:   # noqa: BLE001
            raise TvmCannotProfile(name, "compile", exc, target) from None
        prof.compile_s = time.perf_counter() - t1
        try:
            prof.op_seconds, prof.runs, prof.run_cv = time_operators(ex, target, example_inputs(lowered),
                                                                     budget_s=budget_s)
        except Exception as exc:   # noqa: BLE001 — TVM compiled it but its runtime fails on it
            raise TvmCannotProfile(name, "run", exc, target) from None
        prof.latency_s = sum(prof.op_seconds.values())
    return prof
