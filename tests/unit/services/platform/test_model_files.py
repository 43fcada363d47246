import onnx
import pytest
from onnx import TensorProto, helper

from services.platform.model_files import ModelFileError, check_model_file


def tiny_onnx(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_a_real_onnx_model_passes(tmp_path):
    p = tiny_onnx(tmp_path / "m.onnx")
    assert check_model_file(str(p), "onnx") == p
    assert check_model_file(f"file://{p}", "onnx") == p


@pytest.mark.parametrize("content, match", [
    (b"", "is empty"),
    (b"PK\x03\x04 this is a zip, not a model", "not an ONNX model"),
    (b"\x08\x07", "not an ONNX model"),                     # a valid but empty protobuf: no graph
])
def test_files_that_are_not_models_are_refused(tmp_path, content, match):
    p = tmp_path / "m.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelFileError, match=match):
        check_model_file(str(p), "onnx")


def test_size_limit_missing_file_remote_uri_and_unknown_format(tmp_path):
    p = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ModelFileError, match="over the"):
        check_model_file(str(p), "onnx", max_bytes=10)
    with pytest.raises(ModelFileError, match="does not exist"):
        check_model_file(str(tmp_path / "nope.onnx"), "onnx")
    with pytest.raises(ModelFileError, match="not supported"):
        check_model_file("ftp://host/m.onnx", "onnx")
    with pytest.raises(ModelFileError, match="not one this service reads"):
        check_model_file(str(p), "pickle")
    with pytest.raises(ModelFileError, match="needs model.uri"):
        check_model_file(None, "onnx")
