"""The search for the peak load within the SLO, on a fake server: a latency curve with a base
latency and a capacity (queueing beyond it), so the true peak is known."""

import pytest

from services.trial_runner.peak_load import LoadError, LoadPoint, find_peak


def fake_server(base_ms: float = 10.0, capacity_rps: float = 400.0, tail: float = 1.5, noise: float = 0.0):
    """Closed-loop load c: throughput min(c / base, capacity); p99 = tail x the time a request
    spends (base, or c / capacity once requests queue)."""
    calls: list[int] = []

    def measure(c: int) -> LoadPoint:
        calls.append(c)
        rps = min(c / (base_ms / 1000), capacity_rps) * (1 + noise * (-1) ** c)
        latency_ms = max(base_ms, 1000 * c / capacity_rps)
        return LoadPoint(c, rps, latency_ms, tail * latency_ms, queue_ms=latency_ms - base_ms, compute_ms=base_ms)
    measure.calls = calls
    return measure


def true_peak(slo_ms: float, base_ms: float = 10.0, capacity_rps: float = 400.0, tail: float = 1.5) -> int:
    """The largest concurrency whose p99 meets the SLO (by brute force over the fake)."""
    m = fake_server(base_ms, capacity_rps, tail)
    return max(c for c in range(1, 1000) if m(c).p99_ms <= slo_ms)


@pytest.mark.parametrize("slo_ms", [20.0, 40.0, 75.0, 100.0])
def test_the_peak_is_the_highest_load_within_the_slo_on_a_queueing_curve(slo_ms):
    # capacity 400/s, base 10 ms: saturation at c=4; p99 = 1.5 * c * 2.5 ms beyond it
    measure = fake_server(capacity_rps=400.0)
    res = find_peak(measure, slo_ms, max_concurrency=256, max_levels=20)
    best = true_peak(slo_ms)
    assert res.peak is not None and res.reason is None
    assert res.peak.p99_ms <= slo_ms
    # throughput is flat beyond saturation, so the peak RPS equals the capacity within the SLO ...
    assert res.peak.rps == pytest.approx(min(best / 0.010, 400.0))
    # ... and the curve holds every level measured, in order, with the first failing one when any
    cs = [p.concurrency for p in res.curve]
    assert cs == sorted(set(cs)) and cs[0] == 1
    assert len(measure.calls) == len(set(measure.calls))          # no level measured twice


def test_a_load_that_only_grows_latency_narrows_in_on_the_boundary():
    # huge capacity: throughput keeps growing, latency grows with it -> the SLO stops the raise,
    # bisection finds the boundary exactly
    def measure(c):
        return LoadPoint(c, 100.0 * c, 5.0 * c, 8.0 * c)
    res = find_peak(measure, slo_ms=100.0, max_concurrency=64)
    assert res.stop == "slo"
    assert res.peak.concurrency == 12            # 8 * 12 = 96 <= 100 < 8 * 13
    assert [p.concurrency for p in res.curve] == [1, 2, 4, 8, 12, 13, 14, 16]


def test_saturation_stops_the_raise_before_the_slo():
    measure = fake_server(capacity_rps=400.0)
    res = find_peak(measure, slo_ms=10_000.0, max_concurrency=1024)
    assert res.stop == "saturated"
    assert max(measure.calls) <= 32              # stopped once throughput no longer grew
    assert res.peak.rps == pytest.approx(400.0)


def test_an_slo_no_load_meets_gives_no_peak_and_says_why():
    res = find_peak(fake_server(base_ms=50.0), slo_ms=20.0)
    assert res.peak is None
    assert "no load meets the p99 SLO of 20 ms" in res.reason and "concurrency 1" in res.reason
    assert [p.concurrency for p in res.curve] == [1]


def test_a_server_that_dies_under_load_ends_the_search_with_the_reason():
    def measure(c):
        if c >= 4:
            raise LoadError("the server died under load (exit -9)")
        return LoadPoint(c, 100.0 * c, 5.0, 6.0)
    res = find_peak(measure, slo_ms=100.0)
    assert res.stop == "failed"
    assert res.peak.concurrency == 2            # what was measured before it died still stands ...
    assert res.error == "the server died under load (exit -9)"     # ... and the caller learns why it stopped
    dead = find_peak(lambda c: (_ for _ in ()).throw(LoadError("server died")), slo_ms=100.0)
    assert dead.peak is None and dead.reason == "server died"


def test_the_number_of_levels_is_bounded():
    measure = fake_server(capacity_rps=1e9)      # never saturates, never passes the SLO
    res = find_peak(measure, slo_ms=1e9, max_concurrency=10_000, max_levels=6)
    assert len(measure.calls) == 6 and res.stop == "max-load"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="SLO must be positive"):
        find_peak(fake_server(), 0)
    with pytest.raises(ValueError, match="start concurrency"):
        find_peak(fake_server(), 10, max_concurrency=4, start=8)
