"""The live trial backend measures a real model on this machine's cores, refuses knobs it cannot
apply, and routes by hardware class."""

from pathlib import Path

import pytest

from services.platform.topics import runner_class, topic_for, trial_topic
from tools import zoo
from schemas.events import TrialRequested
from services.trial_runner.backends import LiveBackend
from services.trial_runner.backends.live_backend import requests_per_dollar

PRICE = 0.0425   # $/h of one vCPU


@pytest.fixture(scope="module")
def resnet8(tmp_path_factory):
    return zoo.export_onnx("resnet8", tmp_path_factory.mktemp("m") / "resnet8.onnx")


def spec(model, config, **backend):
    """A closed-loop live trial (served trials: tests/integration/test_served_trials.py)."""
    return TrialRequested("t/0", 0, config, {"name": "resnet8", "format": "onnx", "uri": str(model)},
                     {"kind": "live", "mode": "closed-loop", "measure_s": 0.5, "warmup_s": 0.2, **backend},
                     PRICE * config.get("cpus", 1))


@pytest.mark.parametrize("config, why", [
    ({"cpus": 1, "batchsize": 1, "gputype": "V100"}, "GPU type 'V100' is not present"),
    ({"cpus": 1, "batchsize": 1, "gpupower": 75}, "power cap needs root"),
    ({"cpus": 1, "batchsize": 1, "gpumem": 2.4}, "needs a GPU"),
    ({"cpus": 999, "batchsize": 1}, "999 CPU cores"),
    ({"cpus": 1, "batchsize": 1, "graph_opt": "turbo"}, "graph_opt"),
    ({"cpus": 1, "memory_gb": 4}, "cannot be applied"),
])
def test_knobs_this_machine_cannot_apply_are_refused_not_faked(tmp_path, config, why):
    out = LiveBackend(tmp_path, gpus=[]).run(spec(tmp_path / "unused.onnx", config))
    assert out.status == "failed" and why in out.reason and out.cost_usd == 0


def test_a_gpu_runner_accepts_its_own_gpu_type_only():
    backend = LiveBackend(gpus=["NVIDIA H100 80GB HBM3"])
    assert backend.refusal({"cpus": 1, "batchsize": 8, "gputype": "H100", "gpumem": 16}) is None
    assert "not present" in backend.refusal({"cpus": 1, "batchsize": 8, "gputype": "A100"})
    assert "H100" in str(backend.capabilities()["gputype"])


def test_a_live_trial_measures_rps_latency_stability_and_cost(tmp_path, resnet8):
    backend = LiveBackend(tmp_path / "cache")
    out = backend.run(spec(resnet8, {"cpus": 1, "batchsize": 4, "graph_opt": "all"}))
    assert out.status == "ok", out.reason
    assert out.rps > 0 and 0 < out.p50_ms <= out.p99_ms
    assert out.rps_per_usd == pytest.approx(requests_per_dollar(out.rps, PRICE)) and out.rps_per_usd_unit == "req/$"
    assert out.cost_usd == pytest.approx(PRICE * out.duration_s / 3600)
    assert out.stability_cv >= 0 and out.details["compile_cached"] is False and out.details["threads"] == 1
    again = backend.run(spec(resnet8, {"cpus": 1, "batchsize": 8, "graph_opt": "all"}))
    assert again.status == "ok" and again.details["compile_cached"] is True   # optimised graph reused


def test_a_model_with_a_fixed_batch_cannot_take_another_batch_size(tmp_path):
    import torch
    m = zoo.get("resnet8")
    path = tmp_path / "fixed.onnx"
    with torch.no_grad():
        torch.onnx.export(m.module(), m.example(1), str(path), dynamo=False)
    out = LiveBackend(tmp_path / "cache").run(spec(path, {"cpus": 1, "batchsize": 4}))
    assert out.status == "failed" and "fixed at 1" in out.reason
    served = LiveBackend(tmp_path / "cache").run(spec(path, {"cpus": 1, "batchsize": 4}, mode="served"))
    assert served.status == "failed" and "fixed at 1" in served.reason and "dynamic batcher" in served.reason


def test_requests_are_routed_to_the_runner_class_that_can_serve_them():
    assert runner_class("replay", {"gputype": "V100"}) == "replay"
    assert runner_class("live", {"cpus": 2}) == "live-cpu"
    assert runner_class("live", {"gputype": "none"}) == "live-cpu"
    assert runner_class("live", {"gputype": "CPU"}) == "live-cpu"
    assert LiveBackend(gpus=[]).refusal({"cpus": 1, "batchsize": 1, "gputype": "CPU"}) is None  # same reading
    assert runner_class("live", {"gputype": "H100"}) == "live-h100"
    assert trial_topic("replay") == "trial-requested"
    assert topic_for("trial-requested", {"runner_class": "live-h100"}) == "trial-requested.live-h100"
    assert topic_for("trial-requested", {}) == "trial-requested"


def test_the_batch_error_names_the_model_s_batch_also_from_the_optimised_copy(tmp_path):
    """light_squeezenet (old IR: initializers listed as inputs) optimised at graph_opt=all was saved by
    ONNX Runtime with extra '..._SHAPE' inputs of shape [4], and the error said "fixed at 4"."""
    import onnx
    model = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"
    if not model.is_file():
        pytest.skip("no light_squeezenet.onnx in this onnx package")
    backend = LiveBackend(tmp_path / "cache")
    for _ in range(2):          # the second run finds the optimised copy in the cache
        out = backend.run(spec(model, {"cpus": 1, "batchsize": 4, "graph_opt": "all"}))
        assert out.status == "failed" and "input data_0's batch (first) dimension is fixed at 1" in out.reason, \
            out.reason
