"""The exported Triton model repository entry, loaded into a real Triton (the tritonserver that
nvidia-pytriton bundles, the one the served trials run) and sent requests.

That server has only the Python backend, so it loads the entry with ``--model-config-name=
python-ort`` (configs/python-ort.pbtxt: the same settings as config.pbtxt on the Python backend,
ONNX Runtime inside model.py). config.pbtxt itself names Triton's ONNX Runtime backend, which
only a full Triton image has: both files are parsed here with Triton's own model configuration
schema (tritonclient's model_config.proto), so a field Triton does not know fails the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from services.platform.ports import free_port
from services.trial_runner.model_repo import backend_dir
from services.trial_runner.serving_env import ServingEnv, ServingStackMissing
from tools.export.files import build, write
from tests.unit.tools.test_export import served_search, tiny_onnx

CONFIG = {"cpus": [1], "batchsize": [8], "queue_delay_us": [200_000], "replicas": [1], "graph_opt": ["basic"]}

try:
    SERVING = ServingEnv.find()
except ServingStackMissing as exc:
    if os.environ.get("CI"):
        raise
    pytest.skip(str(exc), allow_module_level=True)


def serving_python(code: str) -> str:
    out = subprocess.run([str(SERVING.python), "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def http(url: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode() if body is not None else None,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_exported_triton_entry_loads_in_triton_and_serves_requests(tmp_path, precision):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    st = served_search(model, trials=1, space={"knobs": {**CONFIG, "precision": [precision]}})
    e, variant = build(st, "triton", tmp_path / "cache")
    out = tmp_path / "export"
    write(e, variant, out)
    repo = out / "model_repository"
    entry = repo / e.name

    # both configuration files are valid Triton model configurations (strict protobuf text parse)
    parsed = json.loads(serving_python(
        "import json, sys\nfrom google.protobuf import text_format, json_format\n"
        "from tritonclient.grpc import model_config_pb2\n"
        "out = {}\nfor f in sys.argv[1:]:\n"
        "    c = text_format.Parse(open(f).read(), model_config_pb2.ModelConfig())\n"
        "    out[f] = json_format.MessageToDict(c, preserving_proto_field_name=True)\n"
        "print(json.dumps(out))\n".replace("sys.argv[1:]", repr([str(entry / "config.pbtxt"),
                                                                 str(entry / "configs" / "python-ort.pbtxt")]))))
    native, python = parsed[str(entry / "config.pbtxt")], parsed[str(entry / "configs" / "python-ort.pbtxt")]
    assert native["backend"] == "onnxruntime" and python["backend"] == "python"
    assert {k: v for k, v in native.items() if k not in ("backend", "default_model_filename")} == \
        {k: v for k, v in python.items() if k != "backend"}            # one configuration, two backends

    # the real server: the served trials' own tritonserver, backend directory and environment
    backends = backend_dir(SERVING.site, SERVING.python_version, tmp_path / "backends")
    env = SERVING.env()
    port, grpc, metrics = free_port(), free_port(), free_port()
    log = (tmp_path / "triton.log").open("w")
    proc = subprocess.Popen([str(SERVING.tritonserver), f"--model-repository={repo}",
                             "--model-config-name=python-ort", f"--backend-directory={backends}",
                             f"--http-port={port}", f"--grpc-port={grpc}", f"--metrics-port={metrics}",
                             "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--allow-metrics=false",
                             "--exit-timeout-secs=5"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v2/models/{e.name}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/ready", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "triton.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the model was not ready within 90 s"
                time.sleep(0.5)
        # Triton runs what was exported
        cfg = http(f"{base}/config")
        assert cfg["max_batch_size"] == 8 and cfg["backend"] == "python"
        assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 200_000
        assert [(g["count"], g["kind"]) for g in cfg["instance_group"]] == [(1, "KIND_CPU")]
        assert cfg["parameters"]["graph_opt"]["string_value"] == "basic"
        assert cfg["parameters"]["precision"]["string_value"] == precision
        assert cfg["parameters"]["intra_op_thread_count"]["string_value"] == "1"

        # 8 concurrent single-sample requests: right answers, and the dynamic batcher merged them
        w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
        xs = [np.random.default_rng(i).standard_normal((1, 4)).astype(np.float32) for i in range(8)]

        def infer(x: np.ndarray) -> np.ndarray:
            r = http(f"{base}/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                                   "data": x.ravel().tolist()}]})
            return np.array(r["outputs"][0]["data"], dtype=np.float32).reshape(r["outputs"][0]["shape"])
        with ThreadPoolExecutor(8) as pool:
            ys = list(pool.map(infer, xs))
        for x, y in zip(xs, ys):
            # int8: the weights quantised (ONNX Runtime dynamic quantisation), answers within its error
            np.testing.assert_allclose(y, np.maximum(x @ w, 0), rtol=1e-5 if precision == "fp32" else 0.05,
                                       atol=1e-6 if precision == "fp32" else 0.05)
        stats = http(f"{base}/stats")["model_stats"][0]
        assert stats["inference_count"] == 8 and stats["execution_count"] < 8     # batched by Triton
    finally:
        # SIGTERM first: Triton unloads the model, and the Python backend deletes the copy of it it
        # keeps in /tmp (it does not when killed); then SIGKILL whatever is left of the group
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait_s)
                break
            except ProcessLookupError:               # the group is gone already
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
    deadline = time.monotonic() + 10                 # no server or stub outlives the test (killed, then reaped)
    while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "a Triton process outlived its group's SIGKILL"
        time.sleep(0.2)
