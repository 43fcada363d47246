"""Served trials, the parts that need no server: the knobs-to-Triton mapping, precision refusal,
perf_analyzer's CSV, what the runner advertises, and the reaping of what a killed runner left."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas.events import TrialRequested
from services.domain.serving import ServingConfigError, serving_config
from services.domain.triton_repo import Tensor, config_pbtxt
from services.trial_runner.backends import LiveBackend
from services.trial_runner.perf import parse_perf_csv, perf_error
from services.trial_runner.precision import precision_refusal
from services.trial_runner.procs import group_members, reap_leftovers, start_group

PA_CSV = """Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,\
Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,\
request/response,response wait
4,480.77,32,1156,2123,29,4918,70,0,8232,11335,12252,13425,32,8292
"""


def test_knobs_map_to_tritons_model_settings():
    sc = serving_config({"cpus": 2, "batchsize": 8, "queue_delay_us": 2000, "replicas": 2, "precision": "int8",
                         "graph_opt": "basic", "memory_gb": 4})
    assert (sc.cores, sc.max_batch_size, sc.queue_delay_us, sc.instances, sc.precision, sc.graph_opt) == \
        (2, 8, 2000, 2, "int8", "basic")
    assert sc.intra_op_threads == 1 and sc.client_batch == 1 and sc.ort_level == "ORT_ENABLE_BASIC"
    cfg = sc.triton_model_config("resnet8")
    assert cfg["max_batch_size"] == 8 and cfg["backend"] == "python"
    assert cfg["dynamic_batching"] == {"max_queue_delay_microseconds": 2000}
    assert cfg["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    io = ([Tensor("x", "TYPE_FP32", (3, 32, 32))], [Tensor("y", "TYPE_FP32", (10,))])
    pbtxt = config_pbtxt("resnet8", sc, *io, "onnxruntime")
    assert 'backend: "onnxruntime"' in pbtxt and "max_batch_size: 8" in pbtxt
    assert "max_queue_delay_microseconds: 2000" in pbtxt and "count: 2" in pbtxt and "kind: KIND_CPU" in pbtxt
    assert 'parameters { key: "intra_op_thread_count" value { string_value: "1" } }' in pbtxt
    assert "optimization {\n  graph {\n    level: -1\n" in pbtxt          # Triton's ORT backend: -1 = basic
    assert "level: 2" in config_pbtxt("m", serving_config({"graph_opt": "disabled"}), *io, "onnxruntime")
    assert "optimization" not in config_pbtxt("m", serving_config({"graph_opt": "all"}), *io, "onnxruntime")
    python = config_pbtxt("m", sc, *io, "python")                      # what a served trial deploys
    assert 'backend: "python"' in python and 'key: "graph_opt" value { string_value: "basic" }' in python
    assert 'dims: [ 3, 32, 32 ]' in python and "default_model_filename" not in python
    defaults = serving_config({})
    assert (defaults.cores, defaults.max_batch_size, defaults.instances, defaults.precision) == (1, 1, 1, "fp32")


@pytest.mark.parametrize("knobs, why", [
    ({"cpus": 1, "replicas": 2}, "replicas=2 on 1 core"),
    ({"precision": "bf16"}, "precision='bf16' is not one of"),
    ({"queue_delay_us": -1}, "queue_delay_us=-1 must be between 0"),
    ({"batchsize": 0}, "batchsize=0 must be at least 1"),
    ({"batchsize": 2.5}, "batchsize=2.5 is not an integer"),
    ({"graph_opt": "turbo"}, "graph_opt='turbo'"),
    ({"cpus": 3}, "cpus=3 must be between 1 and 2"),
])
def test_values_no_deployment_can_take_are_refused_with_the_reason(knobs, why):
    with pytest.raises(ServingConfigError, match=why.replace("(", r"\(")):
        serving_config(knobs, max_cores=2)


def test_precision_conversion_refuses_what_the_device_cannot_do():
    cpu = ["CPUExecutionProvider"]
    assert precision_refusal("fp32", cpu) is None
    assert precision_refusal("int8", cpu) is None                       # ORT dynamic quantisation on CPU
    assert "fp16 needs a device with an fp16 path" in precision_refusal("fp16", cpu)
    assert precision_refusal("fp16", ["CUDAExecutionProvider", *cpu]) is None
    assert "needs TensorRT" in precision_refusal("int8", ["CUDAExecutionProvider", *cpu])
    assert precision_refusal("int8", ["TensorrtExecutionProvider", "CUDAExecutionProvider"]) is None


def test_a_precision_the_device_lacks_is_a_failed_trial_with_its_reason_before_anything_runs(tmp_path):
    backend = LiveBackend(tmp_path / "compiled", gpus=[])
    req = TrialRequested("t/0", 0, {"cpus": 1, "batchsize": 4, "precision": "fp16"},
                         {"name": "m", "format": "onnx", "uri": str(tmp_path / "m.onnx")}, {"kind": "live"}, 0.04)
    out = backend.run(req)
    assert out.status == "failed" and "fp16 needs a device with an fp16 path" in out.reason
    assert out.cost_usd == 0


def test_the_runner_advertises_serving_cores_and_keeps_one_for_the_load_generator(tmp_path):
    backend = LiveBackend(tmp_path / "compiled", gpus=[], max_cores=2)
    caps = backend.capabilities()
    if len(os.sched_getaffinity(0)) >= 2:
        assert caps["cpus"] == [1] and backend.client_cores == [sorted(os.sched_getaffinity(0))[1]]
        assert "keeps core" in backend.refusal({"cpus": 2})
        assert backend.refusal({"cpus": 2}, mode="closed-loop") is None     # the closed loop has no client
    assert caps["precision"] == ["fp32", "int8"]
    assert "cannot be applied by the live backend's closed-loop trials" in \
        backend.refusal({"cpus": 1, "replicas": 1}, mode="closed-loop")
    assert "not one of" in backend.refusal({"cpus": 1}, mode="warp")


def test_perf_analyzers_csv_gives_throughput_latency_and_tritons_queue_compute_split():
    p = parse_perf_csv(PA_CSV)
    assert p.concurrency == 4 and p.rps == pytest.approx(480.77)
    assert (p.p50_ms, p.p90_ms, p.p95_ms, p.p99_ms) == pytest.approx((8.232, 11.335, 12.252, 13.425))
    assert p.queue_ms == pytest.approx(2.123) and p.compute_ms == pytest.approx(0.029 + 4.918 + 0.070)
    assert p.split_ms["network_and_server"] == pytest.approx(1.156)
    with pytest.raises(ValueError, match="no measurement"):
        parse_perf_csv(PA_CSV.splitlines()[0] + "\n")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_group_left_by_a_dead_runner_is_killed_at_start_and_a_live_runners_is_not(tmp_path):
    registry = tmp_path / "groups"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # a stand-in for a server: its command line names it (the marker the reaper checks)
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "tritonserver"]
    orphan = start_group(argv, registry, dict(os.environ), subprocess.DEVNULL, subprocess.DEVNULL,
                         cleanup=[scratch])
    kept = start_group(argv, registry, dict(os.environ), subprocess.DEVNULL, subprocess.DEVNULL)
    try:
        import json
        from services.trial_runner import procs
        for g, runner in ((orphan, _dead_pid()), (kept, 1)):       # pid 1 stands for a live runner
            rec = json.loads(g.record.read_text())
            g.record.write_text(json.dumps({**rec, "runner_pid": runner}))
            procs.ACTIVE.discard(g.pgid)
        time.sleep(0.2)
        assert group_members(orphan.pgid) and group_members(kept.pgid)
        assert reap_leftovers(registry) == [orphan.pgid]
        assert group_members(orphan.pgid) == [] and not scratch.exists() and not orphan.record.exists()
        assert group_members(kept.pgid) and kept.record.exists()
    finally:
        orphan.stop()
        kept.stop()
    assert group_members(kept.pgid) == []


def test_a_failed_load_level_is_told_by_the_servers_error_not_the_traceback_around_it():
    log = """Request concurrency: 1
Thread [0] had error: [StatusCode.INTERNAL] Failed to process the request(s) for model 'model_0_0', message: \
ONNXRuntimeError: INVALID_ARGUMENT : indices element out of data bounds
  /tmp/folderQZi43N/1/model.py(501): execute
"""
    assert perf_error(log).startswith("Thread [0] had error: [StatusCode.INTERNAL]")
    assert perf_error("") == "no output"


def test_stopping_a_server_deletes_the_scratch_copies_its_python_backend_stubs_made(tmp_path):
    import secrets
    from services.trial_runner.procs import kill_group
    stub = Path(f"/tmp/folder{secrets.token_hex(3)}")                 # Triton's mkdtemp("/tmp/folderXXXXXX")
    (stub / "1").mkdir(parents=True)
    (stub / "1" / "model.py").write_text("# the stub's copy of the model\n")
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "triton_python_backend_stub", f"{stub}/1/model.py"]
    g = start_group(argv, tmp_path / "groups", dict(os.environ), subprocess.DEVNULL, subprocess.DEVNULL)
    time.sleep(0.2)
    kill_group(g.pgid)
    g.stop()
    assert group_members(g.pgid) == [] and not stub.exists()
