from dataclasses import replace

from schemas.events import TrialResult
from services.domain.falcon_data import load_model_table
from services.domain.space import Space
from services.searcher.search import SearchState, record_trial, start_search
from services.searcher.strategies import SearchContext, make_strategy
from tests.helpers import TARGETS, spec

TABLE = load_model_table(TARGETS / "reg-mobilenet-v2.csv")


def run_to_end(s, table=TABLE, fail=lambda i: False):
    """Drive the core like the services do, answering trials from the table."""
    d = start_search("s1", s, ["conv2d"], [])
    n = 0
    while d.request is not None:
        r = d.request
        if fail(r.index):
            rec = TrialResult(r.trial_id, r.index, r.config, "failed", None, 0.0, 0.0, reason="boom")
        else:
            rec = TrialResult(r.trial_id, r.index, r.config, "ok", table.lookup(r.config)["value"],
                              r.price_per_hour / 4, 900.0)
        d = record_trial(d.state, rec)
        n += 1
    return d


def test_random_search_never_repeats_and_is_deterministic():
    ctx = SearchContext(Space.from_dict({"knobs": {"a": [1, 2, 3], "b": ["x", "y"]}}), seed=3)
    seen = []
    s = make_strategy("random", ctx)
    while (c := s.ask()) is not None:
        seen.append(ctx.space.key(c))
        s.tell(c, 1.0)
    assert len(seen) == 6 == len(set(seen))
    again = make_strategy("random", ctx)
    assert ctx.space.key(again.ask()) == seen[0]


def test_search_stops_at_max_trials_and_recommends_the_best_seen():
    d = run_to_end(spec(max_trials=6))
    st = d.state
    assert d.finished and st.status == "completed" and st.stop_reason == "max-trials"
    assert len(st.trials) == 6 and len({TABLE.space.key(t.config) for t in st.trials}) == 6
    assert st.best.rps_per_usd == max(t.rps_per_usd for t in st.trials)
    assert st.spent_usd == sum(t.cost_usd for t in st.trials)


def test_target_value_stops_early():
    d = run_to_end(spec(max_trials=50, target_value=0.0))
    assert d.state.stop_reason == "target" and len(d.state.trials) == 1


def test_budget_is_never_exceeded():
    d = run_to_end(spec(max_trials=50, budget_usd=0.5))
    assert d.state.stop_reason == "budget" and d.state.spent_usd <= 0.5 and len(d.state.trials) >= 1


def test_small_space_is_exhausted():
    tiny = Space.from_dict({"knobs": {"batchsize": [4, 8], "cpus": [1], "gpumem": [0.8], "gpupower": [50],
                                      "gputype": ["T4"]}})
    d = run_to_end(spec(max_trials=10, space=tiny))
    assert d.state.stop_reason == "space-exhausted" and len(d.state.trials) == 2


def test_failed_trials_count_and_all_failed_means_search_failed():
    d = run_to_end(spec(max_trials=3), fail=lambda i: True)
    assert d.state.status == "failed" and "no trial succeeded" in d.state.stop_reason
    d = run_to_end(spec(max_trials=3), fail=lambda i: i == 0)
    assert d.state.status == "completed" and d.state.trials[0].status == "failed"


def test_duplicate_and_stale_results_change_nothing():
    d = start_search("s1", spec(), ["conv2d"], [])
    r = d.request
    rec = TrialResult(r.trial_id, r.index, r.config, "ok", 0.5, 0.1, 900.0)
    d2 = record_trial(d.state, rec)
    assert record_trial(d2.state, rec).duplicate
    stale = record_trial(d2.state, replace(rec, trial_id="s1/t99"))
    assert stale.ignored and stale.state == d2.state
    wrong_cfg = record_trial(d.state, replace(rec, config={**r.config, "cpus": (r.config["cpus"] % 5) + 1}))
    assert wrong_cfg.ignored


def test_state_survives_serialisation_and_decides_the_same():
    d = start_search("s1", spec(max_trials=5), ["conv2d"], [{"op": "conv2d", "time_share": 1.0}])
    r = d.request
    d = record_trial(d.state, TrialResult(r.trial_id, r.index, r.config, "ok", 0.5, 0.1, 900.0))
    restored = SearchState.from_dict(d.state.to_dict())
    assert restored == d.state
    nxt = TrialResult(d.request.trial_id, 1, d.request.config, "ok", 0.4, 0.1, 900.0)
    assert record_trial(restored, nxt) == record_trial(d.state, nxt)


def test_impossible_specs_fail_before_any_trial():
    d = start_search("s1", spec(strategy="oracle"), [], [])
    assert d.finished and d.state.status == "failed" and "unknown strategy" in d.state.stop_reason
    assert d.request is None


def logged_search(max_trials=5, strategy="random", knowledge=None):
    """Drive a search the way the searcher does and keep every event it would publish."""
    from schemas import Event
    from services.searcher.search import decision_events, with_outbox
    sp = spec(max_trials=max_trials, strategy=strategy)
    ops = [{"op": "conv2d", "time_share": 1.0, "memory_share": None, "flops": None}]
    start = Event("kops-identified", "s9", {"spec": sp.to_dict(), "kops": ["conv2d"], "operators": ops,
                                            "threshold": 0.05}, "profiler")
    d = start_search("s9", sp, ["conv2d"], ops, knowledge)
    states, log = [with_outbox(d, decision_events(start, d))], [start]
    log += [Event(**e) for e in states[-1].outbox]          # as published
    while d.request is not None:
        r = d.request
        done = Event("trial-completed", "s9", {**TrialResult(r.trial_id, r.index, r.config, "ok",
                                                              TABLE.lookup(r.config)["value"], 0.1, 900.0).to_data(),
                                               "runner": "r"}, "runner")
        d = record_trial(states[-1], TrialResult.from_data(done.data), knowledge)
        states.append(with_outbox(d, decision_events(done, d)))
        log.append(done)
        log += [Event(**e) for e in states[-1].outbox]
    return states, log


def test_rebuild_from_the_log_equals_the_stored_state_at_every_step():
    from dataclasses import replace

    from services.searcher.search import rebuild_states
    states, log = logged_search()
    causes = [i for i, e in enumerate(log) if e.type in ("kops-identified", "trial-completed")]
    for step, i in enumerate(causes):
        end = causes[step + 1] if step + 1 < len(causes) else len(log)
        published = log[:end] + log[: end // 2]           # outbox published, redeliveries mixed in
        assert rebuild_states(published)["s9"] == states[step]
        # crashed after storing, before publishing: same state, same outbox event ids
        unpublished = rebuild_states(log[: i + 1])["s9"]
        assert replace(unpublished, outbox=(), pending_events=()) == replace(states[step], outbox=(), pending_events=())
        for field in ("outbox", "pending_events"):      # the same events (their timestamps differ)
            assert [e["event_id"] for e in getattr(unpublished, field)] == \
                [e["event_id"] for e in getattr(states[step], field)]


def test_inprocess_search_matches_the_event_driven_core():
    from tools.harness import run_search
    from services.trial_runner.backends import ReplayBackend
    states, _ = logged_search()
    ref = run_search("s9", spec(max_trials=5), ["conv2d"], [], ReplayBackend())
    assert [t.config for t in ref.trials] == [t.config for t in states[-1].trials]
    assert ref.best.config == states[-1].best.config


def test_rebuild_replays_logged_decisions_even_without_the_knowledge_they_used():
    """Redis wiped = the offline knowledge is gone too: the rebuild must not decide the past again."""
    from services.searcher.search import rebuild_states
    from tests.helpers import knowledge
    states, log = logged_search(max_trials=4, strategy="falcon", knowledge=knowledge())
    rebuilt = rebuild_states(log)["s9"]            # no knowledge at hand now
    assert rebuilt == states[-1] and rebuilt.status == "completed" and len(rebuilt.trials) == 4


def test_the_cloud_space_with_its_prices_is_searchable_and_an_unpriced_family_is_refused_at_submission():
    from dataclasses import replace as with_

    from services.domain.pricing import PriceCatalogue
    from services.searcher.search import validate_spec
    from tests.helpers import REPO
    cloud = Space.from_file(REPO / "deploy" / "config" / "cloud-space.yaml")
    prices = PriceCatalogue.from_file(REPO / "deploy" / "config" / "cloud-prices.yaml")
    sp = with_(spec(), space=cloud, prices=prices)
    assert validate_spec(sp) == []
    missing = with_(prices, instances={k: v for k, v in prices.instances.items() if k != "L4"})
    d = start_search("s-cloud", with_(sp, prices=missing), [], [])
    assert d.finished and d.request is None and "no price for gputype value(s) ['L4']" in d.state.stop_reason


def test_a_spec_the_replay_table_refutes_fails_before_any_trial():
    from services.searcher.preflight import Facts
    bad = replace(spec("gru"), space=Space.from_dict({"knobs": {"batchsize": [8], "cpu": [1], "gpumem": [1.2],
                                                              "gpupower": [100], "gputype": ["T4"]}}))
    d = start_search("s1", bad, [], [], facts=Facts(load_model_table(TARGETS / "reg-gru.csv")))
    assert d.finished and d.request is None and d.state.status == "failed"
    assert "knob(s) cpu of the space are not in replay table gru" in d.state.stop_reason
    assert start_search("s1", bad, [], []).request is not None      # without the table, nothing to refute it
