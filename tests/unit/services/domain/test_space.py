import numpy as np
import pytest

from services.domain.space import PAPER_SPACE, Space, SpaceError


def test_paper_space_has_1440_distinct_configurations():
    configs = list(PAPER_SPACE.configs())
    assert len(configs) == PAPER_SPACE.size == 1440
    assert len({PAPER_SPACE.key(c) for c in configs}) == 1440


def test_index_and_config_at_are_inverse():
    for i in (0, 1, 719, 1439):
        assert PAPER_SPACE.index(PAPER_SPACE.config_at(i)) == i
    with pytest.raises(SpaceError):
        PAPER_SPACE.config_at(1440)


def test_canonical_accepts_equal_numbers_and_rejects_outsiders():
    c = {"batchsize": 32.0, "cpus": 2, "gpumem": 1.2, "gpupower": 75, "gputype": "T4"}
    assert PAPER_SPACE.canonical(c)["batchsize"] == 32
    assert PAPER_SPACE.key(c) == "batchsize=32,cpus=2,gpumem=1.2,gpupower=75,gputype=T4"
    with pytest.raises(SpaceError, match="not one of"):
        PAPER_SPACE.canonical({**c, "batchsize": 33})
    with pytest.raises(SpaceError, match="unknown knob"):
        PAPER_SPACE.canonical({**c, "threads": 3})
    with pytest.raises(SpaceError, match="lacks"):
        PAPER_SPACE.canonical({k: v for k, v in c.items() if k != "cpus"})
    assert not PAPER_SPACE.contains({**c, "gputype": "A100"})


def test_encoding_scales_ordinals_and_one_hots_categories():
    assert PAPER_SPACE.encoded_dim == 4 + 4
    v = PAPER_SPACE.encode({"batchsize": 128, "cpus": 1, "gpumem": 1.6, "gpupower": 75, "gputype": "T4"})
    assert np.allclose(v, [1.0, 0.0, 2 / 3, 0.5, 0, 0, 1, 0])


def test_space_from_yaml_and_toml(tmp_path):
    y = tmp_path / "space.yaml"
    y.write_text("knobs:\n  cpus: [2, 1]\n  runtime: [tvm, ort]\n")
    t = tmp_path / "space.toml"
    t.write_text('[[knobs]]\nname = "cpus"\nvalues = [1, 2]\n[[knobs]]\nname = "runtime"\nvalues = ["tvm", "ort"]\n')
    for path in (y, t):
        s = Space.from_file(path)
        assert s.size == 4 and s.knob("cpus").values == (1, 2) and s.knob("runtime").kind == "categorical"
    assert Space.from_dict(Space.from_file(y).to_dict()) == Space.from_file(y)


@pytest.mark.parametrize("bad, match", [
    ({"knobs": []}, "non-empty"),
    ({"knobs": {"a": []}}, "non-empty list"),
    ({"knobs": {"a": [1, 1]}}, "twice"),
    ({"knobs": [{"name": "a", "values": ["x"], "kind": "ordinal"}]}, "numeric"),
    ({"knobs": [{"name": "a", "values": [1]}, {"name": "a", "values": [2]}]}, "duplicate"),
])
def test_bad_spaces_are_refused_with_a_reason(bad, match):
    with pytest.raises(SpaceError, match=match):
        Space.from_dict(bad)


def test_unknown_space_file_type(tmp_path):
    p = tmp_path / "space.json"
    p.write_text("{}")
    with pytest.raises(SpaceError, match="yaml"):
        Space.from_file(p)


def test_documented_default_space_file_is_the_default():
    from tests.helpers import REPO
    assert Space.from_file(REPO / "deploy" / "config" / "paper-space.yaml") == PAPER_SPACE


def test_space_file_rules_in_yaml_and_toml(tmp_path):
    y = tmp_path / "space.yaml"
    y.write_text("knobs:\n  cpus: [1, 2, 4]\n  replicas: [1, 2, 4]\nrules:\n  - \"replicas <= cpus\"\n")
    t = tmp_path / "space.toml"
    t.write_text('rules = ["replicas <= cpus"]\n[knobs]\ncpus = [1, 2, 4]\nreplicas = [1, 2, 4]\n')
    for path in (y, t):
        s = Space.from_file(path)
        assert [r.text for r in s.rules] == ["replicas <= cpus"]
        assert s.size == 9 and s.allowed_size_estimate() == 6
        assert s.contains({"cpus": 2, "replicas": 2}) and not s.contains({"cpus": 1, "replicas": 2})
        assert s.allows({"cpus": 4, "replicas": 1})
        with pytest.raises(SpaceError, match="not one of"):
            s.allows({"cpus": 3, "replicas": 1})
    with pytest.raises(SpaceError, match="9 configurations, more than the maximum of 8"):
        Space.from_file(y, max_size=8)


def test_vectorised_index_helpers_agree_with_index_and_config_at():
    idx = np.array([0, 1, 719, 1439])
    rows = PAPER_SPACE.rows(idx)
    assert PAPER_SPACE.indices_of(rows).tolist() == idx.tolist()
    for i, row in zip(idx, rows):
        c = PAPER_SPACE.config_at(int(i))
        assert [k.index_of(c[k.name]) for k in PAPER_SPACE.knobs] == row.tolist()
    assert PAPER_SPACE.allowed_size_estimate() == 1440 and PAPER_SPACE.rules == ()
    assert len(PAPER_SPACE.sample(np.random.default_rng(0), 2000)) == 1440


def test_the_process_limit_on_space_size_is_configurable():
    from services.domain.space import MAX_SPACE_SIZE, set_max_space_size
    try:
        set_max_space_size(1000)
        with pytest.raises(SpaceError, match="1,440 configurations, more than the maximum of 1,000"):
            Space.from_dict(PAPER_SPACE.to_dict())
    finally:
        set_max_space_size(MAX_SPACE_SIZE)
    assert Space.from_dict(PAPER_SPACE.to_dict()).size == 1440


def test_a_knob_written_outside_knobs_is_refused_not_left_out(tmp_path):
    """The README once said a knob is added with a line ``name: [values]``: at the top level that
    line was silently ignored; it goes under knobs:."""
    p = tmp_path / "space.yaml"
    p.write_text("knobs:\n  cpus: [1, 2]\n  graph_opt: [all]\nbatchsize: [1]\n")
    with pytest.raises(SpaceError, match=r"'batchsize' is not a section of a space file .* under knobs:"):
        Space.from_file(p)
    p.write_text("knobs:\n  cpus: [1, 2]\n  graph_opt: [all]\n  batchsize: [1]\n")
    assert Space.from_file(p).names == ("cpus", "graph_opt", "batchsize")
