"""The TVM operator profiler on real (tiny) zoo models: the KOPs it finds are the paper's
(CNN -> conv2d, BERT-like -> dense, GRU -> dense among several recurrent ops), and bad models
get a reason instead of a crash."""

import json
import subprocess
import sys

import pytest

from services.profiler.kops import identify_kops
from services.profiler.tvm_profile import ProfilerError, load_relax, op_kind, profile_model
from tools import zoo
from tools.profile import profile_report


@pytest.mark.parametrize("func, kind", [
    ("conv2d", "conv2d"), ("conv2d12", "conv2d"), ("max_pool2d3", "max_pool2d"), ("matmul7", "dense"),
    ("add1", "add"), ("transpose2", "transpose"), ("tir_sigmoid", "sigmoid"), ("concatenate", "concat"),
    ("layer_norm1", "layer_norm"), ("conv1d", "conv1d"),
])
def test_primfunc_names_map_to_the_papers_operator_kinds(func, kind):
    assert op_kind(func) == kind


def _shares_are_a_distribution(ops):
    assert sum(o["time_share"] for o in ops) == pytest.approx(1.0)
    assert sum(o["memory_share"] for o in ops) == pytest.approx(1.0)
    assert [o["time_share"] for o in ops] == sorted((o["time_share"] for o in ops), reverse=True)


def test_a_cnn_is_dominated_by_conv2d():
    prof = profile_model(zoo.export_program("resnet8"), budget_s=30, name="resnet8")
    ops = prof.operators()
    _shares_are_a_distribution(ops)
    assert prof.measured and prof.runs >= 3 and prof.compile_s > 0 and prof.run_cv is not None
    assert ops[0]["op"] == "conv2d" and ops[0]["time_share"] > 0.5 and ops[0]["flops"] > 1e7
    assert identify_kops(ops) == ["conv2d"]


def test_a_bert_like_onnx_file_is_dominated_by_dense(tmp_path):
    path = zoo.export_onnx("bert-tiny", tmp_path / "bert-tiny.onnx")
    ops = profile_model(str(path), budget_s=30).operators()
    _shares_are_a_distribution(ops)
    kinds = {o["op"] for o in ops}
    assert {"dense", "transpose", "softmax", "layer_norm"} <= kinds
    assert "dense" in identify_kops(ops) and ops[0]["op"] == "dense"


def test_a_gru_comes_in_through_torch_export_with_its_recurrent_operators():
    ops = profile_model(zoo.export_program("gru"), budget_s=30, name="gru").operators()
    kinds = {o["op"] for o in ops}
    assert {"dense", "sigmoid", "tanh", "multiply", "add"} <= kinds
    assert "dense" in identify_kops(ops)


def test_static_profile_needs_no_run_and_estimates_time_from_flops():
    prof = profile_model(zoo.export_program("resnet8"), measure=False, name="resnet8")
    assert not prof.measured and prof.compile_s == 0
    assert prof.operators()[0]["op"] == "conv2d"


def test_onnx_gru_is_refused_with_the_reason(tmp_path):
    path = zoo.export_onnx("gru", tmp_path / "gru.onnx")
    with pytest.raises(ProfilerError, match="GRU"):
        profile_model(str(path))


def test_a_torch_archive_is_not_unpickled_unless_trusted(tmp_path):
    import torch
    path = tmp_path / "gru.pt2"
    torch.export.save(zoo.export_program("gru"), str(path))
    with pytest.raises(ProfilerError, match="pickled"):
        load_relax(str(path))
    mod, name = load_relax(str(path), trust_pickle=True)
    assert name == "gru" and "main" in [gv.name_hint for gv in mod.get_global_vars()]


def test_missing_and_unknown_models_are_refused(tmp_path):
    with pytest.raises(ProfilerError, match="does not exist"):
        profile_model(str(tmp_path / "nope.onnx"))
    with pytest.raises(zoo.ZooError, match="resnet8"):
        profile_report("no-such-model")


def test_profile_cli_prints_operators_and_kops_as_json():
    out = subprocess.run([sys.executable, "-m", "tools.cli", "profile", "resnet8", "--json", "--static",
                          "--threshold", "0.5", "--memory-threshold", "0.05"], capture_output=True, text=True,
                         check=True)
    rep = json.loads(out.stdout)
    assert rep["kops"] == ["conv2d"] and rep["threshold"] == 0.5 and rep["memory_threshold"] == 0.05
    conv = next(o for o in rep["operators"] if o["op"] == "conv2d")
    assert conv["memory_share"] < 0.5            # so the memory threshold is what lets conv2d in
    assert all(set(o) >= {"op", "time_share", "memory_share", "flops"} for o in rep["operators"])
    zoo_list = subprocess.run([sys.executable, "-m", "tools.cli", "profile", "--list-zoo", "--json"],
                              capture_output=True, text=True, check=True)
    families = {m["family"] for m in json.loads(zoo_list.stdout)}
    assert families == {"cnn", "bert", "transformer", "rnn", "gan"}
    bad = subprocess.run([sys.executable, "-m", "tools.cli", "profile", "no-such-model", "--json"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no zoo model" in json.loads(bad.stdout)["error"]


@pytest.mark.parametrize("name", [m.name for m in zoo.ZOO.values() if m.tiny])
def test_tiny_zoo_models_run_in_torch(name):
    import torch
    m = zoo.get(name)
    with torch.no_grad():
        y = m.module()(*m.example(2))
    assert y.shape[0] == 2 and torch.isfinite(y).all()
