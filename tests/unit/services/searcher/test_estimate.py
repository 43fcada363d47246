"""Recommendations that survive noise: the posterior mean, not the luckiest measurement, and
re-measurements (chosen by knowledge gradient) while the leaders are within the noise of each other."""

from dataclasses import replace

import pytest

from schemas.events import TrialRequested, TrialResult
from services.domain.space import Space
from services.searcher.estimate import MAX_MEASUREMENTS, Estimate, estimate, knowledge_gradients, remeasure
from services.searcher.search import SearchState, completed, record_trial
from tests.helpers import spec

LINE = Space.from_dict({"knobs": {"batchsize": [1, 2, 4, 8, 16, 32, 64, 128]}})


def trial(i: int, batch: int, value: float, cv: float | None = None) -> TrialResult:
    return TrialResult(f"s/t{i}", i, {"batchsize": batch}, "ok", value, 0.1, 900.0, stability_cv=cv)


def test_exact_measurements_recommend_the_best_measurement():
    trials = [trial(0, 4, 0.8), trial(1, 8, 0.9), trial(2, 16, 0.7)]
    est = estimate(LINE, trials, lambda t: True)
    assert [e.trial.trial_id for e in est] == ["s/t1", "s/t0", "s/t2"]
    assert est[0].value == est[0].low == est[0].high == 0.9 and est[0].measurements == 1


def test_a_lucky_measurement_is_believed_less_than_it_measured_and_repeats_are_trusted_more():
    """With 10% noise a lone 1.0 among ~0.7s is partly luck: its estimate is pulled towards the
    rest, with an interval; a configuration measured twice alike has a narrower interval."""
    trials = [trial(0, 2, 0.7, .1), trial(1, 4, 0.72, .1), trial(2, 8, 0.9, .1), trial(3, 8, 0.9, .1),
              trial(4, 32, 0.68, .1), trial(5, 64, 1.0, .1), trial(6, 128, 0.7, .1)]
    est = estimate(LINE, trials, lambda t: True)
    e64 = next(e for e in est if e.trial.config["batchsize"] == 64)
    e8 = next(e for e in est if e.trial.config["batchsize"] == 8)
    assert e64.low < e64.value < 1.0          # believed worse than it came out
    assert e8.measurements == 2 and e8.high - e8.low < e64.high - e64.low
    # and a re-measurement settles which of the two leads
    assert remeasure(est, trials_done=7, max_trials=10, in_flight=set(), space=LINE) in (est[0], est[1])


def test_a_configuration_measured_twice_counts_both_measurements():
    trials = [trial(0, 8, 0.9, .1), trial(1, 8, 0.8, .1), trial(2, 2, 0.5, .1)]
    est = estimate(LINE, trials, lambda t: True)
    e8 = next(e for e in est if e.trial.config["batchsize"] == 8)
    assert e8.measurements == 2 and e8.trial.trial_id == "s/t0"     # points at its best measurement
    assert 0.8 <= e8.value <= 0.9


def test_only_eligible_configurations_are_recommended_but_all_inform_the_model():
    trials = [trial(0, 8, 0.95, .1), trial(1, 16, 0.9, .1), trial(2, 32, 0.5, .1)]
    est = estimate(LINE, trials, lambda t: t.config["batchsize"] != 8)
    assert {e.trial.config["batchsize"] for e in est} == {16, 32}


def est(value: float, sd: float, n: int, batch: int) -> Estimate:
    """An estimate whose next measurement has 10% noise."""
    return Estimate(trial(batch, batch, value, .1), value, value - 1.96 * sd, value + 1.96 * sd, n, 0.1 * value)


def test_re_measure_the_less_certain_of_two_leaders_within_the_noise():
    lead, challenger, far = est(0.95, 0.03, 2, 8), est(0.94, 0.05, 1, 16), est(0.6, 0.05, 1, 64)
    pick = remeasure([lead, challenger, far], trials_done=8, max_trials=10, in_flight=set(), space=LINE)
    assert pick is challenger
    # not while exploring (the first fifth of the budget; half of it for a search without a model),
    # not when clearly apart, not twice at once
    assert remeasure([lead, challenger], 1, 10, set(), LINE) is None
    assert remeasure([lead, challenger], 3, 10, set(), LINE, modelled=False) is None
    assert remeasure([lead, challenger], 5, 10, set(), LINE, modelled=False) is challenger
    assert remeasure([est(0.95, 0.01, 1, 8), est(0.7, 0.01, 1, 16)], 8, 10, set(), LINE) is None
    key = LINE.key(challenger.trial.config)
    assert remeasure([lead, challenger], 8, 10, {key}, LINE) is lead
    assert remeasure([est(0.95, 0.03, 3, 8), est(0.94, 0.03, 3, 16)], 8, 10, set(), LINE,
                     attempts={"batchsize=8": MAX_MEASUREMENTS, "batchsize=16": MAX_MEASUREMENTS}) is None


def test_a_configuration_measured_unlucky_once_is_re_measured_before_the_settled_leaders():
    """The two leaders are measured well and close; a third, measured once, may truly be the best:
    its next measurement is worth the most (knowledge gradient), not another of the leaders'."""
    lead, challenger, unlucky = est(0.95, 0.01, 4, 8), est(0.945, 0.01, 4, 16), est(0.92, 0.05, 1, 32)
    gains = knowledge_gradients([lead, challenger, unlucky])
    assert gains[2] > max(gains[:2]) > 0
    assert remeasure([lead, challenger, unlucky], 8, 10, set(), LINE) is unlucky
    # one that cannot reach the leaders is worth nothing: with both leaders measured to the limit,
    # the search explores rather than measure it again
    hopeless = est(0.5, 0.05, 1, 32)
    assert knowledge_gradients([lead, hopeless])[1] < 1e-6
    assert remeasure([lead, challenger, hopeless], 8, 10, set(), LINE,
                     attempts={"batchsize=8": MAX_MEASUREMENTS, "batchsize=16": MAX_MEASUREMENTS}) is None


def test_the_search_re_measures_a_noisy_leader_as_a_real_trial_and_reports_the_estimate():
    # replay with simulated fresh noise: measuring again measures anew (a plain replay would not)
    s = replace(spec(max_trials=6, parallel=1, strategy="random"), space=LINE,
                backend={"kind": "replay", "table": "unused.csv", "trial_seconds": 900.0, "noise": 0.1})
    measured = [trial(0, 1, 0.5, .1), trial(1, 4, 0.9, .1), trial(2, 8, 0.91, .1), trial(3, 64, 0.5, .1)]
    request = TrialRequested("s/t4", 4, {"batchsize": 128}, s.model, s.backend, 0.4)
    state = SearchState("s", s, (), (), trials=tuple(measured), pending=(request,))
    d = record_trial(state, request.result("ok", rps_per_usd=0.4, cost_usd=0.1, duration_s=900.0, stability_cv=.1))
    again = d.request               # 4 and 8 are within 10% noise of each other: one is measured again
    assert again is not None and again.index == 5 and again.config["batchsize"] in (4, 8)
    d = record_trial(d.state, again.result("ok", rps_per_usd=0.88, cost_usd=0.1, duration_s=900.0, stability_cv=.1))
    st = d.state
    assert d.finished and len(st.trials) == 6 and abs(st.spent_usd - 0.6) < 1e-9   # paid like any trial
    twice = next(e for e in st.estimates if e.trial.config == again.config)
    assert twice.measurements == 2
    done = completed(st)
    assert done.estimate["trial_id"] == st.best.trial_id
    assert done.estimate["low"] <= done.estimate["value"] <= done.estimate["high"]
    assert done.estimate["measurements"] == st.recommendation.measurements


def test_a_plain_replay_never_spends_a_trial_re_measuring_the_same_row():
    s = replace(spec(max_trials=6, parallel=1, strategy="random"), space=LINE,
                backend={"kind": "replay", "table": "unused.csv", "trial_seconds": 900.0})
    measured = [trial(0, 1, 0.5, .1), trial(1, 4, 0.9, .1), trial(2, 8, 0.91, .1), trial(3, 64, 0.5, .1)]
    request = TrialRequested("s/t4", 4, {"batchsize": 128}, s.model, s.backend, 0.4)
    state = SearchState("s", s, (), (), trials=tuple(measured), pending=(request,))
    d = record_trial(state, request.result("ok", rps_per_usd=0.4, cost_usd=0.1, duration_s=900.0, stability_cv=.1))
    assert d.request.config["batchsize"] not in (1, 4, 8, 64, 128)


def test_a_configuration_that_failed_is_not_re_measured_and_failures_count_as_attempts():
    lead, challenger = est(0.95, 0.03, 1, 8), est(0.94, 0.05, 1, 16)
    k8, k16 = LINE.key(lead.trial.config), LINE.key(challenger.trial.config)
    assert remeasure([lead, challenger], 8, 10, set(), LINE, failed={k16}) is lead
    assert remeasure([lead, challenger], 8, 10, set(), LINE,
                     attempts={k8: MAX_MEASUREMENTS, k16: MAX_MEASUREMENTS}) is None


def test_the_recommended_trial_is_a_measurement_that_met_the_constraints():
    """One configuration measured twice: p99 300 ms once, 90 ms once; the SLO is 100 ms."""
    t0 = replace(trial(0, 8, 0.95, .1), p99_ms=300.0)
    t1 = replace(trial(1, 8, 0.90, .1), p99_ms=90.0)
    others = [replace(trial(2, 2, 0.5, .1), p99_ms=50.0), replace(trial(3, 4, 0.6, .1), p99_ms=50.0)]
    for exact in (False, True):
        ts = [replace(t, stability_cv=None if exact else t.stability_cv) for t in (t0, t1, *others)]
        est8 = next(e for e in estimate(LINE, ts, lambda t: t.p99_ms <= 100) if e.trial.config["batchsize"] == 8)
        assert est8.trial.trial_id == "s/t1"


def test_the_models_expectation_is_a_prior_that_misleading_trials_outweigh():
    """Where the model expected more than one noisy measurement showed, the estimate lies between
    the two; when the trials show the model is wrong everywhere, the measurements are believed."""
    batches = [1, 2, 4, 8, 16, 32, 64, 128]
    measured = [trial(i, b, v, .1) for i, (b, v) in enumerate(zip(batches, [.5, .55, .6, .8, .7, .65, .6, .55]))]
    keys = [LINE.key({"batchsize": b}) for b in batches]
    fair = dict(zip(keys, [.5, .55, .6, .9, .7, .65, .6, .55]))        # right but at batch 8
    e8 = next(e for e in estimate(LINE, measured, lambda t: True, fair) if e.trial.config["batchsize"] == 8)
    assert 0.8 < e8.value < 0.9 and e8.low < e8.value < e8.high
    wrong = dict(zip(keys, [.9, .2, .95, .3, .1, .95, .2, .9]))      # off by far more than the noise
    believed = {e.trial.config["batchsize"]: e.value for e in estimate(LINE, measured, lambda t: True, wrong)}
    assert all(abs(believed[t.config["batchsize"]] - t.rps_per_usd) < 0.05 for t in measured)


def test_one_or_two_configurations_are_worth_what_they_measured_with_the_noise_as_interval():
    """Too few to tell how far configurations differ beyond the noise (and a model's scale fitted to
    them would only echo them): the estimate is the measurement, its interval the noise's."""
    one = estimate(LINE, [trial(0, 8, 0.9, .1), trial(1, 8, 0.7, .1)], lambda t: True, {"batchsize=8": 0.8})
    assert one[0].value == pytest.approx(0.7754, abs=1e-3)    # 0.9 and 0.7 weighted by their 10% noise
    assert one[0].high - one[0].low == pytest.approx(2 * 1.96 * one[0].sd) and 0.04 < one[0].sd < 0.07
    two = estimate(LINE, [trial(0, 8, 0.9, .1), trial(1, 16, 0.95, .1)], lambda t: True)
    assert [e.value for e in two] == pytest.approx([0.95, 0.9])
