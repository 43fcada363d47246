"""Refusals a person can read: the first problem and a count of the rest; a price error that
names the shipped price file matching the space; a replay table of another model is warned of."""

from __future__ import annotations

import pytest

from services.platform.runners import RunnerAdvert
from tests.helpers import PROFILES, REPO, TARGETS
from tools.app.submit import SubmissionError, SubmitOptions, build_submission, same_model, short_refusal

CLOUD = str(REPO / "deploy" / "config" / "cloud-space.yaml")


def test_a_long_refusal_is_its_first_problem_and_a_count():
    assert short_refusal("no", ["a"]) == "no: a"
    assert short_refusal("no", ["a", "b", "c"]) == "no: a (and 2 more problems: fix this one first)"
    assert short_refusal("no", ["a", "b"]).endswith("(and 1 more problem: fix this one first)")


def test_the_cloud_space_without_prices_is_told_which_price_file_prices_it(tmp_path):
    with pytest.raises(SubmissionError) as e:
        build_submission(SubmitOptions("gru", profile=str(PROFILES / "gru" / "operators.csv"),
                                       replay_table=str(TARGETS / "reg-gru.csv"), space=CLOUD))
    text = str(e.value)
    assert "no price for gputype" in text and "--prices" in text and "cloud-prices.yaml" in text
    assert "\n" not in text


def test_a_live_cloud_search_on_a_cpu_only_stack_is_refused_in_a_short_line(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper
    monkeypatch.setenv("FALCON_HOME", str(tmp_path))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])),
              str(model))
    cpu = RunnerAdvert(runner="r0", classes=("live-cpu", "replay"),
                       capabilities={"live": {"cpus": [1, 2], "batchsize": "any", "graph_opt": ["disabled", "basic", "all"]}})
    with pytest.raises(SubmissionError) as e:
        build_submission(SubmitOptions("m", model_file=str(model), backend="live", space=CLOUD,
                                       prices=str(REPO / "deploy" / "config" / "cloud-prices.yaml")), [cpu])
    text = str(e.value)
    assert "more problems: fix this one first" in text and len(text) < 300, text


def test_a_replay_table_of_another_model_is_warned_of():
    notices: list[str] = []
    build_submission(SubmitOptions("inception-v3", profile=str(PROFILES / "gru" / "operators.csv"),
                                   replay_table=str(TARGETS / "reg-gru.csv")), None, notices)
    assert any(n.startswith("warning: the replay table reg-gru.csv measured gru, not inception-v3") for n in notices)
    notices.clear()
    build_submission(SubmitOptions("GRU", profile=str(PROFILES / "gru" / "operators.csv"),
                                   replay_table=str(TARGETS / "reg-gru.csv")), None, notices)
    assert not any("warning" in n for n in notices)


def test_model_names_match_loosely():
    assert same_model("gru", "gru") and same_model("my_gru", "gru") and same_model("MobileNet-V2", "mobilenet-v2")
    assert not same_model("inception-v3", "gru")


def test_a_replay_search_without_the_model_s_operators_is_refused_before_it_is_published(capsys):
    """It was published and then failed in the profiler (exit 1, 'came without its operator profile')."""
    from tools.cli import main
    assert main(["submit", "inception-v3", "--replay-table", str(TARGETS / "reg-gru.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs the model's operators: --profile" in err and len(err.splitlines()) == 1
