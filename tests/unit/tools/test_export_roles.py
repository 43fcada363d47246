"""An exported deployment applies the recommendation's knobs by role, as its served trial did: a
space that calls its batch knob ``bs``, its cores ``ncores`` and its instances ``inst`` exports
Triton's max_batch_size, instance count and cores from them."""

from tests.unit.tools.test_export import served_search, tiny_onnx
from tools.export.files import build

RENAMED = {"knobs": {"ncores": [2, 4], "bs": [8, 16], "inst": [2], "graph_opt": ["all"], "precision": ["fp32"]},
           "roles": {"cpus": "ncores", "batch": "bs", "replicas": "inst"}}


def test_an_export_reads_the_recommendations_knobs_by_role(tmp_path):
    state = served_search(tiny_onnx(tmp_path / "tiny.onnx"), space=RENAMED, trials=2)
    best = state.best
    assert set(best.config) == {"ncores", "bs", "inst", "graph_opt", "precision"}
    e, _ = build(state, "triton", tmp_path / "cache")
    sc = e.serving.config
    assert (sc.max_batch_size, sc.cores, sc.instances) == (best.config["bs"], best.config["ncores"], 2)
    pbtxt = next(text for path, text in e.files.items() if path.endswith("config.pbtxt"))
    assert f"max_batch_size: {best.config['bs']}" in pbtxt and "count: 2" in pbtxt
