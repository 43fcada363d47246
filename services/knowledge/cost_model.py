"""Operator cost model: RPS and RPS/$ of any configuration before any trial, from the model's
operators (the TVM profiler's static FLOPs and bytes) and the devices' public specs (roofline),
then calibrated per device by whatever was measured. An expert for the search's model average,
and a strategy on its own.

Roofline of one operator (:func:`operator_time_s`) at batch ``b``::

    time = max(b * flops / (peak * efficiency), bytes(b) / (bandwidth * efficiency)) + calls * overhead
    bytes(b) = (weight_bytes + b * activation_bytes) * bytes_per_element(precision) / 4

FLOPs and activation bytes grow with the batch, weights are read once per batch, so a larger
batch raises throughput until the operator turns compute-bound; a batch also pays a fixed
BATCH_OVERHEAD_S (framework, synchronisation, copy to the GPU) and each kernel call
KERNEL_OVERHEAD_S, which a larger batch spreads over more requests. GEMM-like operators (conv,
dense, batch_matmul) get the device's peak at the configuration's precision (tensor cores for
fp16, INT8 units for int8); the others get the FP32 peak (they are memory-bound anyway).

A configuration's throughput (:meth:`CostModel.predict_rps`), knob by knob:

- ``gputype``: the device (hardware.HardwareCatalogue.resolve: 'none' / no knob -> the default CPU).
- ``batchsize``: requests per inference (default 1).
- ``cpus``: on a CPU device, the cores running the operators: peak and bandwidth x n / (1 +
  CPU_PARALLEL_LOSS (n - 1)), while per-call overheads do not shrink; on a GPU, the host cores
  that parse, pre- and post-process requests (HOST_S_PER_SAMPLE of one core each), pipelined
  with the GPU: rps = min(GPU rps, cpus / HOST_S_PER_SAMPLE). On a CPU the same cores do that
  work too, so it adds to the batch's time.
- ``gpumem``: GB of GPU memory reserved. More than the device has, or less than the model's
  footprint (weights + twice the largest operator's activations at the batch and precision,
  when the bytes are known) -> predicted 0 (infeasible). Otherwise neutral for speed (it
  matters through the price).
- ``gpupower``: power cap, % of TDP (values <= 1.5 are read as fractions). Compute peak x
  (POWER_FLOOR + (1 - POWER_FLOOR) * min(1, cap / POWER_FULL)): linear in the cap above a floor
  (clocks fall with the cap, static power does no work), no loss once the cap exceeds what an
  inference kernel draws (POWER_FULL of TDP); bandwidth does not change. GPUs only.
- ``precision`` (if present): fp32 / fp16 / bf16 / int8 -> the matching peak and bytes per element
  (the profile's bytes are taken as fp32).
- ``replicas`` (if present): throughput x replicas; the price x replicas too unless the price
  function already counts them (``price_includes_replicas``).
- any other knob (e.g. ``graph_opt``) is neutral: the model knows nothing about it.

RPS/$ (:meth:`CostModel.predict`) = rps x 3600 / hourly(config), the objective of the search.

What is known of the model decides how good the prediction can be (``CostModel.knowledge``):

- ``static``: per-operator FLOPs, weight and activation bytes (profiler's OpCall list, see
  :func:`operators_from_calls`, or rows with ``weight_bytes`` and ``input_bytes``/``output_bytes``
  or ``activation_bytes``). Full roofline with the real call counts, memory fit checked.
- ``flops``: FLOPs and memory shares only (``Profile.operators()`` rows): bytes are estimated
  from typical arithmetic intensities (:data:`TYPICAL_KINDS`) scaled so the memory shares hold;
  the weight / activation split is the kind's typical one. No memory fit check.
- ``time-share``: only the share of running time per operator kind (falcon-data profiles, the
  live tables' operators.csv). Each operator is given the typical intensity and weight split of
  its kind, and FLOPs and bytes such that on ``reference_device`` (where the shares are assumed
  measured, batch 1, fp32; T4 by default) its roofline time has its share and the model does
  ``nominal_gflops`` per sample; ``nominal_calls`` kernel calls per inference are spread over the
  kinds by share. The ranking between devices then comes from the devices' specs only (nothing
  of the model tells one GPU from another beyond compute- vs memory-bound kinds), the batch
  effect from the assumed intensities, call count and overheads, and the absolute RPS from
  ``nominal_gflops`` (calibration fixes the level per device, not the shape). No memory fit
  check.

Calibration (:meth:`CostModel.calibrate`): a multiplicative scale per device, fitted in log space
on measured values (RPS/$ in the predictions' unit, or any unit proportional to it): a common
log-offset over all observations shrunk towards 0 (scale 1), and each device's deviation from it
shrunk towards the common one (``prior_points`` pseudo-observations); a device with no
observation borrows the scale of the most similar observed device (catalogue features).

Pure: numpy and the hardware catalogue; the price comes in as a callable (e.g.
``services.domain.pricing.PriceCatalogue.hourly``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from services.domain.roles import KnobRoles
from services.knowledge.hardware import Device, HardwareCatalogue

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
PROFILED_BYTES_PER_ELEMENT = 4          # the profiler's bytes are those of an fp32 model

DEFAULT_EFFICIENCY = 0.6                # share of peak compute and bandwidth a kernel reaches
KERNEL_OVERHEAD_S = {"gpu": 5e-6, "cpu": 2e-6}      # per operator call: launch / dispatch
BATCH_OVERHEAD_S = {"gpu": 2e-4, "cpu": 5e-5}       # per inference: framework, sync, copy to GPU
HOST_S_PER_SAMPLE = 5e-5                # host core time per request (parse, pre/post-process)
CPU_PARALLEL_LOSS = 0.1                 # n cores do n / (1 + loss (n - 1)) cores' work
POWER_FLOOR = 0.3                       # share of the compute peak left at a cap near 0
POWER_FULL = 0.9                        # cap (share of TDP) above which inference loses nothing

# Kinds a serving runtime runs without moving data (views of a tensor): no bytes, no kernel.
VIEW_KINDS = frozenset({"reshape", "squeeze", "expand_dims", "flatten"})
# Kinds whose constant operand is a lookup table: it occupies memory but only the rows looked up
# move (an embedding's table is not streamed per batch).
LOOKUP_KINDS = frozenset({"take", "gather", "embedding"})

GEMM_KINDS = frozenset({"conv1d", "conv2d", "conv3d", "conv1d_transpose", "conv2d_transpose",
                        "conv3d_transpose", "dense", "matmul", "batch_matmul"})


@dataclass(frozen=True)
class KindCost:
    """Typical arithmetic intensity (FLOPs per byte moved, batch 1, fp32) of an operator kind,
    and the share of its bytes that are weights (read once per batch)."""
    intensity: float
    weight_fraction: float


_ELEMENTWISE = KindCost(0.1, 0.0)       # ~1 FLOP per 8-12 bytes (1-2 reads, 1 write)
_TRANSCENDENTAL = KindCost(0.5, 0.0)    # a few FLOPs per element
_NORM = KindCost(0.6, 0.02)
_POOL = KindCost(0.25, 0.0)
_MOVE = KindCost(0.0, 0.0)              # data movement: bytes, no FLOPs
TYPICAL_KINDS: dict[str, KindCost] = {
    # compute-bound: convolutions reuse each weight over every output position
    **{k: KindCost(40.0, 0.3) for k in ("conv1d", "conv2d", "conv3d", "conv1d_transpose",
                                        "conv2d_transpose", "conv3d_transpose")},
    # dense: a GEMV at batch 1 (0.5 FLOP/B) for RNNs, a GEMM over the sequence for transformers;
    # weights dominate its bytes at batch 1, so batching raises its intensity towards 40
    "dense": KindCost(8.0, 0.8), "matmul": KindCost(8.0, 0.8),
    "batch_matmul": KindCost(16.0, 0.0),
    **{k: _ELEMENTWISE for k in ("add", "subtract", "multiply", "divide", "negative", "relu", "clip",
                                 "maximum", "minimum", "where", "cast", "abs", "power", "sqrt",
                                 "rsqrt", "floor", "round", "bias_add", "leaky_relu", "prelu")},
    **{k: _TRANSCENDENTAL for k in ("sigmoid", "tanh", "gelu", "erf", "exp", "log", "silu",
                                    "softplus", "hard_swish", "hardswish", "mish")},
    **{k: _NORM for k in ("batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm")},
    "softmax": KindCost(0.6, 0.0), "log_softmax": KindCost(0.6, 0.0),
    **{k: _POOL for k in ("max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
                          "avg_pool3d", "adaptive_avg_pool2d", "global_avg_pool2d", "mean", "sum",
                          "max", "min", "variance", "std")},
    **{k: _MOVE for k in ("reshape", "transpose", "concat", "split", "strided_slice", "take", "stack",
                          "squeeze", "expand_dims", "broadcast_to", "gather", "pad", "flatten", "copy",
                          "tile", "repeat", "scatter", "slice", "permute_dims", "resize2d", "upsampling")},
}
DEFAULT_KIND = KindCost(0.25, 0.0)


def typical_kind(op: str) -> KindCost:
    return TYPICAL_KINDS.get(op, DEFAULT_KIND)


class CostModelError(ValueError):
    """Operators or configurations the cost model cannot use (one line)."""


@dataclass(frozen=True)
class OperatorCost:
    """One operator kind of a model: FLOPs and activation bytes per sample, weight bytes per
    batch (all None when only its time share is known), calls per inference; ``resident_bytes``:
    constants that take memory but are not streamed (lookup tables), for the memory fit only."""
    op: str
    flops: float | None = None
    weight_bytes: float | None = None
    activation_bytes: float | None = None
    time_share: float | None = None
    calls: int = 1
    resident_bytes: float = 0.0

    @property
    def has_costs(self) -> bool:
        return self.flops is not None and self.weight_bytes is not None and self.activation_bytes is not None

    def bytes_at(self, batch: float, precision: str = "fp32") -> float:
        if not self.has_costs:
            raise CostModelError(f"operator {self.op}: no bytes known (only a time share)")
        return ((self.weight_bytes or 0.0) + batch * (self.activation_bytes or 0.0)) \
            * _bytes_per_element(precision) / PROFILED_BYTES_PER_ELEMENT


def _bytes_per_element(precision: str) -> int:
    try:
        return BYTES_PER_ELEMENT[precision.lower()]
    except KeyError:
        raise CostModelError(f"unknown precision {precision!r} (known: {', '.join(BYTES_PER_ELEMENT)})") from None


def power_scale(cap: float) -> float:
    """Share of the compute peak left under a power cap (share of TDP): see the module doc."""
    cap = min(max(float(cap), 0.0), 1.0)
    return POWER_FLOOR + (1.0 - POWER_FLOOR) * min(1.0, cap / POWER_FULL)


def cpu_cores_scale(cores: float) -> float:
    """Cores' worth of work ``cores`` CPU cores do together (parallel loss)."""
    n = max(float(cores), 1e-9)
    return n / (1.0 + CPU_PARALLEL_LOSS * max(n - 1.0, 0.0))


def operator_time_s(op: OperatorCost, device: Device, batch: float, precision: str = "fp32",
                    cores: float | None = None, efficiency: float = DEFAULT_EFFICIENCY,
                    power_cap: float = 1.0, overhead_s: float | None = None) -> float:
    """Roofline time of one operator for one batch: max(compute, memory) + per-call overhead.
    ``cores``: CPU cores (ignored on a GPU; default 1); ``power_cap``: share of TDP (GPU only);
    ``overhead_s``: per call (default KERNEL_OVERHEAD_S of the device's kind)."""
    if not op.has_costs:
        raise CostModelError(f"operator {op.op}: only a time share is known; build a CostModel, which "
                             f"derives FLOPs and bytes from it")
    if not 0 < efficiency <= 1:
        raise CostModelError(f"efficiency {efficiency} is not in (0, 1]")
    peak = device.peak_flops(precision if op.op in GEMM_KINDS else "fp32")
    bandwidth = device.bandwidth_bytes_s
    if device.is_gpu:
        peak *= power_scale(power_cap)
    else:
        scale = cpu_cores_scale(1.0 if cores is None else cores)
        peak *= scale
        bandwidth *= scale
    compute = batch * (op.flops or 0.0) / (peak * efficiency)
    memory = op.bytes_at(batch, precision) / (bandwidth * efficiency)
    overhead = KERNEL_OVERHEAD_S[device.kind] if overhead_s is None else overhead_s
    return max(compute, memory) + op.calls * overhead


def operators_from_calls(calls: Iterable[Any]) -> list[OperatorCost]:
    """Operator costs per kind from the profiler's static call sites (tvm_profile.OpCall: kind,
    flops, input_bytes, weight_bytes, output_bytes, all at batch 1): the 'static' knowledge.
    The profile is of an unfused TVM module; a serving runtime does not copy for a view
    (:data:`VIEW_KINDS`: no bytes, no call) and reads only the looked-up rows of a table
    (:data:`LOOKUP_KINDS`: the table is resident, not streamed)."""
    kinds: dict[str, dict[str, float]] = {}
    unknown_flops: set[str] = set()
    for c in calls:
        k = kinds.setdefault(c.kind, {"flops": 0.0, "w": 0.0, "a": 0.0, "r": 0.0, "calls": 0})
        if c.flops is None:
            unknown_flops.add(c.kind)
        if c.kind in VIEW_KINDS:
            continue
        k["flops"] += c.flops or 0.0
        k["w" if c.kind not in LOOKUP_KINDS else "r"] += c.weight_bytes
        k["a"] += c.input_bytes + c.output_bytes
        k["calls"] += 1
    return [OperatorCost(kind, None if kind in unknown_flops else k["flops"], k["w"], k["a"], None, int(k["calls"]),
                         k["r"]) for kind, k in kinds.items()]


def _number(row: Mapping[str, Any], key: str) -> float | None:
    v = row.get(key)
    if v is None or v == "":
        return None
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise CostModelError(f"operator {row.get('op')!r}: {key} {v!r} is not a number") from None
    if not math.isfinite(out) or out < 0:
        raise CostModelError(f"operator {row.get('op')!r}: {key} {v!r} is not a finite non-negative number")
    return out


def _operator_from_row(row: Mapping[str, Any] | OperatorCost) -> tuple[OperatorCost, float | None]:
    """(operator, memory share) of one profile row; accepts the profiler's keys (op, time_share,
    memory_share, flops, calls) plus optional weight_bytes, input_bytes, output_bytes,
    activation_bytes, and falcon-data rows (op or op_name, time_share)."""
    if isinstance(row, OperatorCost):
        return row, None
    op = row.get("op", row.get("op_name"))
    if not op:
        raise CostModelError(f"operator row {dict(row)!r} has no 'op'")
    activation = _number(row, "activation_bytes")
    inp, out = _number(row, "input_bytes"), _number(row, "output_bytes")
    if activation is None and (inp is not None or out is not None):
        activation = (inp or 0.0) + (out or 0.0)
    weight = _number(row, "weight_bytes")
    if activation is not None and weight is None:
        weight = 0.0
    calls = _number(row, "calls")
    return (OperatorCost(str(op), _number(row, "flops"), weight, activation, _number(row, "time_share"),
                         int(calls) if calls else 1), _number(row, "memory_share"))


# the names of the knobs the model understands (the rest are neutral): the space's roles
Knobs = KnobRoles
# the roles whose knobs the model predicts (graph_opt and queue_delay are not among them)
MODELLED_ROLES = ("batch", "cpus", "gpu", "gpu_mem", "gpu_power", "precision", "replicas")


def modelled_knobs(roles: KnobRoles) -> frozenset[str]:
    """The knob names the cost model predicts the effect of, under ``roles``."""
    return frozenset(getattr(roles, r) for r in MODELLED_ROLES)


@dataclass(frozen=True)
class _Settings:
    precision: str = "fp32"
    efficiency: float = DEFAULT_EFFICIENCY
    host_s_per_sample: float = HOST_S_PER_SAMPLE
    price_includes_replicas: bool = False
    prior_points: float = 1.0
    knobs: Knobs = field(default_factory=Knobs)


class CostModel:
    """RPS and RPS/$ of configurations from operator costs and device specs (module doc)."""

    def __init__(self, operators: Sequence[Mapping[str, Any] | OperatorCost], hardware: HardwareCatalogue,
                 hourly: Callable[[Mapping[str, Any]], float], *, precision: str = "fp32",
                 efficiency: float = DEFAULT_EFFICIENCY, reference_device: str | None = None,
                 nominal_gflops: float = 1.0, nominal_calls: int = 100, host_s_per_sample: float = HOST_S_PER_SAMPLE,
                 price_includes_replicas: bool = False, prior_points: float = 1.0,
                 knobs: Knobs | None = None) -> None:
        if not operators:
            raise CostModelError("a cost model needs at least one operator")
        _bytes_per_element(precision)
        if not 0 < efficiency <= 1:
            raise CostModelError(f"efficiency {efficiency} is not in (0, 1]")
        self.hardware = hardware
        self.hourly = hourly
        self.settings = _Settings(precision.lower(), efficiency, host_s_per_sample, price_includes_replicas,
                                  prior_points, knobs or Knobs())
        self.reference_device: str | None = None     # where time shares are taken as measured
        parsed = [_operator_from_row(r) for r in operators]
        ops = [o for o, _ in parsed]
        if all(o.has_costs for o in ops):
            self.knowledge = "static"
            self.operators = ops
        elif all(o.flops is not None for o in ops) and all(m is not None for _, m in parsed) \
                and any((o.flops or 0) > 0 for o in ops):
            self.knowledge = "flops"
            self.operators = _bytes_from_memory_shares(parsed)
        elif all(o.time_share is not None for o in ops):
            self.knowledge = "time-share"
            ref = self._reference(reference_device)
            self.reference_device = ref.name
            self.operators = _costs_from_time_shares(ops, ref, efficiency, nominal_gflops * 1e9, nominal_calls)
        else:
            raise CostModelError("operators need FLOPs and bytes, FLOPs and memory shares, or time shares "
                                 "for every row")
        self._log_scales: dict[str, float] = {}      # device name -> fitted log scale
        self._borrowed: dict[str, float] = {}        # cache: device name -> borrowed log scale
        self._default_log_scale = 0.0                # when nothing at all was observed
        self._times: dict[tuple[Any, ...], float] = {}

    def _reference(self, name: str | None) -> Device:
        if name is not None:
            return self.hardware.device(name)
        if "T4" in self.hardware:
            return self.hardware.device("T4")
        gpus = [d for d in self.hardware.devices.values() if d.is_gpu]
        return gpus[0] if gpus else self.hardware.resolve(None)

    # -- prediction ---------------------------------------------------------------------------
    def batch_time_s(self, device: Device, batch: int, precision: str, cpus: float = 1.0,
                     power_cap: float = 1.0) -> float:
        """Seconds for one inference of ``batch`` requests on the device (host work excluded on
        a GPU, included on a CPU)."""
        key = (device.name, batch, precision, cpus if not device.is_gpu else None,
               power_cap if device.is_gpu else None)
        t = self._times.get(key)
        if t is None:
            t = BATCH_OVERHEAD_S[device.kind] + sum(
                operator_time_s(o, device, batch, precision, cores=cpus, efficiency=self.settings.efficiency,
                                power_cap=power_cap) for o in self.operators)
            if not device.is_gpu:
                t += batch * self.settings.host_s_per_sample / cpu_cores_scale(cpus)
            self._times[key] = t
        return t

    def footprint_bytes(self, batch: int, precision: str) -> float | None:
        """GPU memory the model needs (weights + twice the largest operator's activations), or
        None when its bytes are not known (only estimated)."""
        if self.knowledge != "static":
            return None
        scale = _bytes_per_element(precision) / PROFILED_BYTES_PER_ELEMENT
        weights = sum((o.weight_bytes or 0.0) + o.resident_bytes for o in self.operators)
        act = max((o.activation_bytes or 0.0) for o in self.operators)
        return (weights + 2.0 * batch * act) * scale

    def _config(self, config: Mapping[str, Any]) -> tuple[Device, int, float, str, float, float | None, int]:
        k = self.settings.knobs
        try:
            device = self.hardware.resolve(config.get(k.gpu))
            batch = int(config.get(k.batch, 1))
            cpus = float(config.get(k.cpus, 1))
            precision = str(config.get(k.precision, self.settings.precision)).lower()
            power = float(config.get(k.gpu_power, 100))
            mem = config.get(k.gpu_mem)
            mem_gb = None if mem is None else float(mem)
            replicas = int(config.get(k.replicas, 1))
        except (TypeError, ValueError) as exc:
            raise CostModelError(f"configuration {dict(config)!r}: {exc}") from None
        if batch < 1 or cpus <= 0 or replicas < 1:
            raise CostModelError(f"configuration {dict(config)!r}: batch, cpus and replicas must be positive")
        _bytes_per_element(precision)
        cap = power / 100.0 if power > 1.5 else power
        return device, batch, cpus, precision, cap, mem_gb, replicas

    def predict_rps(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Requests per second of each configuration (0: does not fit its GPU memory)."""
        out = np.empty(len(configs))
        for i, cfg in enumerate(configs):
            device, batch, cpus, precision, cap, mem_gb, replicas = self._config(cfg)
            if device.is_gpu and mem_gb is not None:
                need = self.footprint_bytes(batch, precision)
                if mem_gb > device.mem_gb or (need is not None and need > mem_gb * 1e9):
                    out[i] = 0.0
                    continue
            rps = batch / self.batch_time_s(device, batch, precision, cpus, cap)
            if device.is_gpu:
                rps = min(rps, cpus / self.settings.host_s_per_sample)
            out[i] = rps * replicas * math.exp(self.log_scale(device.name))
        return out

    def predict(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """RPS/$ (requests per dollar) of each configuration; 0 where it is infeasible. Works
        on any list of configurations: nothing is enumerated."""
        rps = self.predict_rps(configs)
        out = np.zeros(len(configs))
        k = self.settings.knobs
        for i, cfg in enumerate(configs):
            if rps[i] <= 0:
                continue
            price = float(self.hourly(cfg))
            if not self.settings.price_includes_replicas:
                price *= int(cfg.get(k.replicas, 1))
            if price <= 0:
                raise CostModelError(f"configuration {dict(cfg)!r}: price {price} is not positive")
            out[i] = rps[i] * 3600.0 / price
        return out

    def breakdown(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Per operator: seconds per batch and whether compute or memory bounds it (why a
        prediction is what it is)."""
        device, batch, cpus, precision, cap, _, _ = self._config(config)
        rows = []
        for o in self.operators:
            t = operator_time_s(o, device, batch, precision, cores=cpus, efficiency=self.settings.efficiency,
                                power_cap=cap, overhead_s=0.0)
            compute_only = operator_time_s(replace(o, weight_bytes=0.0, activation_bytes=0.0), device, batch,
                                           precision, cores=cpus, efficiency=self.settings.efficiency,
                                           power_cap=cap, overhead_s=0.0)
            rows.append({"op": o.op, "seconds": t, "bound": "compute" if compute_only >= t else "memory"})
        return rows

    # -- calibration --------------------------------------------------------------------------
    def log_scale(self, device: str) -> float:
        """Fitted log scale of a device; an unobserved one borrows its nearest observed one's."""
        if device in self._log_scales:
            return self._log_scales[device]
        if not self._log_scales:
            return self._default_log_scale
        if device not in self._borrowed:
            nearest = self.hardware.nearest(device, self._log_scales)
            self._borrowed[device] = self._log_scales[nearest] if nearest else self._default_log_scale
        return self._borrowed[device]

    @property
    def scales(self) -> dict[str, float]:
        """Multiplicative scale per observed device."""
        return {d: math.exp(s) for d, s in self._log_scales.items()}

    def uncalibrated(self) -> "CostModel":
        return self._with_scales({}, 0.0)

    def calibrate(self, observations: Sequence[tuple[Mapping[str, Any], float]]) -> "CostModel":
        """A new model scaled per device to fit the measured values (see the module doc). Fits
        against the uncalibrated predictions, so pass every observation each time; pairs whose
        prediction or measurement is not positive are skipped (nothing to fit in log space)."""
        base = self.uncalibrated()
        residuals: dict[str, list[float]] = {}
        for cfg, measured in observations:
            predicted = float(base.predict([cfg])[0])
            if predicted > 0 and measured is not None and float(measured) > 0:
                dev = self.hardware.resolve(cfg.get(self.settings.knobs.gpu)).name
                residuals.setdefault(dev, []).append(math.log(float(measured) / predicted))
        every = [r for rs in residuals.values() for r in rs]
        if not every:
            return base
        prior = self.settings.prior_points
        common = sum(every) / (len(every) + prior)
        scales = {d: common + sum(r - common for r in rs) / (len(rs) + prior) for d, rs in residuals.items()}
        return self._with_scales(scales, common)

    def _with_scales(self, scales: dict[str, float], default: float) -> "CostModel":
        clone = object.__new__(CostModel)
        clone.__dict__.update(self.__dict__)
        clone._log_scales = dict(scales)
        clone._borrowed = {}
        clone._default_log_scale = default
        return clone


def _bytes_from_memory_shares(parsed: list[tuple[OperatorCost, float | None]]) -> list[OperatorCost]:
    """FLOPs known, bytes only as shares: total bytes estimated from the typical intensities of
    the operators that compute, then spread by memory share; weights by the kind's typical split."""
    est = [(o.flops or 0.0) / typical_kind(o.op).intensity for o, m in parsed
           if (o.flops or 0) > 0 and typical_kind(o.op).intensity > 0 and (m or 0) > 0]
    shares = [m or 0.0 for o, m in parsed
              if (o.flops or 0) > 0 and typical_kind(o.op).intensity > 0 and (m or 0) > 0]
    total_share = sum(m or 0.0 for _, m in parsed) or 1.0
    if est and sum(shares) > 0:
        total_bytes = sum(est) / (sum(shares) / total_share)
    else:   # no memory share on computing operators: bytes from intensity alone
        total_bytes = sum((o.flops or 0.0) / max(typical_kind(o.op).intensity, 0.1) for o, _ in parsed)
    out = []
    for o, m in parsed:
        b = total_bytes * (m or 0.0) / total_share
        w = typical_kind(o.op).weight_fraction
        out.append(replace(o, weight_bytes=w * b, activation_bytes=(1 - w) * b))
    return out


def _costs_from_time_shares(ops: list[OperatorCost], ref: Device, efficiency: float,
                            nominal_flops: float, nominal_calls: int) -> list[OperatorCost]:
    """Only time shares: each kind gets its typical intensity and weight split, and FLOPs and
    bytes such that on ``ref`` (batch 1, fp32, one core) its roofline time is its share of a
    latency chosen so the model does ``nominal_flops`` per sample; the ``nominal_calls`` kernels
    of an inference are spread over the kinds by time share (at least one each)."""
    total = sum(o.time_share or 0.0 for o in ops)
    if total <= 0:
        raise CostModelError("time shares sum to 0")
    peak, bw = ref.peak_flops("fp32") * efficiency, ref.bandwidth_bytes_s * efficiency
    per_byte = {o.op: max(typical_kind(o.op).intensity / peak, 1.0 / bw) for o in ops}   # s per byte
    flops_per_s = sum(typical_kind(o.op).intensity * (o.time_share or 0.0) / total / per_byte[o.op] for o in ops)
    latency = nominal_flops / flops_per_s if flops_per_s > 0 else 1e-3
    out = []
    for o in ops:
        kind = typical_kind(o.op)
        b = (o.time_share or 0.0) / total * latency / per_byte[o.op]
        calls = max(1, round(nominal_calls * (o.time_share or 0.0) / total))
        out.append(replace(o, flops=kind.intensity * b, weight_bytes=kind.weight_fraction * b,
                           activation_bytes=(1 - kind.weight_fraction) * b, calls=calls))
    return out
