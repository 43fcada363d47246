"""Spaces of real size: a decision scores a sample plus local moves (never the whole space),
proposals stay inside the space and its rules, and failed trials teach where not to go."""

from functools import cache

import numpy as np
import pytest

from bench.scale import make_space, objective
from services.domain.space import Space
from services.domain.spec import SearchSpec, StopRules
from services.knowledge import Knowledge, OfflineDataset
from services.searcher.search import record_trial, start_search
from services.searcher.strategies import SearchContext, make_strategy
from tests.helpers import DATA

OPS = ({"op": "conv2d", "time_share": 0.8}, {"op": "relu", "time_share": 0.2})
RULED = Space.from_dict({"knobs": {"batchsize": [1, 2, 4, 8, 16, 32], "cpus": [1, 2, 4, 8],
                                   "gputype": ["T4", "V100", "none"], "precision": ["fp32", "fp16", "int8"]},
                         "rules": ["not (gputype == 'none' and precision == 'fp16')", "batchsize <= 8 * cpus"]})


@cache
def big_knowledge() -> tuple[Space, Knowledge]:
    space = make_space(1e5)
    return space, Knowledge.build(OfflineDataset.from_folder(DATA), space)


def search(space, strategy, trials, knowledge=None, seed=0):
    spec = SearchSpec(model={"name": "m", "format": "falcon-profile", "uri": None},
                      backend={"kind": "replay", "table": "synthetic", "trial_seconds": 900.0}, space=space,
                      stop=StopRules(trials), strategy=strategy, seed=seed)
    d = start_search("s", spec, ["conv2d", "relu"], OPS, knowledge)
    while d.request is not None:
        v = objective(d.request.config) if "gpumem" in space.names else 1.0 + 0.01 * d.request.index
        r = d.request.result("ok", rps_per_usd=v) if v is not None else d.request.failed("does not start")
        d = record_trial(d.state, r, knowledge)
    return d.state


def test_a_search_over_a_hundred_thousand_configurations_runs_through_the_product_loop():
    space, k = big_knowledge()
    assert space.size > 100_000 and k.grid.size == 1440          # knowledge lives on the covered knobs
    state = search(space, "falcon", 10, k)
    assert len(state.trials) == 10 and state.status == "completed"
    assert len({space.key(t.config) for t in state.trials}) == 10   # never the same configuration twice
    # the knobs no table has are tuned too: the cost model says int8 on a T4 pays, and it does
    assert state.best.config["precision"] != "fp32" and state.best.rps_per_usd > 1.0
    # a configuration that failed to start is never followed by one of its neighbours
    for before, after in zip(state.trials, state.trials[1:]):
        if not before.ok:
            assert space.index(after.config) not in space.neighbours(space.index(before.config))


@pytest.mark.parametrize("strategy", ["falcon", "gp-ei", "random", "tpe", "prior", "morphling"])
def test_proposals_stay_inside_the_rules(strategy):
    k = Knowledge.build(OfflineDataset.from_folder(DATA), RULED) if strategy in ("prior", "morphling") else None
    state = search(RULED, strategy, 12, k)
    assert all(RULED.allows(t.config) for t in state.trials)


def test_a_failure_lowers_the_chance_of_its_neighbours():
    s = make_strategy("gp-ei", SearchContext(RULED, 0))
    bad = {"batchsize": 8, "cpus": 1, "gputype": "V100", "precision": "int8"}
    s.tell({"batchsize": 1, "cpus": 8, "gputype": "T4", "precision": "fp32"}, 0.5)
    assert s.feasibility(np.arange(RULED.size)) is None                # nothing failed yet: no penalty
    s.tell(bad, None)
    near = RULED.index({**bad, "batchsize": 4})
    far = RULED.index({"batchsize": 1, "cpus": 8, "gputype": "T4", "precision": "fp16"})
    p = s.feasibility(np.array([RULED.index(bad), near, far]))
    assert p[0] < p[1] < p[2] and p[2] > 0.8


def test_knobs_the_offline_data_lacks_are_neutral_in_the_experts():
    space, k = big_knowledge()
    rows = space.rows(np.arange(0, space.size, 997))
    same_grid = k.on_grid(space.indices_of(rows))
    other = rows.copy()
    other[:, space.names.index("precision")] = (other[:, space.names.index("precision")] + 1) % 3
    assert np.array_equal(k.on_grid(space.indices_of(other)), same_grid)   # precision does not move the grid
    assert "precision" in k.kept_knobs(["conv2d"])          # but the search still tunes it (BO)
