"""Several trials of one search in flight: batch proposals, top-ups, and every guarantee of the
one-at-a-time search (idempotent handling, rebuild from the log, budgets) with a batch pending."""

from dataclasses import replace

import pytest

from schemas import Event
from schemas.events import TrialResult
from services.domain.falcon_data import load_model_table
from services.searcher.preflight import Facts
from services.platform.runners import RunnerAdvert
from services.domain.space import Space
from services.searcher.search import (
    SearchState,
    decision_events,
    rebuild_states,
    record_trial,
    start_search,
    validate_spec,
    with_outbox,
)
from services.searcher.strategies import STRATEGIES, SearchContext, make_strategy
from tests.helpers import TARGETS, knowledge, spec

TABLE = load_model_table(TARGETS / "reg-mobilenet-v2.csv")
OPS = [{"op": "conv2d", "time_share": 0.7, "memory_share": None, "flops": None},
       {"op": "relu", "time_share": 0.3, "memory_share": None, "flops": None}]


def answer(r, value=None, cv=None):
    v = TABLE.lookup(r.config)["value"] if value is None else value
    return TrialResult(r.trial_id, r.index, r.config, "ok", v, r.price_per_hour / 4, 900.0, stability_cv=cv)


@pytest.mark.parametrize("name", ["falcon", "gp-ei", "random", "tpe", "prior", "morphling"])
def test_a_batch_is_distinct_inside_the_space_and_avoids_what_is_in_flight(name):
    ctx = SearchContext(TABLE.space, seed=1, kops=("conv2d", "relu"), operators=OPS, knowledge=knowledge())
    s = make_strategy(name, ctx)
    for c in [TABLE.space.config_at(i) for i in (5, 400, 900)]:
        s.tell(c, TABLE.lookup(c)["value"])
    in_flight = [TABLE.space.config_at(i) for i in (17, 1200)]
    batch = s.ask_batch(4, in_flight)
    keys = [TABLE.space.key(c) for c in batch]
    assert len(batch) == 4 and len(set(keys)) == 4
    assert all(TABLE.space.allows(c) for c in batch)
    assert not set(keys) & {TABLE.space.key(c) for c in in_flight}
    # deterministic: a strategy rebuilt from the same tells proposes the same batch
    again = make_strategy(name, ctx)
    for c in [TABLE.space.config_at(i) for i in (5, 400, 900)]:
        again.tell(c, TABLE.lookup(c)["value"])
    assert [TABLE.space.key(c) for c in again.ask_batch(4, in_flight)] == keys


@pytest.mark.parametrize("name", sorted(set(STRATEGIES) - {"prior", "design", "cost-model"}))
def test_every_strategy_runs_a_search_with_three_trials_in_flight_from_the_start(name):
    """Before any result, a batch is proposed with nothing measured (no fantasy values yet)."""
    d = start_search("s1", spec(max_trials=6, parallel=3, strategy=name), ["conv2d", "relu"], OPS, knowledge())
    assert len(d.requests) == 3, d.state.stop_reason
    while d.state.pending:
        d = record_trial(d.state, answer(d.state.pending[-1]), knowledge())
    st = d.state
    assert st.status == "completed" and len(st.trials) == 6
    assert len({TABLE.space.key(t.config) for t in st.trials}) == 6


def test_the_batch_is_topped_up_as_each_result_arrives():
    d = start_search("s1", spec(max_trials=7, parallel=3), ["conv2d"], OPS)
    assert len(d.requests) == 3 and len(d.state.pending) == 3
    assert [r.index for r in d.requests] == [0, 1, 2]
    # the second one finishes first: one new trial at once, the other two still in flight
    d = record_trial(d.state, answer(d.state.pending[1]))
    assert [r.index for r in d.requests] == [3] and [p.index for p in d.state.pending] == [0, 2, 3]
    keys = {TABLE.space.key(p.config) for p in d.state.pending} | {TABLE.space.key(t.config) for t in d.state.trials}
    assert len(keys) == 4                                   # nothing proposed twice
    while d.state.pending:
        d = record_trial(d.state, answer(d.state.pending[0]))
    assert d.finished and d.state.status == "completed" and len(d.state.trials) == 7


def test_max_trials_counts_the_trials_in_flight_and_the_search_waits_for_them():
    d = start_search("s1", spec(max_trials=4, parallel=3), ["conv2d"], OPS)
    d = record_trial(d.state, answer(d.state.pending[0]))
    assert len(d.requests) == 1                     # 1 done + 3 in flight = 4: nothing more
    d = record_trial(d.state, answer(d.state.pending[0]))
    assert not d.requests and not d.finished and d.state.stop_reason == "max-trials"
    assert d.state.status == "running" and len(d.state.pending) == 2   # winding down, not done
    d = record_trial(d.state, answer(d.state.pending[0]))
    d = record_trial(d.state, answer(d.state.pending[0]))
    assert d.finished and d.state.status == "completed" and len(d.state.trials) == 4


def test_the_budget_counts_what_the_trials_in_flight_will_cost():
    d = start_search("s1", spec(max_trials=50, parallel=4, budget_usd=0.5), ["conv2d"], OPS)
    while d.state.pending:
        assert d.state.committed_usd <= 0.5 + 1e-9
        d = record_trial(d.state, answer(d.state.pending[0]))
    assert d.state.stop_reason == "budget" and d.state.spent_usd <= 0.5


def test_duplicate_and_stale_results_with_a_batch_in_flight():
    d = start_search("s1", spec(max_trials=6, parallel=3), ["conv2d"], OPS)
    first = answer(d.state.pending[2])
    d2 = record_trial(d.state, first)
    assert record_trial(d2.state, first).duplicate
    assert record_trial(d2.state, replace(first, trial_id="s1/t42")).ignored


def test_a_state_with_a_batch_in_flight_survives_serialisation():
    d = start_search("s1", spec(max_trials=6, parallel=3), ["conv2d"], OPS)
    d = record_trial(d.state, answer(d.state.pending[1]))
    restored = SearchState.from_dict(d.state.to_dict())
    assert restored == d.state and len(restored.pending) == 3
    nxt = answer(d.state.pending[0])
    assert record_trial(restored, nxt) == record_trial(d.state, nxt)


def test_rebuild_from_the_log_with_several_trials_in_flight_equals_the_stored_state():
    sp = spec(max_trials=6, parallel=3)
    start = Event("kops-identified", "s9", {"spec": sp.to_dict(), "kops": ["conv2d"], "operators": OPS,
                                            "threshold": 0.05}, "profiler")
    d = start_search("s9", sp, ["conv2d"], OPS)
    state = with_outbox(d, decision_events(start, d))
    log = [start, *(Event(**e) for e in state.outbox)]
    assert len({e.event_id for e in log}) == 4           # three requests, three distinct event ids
    order = [1, 0, 2, 0, 1, 0]                           # results arrive out of request order
    for k in order:
        if not state.pending:
            break
        done = Event.new(answer(state.pending[min(k, len(state.pending) - 1)]), "s9", "runner")
        d = record_trial(state, done.payload)
        state = with_outbox(d, decision_events(done, d))
        log += [done, *(Event(**e) for e in state.outbox)]
        assert rebuild_states(log + log[:3])["s9"] == state        # redeliveries mixed in
    assert state.status == "completed" and len(state.trials) == 6


def test_default_parallelism_is_the_live_runners_of_the_search_class():
    live = spec(max_trials=6)
    live = replace(live, backend={"kind": "live", "measure_s": 1, "trial_seconds": 7})
    adverts = [RunnerAdvert(f"r{i}", ("live-t4",), {"live": {}}) for i in range(3)] + \
        [RunnerAdvert("other", ("live-v100",), {"live": {}})]
    from services.searcher.search import resolve_parallel
    only_t4 = replace(live, space=Space.from_dict({"knobs": {**{k.name: list(k.values) for k in live.space.knobs},
                                                              "gputype": ["T4"]}}))
    assert resolve_parallel(only_t4, Facts(None, adverts)) == 3
    assert resolve_parallel(live, Facts(None, adverts)) == 4
    assert resolve_parallel(spec(max_trials=6), Facts(None, adverts)) == 1          # replay
    assert resolve_parallel(replace(only_t4, parallel=2), Facts(None, adverts)) == 2


@pytest.mark.parametrize("q", [0, -1, 7])
def test_parallelism_below_one_or_above_the_trial_budget_is_refused(q):
    problems = validate_spec(spec(max_trials=6, parallel=q))
    assert any("parallel must be between 1 and the trial budget (6 trials)" in p for p in problems)
    d = start_search("s1", spec(max_trials=6, parallel=q), ["conv2d"], OPS)
    assert d.finished and d.state.status == "failed" and not d.requests


def drive(sp, knowledge_=None, facts=None, noise=0.0, steps=99):
    """Drive a search as the searcher does (results in request order), keeping every stored state
    and the event log."""
    import numpy as np
    start = Event("kops-identified", "s9", {"spec": sp.to_dict(), "kops": ["conv2d", "relu"], "operators": OPS,
                                            "threshold": 0.05}, "profiler")
    d = start_search("s9", sp, ["conv2d", "relu"], OPS, knowledge_, facts)
    state = with_outbox(d, decision_events(start, d))
    states, log = [state], [start, *(Event(**e) for e in state.outbox)]
    rng = np.random.default_rng(0)
    while state.pending and steps:
        steps -= 1
        r = state.pending[0]
        v = TABLE.lookup(r.config)["value"] * (float(np.exp(rng.normal(0, noise))) if noise else 1.0)
        done = Event.new(answer(r, value=v, cv=noise or None), "s9", "runner")
        d = record_trial(state, done.payload, knowledge_)
        state = with_outbox(d, decision_events(done, d))
        states.append(state)
        log += [done, *(Event(**e) for e in state.outbox)]
    return states, log


def test_a_noisy_search_rebuilt_without_its_knowledge_recommends_what_it_recommended():
    """The model's expectations travel in the searcher's logged decisions, so a rebuild (Redis
    wiped: the knowledge is gone too) recommends exactly what the stored search did."""
    sp = replace(spec(max_trials=8, parallel=2, strategy="falcon"),
                 backend={**spec().backend, "noise": 0.1})
    states, log = drive(sp, knowledge(), noise=0.1)
    final = states[-1]
    assert final.status == "completed" and final.predicted          # noisy: it shrank towards its model
    rebuilt = rebuild_states(log)["s9"]                              # no knowledge at hand
    assert rebuilt == final and rebuilt.best == final.best


def test_the_rebuild_keeps_the_parallelism_resolved_from_the_runners_when_the_budget_cut_the_start():
    live = replace(spec(max_trials=6), backend={"kind": "live", "measure_s": 1, "trial_seconds": 7})
    applies = {"live": {k.name: list(k.values) for k in live.space.knobs if k.name != "gputype"}}
    adverts = [RunnerAdvert(f"r{i}", ("live-t4", "live-k80", "live-m60", "live-v100"), applies) for i in range(3)]
    uncut, _ = drive(live, facts=Facts(None, adverts), steps=0)
    first = uncut[0].pending
    assert uncut[0].parallel == 3 and len(first) == 3
    two = sum(p.price_per_hour * 7 / 3600 for p in first[:2])
    cut = replace(live, stop=replace(live.stop, budget_usd=two * 1.0001))    # room for two trials only
    states, log = drive(cut, facts=Facts(None, adverts), steps=0)
    assert states[0].parallel == 3 and len(states[0].pending) == 2
    assert rebuild_states(log)["s9"] == states[0]
