"""Energy of a live trial's measurement window, read from the GPU through NVML (``pynvml``, the
``nvidia-ml-py`` package: ``pip install '.[gpu]'``) where the package and a device exist.

Read: the device's total-energy counter (millijoules, Volta and newer) at the start and the end of
the stress test's measurement window; on a device without the counter, the power draw sampled
every 50 ms and integrated. It is the whole device's energy over the window (idle power
included), divided by the requests served in it. Nothing else is read: a CPU-only runner has no
power meter here (RAPL is not exposed in this project's VMs), so its trials carry no energy
figure, and an energy objective on such a class is refused at submission
(``services.searcher.preflight``). Never invented.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

SAMPLE_S = 0.05


def nvml() -> ModuleType | None:
    """The initialised ``pynvml`` module when it imports and sees at least one device, else None."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        if int(pynvml.nvmlDeviceGetCount()) < 1:
            pynvml.nvmlShutdown()
            return None
    except Exception:       # noqa: BLE001 — pynvml.NVMLError and its many subclasses: no usable driver
        return None
    return pynvml


def available() -> bool:
    """Whether this machine can measure a GPU's energy (NVML and a device)."""
    lib = nvml()
    if lib is None:
        return False
    _shutdown(lib)
    return True


def _shutdown(lib: Any) -> None:
    try:
        lib.nvmlShutdown()
    except Exception:       # noqa: BLE001
        pass


def device_index() -> int:
    """The NVML index of the GPU the trial's CUDA device 0 is (the first of CUDA_VISIBLE_DEVICES
    when it names an index)."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


@dataclass(frozen=True)
class Reading:
    joules: float
    seconds: float
    source: str                     # nvml-energy-counter | nvml-power-samples

    @property
    def mean_power_w(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0


class EnergyMeter:
    """start() ... stop() -> Reading, around the measurement window."""

    def __init__(self, lib: Any, handle: Any) -> None:
        self.lib, self.handle = lib, handle
        self._t0 = 0.0
        self._e0: float | None = None
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, index: int | None = None) -> "EnergyMeter | None":
        """A meter on the trial's GPU; None where NVML or the device is not there."""
        lib = nvml()
        if lib is None:
            return None
        try:
            return cls(lib, lib.nvmlDeviceGetHandleByIndex(device_index() if index is None else index))
        except Exception:   # noqa: BLE001
            _shutdown(lib)
            return None

    def _counter_mj(self) -> float | None:
        try:
            return float(self.lib.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception:   # noqa: BLE001 — NVML_ERROR_NOT_SUPPORTED on older GPUs
            return None

    def _power_w(self) -> float | None:
        try:
            return float(self.lib.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0
        except Exception:   # noqa: BLE001
            return None

    def _sample(self) -> None:
        while not self._stop.is_set():
            p = self._power_w()
            if p is not None:
                self._samples.append((time.perf_counter(), p))
            self._stop.wait(SAMPLE_S)

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._e0 = self._counter_mj()
        if self._e0 is None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def stop(self) -> Reading | None:
        """The energy since start(); None when neither the counter nor the power could be read."""
        t1 = time.perf_counter()
        try:
            if self._e0 is not None:
                e1 = self._counter_mj()
                if e1 is not None and e1 >= self._e0:
                    return Reading((e1 - self._e0) / 1000.0, t1 - self._t0, "nvml-energy-counter")
                return None
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            pts = self._samples
            if not pts:
                return None
            if len(pts) == 1:
                return Reading(pts[0][1] * (t1 - self._t0), t1 - self._t0, "nvml-power-samples")
            joules = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(pts, pts[1:]))
            span = pts[-1][0] - pts[0][0]
            return Reading(joules / span * (t1 - self._t0), t1 - self._t0, "nvml-power-samples")
        finally:
            _shutdown(self.lib)


__all__ = ["EnergyMeter", "Reading", "available", "device_index", "nvml"]
