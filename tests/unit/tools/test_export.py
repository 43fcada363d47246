"""``falcon export``: what a user deploys from a search's recommendation. The manifests are
checked by real validators (Kubernetes 1.37 schemas strictly, KServe's own CRD schema strictly,
the compose-spec parser), the replica count against the load, and every refusal says why in one
line and writes nothing. Loading the Triton configuration into a real Triton server is
tests/integration/test_export_triton.py."""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import onnx
import pytest
import yaml
from compose_spec import PyCompose
from onnx import TensorProto, helper, numpy_helper

import numpy as np

from schemas.events import TrialResult
from services.domain.space import Space
from services.domain.spec import Constraints, SearchSpec, StopRules
from services.searcher.search import estimate_data, record_trial, start_search
from tools.cli import main
from tools.cli.search_cmds import Loaded
from tools.export.artefacts import ExportRefused, Recommendation, Tensor, model_name, size
from tools.export.deploy import export, gpu_product
from tools.export.files import MODEL_PY, build, onnx_io, write
from tests.helpers import REPO, spec

KSERVE_SCHEMA = REPO / "tests" / "data" / "kserve-inferenceservice-v1beta1.schema.json.gz"
SERVED_SPACE = {"knobs": {"cpus": [1, 2, 4], "batchsize": [1, 4, 8, 16], "queue_delay_us": [0, 500, 2000],
                          "replicas": [1, 2], "graph_opt": ["basic", "all"], "precision": ["fp32", "int8"]},
                "rules": ["replicas <= cpus"]}


def tiny_onnx(path: Path) -> Path:
    """A small model with a dynamic batch dimension: y = relu(x W), x [batch, 4] -> y [batch, 3]."""
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def served_search(model: Path, best_rps: float = 120.0, gpu: bool = False, slo: float | None = 100.0,
                  served: bool = True, trials: int = 5, space: dict | None = None):
    """A live search whose trials report as served trials do (details.mode, details.peak)."""
    space = space or dict(SERVED_SPACE)
    if gpu:
        space = {"knobs": {**SERVED_SPACE["knobs"], "gputype": ["T4"], "gpumem": [8]}, "rules": SERVED_SPACE["rules"]}
    s = SearchSpec(model={"name": "Tiny Model", "format": "onnx", "uri": str(model)},
                   backend={"kind": "live", "measure_s": 3.0, "trial_seconds": 30.0},
                   space=Space.from_dict(space), stop=StopRules(trials), strategy="random",
                   constraints=Constraints(slo_p99_ms=slo))
    d = start_search("tiny-0123abcd", s, ["matmul"], [{"op": "matmul", "time_share": 1.0, "memory_share": None,
                                                      "flops": None}])
    while d.request is not None:
        r = d.request
        rps = best_rps if r.index == 0 else best_rps / (2 + r.index)
        hourly = s.prices.hourly(r.config)
        details = {"mode": "served", "peak": {"concurrency": 4, "rps": rps, "p99_ms": 60.0}} if served else {}
        if served and r.config.get("precision") == "int8":
            details["output_deviation"] = {"max_abs": 0.0123, "rel_l2": 0.0045, "samples": 4}
        d = record_trial(d.state, TrialResult(r.trial_id, r.index, r.config, "ok", rps * 3600 / hourly,
                                              hourly * 30 / 3600, 30.0, rps=rps, p50_ms=20.0, p99_ms=60.0, stability_cv=0.05,
                                              details=details))
    return d.state


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx")


def strict(schema: Any) -> Any:
    """The CRD schema as the API server applies it with strict field validation: an object that
    lists its properties (and does not preserve unknown fields) takes no others."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(x) for x in schema]
    return schema


def validate_isvc(doc: dict[str, Any]) -> None:
    schema = strict(json.loads(gzip.decompress(KSERVE_SCHEMA.read_bytes())))
    schema["properties"]["metadata"] = {"type": "object"}           # ObjectMeta: checked below
    jsonschema.Draft7Validator(schema).validate(doc)
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]},
                                 "1.37.0", strict=True)


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def exported(state, fmt, tmp_path, **kw):
    e, m = build(state, fmt, tmp_path / "cache", **kw)
    write(e, m, tmp_path / fmt)
    return e


# ---- the artefacts validate strictly ----------------------------------------------------------


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_k8s_export_validates_strictly_and_selects_gpu_nodes_by_product(model, tmp_path, gpu):
    e = exported(served_search(model, gpu=gpu), "k8s", tmp_path, load_rps=500.0)
    manifest = docs((tmp_path / "k8s" / "deployment.yaml").read_text())
    for d in manifest:
        kubernetes_validate.validate(d, "1.37.0", strict=True)
    dep, svc, hpa = manifest
    assert [d["kind"] for d in manifest] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"].startswith("nvcr.io/nvidia/tritonserver:") and c["args"][0] == "tritonserver"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["resources"]["limits"]["cpu"] == str(e.serving.cpus)
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    metric = hpa["spec"]["metrics"][0]
    if gpu:          # a GPU replica scales on its request rate at the target, not on its CPU
        assert metric["pods"] == {"metric": {"name": "triton_inference_requests_per_second"},
                                  "target": {"type": "AverageValue", "averageValue": str(int(e.sizing.target_rps))}}
    else:
        assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 70
    if gpu:
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"}
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        pbtxt = (tmp_path / "k8s" / "model_repository" / "tiny-model" / "config.pbtxt").read_text()
        assert "kind: KIND_GPU" in pbtxt and "gpus: [ 0 ]" in pbtxt and '"gpu_mem_limit"' in pbtxt
    else:
        assert "nodeSelector" not in pod and "nvidia.com/gpu" not in c["resources"]["limits"]


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_kserve_export_validates_against_kserves_own_schema(model, tmp_path, gpu):
    exported(served_search(model, gpu=gpu), "kserve", tmp_path, load_rps=500.0)
    [isvc] = docs((tmp_path / "kserve" / "inferenceservice.yaml").read_text())
    validate_isvc(isvc)
    pred = isvc["spec"]["predictor"]
    assert pred["model"]["runtime"] == "kserve-tritonserver" and pred["model"]["modelFormat"] == {"name": "onnx"}
    assert pred["model"]["storageUri"] == "pvc://falcon-models/tiny-0123abcd"
    assert (pred.get("nodeSelector") or {}).get("nvidia.com/gpu.product") == ("Tesla-T4" if gpu else None)
    assert (tmp_path / "kserve" / "model_repository" / "tiny-model" / "1" / "model.onnx").is_file()


def test_a_broken_inference_service_is_caught(model, tmp_path):
    """The KServe check can fail: an unknown field (a typo) and a wrong type are errors."""
    exported(served_search(model), "kserve", tmp_path, load_rps=100.0)
    [isvc] = docs((tmp_path / "kserve" / "inferenceservice.yaml").read_text())
    typo = json.loads(json.dumps(isvc))
    typo["spec"]["predictor"]["minReplica"] = typo["spec"]["predictor"].pop("minReplicas")
    with pytest.raises(jsonschema.ValidationError, match="minReplica"):
        validate_isvc(typo)
    wrong = json.loads(json.dumps(isvc))
    wrong["spec"]["predictor"]["scaleMetric"] = "latency"
    with pytest.raises(jsonschema.ValidationError):
        validate_isvc(wrong)


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_compose_export_parses_with_the_compose_spec(model, tmp_path, gpu):
    exported(served_search(model, gpu=gpu), "compose", tmp_path, load_rps=80.0)
    doc = yaml.safe_load((tmp_path / "compose" / "docker-compose.yaml").read_text())
    PyCompose.from_json(json.dumps(doc)).validate()
    [svc] = doc["services"].values()
    assert svc["volumes"] == ["./model_repository:/models:ro"]
    assert (tmp_path / "compose" / "model_repository" / "tiny-model" / "config.pbtxt").is_file()
    devices = svc["deploy"]["resources"].get("reservations", {}).get("devices")
    assert (devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]) == gpu


def test_every_file_carries_the_search_the_figures_and_the_date(model, tmp_path):
    st = served_search(model)
    best = st.best
    for fmt in ("triton", "kserve", "k8s", "compose"):
        e, _ = build(st, fmt, tmp_path / "cache", load_rps=80.0, date="2026-12-06T02:00:00Z")
        for rel, text in e.files.items():
            head = text.split("\n\n")[0]
            assert "search tiny-0123abcd" in head and "2026-12-06T02:00:00Z" in head, rel
            assert "peak RPS within the SLO: 120 (SLO p99 100 ms), measured at concurrency 4" in head, rel
            assert "p99 at that load: 60 ms" in head and f"${st.spec.prices.hourly(best.config):.4g}/h" in head, rel
            assert "95% interval" in head and "req/$" in head, rel


def test_the_triton_config_applies_every_knob_of_the_recommendation(model, tmp_path):
    st = served_search(model)
    cfg = st.best.config
    exported(st, "triton", tmp_path)
    entry = tmp_path / "triton" / "model_repository" / "tiny-model"
    native = (entry / "config.pbtxt").read_text()
    python = (entry / "configs" / "python-ort.pbtxt").read_text()
    for text in (native, python):
        assert f"max_batch_size: {cfg['batchsize']}\n" in text
        assert f"max_queue_delay_microseconds: {cfg['queue_delay_us']}\n" in text
        assert f"count: {cfg['replicas']}\n" in text and "kind: KIND_CPU" in text
        threads = max(1, cfg["cpus"] // cfg["replicas"])
        assert f'parameters {{ key: "intra_op_thread_count" value {{ string_value: "{threads}" }} }}' in text
        assert f'"graph_opt" value {{ string_value: "{cfg["graph_opt"]}" }}' in text
        assert f'"precision" value {{ string_value: "{cfg["precision"]}" }}' in text
        assert 'name: "x"' in text and "dims: [ 4 ]" in text and 'name: "y"' in text and "dims: [ 3 ]" in text
    assert 'backend: "onnxruntime"' in native and 'backend: "python"' in python
    assert (entry / "1" / "model.py").read_text().endswith(MODEL_PY.read_text())
    served = onnx.load(str(entry / "1" / "model.onnx"))
    kinds = {n.op_type for n in served.graph.node}
    assert ("MatMulInteger" in kinds or "DynamicQuantizeLinear" in kinds) == (cfg["precision"] == "int8")


def test_an_int8_recommendation_ships_the_quantised_model_and_says_how_far_it_moved(model, tmp_path):
    st = served_search(model, trials=1, space={"knobs": {**SERVED_SPACE["knobs"], "precision": ["int8"]}})
    exported(st, "triton", tmp_path)
    entry = tmp_path / "triton" / "model_repository" / "tiny-model"
    assert {n.op_type for n in onnx.load(str(entry / "1" / "model.onnx")).graph.node} >= {"MatMulInteger"}
    head = (entry / "config.pbtxt").read_text().split("\n\n")[0]
    assert "precision int8: outputs moved from fp32 by at most 0.0123 (relative L2 0.0045)" in head


def test_onnx_io_reads_triton_types_and_drops_the_batch_dimension(model):
    inputs, outputs = onnx_io(model)
    assert inputs == (Tensor("x", "TYPE_FP32", (4,)),) and outputs == (Tensor("y", "TYPE_FP32", (3,)),)


# ---- replicas against --load -------------------------------------------------------------------


def rec(rps=120.0, **kw) -> Recommendation:
    return Recommendation("s1", "m", kw.pop("config", {"cpus": 1, "batchsize": 8}), "live", 1, rps, 50.0, 0.2,
                          "2026-12-06", inputs=(Tensor("x", "TYPE_FP32", (4,)),),
                          outputs=(Tensor("y", "TYPE_FP32", (3,)),), **kw)


@pytest.mark.parametrize("load,headroom,replicas", [
    (84.0, 0.3, 1),       # exactly one replica at 70% of 120
    (84.01, 0.3, 2),      # just over: a second replica
    (840.0, 0.3, 10),     # a multiple: no float round-up to 11
    (500.0, 0.3, 6),      # ceil(500 / 84)
    (500.0, 0.0, 5),      # no headroom: ceil(500 / 120)
    (1000.0, 0.5, 17),    # ceil(1000 / 60)
])
def test_replicas_carry_the_load_at_the_stated_headroom(load, headroom, replicas):
    s = size(rec(), "k8s", load, headroom)
    assert s.replicas == replicas and s.target_rps == pytest.approx(120 * (1 - headroom))
    assert s.replicas * s.target_rps >= load - 1e-9 and (s.replicas - 1) * s.target_rps < load
    e = export(rec(), "k8s", "", load, headroom)
    dep, _, hpa = docs(e.files["deployment.yaml"])
    assert dep["spec"]["replicas"] == hpa["spec"]["minReplicas"] == replicas
    assert hpa["spec"]["maxReplicas"] == max(2, 2 * replicas)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == min(95, round(100 * (1 - headroom)))
    [isvc] = docs(export(rec(), "kserve", "", load, headroom).files["inferenceservice.yaml"])
    assert isvc["spec"]["predictor"]["minReplicas"] == replicas
    assert isvc["spec"]["predictor"]["scaleTarget"] == math.floor(120 * (1 - headroom))
    assert f"{replicas} replica" in e.files["deployment.yaml"].split("\n\n")[0]


def test_replicas_are_sized_on_the_searchs_robust_peak_not_a_lucky_measurement(model, tmp_path):
    st = served_search(model)                  # 5% spread per measurement: the estimate shrinks the best one
    est = estimate_data(st)
    measured = st.spec.objective.natural(st.objective_value(st.best))
    robust = 120.0 * est["value"] / measured
    assert robust < 120.0
    e, _ = build(st, "k8s", tmp_path / "cache", load_rps=500.0)
    assert e.sizing.peak_rps == pytest.approx(robust) and e.sizing.measured_rps == 120.0
    assert e.sizing.target_rps == pytest.approx(robust * 0.7)
    assert e.sizing.replicas == math.ceil(500.0 / (robust * 0.7))
    assert "(the search's noise-robust estimate; the trial measured 120)" in e.files["deployment.yaml"]
    # never above the measurement, and the measurement itself where no estimate is below it
    assert size(rec(sizing_rps=150.0), "k8s", 500.0).peak_rps == 120.0
    assert size(rec(), "k8s", 500.0).peak_rps == 120.0


def test_without_a_load_one_replica_is_exported():
    e = export(rec(), "k8s", "")
    assert e.sizing is not None and e.sizing.replicas == 1 and e.sizing.load_rps is None


def test_compose_runs_as_many_replicas_as_one_machine_of_the_space_holds():
    r = rec(config={"cpus": 2, "batchsize": 8}, space_max_cpus=4)
    doc = yaml.safe_load(export(r, "compose", "", 150.0).files["docker-compose.yaml"])
    [svc] = doc["services"].values()
    assert svc["deploy"]["replicas"] == 2 and svc["ports"][0] == "127.0.0.1:8000-8001:8000"
    with pytest.raises(ExportRefused, match="needs 3 replicas .* at most 4 cores, 2 replicas of 2: it cannot be "
                                            "carried within the space on one machine"):
        export(r, "compose", "", 200.0)
    gpu = rec(config={"cpus": 2, "batchsize": 8, "gputype": "T4", "gpumem": 8}, space_max_cpus=8)
    with pytest.raises(ExportRefused, match="one T4 GPU, so it runs 1 replica"):
        export(gpu, "compose", "", 100.0)


# ---- refusals: one line, exit 2, nothing written -----------------------------------------------


def test_refusals_say_why_in_one_line():
    with pytest.raises(ExportRefused, match="needs 1191 replicas .* more than --max-replicas 100") as e:
        export(rec(), "k8s", "", 100_000.0)
    assert "\n" not in str(e.value)
    with pytest.raises(ExportRefused, match="unknown export format 'helm'"):
        export(rec(), "helm", "")
    with pytest.raises(ExportRefused, match="no measured RPS"):
        export(rec(rps=None), "triton", "")
    with pytest.raises(ExportRefused, match="replicas=2 on 1 core"):
        export(rec(config={"cpus": 1, "replicas": 2}), "triton", "")
    assert gpu_product("H100") == "NVIDIA-H100-80GB-HBM3" and model_name("ResNet 8 (v2)") == "resnet-8-v2"


def run_cli(monkeypatch, state, *args):
    async def loaded(_s, _id):
        return Loaded(state, None, None)
    monkeypatch.setattr("tools.cli.export_cmds.load_search", loaded)
    monkeypatch.setattr("tools.cli.require_stack", lambda _s: None)     # the search is given, not read
    return main(["export", *args])


def test_the_cli_refuses_a_replay_recommendation_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from tests.unit.tools.test_report import searched
    st = searched(spec(max_trials=4))
    rc = run_cli(monkeypatch, st, st.search_id, "--format", "k8s", "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and not (tmp_path / "out").exists()
    assert "came from a replay table" in err and "no configuration was served" in err
    assert f"batchsize={st.best.config['batchsize']}" in err         # the knob values, for a person to read


def test_the_cli_refuses_a_search_without_recommendation(monkeypatch, model, tmp_path, capsys):
    st = served_search(model)
    none = replace(st, trials=tuple(replace(t, status="failed", rps_per_usd=None, reason="server did not start")
                                    for t in st.trials), status="completed", stop_reason="max-trials")
    rc = run_cli(monkeypatch, none, st.search_id, "--format", "triton", "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "falcon export: search tiny-0123abcd has no recommendation to export (max-trials)"
    assert not (tmp_path / "out").exists()


def test_a_running_search_is_not_exported_until_it_completes(monkeypatch, model, tmp_path, capsys):
    running = replace(served_search(model), status="running")
    rc = run_cli(monkeypatch, running, "tiny-0123abcd", "--format", "k8s", "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is still running (5 of 5 trials)" in err and not (tmp_path / "out").exists()


def test_the_cli_refuses_a_load_beyond_the_space(monkeypatch, model, tmp_path, capsys):
    rc = run_cli(monkeypatch, served_search(model), "tiny-0123abcd", "--format", "kserve", "--load", "1e6",
                 "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot be carried within the space" in err and not (tmp_path / "out").exists()


def test_the_cli_writes_the_export_and_says_where(monkeypatch, model, tmp_path, capsys):
    rc = run_cli(monkeypatch, served_search(model), "tiny-0123abcd", "--format", "k8s", "--load", "300",
                 "--out", str(tmp_path / "out"), "--json")
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["sizing"]["replicas"] == 4 and out["out"] == str(tmp_path / "out")
    assert sorted(Path(p).relative_to(tmp_path / "out").as_posix() for p in out["written"]) == [
        "deployment.yaml", "model_repository/tiny-model/1/model.onnx", "model_repository/tiny-model/1/model.py",
        "model_repository/tiny-model/config.pbtxt", "model_repository/tiny-model/configs/python-ort.pbtxt"]


def test_an_unwritable_out_folder_is_a_usage_error_not_an_unreachable_stack(monkeypatch, model, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc = run_cli(monkeypatch, served_search(model), "tiny-0123abcd", "--format", "triton",
                 "--out", str(tmp_path / "file" / "out"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"falcon export: cannot write the export into {tmp_path / 'file' / 'out'}")


def test_an_in_process_search_is_exported_with_a_clear_note(model, tmp_path):
    e = exported(served_search(model, served=False), "triton", tmp_path)
    head = (tmp_path / "triton" / "model_repository" / "tiny-model" / "config.pbtxt").read_text().split("\n\n")[0]
    assert "NOTE: the trials ran in-process" in head and e.notes
    assert "RPS measured in-process (closed loop, not a served peak): 120" in head
    assert "peak RPS within the SLO" not in head.split("sizing:")[0]


# ---- the dashboard's download and the report's link ---------------------------------------------


def dashboard(monkeypatch, state, tmp_path):
    from starlette.testclient import TestClient

    from services.platform.settings import Settings
    from tools.ui.app import create_app
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"), follow=False, reports_dir=tmp_path / "reports")
    d = next(r.endpoint.__self__ for r in app.routes if getattr(r, "path", "").endswith("/export/{format}.zip"))

    async def the_state(search_id):
        return state if search_id == state.search_id else None
    monkeypatch.setattr(d.views, "state", the_state)
    return TestClient(app, raise_server_exceptions=False)


def test_the_dashboard_serves_the_export_as_a_zip(monkeypatch, model, tmp_path):
    import io
    import zipfile
    st = served_search(model)
    c = dashboard(monkeypatch, st, tmp_path)
    r = c.get("/searches/tiny-0123abcd/export/k8s.zip?load=300")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert 'filename="tiny-0123abcd-k8s.zip"' in r.headers["content-disposition"]
    z = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(z.namelist()) == sorted(f"tiny-0123abcd-k8s/{p}" for p in (
        "deployment.yaml", "model_repository/tiny-model/1/model.onnx", "model_repository/tiny-model/1/model.py",
        "model_repository/tiny-model/config.pbtxt", "model_repository/tiny-model/configs/python-ort.pbtxt"))
    dep = docs(z.read("tiny-0123abcd-k8s/deployment.yaml").decode())[0]
    assert dep["spec"]["replicas"] == 4                                   # ceil(300 / 84)
    assert c.get("/searches/tiny-0123abcd/export/helm.zip").status_code == 404
    assert c.get("/searches/nope/export/k8s.zip").status_code == 404
    bad = c.get("/searches/tiny-0123abcd/export/k8s.zip?load=lots")
    assert bad.status_code == 400 and "load must be a number" in bad.json()["error"]
    far = c.get("/searches/tiny-0123abcd/export/compose.zip?load=1e6")
    assert far.status_code == 409 and "cannot be carried within the space" in far.json()["error"]


def test_the_dashboard_refuses_a_replay_export_in_one_line(monkeypatch, tmp_path):
    from tests.unit.tools.test_report import searched
    st = searched(spec(max_trials=4))
    r = dashboard(monkeypatch, st, tmp_path).get(f"/searches/{st.search_id}/export/triton.zip")
    assert r.status_code == 409 and "came from a replay table" in r.json()["error"]


def test_the_search_page_and_the_report_link_the_export(model, tmp_path):
    from tests.unit.tools.test_report import searched
    from tools.report import write_report
    from tools.ui.app import templates
    from tools.ui.views import detail
    parts = templates().get_template("parts.html").module
    st = served_search(model)
    html = str(parts.recommendation(detail(st, 1.0e9, None)))
    assert 'href="/searches/tiny-0123abcd/export/kserve.zip"' in html and "falcon export tiny-0123abcd" in html
    write_report(st, tmp_path / "live")
    page = (tmp_path / "live" / "report.html").read_text()
    assert '<a href="../export/k8s.zip">k8s</a>' in page and "falcon export tiny-0123abcd --format" in page
    replay = searched(spec(max_trials=4))
    assert "export/" not in str(parts.recommendation(detail(replay, 1.0e9, None)))
    write_report(replay, tmp_path / "replay")
    assert "No export: a replay table" in (tmp_path / "replay" / "report.html").read_text()
