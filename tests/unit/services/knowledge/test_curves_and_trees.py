import numpy as np
import pytest

from services.domain.space import PAPER_SPACE
from services.knowledge import Knowledge
from services.knowledge.curves import classify_shape, knob_importance, prune
from services.knowledge.trees import build_tree
from tests.helpers import REPO, knowledge


@pytest.mark.parametrize("f, shape", [
    (lambda t: 0.2 + 0.6 * t, "slope"),
    (lambda t: 0.9 * (t - 0.5) ** 2 * 4, "convex"),
    (lambda t: 1 - 4 * (t - 0.5) ** 2, "concave"),
    (lambda t: 0.5 + 0.001 * t, "plane"),
])
def test_curve_shapes(f, shape):
    xs = np.repeat(np.arange(6.0), 4)
    assert classify_shape(xs, f(xs / 5)) == shape


def test_importance_and_cutoff_prune_knobs_without_effect():
    a = np.repeat([0, 1, 2], 4)
    b = np.tile([0, 1, 2, 3], 3)
    values = 2.0 * a + 0.01 * b
    imp = knob_importance(values, {"a": a, "b": b})
    assert imp["a"] > 0.99 and abs(sum(imp.values()) - 1) < 1e-9
    assert prune(imp, 0.85) == ("a",)
    assert prune(imp, 1.0) == ("a", "b")


def test_knowledge_from_the_falcon_data():
    k = knowledge()
    assert len(k.sources) == 18 and {"conv2d", "dense", "transpose"} <= set(k.operators)
    conv = k.operators["conv2d"]
    assert conv.score.shape == (1440,) and conv.score.min() == 0 and conv.score.max() == 1
    assert 1 <= len(conv.kept) <= 5 and set(conv.shapes.values()) <= {"slope", "convex", "concave", "plane"}
    w = k.kop_prior([("conv2d", 0.8), ("relu", 0.2)])
    assert np.allclose(w, 0.8 * conv.score + 0.2 * k.operators["relu"].score)
    assert k.kop_prior([("an-operator-nobody-measured", 1.0)]) is None


def test_tree_splits_into_good_and_bad_regions():
    rng = np.random.default_rng(0)
    X = rng.random((400, 2))
    y = np.where(X[:, 0] > 0.5, 1.0, 0.0) + 0.1 * X[:, 1]
    root = build_tree(X, y, max_height=4, min_leaf=10)
    assert root.height <= 4 and not root.is_leaf
    good, bad = root.children
    assert good.value > bad.value
    assert sorted(np.r_[good.members, bad.members].tolist()) == list(range(400))   # a partition
    assert X[good.members, 0].mean() > 0.7 and X[bad.members, 0].mean() < 0.3      # the boundary is x0 = 0.5
    for node in root.walk():
        assert node.value == pytest.approx(y[node.members].mean())
        assert node.is_leaf or len(node.children) == 2
    exported = root.to_json()
    assert exported["size"] == 400 and len(exported["children"]) == 2 and "support_vectors" in exported["svm"]


def test_operator_trees_respect_the_height_bound():
    k = knowledge()
    tree = k.tree("conv2d")
    assert 2 <= tree.height <= 8 and len(tree.members) == 1440
    assert tree is k.tree("conv2d")          # built once, cached


def test_stored_knowledge_drives_the_same_search_as_a_fresh_build():
    import msgpack

    from services.searcher.strategies import SearchContext, make_strategy
    k = knowledge()
    back = Knowledge.from_dict(msgpack.unpackb(msgpack.packb(k.to_dict()), raw=False))
    assert back.space == k.space and set(back.operators) == set(k.operators) and set(back.sources) == set(k.sources)
    assert np.array_equal(back.tree("conv2d").members, k.tree("conv2d").members)
    ops = ({"op": "dense", "time_share": 0.6}, {"op": "transpose", "time_share": 0.4})
    runs = []
    for kk in (k, back):
        s = make_strategy("falcon", SearchContext(PAPER_SPACE, 1, ("dense", "transpose"), ops, kk))
        seq = []
        for i in range(4):
            c = s.ask()
            s.tell(c, float(kk.sources["bert-base"][PAPER_SPACE.index(c)]))
            seq.append(PAPER_SPACE.key(c))
        runs.append(seq)
    assert runs[0] == runs[1]


def test_a_partly_measured_source_fills_its_gaps_from_its_neighbours():
    from services.domain.falcon_data import load_model_table, model_table_from_rows
    from services.domain.space import Space
    from services.knowledge.knowledge import MIN_OBSERVED, source_values
    full = load_model_table(REPO / "bench" / "live" / "models" / "targets" / "reg-resnet8.csv")
    space = Space.from_file(REPO / "deploy" / "config" / "live-cpu-space.yaml")
    truth = source_values(full, space)
    assert truth is not None and not np.isnan(truth).any()          # a complete table is taken as it is
    rng = np.random.default_rng(0)
    configs = list(space.configs())
    keep = sorted(rng.choice(len(configs), 14, replace=False))
    rows = [[*(configs[i][k] for k in space.names), float(truth[i]) * 1e8] for i in keep]   # raw scale
    part = model_table_from_rows("observed", [*space.names, "norm.(rps/budget)"], rows)
    filled = source_values(part, space)
    assert filled.max() == pytest.approx(1.0)                         # scaled like the offline tables
    assert np.corrcoef(filled, truth)[0, 1] > 0.6                      # the gaps follow the measured shape
    few = model_table_from_rows("few", [*space.names, "norm.(rps/budget)"], rows[: MIN_OBSERVED - 1])
    assert source_values(few, space) is None
