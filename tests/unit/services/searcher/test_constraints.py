"""User constraints (p99 SLO, minimum RPS): a configuration that misses one is never recommended,
the search still finds the best one that meets them, and the reason is kept for the report."""

from dataclasses import replace

from schemas.events import TrialResult
from services.domain.spec import Constraints
from services.searcher.search import completed, record_trial, start_search
from tests.helpers import spec


def synthetic(config):
    """Bigger batches give more RPS per $ but a slower p99: the classic serving trade-off."""
    b = config["batchsize"]
    rps = 100.0 * b ** 0.5
    return rps, 2.0 * b, rps / 10


def drive(s):
    d = start_search("c1", s, ["conv2d"], [])
    while d.request is not None:
        r = d.request
        rps, p99, value = synthetic(r.config)
        d = record_trial(d.state, TrialResult(r.trial_id, r.index, r.config, "ok", value, 0.01, 900.0,
                                              rps=rps, p50_ms=p99 / 2, p99_ms=p99))
    return d.state


def test_violations_are_explained():
    c = Constraints(slo_p99_ms=50, min_rps=200)
    assert c.violations(300, 40) == []
    assert c.violations(300, 80) == ["p99 80.0 ms > SLO 50 ms"]
    assert c.violations(100, 40) == ["100.0 RPS < required 200"]
    assert c.violations(None, None) == ["p99 latency not measured", "RPS not measured"]


def test_the_recommendation_meets_the_slo_and_the_best_infeasible_trial_is_not_recommended():
    st = drive(replace(spec(max_trials=40, strategy="random"), constraints=Constraints(slo_p99_ms=70)))
    assert st.status == "completed"
    assert st.best.p99_ms <= 70 and st.best.config["batchsize"] == 32      # the largest batch within the SLO
    assert max(t.rps_per_usd for t in st.trials) > st.best.rps_per_usd                  # a faster one exists, over the SLO
    data = completed(st).to_data()
    assert data["infeasible"] and all("SLO" in why for why in data["infeasible"].values())
    assert len(data["runners_up"]) == 3 and all(r["p99_ms"] <= 70 for r in data["runners_up"])
    assert [r["rps_per_usd"] for r in data["runners_up"]] == sorted((r["rps_per_usd"] for r in data["runners_up"]), reverse=True)


def test_an_impossible_constraint_fails_the_search_with_the_reason():
    st = drive(replace(spec(max_trials=5), constraints=Constraints(min_rps=1e9)))
    assert st.status == "failed" and "no trial met the constraints" in st.stop_reason


def test_infeasible_trials_are_told_to_the_strategy_as_the_worst_value_seen():
    st = drive(replace(spec(max_trials=8, strategy="random"), constraints=Constraints(slo_p99_ms=20)))
    told = st.observed_values()
    floor = min(t.rps_per_usd for t in st.trials)
    for t, v in zip(st.trials, told):
        assert v == (t.rps_per_usd if t.p99_ms <= 20 else floor)
