"""Knobs no offline knowledge covers: falcon learns them online with an explicit early design, a
model of their effect (interactions with the covered knobs included), and an acquisition that
weighs values never measured against exploiting; the search result says what it learnt."""

from functools import cache

import numpy as np

from services.domain.falcon_data import load_model_table, read_operator_profile
from services.domain.space import PAPER_SPACE, Space
from services.domain.spec import DEFAULT_KOP_THRESHOLD, SearchSpec, StopRules
from services.knowledge import Knowledge, OfflineDataset
from services.searcher.search import completed, record_trial, start_search
from services.searcher.strategies import uncovered as U
from services.searcher.strategies.uncovered import (
    AFTER_DESIGN,
    EffectModel,
    design_budget,
    design_levels,
    uncovered_knobs,
)
from tests.helpers import DATA, PROFILES, TARGETS, knowledge
from tools.harness import profiled

QUEUE = [0, 250, 500, 1000, 2000, 5000, 10000, 20000]
FLAGS = ["default", "arena", "pinned"]
THREADS = [1, 2, 3, 4, 6, 8, 12, 16, 24]


def extended(**extra) -> Space:
    knobs = PAPER_SPACE.to_dict()["knobs"]
    knobs += [{"name": n, "values": v, **({"kind": "categorical"} if isinstance(v[0], str) else {})}
              for n, v in extra.items()]
    return Space.from_dict({"knobs": knobs})


@cache
def case(which: str) -> tuple[Space, Knowledge]:
    space = {"flag": extended(queue_delay_us=QUEUE, runtime_flag=FLAGS),        # 1440 x 24
             "big": extended(queue_delay_us=QUEUE, threads=THREADS)}[which]     # 1440 x 72 = 103,680
    return space, Knowledge.build(OfflineDataset.from_folder(DATA), space)


@cache
def gru():
    return load_model_table(TARGETS / "reg-gru.csv")


def search(space, knowledge, objective, trials, seed=0):
    kops, ops = profiled(read_operator_profile(PROFILES / "gru" / "operators.csv"), DEFAULT_KOP_THRESHOLD)
    spec = SearchSpec(model={"name": "gru", "format": "falcon-profile", "uri": None},
                      backend={"kind": "replay", "table": "synthetic", "trial_seconds": 900.0}, space=space,
                      stop=StopRules(trials), strategy="falcon", seed=seed)
    d = start_search("s", spec, kops, ops, knowledge)
    while d.request is not None:
        v = objective(d.request.config)
        r = d.request.result("ok", rps_per_usd=v) if v is not None else d.request.failed("does not start")
        d = record_trial(d.state, r, knowledge)
    return d.state


def base(config) -> float:
    return float(gru().lookup({k: config[k] for k in PAPER_SPACE.names})["value"])


def test_uncovered_means_neither_the_tables_nor_the_cost_model_know_the_knob():
    space = extended(precision=["fp32", "fp16"], replicas=[1, 2], queue_delay_us=QUEUE, runtime_flag=FLAGS)
    grid = space.subspace(PAPER_SPACE.names)
    assert uncovered_knobs(space, grid) == ("queue_delay_us", "runtime_flag")
    assert uncovered_knobs(PAPER_SPACE, PAPER_SPACE) == ()
    # the budget: categorical knobs every value, ordinal ones their ends and middle
    assert design_levels(8, "ordinal") == [0, 3, 7] and design_levels(3, "categorical") == [0, 1, 2]
    assert design_budget(space, ("queue_delay_us", "runtime_flag")) == 2 + 2


def test_a_knob_that_doubles_the_value_at_one_setting_is_found_within_the_design_budget():
    space, k = case("flag")
    knobs = uncovered_knobs(space, k.grid)
    budget = 1 + design_budget(space, knobs)          # the first trial, then the design's moves

    def objective(c):
        queue = 1.0 + 0.1 * QUEUE.index(c["queue_delay_us"]) / 7
        return base(c) * (2.0 if c["runtime_flag"] == "pinned" else 1.0) * queue
    state = search(space, k, objective, budget)
    assert state.best.config["runtime_flag"] == "pinned"
    first = state.trials[0].config
    # the design's moves change one uncovered knob of the best configuration so far, nothing else
    for t in state.trials[1:]:
        assert {n: t.config[n] for n in PAPER_SPACE.names} == {n: first[n] for n in PAPER_SPACE.names}


def test_the_early_design_measures_each_uncovered_knobs_values_and_then_every_value():
    space, k = case("flag")
    knobs = uncovered_knobs(space, k.grid)
    budget = 1 + design_budget(space, knobs)
    rest = len(QUEUE) - len(design_levels(len(QUEUE), "ordinal"))
    bound = budget + len(AFTER_DESIGN) * rest        # module doc: every value measured by then

    def objective(c):       # a single-peaked effect the design cannot take for monotone
        return base(c) * (1.3 if c["queue_delay_us"] == 1000 else 1.0)
    state = search(space, k, objective, bound)
    design = state.trials[:budget]
    assert {t.config["runtime_flag"] for t in design} == set(FLAGS)
    assert {0, 1000, 20000} <= {t.config["queue_delay_us"] for t in design}      # ends and middle
    assert {t.config["queue_delay_us"] for t in state.trials} == set(QUEUE)       # then every value
    assert state.best.config["queue_delay_us"] == 1000


def test_the_design_stops_on_an_ordinal_knob_whose_first_move_changes_nothing():
    space, k = case("flag")
    knobs = uncovered_knobs(space, k.grid)
    budget = 1 + design_budget(space, knobs)          # 1 + 2 (queue: ends and middle) + 2 (flags)

    def objective(c):       # the queue delay is flat (under 1%), a flag matters
        return base(c) * (1.0 + 0.001 * QUEUE.index(c["queue_delay_us"])) * (1.3 if c["runtime_flag"] == "pinned" else 1.0)
    state = search(space, k, objective, budget + 8)
    design = state.trials[:budget]
    assert {t.config["runtime_flag"] for t in design} == set(FLAGS)       # categorical: every value
    assert len({t.config["queue_delay_us"] for t in design}) == 2         # middle and one end, then flat
    first = {n: state.trials[0].config[n] for n in PAPER_SPACE.names}
    # the trial the design no longer spends on the queue goes to the covered knobs
    assert any({n: t.config[n] for n in PAPER_SPACE.names} != first for t in design)
    # a flat knob's other values are still measured later, in their own (sparser) turns
    assert len({t.config["queue_delay_us"] for t in state.trials}) >= 3
    assert state.best.config["runtime_flag"] == "pinned"


def test_the_effect_model_learns_an_interaction_with_the_batch():
    space = extended(queue_delay_us=QUEUE)
    model = EffectModel(space, ("queue_delay_us",))
    rng = np.random.default_rng(0)
    rows = space.rows(rng.choice(space.size, 40, replace=False))
    b = rows[:, space.names.index("batchsize")] / 5.0
    q = rows[:, space.names.index("queue_delay_us")] / 7.0
    r = np.log1p(0.4 * q * b) - 0.2 * q * (1 - b)          # helps large batches, hurts small ones
    post = model.fit(model.features(rows), r, np.full(len(r), 0.02))
    probe = space.rows(np.arange(space.size)[:1]).repeat(2, axis=0)
    probe[:, space.names.index("queue_delay_us")] = 7
    probe[0, space.names.index("batchsize")], probe[1, space.names.index("batchsize")] = 0, 5
    base_rows = probe.copy()
    base_rows[:, space.names.index("queue_delay_us")] = 0
    gain = model.predict(post, model.features(probe))[0] - model.predict(post, model.features(base_rows))[0]
    assert gain[1] > 0.15 and gain[0] < -0.05         # the sign of the knob's effect flips with the batch


def test_a_search_of_a_hundred_thousand_configurations_with_two_uncovered_knobs_says_what_it_learnt():
    space, k = case("big")
    assert space.size == 103_680 and uncovered_knobs(space, k.grid) == ("queue_delay_us", "threads")

    def objective(c):       # threads beyond the cores oversubscribe them; a queue delay helps large batches
        t, cpus = c["threads"], c["cpus"]
        b = PAPER_SPACE.knob("batchsize").index_of(c["batchsize"]) / 5
        return base(c) * (1 + 0.3 * b * QUEUE.index(c["queue_delay_us"]) / 7) * (min(t, cpus) / cpus) ** 0.3 \
            * min(1.0, cpus / t) ** 0.5
    state = search(space, k, objective, 12)
    assert len(state.trials) == 12 and state.status == "completed"
    assert len({space.key(t.config) for t in state.trials}) == 12
    optimum = max(objective(space.config_at(i)) for i in range(0, space.size))
    assert state.best.rps_per_usd >= 0.9 * optimum
    lines = completed(state).notices
    assert [n for n in ("queue_delay_us", "threads") if any(f"uncovered knob {n} " in x for x in lines)] == \
        ["queue_delay_us", "threads"]
    q = next(x for x in lines if "uncovered knob queue_delay_us" in x)
    n_q = sum(1 for t in state.trials if t.ok)
    assert f"learnt online from {n_q} trials" in q and "20000: x" in q


def test_a_space_the_knowledge_covers_is_searched_as_before():
    k = knowledge()
    state = search(PAPER_SPACE, k, base, 3)
    assert state.learnt == () and completed(state).notices == []
    assert U.uncovered_knobs(PAPER_SPACE, k.grid) == ()
