"""The report a person reads: the recommendation in serving terms, runners-up, history and
plots, consistent with the search's own state."""

import html
import re
from dataclasses import replace

import pytest

from schemas.events import TrialResult
from services.domain.falcon_data import load_model_table
from services.domain.space import Space, SpaceError
from services.domain.spec import Constraints, SearchSpec, StopRules
from services.searcher.search import record_trial, start_search
from tools import units
from tools.report import Baseline, parse_config, path_knobs, summary, write_report
from tests.helpers import REPO, TARGETS, spec

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
    assert rec["config"] == st.best.config and rec["rps_per_usd"] == st.best.rps_per_usd
    hourly = st.spec.prices.hourly(st.best.config)
    assert rec["usd_per_hour"] == pytest.approx(hourly)
    assert rec["usd_per_million_requests"] == pytest.approx(hourly / (st.best.rps * 3600) * 1e6)
    assert len(s["runners_up"]) == 3 and all(r["rps_per_usd"] <= rec["rps_per_usd"] for r in s["runners_up"])
    assert len(s["history"]) == 8 and s["history"][0]["status"] == "failed"


def test_report_files_are_written_and_the_html_shows_what_matters(tmp_path):
    st = searched(replace(spec(max_trials=10), constraints=Constraints(slo_p99_ms=40)))
    s = write_report(st, tmp_path)
    page = (tmp_path / "report.html").read_text()
    for png in ("progress.png", "path.png", "kops.png"):
        assert (tmp_path / png).stat().st_size > 5000 and png in page
    assert "p99 latency at most 40 ms" in page and "runner died" in page
    best = st.best
    assert best.p99_ms <= 40
    assert units.config(best.config) in page and "gpumem=" in page and " GB" in page      # knob units shown
    assert f"{units.rps(best.rps)} ±{best.index:.0f}%" in page        # the measurement's spread is shown with it
    assert (tmp_path / "summary.json").exists() and s["files"]["html"].endswith("report.html")


def test_a_search_without_recommendation_still_gets_a_report(tmp_path):
    st = searched(replace(spec(max_trials=3), constraints=Constraints(min_rps=1e12)))
    s = write_report(st, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert s["recommended"] is None and '<div class="none"><div class="big">No recommendation' in page
    assert '<div class="rec">' not in page          # not the green box of a recommendation


SCIENTIFIC = re.compile(r"\d\.?\d*e[+-]?\d+", re.IGNORECASE)


def live_search(max_trials=6):
    """A live search over the live CPU space: values are requests per dollar (tens of millions)."""
    space = Space.from_file(REPO / "deploy" / "config" / "live-cpu-space.yaml")
    s = SearchSpec(model={"name": "resnet8", "format": "onnx", "uri": "/m.onnx"},
                   backend={"kind": "live", "measure_s": 3.0, "trial_seconds": 7.0}, space=space,
                   stop=StopRules(max_trials), strategy="random")
    d = start_search("live1", s, ["conv2d"], [{"op": "conv2d", "time_share": 1.0, "memory_share": None,
                                              "flops": None}])
    while d.request is not None:
        r = d.request
        rps = 250.0 * r.config["cpus"] * (1 + r.config["batchsize"] ** 0.5)
        hourly = s.prices.hourly(r.config)
        d = record_trial(d.state, TrialResult(r.trial_id, r.index, r.config, "ok", rps * 3600 / hourly,
                                              hourly * 7 / 3600, 7.0, runner="trial-runner@box:1", rps=rps,
                                              p50_ms=2.0 * r.config["batchsize"], p99_ms=5.0 * r.config["batchsize"],
                                              stability_cv=0.02))
    return d.state


def test_numbers_carry_units_and_never_scientific_notation(tmp_path):
    live = live_search()
    write_report(live, tmp_path / "live", wall_s=95.0)
    page = html.unescape((tmp_path / "live" / "report.html").read_text())
    text = re.sub(r"<[^>]+>", " ", page.split("</style>")[1])
    assert not SCIENTIFIC.search(text), SCIENTIFIC.search(text)
    best = live.best
    assert f"{units.number(best.rps_per_usd)} req/$" in text and " million req/$" in text
    assert units.rps(best.rps) in text and "RPS" in text and " ms" in text
    assert "p50" in text and "1 minute and 35 seconds" in text           # p50 and the search's wall time
    assert "3 s of closed-loop stress test per trial" in text and "box:1" in text   # measurement and hardware
    replay = searched(spec(max_trials=4))
    write_report(replay, tmp_path / "replay")
    page = html.unescape((tmp_path / "replay" / "report.html").read_text())
    assert f"{replay.best.rps_per_usd:.3f} norm. RPS/$" in page and "normalised RPS/$ (the table's best = 1)" in page
    assert "req/$" not in page                    # a normalised number is never labelled as requests per dollar


def test_baseline_comparison_states_the_saving_both_ways(tmp_path):
    live = live_search(max_trials=6)
    worst = min((t for t in live.trials if t.ok), key=lambda t: t.rps_per_usd)
    s = write_report(live, tmp_path, baseline=Baseline.of(live, worst.config, load_rps=5000.0))
    b, best = s["baseline"], live.best
    assert b["source"] == f"trial {worst.index + 1} of this search"
    assert b["gain"] == pytest.approx(best.rps_per_usd / worst.rps_per_usd)
    replicas = -(-5000 // worst.rps)
    assert b["monthly"] == [replicas, pytest.approx(replicas * live.spec.prices.hourly(worst.config) * 730)] or \
        b["monthly"] == (replicas, pytest.approx(replicas * live.spec.prices.hourly(worst.config) * 730))
    assert b["monthly_saving"] == pytest.approx(b["monthly"][1] - b["recommended_monthly"][1])
    page = (tmp_path / "report.html").read_text()
    assert "Against what you run today" in page and "monthly cost at 5,000 RPS" in page
    assert f"{b['gain']:.2f}x the requests per dollar" in page


def test_a_replay_baseline_is_read_from_the_table_and_bad_configs_are_refused():
    st = searched(spec(max_trials=4))
    cfg = parse_config("batchsize=16, cpus=2, gpumem=1.6, gpupower=100, gputype=V100", st.spec.space)
    base = Baseline.of(st, cfg)
    assert base.source == "the replay table" and base.rps_per_usd == pytest.approx(TABLE.lookup(cfg)["value"])
    with pytest.raises(SpaceError, match="not a configuration of the search's space"):
        parse_config("cpus=2,gputype=V100", st.spec.space)


def test_the_path_is_drawn_over_the_knobs_that_tell_the_trials_apart_best():
    st = searched(spec(max_trials=8))
    kx, ky = path_knobs(st)
    names = st.spec.space.names

    def cells(a, b):
        return len({(str(t.config[a]), str(t.config[b])) for t in st.trials})
    assert kx != ky and cells(kx, ky) == max(cells(a, b) for a in names for b in names if a != b)


def test_a_report_under_another_objective_shows_it_the_front_and_the_monthly_cost_at_the_load(tmp_path):
    from services.domain.falcon_data import read_operator_profile
    from services.domain.objectives import Objective
    from services.trial_runner.backends import ReplayBackend
    from tools.harness import profiled, run_search
    live = REPO / "bench" / "live" / "models"
    backend = ReplayBackend()
    table = backend.table(str(live / "targets" / "reg-resnet8.csv"))
    s = SearchSpec(model={"name": "resnet8", "format": "falcon-profile", "uri": None},
                   backend={"kind": "replay", "table": str(live / "targets" / "reg-resnet8.csv"), "trial_seconds": 900.0},
                   space=table.space, stop=StopRules(10), strategy="falcon",
                   objective=Objective("usd-for-load", 20000))
    kops, ops = profiled(read_operator_profile(live / "operators" / "resnet8" / "operators.csv"), 0.05)
    st = run_search("rep-obj", s, kops, ops, backend)
    out = write_report(st, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert (tmp_path / "pareto.png").stat().st_size > 5000 and "pareto.png" in page
    assert out["objective"].startswith("$ per hour to carry 20,000 RPS") and out["load_rps"] == 20000
    rec = out["recommended"]
    replicas = -(-20000 // rec["rps"])
    assert rec["monthly"] == {"replicas": replicas, "usd": pytest.approx(replicas * rec["usd_per_hour"] * 730)}
    assert html.escape(f"{units.usd(rec['monthly']['usd'])} a month at 20,000 RPS") in page
    assert rec["objective_text"] == f"{units.usd_per_hour(rec['objective_value'])} for 20,000 RPS"
    assert "objective ($/h)" in page and "Latency vs cost: the Pareto front" in page
    assert out["pareto"] and out["best_per_objective"]["usd-for-load"]["trial"] == rec["trial"]
    assert "cheapest for 20,000 RPS" in page and "lowest p99" in page
    assert "read as the cost of 20,000 RPS before replicas are rounded up" in page      # how the knowledge is read
    assert not SCIENTIFIC.search(re.sub(r"<[^>]+>", " ", page))


def failing(s, ok_at: int, reason: str = "ValueError: input data_0's batch (first) dimension is fixed at 1"):
    """Every trial fails but the one at ``ok_at`` (what a fixed-batch model did before intake knew it)."""
    d = start_search("f1", s, ["conv2d"], [{"op": "conv2d", "time_share": 1.0, "memory_share": None, "flops": None}])
    while d.request is not None:
        r = d.request
        if r.index != ok_at:
            rec = TrialResult(r.trial_id, r.index, r.config, "failed", None, 4.5e-6, 0.4, reason=reason)
        else:
            v = TABLE.lookup(r.config)["value"]
            rec = TrialResult(r.trial_id, r.index, r.config, "ok", v, 2.6e-5, 2.2, rps=141.0, p50_ms=6.5, p99_ms=15.1)
        d = record_trial(d.state, rec)
    return d.state


def test_failed_trials_are_explained_in_words_and_numbered_as_everywhere(tmp_path):
    from tools.app.audit import _trial_summary
    st = failing(spec(max_trials=5), ok_at=2)
    write_report(st, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "ValueError:" not in page and "input data_0&#39;s batch (first) dimension is fixed at 1" in page
    assert "met the constraints" not in page                      # no constraint was set: the others failed
    assert "All 4 other trials failed" in page
    # the audit numbers the trials as the report's tables do (trial 1 is index 0, t0)
    assert _trial_summary(st.trials[0]).startswith("trial 1 failed: input data_0")
    assert "ValueError" not in _trial_summary(st.trials[0])
    assert _trial_summary(st.trials[2]).startswith("trial 3 ok")


def test_the_runner_up_note_names_a_constraint_only_when_one_was_set():
    from tools.report.page import no_runner_up
    st = failing(spec(max_trials=3), ok_at=0)
    assert no_runner_up(summary(st)) == "All 2 other trials failed (their reasons are in the trial history below)."


def test_a_served_trial_carries_its_curve_slo_peak_and_triton_split_and_a_replay_trial_none():
    from tests.unit.tools.served_search import served_search
    st = served_search()
    s = summary(st)
    sv = s["recommended"]["served"]
    d = st.best.details
    assert sv["slo_p99_ms"] == 100.0
    # the curve by load, each level judged against the SLO (out of order in, ordered out)
    assert [p["concurrency"] for p in sv["curve"]] == sorted(p["concurrency"] for p in d["curve"])
    assert [p["meets_slo"] for p in sv["curve"]] == [p["p99_ms"] <= 100 for p in sv["curve"]]
    assert any(not p["meets_slo"] for p in sv["curve"])
    assert sv["peak"]["concurrency"] == d["peak"]["concurrency"] and sv["peak"]["rps"] == st.best.rps
    assert sv["queue_ms"] == d["peak"]["queue_ms"] and sv["compute_ms"] == d["peak"]["compute_ms"]
    assert all(r["served"] is not None for r in s["runners_up"] + s["history"])
    # a replay search (and a closed-loop live trial) has no curve
    assert all(r["served"] is None for r in summary(searched(spec(max_trials=4)))["history"])
    assert all(r["served"] is None for r in summary(live_search(3))["history"])
    from tools.report.summary import served
    assert served({"mode": "closed-loop", "compile_s": 0.1}) is None


def test_the_report_of_a_served_search_draws_the_curves_and_states_the_peak_with_its_load(tmp_path):
    from tests.unit.tools.served_search import served_search
    st = served_search()
    s = write_report(st, tmp_path)
    page = html.unescape((tmp_path / "report.html").read_text())
    peak = st.best.details["peak"]
    assert (tmp_path / "served.png").stat().st_size > 5000 and 'src="served.png"' in page
    assert (f"peak {units.rps(peak['rps'])} within the p99 SLO of 100 ms, measured at {peak['concurrency']} "
            f"requests in flight") in page
    assert f"queue {units.ms(peak['queue_ms'])}, compute {units.ms(peak['compute_ms'])} per request" in page
    table = page.split('id="served-curve"')[1].split("</table>")[0]
    assert table.count("<tr") == len(st.best.details["curve"]) + 1 and f"{peak['concurrency']} (peak)" in table
    assert "within the SLO (100 ms)" in table and ">no<" in table and ">yes<" in table
    assert "served by Triton" in page and s["files"]["Throughput vs p99 latency under rising load (served trials, "
                                                       "SLO line)"].endswith("served.png")
    # a replay search's report has none of it
    write_report(searched(spec(max_trials=4)), tmp_path / "replay")
    replay = (tmp_path / "replay" / "report.html").read_text()
    assert not (tmp_path / "replay" / "served.png").exists()
    assert "served-curve" not in replay and "served-peak" not in replay and "SLO line" not in replay


def test_the_served_plot_needs_a_curve():
    from tools.report.plots import plot_served_curves
    from pathlib import Path
    assert plot_served_curves([("trial 1", None)], Path("/nonexistent/x.png")) is False
