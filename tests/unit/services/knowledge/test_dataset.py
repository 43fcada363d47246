import pytest

from services.common.falcon_data import DataError, iter_offline_tables
from services.knowledge.dataset import OfflineDataset
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
    ("kop-curve", "conv2d/x", ["a", "b", "value"], [[1, "two", 3]], "three numbers"),
    ("kop-curve", "conv2d/x", ["a", "b"], [[1, 2]], "3 columns"),
    ("model-table", "m", ["cpus", "norm.(rps/budget)"], [[1]], "fields"),
    ("weights", "m", ["a"], [[1]], "not part"),
])
def test_bad_tables_are_refused(kind, name, cols, rows, match):
    with pytest.raises(DataError, match=match):
        OfflineDataset().add(kind, name, cols, rows)
