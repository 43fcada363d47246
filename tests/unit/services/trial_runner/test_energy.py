"""Energy per request where NVML is present (a fake pynvml module here: no GPU on this machine),
absent otherwise; the runner advertises it only when it can measure it."""

import json
import subprocess
import sys
import time
import types

import pytest

from schemas.events import TrialRequested
from services.trial_runner import energy
from services.trial_runner.backends import LiveBackend
from services.trial_runner.backends import live_backend


class NVMLError(Exception):
    pass


def fake_nvml(devices=1, counter=True, watts=250.0):
    """A pynvml stand-in: an energy counter (mJ) that grows at ``watts``, or only power readings."""
    t0 = time.perf_counter()
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.calls = []
    m.nvmlInit = lambda: m.calls.append("init")
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlDeviceGetCount = lambda: devices
    m.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i)

    def energy_mj(handle):
        if not counter:
            raise NVMLError("Not Supported")
        return 1e9 + (time.perf_counter() - t0) * watts * 1000.0
    m.nvmlDeviceGetTotalEnergyConsumption = energy_mj
    m.nvmlDeviceGetPowerUsage = lambda handle: watts * 1000.0       # milliwatts
    return m


def test_without_pynvml_nothing_is_measured(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)        # import fails
    assert energy.nvml() is None and not energy.available() and energy.EnergyMeter.open() is None


def test_a_machine_without_a_device_measures_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(devices=0))
    assert not energy.available() and energy.EnergyMeter.open() is None


@pytest.mark.parametrize("counter, source", [(True, "nvml-energy-counter"), (False, "nvml-power-samples")])
def test_the_energy_of_a_window_from_the_counter_or_from_power_samples(monkeypatch, counter, source):
    nv = fake_nvml(counter=counter, watts=200.0)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    meter = energy.EnergyMeter.open()
    meter.start()
    time.sleep(0.3)
    r = meter.stop()
    assert r.source == source and r.seconds == pytest.approx(0.3, abs=0.1)
    assert r.mean_power_w == pytest.approx(200.0, rel=0.05) and r.joules == pytest.approx(200 * r.seconds, rel=0.05)
    assert nv.calls[-1] == "shutdown"


def test_the_gpu_index_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert energy.device_index() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f2e")
    assert energy.device_index() == 0


def test_a_gpu_runner_with_nvml_advertises_energy_and_a_cpu_runner_does_not(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    assert "energy_j_per_request" in LiveBackend(gpus=["NVIDIA H100 80GB HBM3"]).measures()
    assert "energy_j_per_request" not in LiveBackend(gpus=[]).measures()
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert "energy_j_per_request" not in LiveBackend(gpus=["NVIDIA H100 80GB HBM3"]).measures()


def test_a_live_result_carries_the_energy_the_stress_test_measured_and_none_when_it_did_not(tmp_path, monkeypatch):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    req = TrialRequested("t/0", 0, {"cpus": 1, "batchsize": 8, "gputype": "H100", "gpumem": 16},
                         {"name": "m", "format": "onnx", "uri": str(model)}, {"kind": "live", "mode": "closed-loop", "measure_s": 1.0}, 4.0)
    out = {"status": "ok", "rps": 800.0, "p50_ms": 9.0, "p99_ms": 12.0, "cv": 0.02, "compile_s": 0.1,
           "compile_cached": False, "batches": 100, "measured_s": 1.0, "threads": 1, "providers": ["CUDAExecutionProvider"],
           "energy_j_per_request": 0.31, "mean_power_w": 248.0, "energy_source": "nvml-energy-counter"}

    def fake_run(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 0, json.dumps(out) + "\n", "")
    monkeypatch.setattr(live_backend.subprocess, "run", fake_run)
    backend = LiveBackend(tmp_path / "c", gpus=["NVIDIA H100 80GB HBM3"])
    r = backend.run(req)
    assert r.ok and r.energy_j_per_request == 0.31 and r.mean_power_w == 248.0
    assert r.details["energy_source"] == "nvml-energy-counter"
    out.update(energy_j_per_request=None, mean_power_w=None, energy_source=None)
    r = backend.run(req)
    assert r.ok and r.energy_j_per_request is None and r.mean_power_w is None and "energy_source" not in r.details
