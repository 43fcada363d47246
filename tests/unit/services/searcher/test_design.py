"""The calibration's design strategy: a seeded, extensible, space-filling design of the space."""

import numpy as np

from services.domain.space import Space
from services.searcher.strategies import STRATEGIES, SearchContext, make_strategy
from services.searcher.strategies.design import design_configs, design_indices
from tests.helpers import REPO

LIVE = Space.from_file(REPO / "deploy" / "config" / "live-cpu-space.yaml")


def test_the_design_is_inside_the_space_distinct_and_of_the_asked_size():
    for n in (1, 5, 16, 30):
        idx = design_indices(LIVE, n, seed=0)
        assert len(idx) == n and len(set(idx.tolist())) == n
        assert all(LIVE.contains(c) for c in design_configs(LIVE, n))
    assert sorted(design_indices(LIVE, 100).tolist()) == list(range(LIVE.size))    # at most the whole space


def test_the_design_is_deterministic_extensible_and_seeded():
    assert design_indices(LIVE, 16, seed=3).tolist() == design_indices(LIVE, 16, seed=3).tolist()
    assert design_indices(LIVE, 24, seed=3)[:16].tolist() == design_indices(LIVE, 16, seed=3).tolist()
    assert design_indices(LIVE, 16, seed=3).tolist() != design_indices(LIVE, 16, seed=4).tolist()


def test_the_design_fills_the_space_every_knob_value_and_no_clump():
    configs = design_configs(LIVE, 16)
    for k in LIVE.knobs:
        counts = [sum(1 for c in configs if c[k.name] == v) for v in k.values]
        assert min(counts) >= 1 and max(counts) - min(counts) <= 2, (k.name, counts)
    # space-filling: the nearest-neighbour distances of the design beat random draws of the same size
    X = LIVE.encode_indices(design_indices(LIVE, 16))

    def min_gap(X):
        d = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1)) + np.eye(len(X)) * 9
        return d.min(1).mean()
    rng = np.random.default_rng(0)
    randoms = [min_gap(LIVE.encode_indices(rng.choice(LIVE.size, 16, replace=False))) for _ in range(200)]
    assert min_gap(X) >= np.median(randoms)


def test_the_design_respects_rules_and_large_spaces():
    space = Space.from_dict({"knobs": {"a": list(range(50)), "b": list(range(50)), "c": ["x", "y", "z"]},
                             "rules": ["a <= b"]})
    configs = design_configs(space, 40, seed=1)
    assert len(configs) == 40 and all(c["a"] <= c["b"] for c in configs)
    big = Space.from_dict({"knobs": {f"k{i}": list(range(10)) for i in range(6)}})      # 10^6
    assert len(set(design_indices(big, 64).tolist())) == 64


def test_the_strategy_asks_the_design_in_order_then_stops():
    assert "design" in STRATEGIES
    space = Space.from_dict({"knobs": {"cpus": [1, 2], "batchsize": [1, 2, 4]}})
    s = make_strategy("design", SearchContext(space, seed=2))
    asked = []
    while (c := s.ask()) is not None:
        asked.append(c)
        s.tell(c, None if len(asked) == 2 else 1.0)          # a failed trial is not repeated
    assert asked == design_configs(space, space.size, seed=2)
    # rebuilt from the history, it asks what it asked (restarts are exact)
    again = make_strategy("design", SearchContext(space, seed=2))
    for c in asked[:3]:
        again.tell(c, 1.0)
    assert again.ask() == asked[3]
