"""A served trial deploys the model repository entry ``falcon export`` ships: the same
configuration and the same Python-backend model.py, so the trial measures what the user deploys."""

from pathlib import Path

import pytest

from services.domain.serving import serving_config
from services.trial_runner.model_repo import MODEL_PY, ModelIOError, backend_dir, write_entry
from tests.unit.tools.test_export import served_search, tiny_onnx
from tools.export.files import build


def body(text: str) -> str:
    """A configuration without the export's header comments."""
    return "".join(ln + "\n" for ln in text.splitlines() if not ln.startswith("#")).lstrip("\n")


def test_the_trial_deploys_the_entry_the_export_ships(tmp_path):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    state = served_search(model)
    e, _ = build(state, "triton", tmp_path / "cache")
    config = serving_config(state.best.config)
    entry = write_entry(tmp_path / "repo", e.name, model, config)
    assert (entry / "1" / "model.onnx").read_bytes() == model.read_bytes()
    assert (entry / "1" / "model.py").read_text() == MODEL_PY.read_text()
    exported = {Path(p).relative_to(f"model_repository/{e.name}").as_posix(): t for p, t in e.files.items()
                if p.startswith("model_repository/")}
    assert body(exported["configs/python-ort.pbtxt"]) == (entry / "config.pbtxt").read_text()
    assert exported["1/model.py"].endswith(MODEL_PY.read_text())
    trial = (entry / "config.pbtxt").read_text()
    assert f"max_batch_size: {config.max_batch_size}\n" in trial and 'backend: "python"' in trial
    assert 'name: "x"' in trial and "dims: [ 4 ]" in trial                   # inputs from the ONNX file


def test_a_file_that_is_not_onnx_is_refused_with_the_reason(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf \xff")
    with pytest.raises(ModelIOError, match="cannot be read as ONNX"):
        write_entry(tmp_path / "repo", "m", bad, serving_config({}))


def test_the_backend_directory_holds_the_stub_for_the_serving_python(tmp_path):
    site = tmp_path / "site"
    bundled = site / "pytriton" / "tritonserver"
    (bundled / "backends" / "python").mkdir(parents=True)
    for f in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (bundled / "backends" / "python" / f).write_text(f)
    (bundled / "python_backend_stubs" / "3.11").mkdir(parents=True)
    (bundled / "python_backend_stubs" / "3.11" / "triton_python_backend_stub").write_text("stub 3.11")
    d = backend_dir(site, "3.11", tmp_path / "backends")
    assert sorted(p.name for p in (d / "python").iterdir()) == \
        ["libtriton_python.so", "triton_python_backend_stub", "triton_python_backend_utils.py"]
    assert (d / "python" / "triton_python_backend_stub").read_text() == "stub 3.11"
    with pytest.raises(FileNotFoundError, match="no Python backend stub for Python 3.99"):
        backend_dir(site, "3.99", tmp_path / "other")
