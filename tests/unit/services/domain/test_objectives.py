"""The objectives on hand-made trial rows: replicas at the load boundary, a load nothing can
carry, energy that was not measured, the higher-is-better scale, the Pareto front, and the
one-line refusals of an objective stated wrongly."""

import numpy as np
import pytest

from schemas.events import TrialResult
from services.domain.objectives import (
    ENERGY,
    P99,
    RPS_PER_USD,
    USD_FOR_LOAD,
    Objective,
    ObjectiveError,
    best_per_objective,
    monthly_cost,
    pareto_front,
    replicas_for,
    usd_per_million,
)

PRICE = {1: 0.0425, 2: 0.085}     # $/h by cores, as the live CPU space is priced


def row(i, cpus=1, rps=1000.0, p99=5.0, value=None, status="ok", energy=None, power=None) -> TrialResult:
    return TrialResult(f"s/t{i}", i, {"cpus": cpus, "batchsize": 8}, status,
                       value if value is not None or status != "ok" else rps * 3600 / PRICE[cpus], 0.01, 900.0,
                       rps=rps, p99_ms=p99, energy_j_per_request=energy, mean_power_w=power)


def price(t):
    return PRICE[t.config["cpus"]]


@pytest.mark.parametrize("load, rps, n", [
    (3000, 1000, 3),          # exactly a multiple: 3 copies, not 4
    (3000.0001, 1000, 4),     # just over: one more
    (2999, 1000, 3),
    (0.3, 0.1, 3),            # 0.3 / 0.1 = 2.9999999999999996 in floats
    (0.7, 0.1, 7),            # = 6.999999999999999
    (1, 1000, 1),             # a light load still needs one copy
])
def test_replicas_at_the_load_boundary(load, rps, n):
    assert replicas_for(load, rps) == n


def test_the_cost_of_a_load_is_replicas_times_price_and_higher_is_better():
    o = Objective(USD_FOR_LOAD, 3000)
    small = row(0, cpus=1, rps=1000)       # 3 copies x $0.0425
    big = row(1, cpus=2, rps=3000)         # 1 copy x $0.085: the better RPS/$ is not always the cheapest
    assert o.value(small, price(small)) == pytest.approx(-3 * 0.0425)
    assert o.value(big, price(big)) == pytest.approx(-0.085)
    assert o.value(big, price(big)) > o.value(small, price(small))
    assert o.natural(o.value(big, price(big))) == pytest.approx(0.085)
    assert o.reached(o.value(big, price(big)), 0.09) and not o.reached(o.value(small, price(small)), 0.09)
    assert monthly_cost(3000, 1000, 0.0425) == (3, pytest.approx(3 * 0.0425 * 730))


def test_a_load_a_configuration_cannot_carry_has_no_value():
    o = Objective(USD_FOR_LOAD, 500)
    none = row(0, rps=0.0)
    assert o.value(none, 0.0425) is None
    assert o.violations(none, 0.0425) == ["serves no requests, so it cannot carry 500 RPS"]
    unmeasured = row(1, rps=None, value=0.9)          # a replay table without an rps column
    assert o.value(unmeasured, 0.0425) is None and "RPS not measured" in o.violations(unmeasured, 0.0425)[0]
    assert o.value(row(2, status="failed"), 0.0425) is None and o.violations(row(2, status="failed"), 0.0425) == []
    assert replicas_for(100, None) is None and replicas_for(100, float("nan")) is None


def test_energy_is_absent_unless_measured_never_invented():
    o = Objective(ENERGY)
    assert o.value(row(0), 0.5) is None and o.violations(row(0), 0.5) == ["energy not measured"]
    measured = row(1, energy=0.8, power=250.0)
    assert o.value(measured, 0.5) == -0.8 and o.natural(-0.8) == 0.8
    assert o.from_rps_per_usd(np.ones((2, 3))) is None         # no offline knowledge behind it


def test_p99_is_negative_ms_and_its_spread_is_not_the_rps_spread():
    o = Objective(P99)
    t = TrialResult("s/t0", 0, {"cpus": 1}, "ok", 1.0, 0.0, 1.0, rps=10.0, p99_ms=12.5, stability_cv=0.2)
    assert o.value(t, 0.04) == -12.5 and o.spread(t) is None
    assert Objective(USD_FOR_LOAD, 5).spread(t) == 0.2 and Objective().spread(t) == 0.2
    assert o.value(row(1, p99=None), 0.04) is None and o.violations(row(1, p99=None), 0.04) == ["p99 latency not measured"]


def test_rps_per_usd_is_the_runners_value():
    o = Objective()
    assert o.is_default and o.maximise and o.value(row(0, value=0.7), 1.0) == 0.7
    assert o.internal(0.9) == 0.9 and Objective(P99).internal(3.0) == -3.0


@pytest.mark.parametrize("name, load, why", [
    ("usd-for-load", None, "--objective usd-for-load needs --load RPS"),
    ("usd-for-load", 0, "--load must be a positive number of requests per second, not 0"),
    ("usd-for-load", -5, "--load must be a positive number of requests per second, not -5"),
    ("p99", float("inf"), "--load must be a positive number"),
    ("fastest", None, "unknown objective 'fastest' (known: rps-per-usd, usd-for-load, energy-per-request, p99)"),
])
def test_an_objective_stated_wrongly_is_one_line(name, load, why):
    with pytest.raises(ObjectiveError, match="^" + why.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")) as err:
        Objective(name, load)
    assert "\n" not in str(err.value)


def test_the_wire_form_round_trips_and_the_default_is_absent():
    o = Objective(USD_FOR_LOAD, 2500)
    assert Objective.from_dict(o.to_dict()) == o and Objective.from_dict(None) == Objective()
    assert Objective(P99, 100).load_rps == 100.0 and not Objective(P99).is_default


def test_offline_rps_per_usd_becomes_the_objective_up_to_scale():
    f = np.array([[0.5, 1.0, 0.25]])
    load = Objective(USD_FOR_LOAD, 1000).from_rps_per_usd(f)
    assert np.argmax(load[0]) == 1 and np.allclose(load * 3, Objective(USD_FOR_LOAD, 1000).from_rps_per_usd(f / 3))
    p99 = Objective(P99).from_rps_per_usd(f, batch=np.array([1, 64, 1]), usd_per_hour=np.array([1.0, 1.0, 1.0]))
    assert np.argmax(p99[0]) == 0              # the batch of 64 waits for its whole batch
    assert Objective(P99).from_rps_per_usd(f) is None           # a latency needs the prices
    cost = Objective(USD_FOR_LOAD, 3000).from_rps(np.array([1000.0, 3000.0, 0.0]), np.array([0.0425, 0.085, 0.1]))
    assert np.allclose(cost[:2], [-0.1275, -0.085]) and cost[2] == -np.inf


def test_the_pareto_front_keeps_what_nothing_beats_on_both_and_marks_each_objectives_pick():
    trials = [row(0, cpus=1, rps=4000, p99=2.0),     # cheapest per request
              row(1, cpus=2, rps=7600, p99=1.2),     # a little dearer, faster
              row(2, cpus=1, rps=3500, p99=0.7),     # dearer still, fastest
              row(3, cpus=1, rps=1900, p99=30.0),    # beaten on both by trial 0
              row(4, cpus=2, rps=4000, p99=9.0, status="failed"),
              row(5, cpus=1, rps=5000, p99=None)]    # no latency measured: not on these axes
    o = Objective(USD_FOR_LOAD, 20000)
    per = best_per_objective(o, trials, price, lambda t: t.ok)
    assert {k: t.index for k, t in per.items()} == {USD_FOR_LOAD: 5, RPS_PER_USD: 5, P99: 2}
    front = pareto_front(trials, price, lambda t: t.ok, {k: t.trial_id for k, t in per.items()})
    assert [p.index for p in front] == [0, 1, 2]
    assert [p.usd_per_million for p in front] == sorted(p.usd_per_million for p in front)
    assert front[0].usd_per_million == pytest.approx(usd_per_million(4000, 0.0425))
    assert front[2].best_for == (P99,) and front[0].best_for == ()
    # a constraint removes trials from the front
    assert [p.index for p in pareto_front(trials, price, lambda t: t.ok and (t.p99_ms or 99) < 1.5)] == [1, 2]
    assert pareto_front([row(0, p99=None)], price) == []
