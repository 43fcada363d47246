"""Model intake: the model is known at submission (inputs, a fixed batch), a fixed batch is made
dynamic where the graph allows it or the batch knob is narrowed, and a file that is not a model is
refused with exit 2 before anything is published. The models are the ``onnx`` package's
``light_*`` test models, which a new user tried (batch fixed at 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.domain.space import Space
from tools.cli import main
from tools.app.submit import SERVED_SPACE, SubmitOptions, build_submission
from tools.intake import IntakeError, fit_batch_knob, make_batch_dynamic, read_signature

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIVE_SPACE = Space.from_dict({"knobs": {"cpus": [1, 2], "batchsize": [1, 2, 4, 8], "graph_opt": ["basic", "all"]}})


@pytest.fixture(autouse=True)
def falcon_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FALCON_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def light(name: str) -> Path:
    p = LIGHT / f"light_{name}.onnx"
    if not p.is_file():
        pytest.skip(f"{p} is not in this onnx package")
    return p


def stubborn(tmp_path: Path) -> Path:
    """A model whose graph pins the batch: x[1,12] -> Reshape to [2,6] (12 values, not 12*batch)."""
    shape = numpy_helper.from_array(np.array([2, 6], dtype=np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6])], [shape])
    path = tmp_path / "stubborn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_the_inputs_and_the_fixed_batch_are_read():
    sig = read_signature(light("squeezenet"))
    assert [(i.name, i.shape, i.dtype) for i in sig.inputs] == [("data_0", (1, 3, 224, 224), "float32")]
    assert sig.fixed_batch == 1 and sig.text() == "data_0 float32[1x3x224x224]"


def test_a_text_file_renamed_onnx_is_not_a_model(tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is a text file, not a model\n")
    with pytest.raises(IntakeError, match="model.onnx is not an ONNX model"):
        read_signature(fake)


def test_a_text_file_renamed_onnx_is_refused_with_exit_2_before_the_stack_is_asked(tmp_path, capsys):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is a text file, not a model\n")
    # no stack runs here: exit 2 (not 3) shows the refusal came before anything reached for the stack
    assert main(["submit", "m", "--model-file", str(fake)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an ONNX model" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("name", ["squeezenet", "resnet50"])
def test_a_fixed_batch_is_made_dynamic_where_the_graph_allows_it(tmp_path, name):
    dynamic, why = make_batch_dynamic(light(name), tmp_path)
    assert dynamic is not None, why
    sess = ort.InferenceSession(str(dynamic), providers=["CPUExecutionProvider"])
    x = sess.get_inputs()[0]
    out = sess.run(None, {x.name: np.zeros((4, 3, 224, 224), np.float32)})
    assert all(o.shape[0] == 4 for o in out)
    assert read_signature(dynamic).fixed_batch is None


def test_a_graph_that_pins_the_batch_is_left_alone_and_the_knob_narrowed(tmp_path):
    dynamic, why = make_batch_dynamic(stubborn(tmp_path), tmp_path / "out")
    assert dynamic is None and why
    narrowed, notice = fit_batch_knob(LIVE_SPACE, 1, "stubborn")
    assert narrowed.knob("batchsize").values == (1,) and narrowed.knob("cpus").values == (1, 2)
    assert "fixed at 1" in notice and "batchsize=1 only" in notice


def test_a_knob_without_the_model_s_batch_is_refused_in_one_line_with_the_fix():
    space = Space.from_dict({"knobs": {"cpus": [1, 2], "batchsize": [4, 8]}})
    with pytest.raises(IntakeError) as e:
        fit_batch_knob(space, 1, "m")
    text = str(e.value)
    assert "\n" not in text and "fixed at 1" in text and "batchsize: [1]" in text and "under knobs:" in text


def test_a_live_submission_of_a_fixed_batch_model_searches_the_dynamic_copy(falcon_home):
    notices: list[str] = []
    _, sub = build_submission(SubmitOptions("squeezenet", model_file=str(light("squeezenet")), backend="live"),
                              None, notices)
    uri = sub.spec.model["uri"]
    assert uri.startswith(str(falcon_home)) and read_signature(uri).fixed_batch is None
    assert sub.spec.space.knob("batchsize").values == Space.from_file(SERVED_SPACE).knob("batchsize").values  # nothing narrowed
    assert any("data_0 float32[1x3x224x224]" in n for n in notices)
    assert any("made it dynamic" in n for n in notices)


def test_a_live_submission_of_a_pinned_model_narrows_the_batch_knob(tmp_path):
    notices: list[str] = []
    _, sub = build_submission(SubmitOptions("stubborn", model_file=str(stubborn(tmp_path)), backend="live"),
                              None, notices)
    assert sub.spec.space.knob("batchsize").values == (1,)
    assert any("batchsize=1 only" in n for n in notices)
