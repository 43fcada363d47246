"""Served trials through the real stack: a Triton server (PyTriton's bundled tritonserver) serving
the model repository entry the export ships (ONNX Runtime in the Python backend), perf_analyzer
raising the load, the peak within the SLO. Needs the
serving stack scripts/setup.sh installs into .venv-serving (no broker or Redis)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schemas.events import TrialRequested
from services.trial_runner.backends import LiveBackend
from services.trial_runner.procs import group_members
from tests.helpers import REPO
from tools import zoo

pytestmark = pytest.mark.integration
PRICE = 0.0425


@pytest.fixture(scope="module")
def resnet8(tmp_path_factory):
    return zoo.export_onnx("resnet8", tmp_path_factory.mktemp("m") / "resnet8.onnx")


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """One runner's live backend for the whole module: a failed trial must leave it working."""
    return LiveBackend(tmp_path_factory.mktemp("runner") / "compiled", gpus=[])


def served(model, config, **opts):
    return TrialRequested("t/0", 0, config, {"name": "resnet8", "format": "onnx", "uri": str(model)},
                          {"kind": "live", "slo_p99_ms": 100, "max_levels": 6, **opts}, PRICE)


def leftovers(path_part: str) -> list[str]:
    """Live processes (zombies aside) of ours: a server whose command line names ``path_part`` (its
    state directory) or the trial's scratch space, or a perf_analyzer this test process started."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        ours = path_part in cmd or "falcon-served-" in cmd or ("perf_analyzer" in cmd and int(fields[2]) == os.getpid())
        if fields[0] != "Z" and ours and "pytest" not in cmd:
            out.append(f"{d.name}: {cmd[:120]}")
    return out


def test_a_served_trial_of_resnet8_on_one_core_gives_the_peak_within_the_slo_and_its_curve(backend, resnet8):
    t0 = time.monotonic()
    out = backend.run(served(resnet8, {"cpus": 1, "batchsize": 8, "queue_delay_us": 1000, "graph_opt": "all"}))
    wall = time.monotonic() - t0
    assert out.status == "ok", out.reason
    d = out.details
    assert d["mode"] == "served" and d["slo_p99_ms"] == 100
    assert out.rps > 0 and 0 < out.p50_ms <= out.p99_ms <= 100
    assert out.rps_per_usd == pytest.approx(out.rps * 3600 / PRICE)
    curve = d["curve"]
    assert len(curve) >= 2 and [p["concurrency"] for p in curve] == sorted({p["concurrency"] for p in curve})
    assert all(p["meets_slo"] == (p["p99_ms"] <= 100) for p in curve)
    assert max(p["rps"] for p in curve if p["meets_slo"]) == pytest.approx(d["peak"]["measurements_rps"][0])
    # Triton's own split of a request's time at the peak
    assert d["server_split_ms"]["compute_infer"] > 0 and d["server_split_ms"]["queue"] >= 0
    assert d["serving"]["max_batch_size"] == 8 and d["serving"]["queue_delay_us"] == 1000
    assert d["serving"]["instances"] == 1 and d["serving"]["intra_op_threads"] == 1
    assert len(d["cores"]["serving"]) == 1
    w = d["wall_s"]
    assert w["start"] > 0 and w["warmup"] > 0 and w["sweep"] > 0
    assert w["total"] == pytest.approx(w["start"] + w["warmup"] + w["sweep"], abs=0.01)
    assert wall < 60, f"a served trial of resnet8 took {wall:.0f} s"
    assert out.duration_s == pytest.approx(wall, abs=1.0)
    assert leftovers(str(backend.state_dir)) == []


def test_int8_is_served_and_reports_how_far_the_outputs_moved(backend, resnet8):
    out = backend.run(served(resnet8, {"cpus": 1, "batchsize": 4, "precision": "int8"}, max_levels=3))
    assert out.status == "ok", out.reason
    dev = out.details["output_deviation"]
    assert 0 < dev["rel_l2"] < 0.2 and dev["max_abs"] > 0 and out.details["serving"]["precision"] == "int8"


def test_bad_input_gives_failed_trials_with_reasons_and_the_runner_goes_on(backend, resnet8, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage that is not an ONNX graph")
    r = backend.run(served(broken, {"cpus": 1}))
    assert r.status == "failed" and "model cannot be read as ONNX" in r.reason
    # a model ONNX accepts but the server cannot load: an operator no runtime has
    import onnx
    from onnx import TensorProto, helper
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="no.such.domain")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    unloadable = tmp_path / "unloadable.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("no.such.domain", 1)]), str(unloadable))
    r = backend.run(served(unloadable, {"cpus": 1}))
    assert r.status == "failed" and "Triton server did not start" in r.reason and "\n" not in r.reason
    assert "NoSuchOp" in r.reason, r.reason                  # the load error, as Triton's log gives it
    r = backend.run(served(resnet8, {"cpus": 1, "batchsize": 1}, slo_p99_ms=0.05))
    assert r.status == "failed" and "no load meets the p99 SLO of 0.05 ms" in r.reason
    r = backend.run(served(resnet8, {"cpus": 1, "precision": "fp16"}))
    assert r.status == "failed" and "fp16 needs a device with an fp16 path" in r.reason
    assert leftovers(str(backend.state_dir)) == []


RUNNER = """
import sys
from schemas.events import TrialRequested
from services.trial_runner.backends import LiveBackend
b = LiveBackend(sys.argv[1], gpus=[])
r = b.run(TrialRequested("t/0", 0, {"cpus": 1, "batchsize": 4}, {"name": "m", "format": "onnx", "uri": sys.argv[2]},
                         {"kind": "live", "max_levels": 10}, 0.04))
print(r.status, r.reason)
"""


def test_a_runner_killed_with_sigkill_mid_trial_leaves_no_server_or_client(resnet8, tmp_path):
    cache = tmp_path / "compiled"
    registry = tmp_path / "serving" / "groups"
    log = (tmp_path / "runner.log").open("w")
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(cache), str(resnet8)],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log, stderr=subprocess.STDOUT)
    groups: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(groups) < 2:     # the server, then perf_analyzer under load
        groups = [json.loads(p.read_text())["pgid"] for p in registry.glob("*.json")] if registry.is_dir() else []
        time.sleep(0.1)
    assert len(groups) >= 2, f"the trial did not get to load the server: {(tmp_path / 'runner.log').read_text()}"
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    end = time.monotonic() + 10
    while time.monotonic() < end and any(group_members(g) for g in groups):
        time.sleep(0.1)
    assert [g for g in groups if group_members(g)] == []          # parent-death signals took them down
    assert leftovers(str(tmp_path)) == []
    # the next runner on this machine clears the records and scratch space the dead one left
    LiveBackend(cache, gpus=[])
    assert list(registry.glob("*.json")) == []
    assert not any((tmp_path / "serving" / "trials").iterdir())


def test_a_server_that_dies_under_load_is_a_failed_trial_with_the_reason(backend, resnet8):
    import threading
    registry = backend.state_dir / "groups"
    before = set(registry.glob("*.json")) if registry.is_dir() else set()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=backend.run(served(resnet8, {"cpus": 1, "batchsize": 2}))))
    t.start()
    server = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server is None:     # the server, once perf_analyzer loads it
        infos = [json.loads(rec.read_text()) for rec in set(registry.glob("*.json")) - before]
        if any(i["argv0"].endswith("perf_analyzer") for i in infos):
            server = next((i["pgid"] for i in infos if i["argv0"].endswith("tritonserver")), None)
        time.sleep(0.05)
    assert server is not None, "the trial never loaded its server"
    os.killpg(server, signal.SIGKILL)
    t.join(90)
    r = result["r"]
    assert r.status == "failed" and "the Triton server died under load" in r.reason, r.reason
    assert leftovers(str(backend.state_dir)) == []
