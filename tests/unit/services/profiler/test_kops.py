import pytest

from services.domain.falcon_data import read_operator_profile
from services.domain.operators import normalise_op
from services.profiler.kops import ProfileError, aggregate, identify_kops
from tests.helpers import PROFILES


def kops_of(model, threshold=0.05):
    return identify_kops(read_operator_profile(PROFILES / model / "operators.csv"), threshold)


def test_paper_table3_families():
    assert kops_of("resnet-101") == ["conv2d"]
    assert kops_of("mobilenet-v2")[0] == "conv2d"
    assert set(kops_of("bert-large")) == {"transpose", "dense"}
    assert set(kops_of("gru")) >= {"multiply", "split", "dense", "add", "sigmoid"}


def test_threshold_is_configurable():
    assert len(kops_of("gru", 0.25)) == 1
    assert len(kops_of("gru", 0.0)) == 10


def test_memory_share_also_has_to_pass_when_known():
    ops = [{"op": "conv2d", "time_share": 0.6, "memory_share": 0.9},
           {"op": "relu", "time_share": 0.4, "memory_share": 0.01}]
    assert identify_kops(ops) == ["conv2d"]


def test_spellings_of_one_kind_are_merged():
    ops = aggregate([{"op": "nn.conv2d", "time_share": 0.3}, {"op": "conv2d", "time_share": 0.3},
                     {"op": "concatenate", "time_share": 0.4}])
    assert [(o.op, round(o.time_share, 2)) for o in ops] == [("conv2d", 0.6), ("concat", 0.4)]
    assert normalise_op("relax.matmul") == "dense"


def test_empty_or_negative_profiles_are_errors():
    with pytest.raises(ProfileError):
        identify_kops([{"op": "conv2d", "time_share": 0.0}])
    with pytest.raises(ProfileError):
        identify_kops([{"op": "conv2d", "time_share": -1}])
