"""The report a person reads: the recommendation in serving terms, runners-up, history and
plots, consistent with the search's own state."""

from dataclasses import replace

import pytest

from schemas.events import TrialResult
from services.common.falcon_data import load_model_table
from services.common.spec import Constraints
from services.searcher.search import record_trial, start_search
from tools.report import path_knobs, summary, write_report
from tests.helpers import TARGETS, spec

TABLE = load_model_table(TARGETS / "reg-mobilenet-v2.csv")


def searched(s, n_fail=1):
    d = start_search("r1", s, ["conv2d", "relu"], [{"op": "conv2d", "time_share": 0.7, "memory_share": None,
                                                     "flops": None},
                                                    {"op": "relu", "time_share": 0.3, "memory_share": None,
                                                     "flops": None}])
    while d.request is not None:
        r = d.request
        if r.index < n_fail:
            rec = TrialResult(r.trial_id, r.index, r.config, "failed", None, 0.0, 10.0, reason="runner died")
        else:
            v = TABLE.lookup(r.config)["value"]
            rps = 1000 * v
            rec = TrialResult(r.trial_id, r.index, r.config, "ok", v, 0.05, 900.0, rps=rps, p50_ms=5.0,
                              p99_ms=r.config["batchsize"] * 1.0, stability_cv=0.01 * r.index)
        d = record_trial(d.state, rec)
    return d.state


def test_summary_states_the_recommendation_in_serving_terms():
    st = searched(spec(max_trials=8))
    s = summary(st)
    rec = s["recommended"]
    assert rec["config"] == st.best.config and rec["value"] == st.best.value
    hourly = st.spec.prices.hourly(st.best.config)
    assert rec["usd_per_hour"] == pytest.approx(hourly)
    assert rec["usd_per_million_requests"] == pytest.approx(hourly / (st.best.rps * 3600) * 1e6)
    assert len(s["runners_up"]) == 3 and all(r["value"] <= rec["value"] for r in s["runners_up"])
    assert len(s["history"]) == 8 and s["history"][0]["status"] == "failed"


def test_report_files_are_written_and_the_html_shows_what_matters(tmp_path):
    st = searched(replace(spec(max_trials=10), constraints=Constraints(slo_p99_ms=40)))
    s = write_report(st, tmp_path)
    page = (tmp_path / "report.html").read_text()
    for png in ("progress.png", "path.png", "kops.png"):
        assert (tmp_path / png).stat().st_size > 5000 and png in page
    assert "slo_p99_ms=40" in page and "runner died" in page
    best = st.best
    assert best.p99_ms <= 40
    assert ", ".join(f"{k}={v}" for k, v in best.config.items()) in page
    assert f"{best.rps:.3g} ±{best.index:.0f}% RPS" in page        # the measurement's spread is shown with it
    assert (tmp_path / "summary.json").exists() and s["files"]["html"].endswith("report.html")


def test_a_search_without_recommendation_still_gets_a_report(tmp_path):
    st = searched(replace(spec(max_trials=3), constraints=Constraints(min_rps=1e12)))
    s = write_report(st, tmp_path)
    assert s["recommended"] is None and "No recommendation" in (tmp_path / "report.html").read_text()


def test_the_path_is_drawn_over_the_knobs_the_search_moved_most():
    st = searched(spec(max_trials=8))
    kx, ky = path_knobs(st)
    moved = {k: len({str(t.config[k]) for t in st.trials}) for k in st.spec.space.names}
    assert moved[kx] == max(moved.values()) and kx != ky
