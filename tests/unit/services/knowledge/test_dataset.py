import pytest

from schemas.events import TrialResult
from services.domain.falcon_data import DataError, iter_offline_tables
from services.domain.space import Space
from services.knowledge.dataset import OfflineDataset, observed_rows
from tests.helpers import DATA


def test_falcon_data_parses_into_one_typed_dataset():
    ds = OfflineDataset()
    for kind, name, cols, rows in iter_offline_tables(DATA):
        ds.add(kind, name, cols, rows)
    s = ds.summary()
    assert s["model_tables"] == 18 and "bert-base" in s["models"]
    assert "conv2d" in s["operators"] and "dense" in s["operators"]
    curve = ds.kop_curves["conv2d/03-CPUcores-power-concave"]
    assert curve.knobs == ("CPUcores", "power") and curve.shape == "concave" and len(curve.points) >= 10
    # targets are never offline knowledge
    assert not {"gru", "bert-large", "resnet-101", "mobilenet-v2"} & set(s["models"])


@pytest.mark.parametrize("kind, name, cols, rows, match", [
    ("kop-curve", "conv2d", ["a", "b", "value"], [[1, 2, 3]], "operator"),
    ("kop-curve", "conv2d/x", ["a", "b", "value"], [[1, 2, "three"]], "two knob values and a number"),
    ("kop-curve", "conv2d/x", ["a", "b", "value"], [[1, " ", 3]], "two knob values and a number"),
    ("kop-curve", "conv2d/x", ["a", "b"], [[1, 2]], "3 columns"),
    ("model-table", "m", ["cpus", "norm.(rps/budget)"], [[1]], "fields"),
    ("weights", "m", ["a"], [[1]], "not part"),
])
def test_bad_tables_are_refused(kind, name, cols, rows, match):
    with pytest.raises(DataError, match=match):
        OfflineDataset().add(kind, name, cols, rows)


def test_a_calibrated_curve_may_name_the_space_s_knobs_and_categorical_values():
    """What falcon calibrate writes: knob names of the space (graph_opt) and value names."""
    from services.domain.space import Space
    from services.knowledge.curves import operator_curves
    ds = OfflineDataset()
    ds.add("kop-curve", "conv2d/03-batchsize-graph_opt-cal1-slope", ["batchsize", "graph_opt", "value"],
           [[1, "disabled", 0.0], [1, "all", 0.5], [8, "disabled", 0.4], [8, "all", 1.0]])
    curve = ds.kop_curves["conv2d/03-batchsize-graph_opt-cal1-slope"]
    assert curve.points[1] == (1.0, "all", 0.5)
    space = Space.from_dict({"knobs": {"cpus": [1, 2], "batchsize": [1, 8], "graph_opt": ["disabled", "all"]}})
    oc = operator_curves("conv2d", [curve], space)
    best = space.config_at(int(oc.score.argmax()))
    assert best["batchsize"] == 8 and best["graph_opt"] == "all" and oc.importance["cpus"] == 0.0


def test_a_search_s_live_trials_join_the_model_s_observed_table():
    space = Space.from_dict({"knobs": {"cpus": [1, 2], "batchsize": [8, 16]}})

    def trial(i, cpus, value, status="ok"):
        return TrialResult(f"s/t{i}", i, {"cpus": cpus, "batchsize": 8}, status, value, 0.0, 1.0)
    earlier = [[1, 8, 5.0], [2, 16, 7.0]]        # an earlier search of the same model
    rows = observed_rows(space, earlier, [trial(0, 1, 10.0), trial(1, 2, 4.0), trial(2, 1, 12.0),
                                          trial(3, 2, None, "failed")])
    # cpus=1 measured twice (a noisy search re-measured it): its mean replaces the earlier value;
    # the failed trial adds nothing, the configuration this search did not try stays
    assert rows == [[1, 8, 11.0], [2, 16, 7.0], [2, 8, 4.0]]
