"""A served trial's curve is drawn with the SLO line; a closed-loop trial has none."""

from tools.served_curve import curve_points, plot_served_curve

DETAILS = {"mode": "served", "slo_p99_ms": 50.0,
           "peak": {"concurrency": 8, "rps": 900.0, "p99_ms": 30.0},
           "curve": [{"concurrency": 16, "rps": 950.0, "p99_ms": 60.0, "meets_slo": False},
                     {"concurrency": 1, "rps": 200.0, "p99_ms": 6.0, "meets_slo": True},
                     {"concurrency": 8, "rps": 900.0, "p99_ms": 30.0, "meets_slo": True}]}


def test_the_curve_is_ordered_by_load_and_says_which_levels_meet_the_slo():
    assert curve_points(DETAILS) == [(6.0, 200.0, 1, True), (30.0, 900.0, 8, True), (60.0, 950.0, 16, False)]
    assert curve_points({"mode": "closed-loop", "compile_s": 0.1}) == []


def test_a_served_trial_gets_a_png_and_a_closed_loop_one_none(tmp_path):
    assert plot_served_curve(DETAILS, tmp_path / "c.png", "resnet8")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plot_served_curve({"mode": "closed-loop"}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
