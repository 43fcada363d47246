"""The served-vs-in-process comparison from measured rows: ratios, and the in-process optimum
judged by what it serves."""

import pytest

from bench.served_vs_inprocess import compare, render_txt


def row(b, inproc, served):
    return {"config": {"cpus": 1, "batchsize": b}, "inprocess_rps": inproc, "served_rps": served}


def test_the_in_process_optimum_is_judged_by_what_it_serves():
    res = compare([row(1, 100.0, 90.0), row(16, 400.0, 150.0), row(4, 300.0, 200.0)])
    assert res["inprocess_optimum"]["batchsize"] == 16 and res["served_optimum"]["batchsize"] == 4
    assert res["same_optimum"] is False
    assert res["inprocess_optimum_served_share"] == pytest.approx(150 / 200)
    assert (res["ratio_min"], res["ratio_max"]) == pytest.approx((150 / 400, 0.9))


def test_failed_measurements_are_left_out_of_the_comparison():
    res = compare([row(1, 100.0, None), row(4, 200.0, 220.0)])
    assert res["inprocess_optimum"]["batchsize"] == 4 and res["same_optimum"] is True
    assert "inprocess_optimum" not in compare([row(1, 100.0, None)])


def test_the_text_report_shows_each_configuration_and_the_verdict():
    rows = [{**row(1, 100.0, 90.0), "served_concurrency": 4, "served_p99_ms": 20.0},
            {**row(4, 200.0, None), "served_reason": "no load meets the p99 SLO"}]
    text = render_txt({"when": "t", "slo_p99_ms": 100.0, "serving_cores": [0], "client_cores": [1],
                       "models": {"m": compare(rows)}})
    assert "m                  batch   1: in-process    100.0 rps | served     90.0 rps at 4 in flight" in text
    assert "served failed: no load meets the p99 SLO" in text
    assert "m: served/in-process 0.90-0.90; in-process optimum batch 1" in text
