"""Hardware described by its public specs, so that what is known of one device type transfers to
another and a type never measured still gets a prediction (the cost model's roofline, the
knowledge's similarity between GPU types).

The catalogue (``deploy/config/hardware.yaml`` by default) gives per device: kind (gpu | cpu),
peak FP32 / FP16 / INT8 throughput (dense), memory bandwidth, memory size, TDP and whether it has
tensor cores. CPU entries are per vCPU (the unit a cloud bills and the ``cpus`` knob counts).

Mapping a GPU knob's value to a device (:meth:`HardwareCatalogue.resolve`): the name is looked up
case-insensitively, so a space may name a CPU entry directly (``gputype: EPYC-Zen5``; ``cpu`` is
the generic cloud vCPU of the default file); any other value that says "no GPU" (``none``,
``cpu``, ``no-gpu``, ``nogpu``, empty, or no GPU knob in the configuration at all) means the
catalogue's ``default_cpu`` entry (``cpu`` unless the file says otherwise).

Pure: numpy and yaml only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import numpy as np
import yaml

from services.domain.roles import DEFAULT_ROLES

DeviceKind = Literal["gpu", "cpu"]

NO_GPU_VALUES = frozenset({"none", "cpu", "no-gpu", "nogpu", ""})
NUMERIC_FIELDS = ("fp32_tflops", "fp16_tflops", "int8_tops", "mem_bandwidth_gbs", "mem_gb", "tdp_w")
REQUIRED_FIELDS = ("kind", *NUMERIC_FIELDS, "tensor_cores")
KNOWN_FIELDS = (*REQUIRED_FIELDS, "source")
NULLABLE_FIELDS = ("int8_tops",)        # null / 0: no INT8 path (INT8 then runs at the FP32 rate)

# Feature vector of a device (see HardwareCatalogue.features). Each spec is log10-scaled and
# mapped by a FIXED range to about [0, 1], so a device's features do not depend on which other
# devices the catalogue holds (knowledge stored with one catalogue stays comparable).
FEATURE_NAMES = ("log_fp32", "log_fp16", "log_int8", "log_bandwidth", "log_memory", "log_tdp",
                 "tensor_cores", "is_gpu")
_LOG_RANGES = {   # field -> (log10 low, log10 high): the span from a vCPU to the largest GPU
    "fp32_tflops": (-2.0, 2.0),         # 0.01 .. 100 TFLOP/s
    "fp16_tflops": (-2.0, 3.0),         # 0.01 .. 1000
    "int8_tops": (-2.0, 3.5),           # 0.01 .. ~3000 TOP/s
    "mem_bandwidth_gbs": (0.0, 4.0),    # 1 .. 10000 GB/s
    "mem_gb": (0.0, 2.0),               # 1 .. 100 GB
    "tdp_w": (0.0, 3.0),                # 1 .. 1000 W
}

# The two flags are weighted: a CPU is another kind of device (serving stack, overheads, no
# memory reservation), so GPU-vs-CPU weighs 2 spec ranges; tensor cores already show in the FP16
# and INT8 figures, so the flag adds only half a range (at full weight it outweighed every spec
# gap between GPUs: an M60 sat nearly as far from a T4 as from an H100).
TENSOR_CORE_WEIGHT = 0.5
GPU_WEIGHT = 2.0

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


class HardwareError(ValueError):
    """A hardware catalogue that cannot be used, or a device it does not hold (one line)."""


@dataclass(frozen=True)
class Device:
    name: str
    kind: DeviceKind
    fp32_tflops: float
    fp16_tflops: float
    int8_tops: float | None         # None: no INT8 path
    mem_bandwidth_gbs: float
    mem_gb: float
    tdp_w: float
    tensor_cores: bool
    source: str = ""

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"

    def peak_flops(self, precision: str = "fp32") -> float:
        """Peak operations per second at a precision; a precision the device has no fast path
        for runs at its FP32 rate (bf16 counts as fp16)."""
        p = precision.lower()
        if p not in PRECISIONS:
            raise HardwareError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
        if p in ("fp16", "bf16"):
            tflops = max(self.fp16_tflops, self.fp32_tflops)
        elif p == "int8":
            tflops = max(self.int8_tops or 0.0, self.fp32_tflops)
        else:
            tflops = self.fp32_tflops
        return tflops * 1e12

    @property
    def bandwidth_bytes_s(self) -> float:
        return self.mem_bandwidth_gbs * 1e9

    @property
    def mem_bytes(self) -> float:
        return self.mem_gb * 1e9


def _device_from_dict(name: str, d: Any) -> Device:
    if not isinstance(d, Mapping):
        raise HardwareError(f"device {name}: expected a mapping of figures, got {type(d).__name__}")
    unknown = [k for k in d if k not in KNOWN_FIELDS]
    if unknown:
        raise HardwareError(f"device {name}: unknown field {unknown[0]!r} (known: {', '.join(KNOWN_FIELDS)})")
    for f in REQUIRED_FIELDS:
        if f not in d:
            raise HardwareError(f"device {name}: missing field {f!r}")
    kind = d["kind"]
    if kind not in ("gpu", "cpu"):
        raise HardwareError(f"device {name}: kind {kind!r} is not 'gpu' or 'cpu'")
    if not isinstance(d["tensor_cores"], bool):
        raise HardwareError(f"device {name}: tensor_cores {d['tensor_cores']!r} is not true or false")
    figures: dict[str, float | None] = {}
    for f in NUMERIC_FIELDS:
        v = d[f]
        if v is None and f in NULLABLE_FIELDS:
            figures[f] = None
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise HardwareError(f"device {name}: {f} {v!r} is not a number")
        if v < 0:
            raise HardwareError(f"device {name}: {f} {v!r} is negative")
        if v == 0:
            if f in NULLABLE_FIELDS:
                figures[f] = None
                continue
            raise HardwareError(f"device {name}: {f} must be positive, not 0")
        figures[f] = float(v)
    source = d.get("source", "")
    if not isinstance(source, str):
        raise HardwareError(f"device {name}: source {source!r} is not a string")
    return Device(name=name, kind=kind, tensor_cores=d["tensor_cores"], source=source,
                  **figures)   # type: ignore[arg-type]


@dataclass(frozen=True)
class HardwareCatalogue:
    devices: Mapping[str, Device]      # keyed by the name as written in the file
    default_cpu: str = "cpu"

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HardwareCatalogue":
        """Accepts {"devices": {name: {figures}}, "default_cpu"?: name} (or {"hardware": {...}})."""
        if not isinstance(d, Mapping):
            raise HardwareError("a hardware catalogue is a mapping with a 'devices' table")
        d = d.get("hardware", d)
        raw = d.get("devices") if isinstance(d, Mapping) else None
        if not isinstance(raw, Mapping) or not raw:
            raise HardwareError("a hardware catalogue needs a non-empty 'devices' table")
        devices: dict[str, Device] = {}
        seen: dict[str, str] = {}
        for name, figures in raw.items():
            name = str(name)
            if name.lower() in seen:
                raise HardwareError(f"device {name}: listed twice (also as {seen[name.lower()]})")
            seen[name.lower()] = name
            devices[name] = _device_from_dict(name, figures)
        cat = cls(devices, str(d.get("default_cpu", "cpu")))
        if cat.default_cpu.lower() in seen and not cat.device(cat.default_cpu).kind == "cpu":
            raise HardwareError(f"default_cpu {cat.default_cpu!r} is not a cpu device")
        return cat

    @classmethod
    def from_file(cls, path: str | Path) -> "HardwareCatalogue":
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text())
        except OSError as exc:
            raise HardwareError(f"{p}: cannot read the hardware catalogue: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise HardwareError(f"{p}: not valid YAML: {str(exc).splitlines()[0]}") from None
        try:
            return cls.from_dict(data)
        except HardwareError as exc:
            raise HardwareError(f"{p}: {exc}") from None

    # -- queries ------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.devices)

    def device(self, name: str) -> Device:
        """The device of this name, case-insensitively."""
        key = str(name).strip().lower()
        for n, dev in self.devices.items():
            if n.lower() == key:
                return dev
        raise HardwareError(f"no device {name!r} in the hardware catalogue (known: {', '.join(self.devices)})")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.strip().lower() for n in self.devices)

    def resolve(self, gpu_value: Any) -> Device:
        """The device a GPU knob's value means: a 'no GPU' value (or None) -> ``default_cpu``."""
        if gpu_value is not None and str(gpu_value) in self:
            return self.device(str(gpu_value))
        if gpu_value is None or str(gpu_value).strip().lower() in NO_GPU_VALUES:
            return self.device(self.default_cpu)
        return self.device(str(gpu_value))

    def features(self, name: str) -> np.ndarray:
        """Spec vector of a device (order: :data:`FEATURE_NAMES`): log10 of peak FP32, FP16 and
        INT8 throughput (the rate a kernel at that precision gets: a missing fast path counts as
        the FP32 rate), memory bandwidth, memory size and TDP, each mapped by a fixed range to
        about [0, 1]; then tensor cores (0 or :data:`TENSOR_CORE_WEIGHT`) and GPU (0 or
        :data:`GPU_WEIGHT`). Euclidean distance between these
        vectors is the similarity used to transfer knowledge (a T4 lands next to an L4, a vCPU
        far from every GPU). CPU entries are per vCPU."""
        dev = self.device(name)
        values = {"fp32_tflops": dev.fp32_tflops, "fp16_tflops": dev.peak_flops("fp16") / 1e12,
                  "int8_tops": dev.peak_flops("int8") / 1e12, "mem_bandwidth_gbs": dev.mem_bandwidth_gbs,
                  "mem_gb": dev.mem_gb, "tdp_w": dev.tdp_w}
        out = [(math.log10(values[f]) - lo) / (hi - lo) for f, (lo, hi) in _LOG_RANGES.items()]
        out += [TENSOR_CORE_WEIGHT if dev.tensor_cores else 0.0, GPU_WEIGHT if dev.is_gpu else 0.0]
        return np.array(out, dtype=float)

    def distance(self, a: str, b: str) -> float:
        return float(np.linalg.norm(self.features(a) - self.features(b)))

    def nearest(self, name: str, candidates: Iterable[str]) -> str | None:
        """The candidate most similar to ``name`` by :meth:`features` (None if there is none)."""
        best: tuple[float, str] | None = None
        for c in candidates:
            dist = self.distance(name, c)
            if best is None or dist < best[0]:
                best = (dist, c)
        return None if best is None else best[1]


def check_space(space: Any, catalogue: HardwareCatalogue, gpu_knob: str | None = None,
                gpu_mem_knob: str | None = None) -> list[str]:
    """Problems that stop the catalogue from describing ``space`` (a services.domain.space.Space,
    or anything with ``names`` and ``knob(name).values``): a GPU value the catalogue lacks, a
    'no GPU' value (or no GPU knob) without the default CPU entry, a GPU memory reservation
    larger than a device's memory. Empty when the catalogue covers the space. The knobs: the
    space's roles (``gpu``, ``gpu_mem``) unless named."""
    roles = getattr(space, "roles", DEFAULT_ROLES)
    gpu_knob, gpu_mem_knob = gpu_knob or roles.gpu, gpu_mem_knob or roles.gpu_mem
    problems: list[str] = []
    names = tuple(space.names)
    gpu_values: tuple[Any, ...] = space.knob(gpu_knob).values if gpu_knob in names else (None,)
    devices: list[Device] = []
    for v in gpu_values:
        try:
            devices.append(catalogue.resolve(v))
        except HardwareError:
            if v is None or str(v).strip().lower() in NO_GPU_VALUES:
                what = (f"{gpu_knob}={v!r} means no GPU" if v is not None else f"the space has no {gpu_knob} knob")
                problems.append(f"{what}, but the catalogue has no default_cpu device "
                                f"{catalogue.default_cpu!r} (known: {', '.join(catalogue.names)})")
            else:
                problems.append(f"{gpu_knob}={v!r} is not in the hardware catalogue "
                                f"(known: {', '.join(catalogue.names)})")
    if gpu_mem_knob in names:
        for v in space.knob(gpu_mem_knob).values:
            if isinstance(v, str):
                problems.append(f"{gpu_mem_knob}={v!r} is not a number of GB")
                continue
            for dev in devices:
                if dev.is_gpu and float(v) > dev.mem_gb:
                    problems.append(f"{gpu_mem_knob}={v} GB is more than {dev.name}'s {dev.mem_gb:g} GB")
    return problems


DEFAULT_HARDWARE_FILE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "hardware.yaml"
DEFAULT_HARDWARE = HardwareCatalogue.from_file(DEFAULT_HARDWARE_FILE)
