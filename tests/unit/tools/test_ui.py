"""The dashboard without a stack: what its pages render for a search (escaped, the report's own
figures, the recommendation's interval), what the log index keeps, and who may submit or cancel
(token checked before anything reaches Redis or the broker)."""

from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from schemas import Event
from schemas.events import DeadLetter, ModelSubmitted, SearchCancelled, TrialResult
from services.platform.bus import LoggedEvent, dead_letter_event
from services.platform.settings import Settings
from services.trial_runner.backends import ReplayBackend
from tests.helpers import PROFILES, REPO, TARGETS, spec
from tools import units
from tools.harness import run_search
from tools.ui.app import CSP, create_app, fmt_age, submit_options, templates
from tools.ui.logindex import LogIndex
from tools.ui.server import is_loopback
from tools.ui.views import detail, log_only_row, row

EVIL = '<script>window.__pwned=1</script><img src=x onerror="alert(1)">'
OPS = [{"op": "conv2d", "time_share": 0.9, "memory_share": None, "flops": None},
       {"op": "relu", "time_share": 0.1, "memory_share": None, "flops": None}]


@pytest.fixture(scope="module")
def state():
    sp = replace(spec("mobilenet-v2", 5), model={"name": EVIL, "format": "falcon-profile", "uri": None})
    return run_search("ui-1", sp, ["conv2d"], OPS, ReplayBackend())


@pytest.fixture(scope="module")
def parts():
    return templates().get_template("parts.html").module


def test_a_search_page_renders_user_text_escaped(state, parts):
    data = detail(state, 1.0e9, None)
    html = str(parts.summary(data)) + str(parts.trials(data)) + str(parts.search_row(row(state, 1.0e9, None)))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    page = templates().get_template("search.html").render(s=data, read_only=True, page="search", path="/")
    assert "<script>window" not in page and page.count("<script") == 3      # uPlot, app.js, the JSON island
    island = page.split('id="initial">')[1].split("</script>")[0]
    assert "<" not in island                                               # JSON for the chart: no markup


def test_the_trial_table_shows_the_reports_figures_and_the_failures(state, parts):
    failed = replace(state.trials[1], status="failed", rps_per_usd=None, reason="runner said <no>")
    st = replace(state, trials=(state.trials[0], failed, *state.trials[2:]))
    data = detail(st, 1.0e9, None)
    assert [h["trial"] for h in data["history"]] == [1, 2, 3, 4, 5]
    assert data["history"][1]["reason"] == "runner said <no>" and not data["history"][1]["feasible"]
    html = str(parts.trials(data))
    assert html.count("<tr") == 6 and "runner said &lt;no&gt;" in html
    assert data["best_so_far"][1][2] is None                  # a failed trial has no value dot on the chart
    assert data["best_so_far"][1][3] is not None              # but a red mark on its floor
    assert data["best_so_far"][-1][1] == st.best.rps_per_usd


def test_the_recommendation_carries_its_interval_from_the_measured_spread(state):
    noisy = replace(state, trials=tuple(replace(t, rps=100.0, stability_cv=0.1) for t in state.trials))
    rec = detail(noisy, 1.0e9, None)["recommendation"]
    assert rec["interval"]["rps"] == pytest.approx([90.0, 110.0])
    # the objective's interval is the search's estimate of the recommendation (posterior, 95%)
    est = noisy.recommendation
    assert rec["interval"]["rps_per_usd"] == pytest.approx([est.low, est.high])
    assert rec["estimate"]["measurements"] == est.measurements and est.low < est.value < est.high
    assert detail(state, 1.0e9, None)["recommendation"]["interval"] is None      # a table without a spread
    running = replace(state, status="running")
    assert detail(running, 1.0e9, None)["recommendation"] is None                 # only once done


def test_the_chart_and_the_report_draw_one_best_so_far_curve(state):
    """A noisy search's best so far is the recommendation's estimate, on the dashboard as in the
    report, not the luckiest single measurement; an exact one is the best measurement."""
    from tools.report.summary import best_so_far
    lucky = replace(state.trials[0], rps_per_usd=state.trials[0].rps_per_usd * 3)          # one measurement far too high
    noisy = replace(state, trials=tuple(replace(t, rps=100.0, stability_cv=0.3) for t in (lucky, *state.trials[1:])))
    chart = [b for _, b, *_ in detail(noisy, 1.0e9, None)["best_so_far"]]
    curve = best_so_far(noisy)
    assert chart == pytest.approx(curve.estimate) and chart[-1] == pytest.approx(noisy.recommendation.value)
    assert chart[-1] < max(curve.measured)                     # not the lucky measurement
    exact = [b for _, b, *_ in detail(state, 1.0e9, None)["best_so_far"]]
    assert curve.estimate is not None and best_so_far(state).estimate is None
    assert exact == best_so_far(state).measured and exact[-1] == state.best.rps_per_usd


def test_the_list_and_falcon_status_show_one_overview_of_a_search(state):
    from tools.app.searches import state_summary
    listed, status = row(state, 1.0e9, None), state_summary(state)
    for key in ("search_id", "status", "trials", "max_trials", "best_value", "best_objective", "best_text",
                "stop_reason", "parallel"):
        assert listed[key] == status[key], key
    assert listed["objective_title"] == status["objective"] and listed["spent_usd"] == round(status["spent_usd"], 4)


def logged(event: Event, topic: str = "t", offset: int = 0) -> LoggedEvent:
    return LoggedEvent(topic, 0, offset, event, None)


def test_the_log_index_keeps_timelines_dead_letters_and_announces_new_events():
    index = LogIndex(Settings())
    sub = Event.new(ModelSubmitted(spec("gru", 7)), "s1", "cli")
    with index.listen() as q:
        index.add(logged(sub, "model-submitted"))
        index.add(logged(sub, "model-submitted", 1))                   # redelivered
        old = Event.new(SearchCancelled("x", "me"), "s1", "ui", ts="2020-01-01T00:00:00.000000Z")
        index.add(logged(old, "search-control"))
        letter = dead_letter_event(topic="model-submitted", partition=2, offset=9, key=b"k", raw=b"\x00junk",
                                   reason="not msgpack: <bad>", service="profiler")
        index.add(logged(letter, "dead-letter"))
        notes = [q.get_nowait() for _ in range(q.qsize())]
    assert [n.type for n in notes] == ["model-submitted", "model-submitted", "dead-letter"]   # old one: not live
    s = index.searches["s1"]
    assert s.model == "gru" and s.max_trials == 7 and s.strategy == "random"
    rows = s.timeline()
    assert [r["type"] for r in rows] == ["search-cancelled", "model-submitted"]
    assert rows[1]["deliveries"] == 2 and rows[0]["summary"] == "x (by me)"
    (d,) = index.dead_letters
    assert d["source_topic"] == "model-submitted" and d["raw_size"] == 5 and d["reason"] == "not msgpack: <bad>"
    assert log_only_row("s1", s)["status"] == "submitted"
    # what the dashboard published itself is shown at once, and counted as delivered once the log has it
    mine = Event.new(ModelSubmitted(spec("gru", 3)), "s2", "ui")
    index.published("model-submitted", mine)
    assert index.searches["s2"].timeline()[0]["deliveries"] == 0 and index.searches["s2"].max_trials == 3
    index.add(logged(mine, "model-submitted"))
    assert index.searches["s2"].timeline()[0]["deliveries"] == 1


def test_a_trial_result_in_the_log_shows_before_the_searcher_records_it(parts):
    from services.searcher.search import start_search
    from tools.ui.logindex import SearchLog
    d = start_search("s3", spec("gru", 4), ["dense"], OPS)
    log = SearchLog()
    data = detail(d.state, 1.0e9, log)
    assert "in flight: trial 1" in str(parts.inflight(data))
    log.trials[d.request.trial_id] = {"ts": "", "index": 0, "status": "failed", "rps_per_usd": None,
                                      "reason": "OOM <killed>", "runner": "r"}
    html = str(parts.inflight(detail(d.state, 1.0e9, log)))
    assert "trial 1 finished: failed" in html and "OOM &lt;killed&gt;" in html and "recording" in html


def test_dead_letter_rows_render_escaped(parts):
    html = str(parts.dead_letters({"total": 1, "dead_letters": [
        {"ts": "2026-01-01T00:00:00.000000Z", "source_topic": "model-submitted", "partition": 0, "offset": 3,
         "service": "profiler", "search_id": "", "reason": EVIL, "raw_size": 12}]}))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_submissions_are_the_clis_options_checked():
    o = submit_options({"model": "gru", "replay_table": "t.csv", "max_trials": "8", "seed": 3, "budget_usd": "2.5",
                        "slo_p99_ms": "", "strategy": "random"})
    assert (o.max_trials, o.seed, o.budget_usd, o.slo_p99_ms, o.strategy) == (8, 3, 2.5, None, "random")
    with pytest.raises(ValueError, match="unknown field"):
        submit_options({"model": "m", "rm -rf": 1})
    with pytest.raises(ValueError, match="needs a model"):
        submit_options({"max_trials": 3})
    with pytest.raises(ValueError):
        submit_options({"model": "m", "max_trials": "many"})
    with pytest.raises(ValueError, match="search_id"):
        submit_options({"model": "m", "search_id": "../x"})


@pytest.fixture(scope="module")
def client():
    """The app without its lifespan: no Redis or broker is reached by what these tests send."""
    return TestClient(create_app(Settings(redis_url="redis://127.0.0.1:1/0"), token="s3cret", follow=False),
                      raise_server_exceptions=False)


def test_submit_and_cancel_need_the_token(client):
    body = {"model": "gru", "replay_table": str(TARGETS / "reg-gru.csv"),
            "profile": str(PROFILES / "gru" / "operators.csv")}
    assert client.post("/api/searches", json=body).status_code == 401
    assert client.post("/api/searches", json=body, headers={"X-Falcon-Token": "s3cre"}).status_code == 401
    assert client.post("/api/searches/x/cancel", json={}, headers={"X-Falcon-Token": "nope"}).status_code == 401
    r = client.post("/api/searches", content="model=gru", headers={"X-Falcon-Token": "s3cret",
                                                                   "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415                  # a cross-site form cannot send JSON with the header
    r = client.post("/api/searches", json={**body, "replay_table": "/nowhere.csv"}, headers={"X-Falcon-Token": "s3cret"})
    assert r.status_code == 400 and "does not exist" in r.json()["error"]


def test_a_submission_the_broker_cannot_take_is_a_503_not_a_trace():
    c = TestClient(create_app(Settings(broker="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0"), token="t",
                              follow=False))
    body = {"model": "gru", "replay_table": str(TARGETS / "reg-gru.csv"),
            "profile": str(PROFILES / "gru" / "operators.csv")}
    r = c.post("/api/searches", json=body, headers={"X-Falcon-Token": "t"})
    assert r.status_code == 503 and "nothing was sent" in r.json()["error"]


def test_without_a_token_the_dashboard_is_read_only():
    c = TestClient(create_app(Settings(redis_url="redis://127.0.0.1:1/0"), token=None, follow=False))
    r = c.post("/api/searches", json={"model": "m"}, headers={"X-Falcon-Token": ""})
    assert r.status_code == 403 and "read-only" in r.json()["error"]
    assert c.post("/api/searches/s/cancel", json={}).status_code == 403


def test_assets_are_served_locally_with_a_strict_policy(client):
    r = client.get("/static/vendor/uplot/uPlot.iife.min.js")
    assert r.status_code == 200 and "uPlot" in r.text[:2000]
    assert r.headers["content-security-policy"] == CSP and "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/api/nothing").json() == {"error": "not found"}


def test_falcon_ui_is_a_command_bound_to_loopback_by_default():
    from tools.cli import parser
    a = parser().parse_args(["ui"])
    assert (a.host, a.port) == ("127.0.0.1", 8080) and a.fn.__name__ == "cmd_ui"
    assert parser().parse_args(["up"]).ui_port == 18080
    assert parser().parse_args(["ui", "--port", "9000", "--host", "::1"]).port == 9000


def test_small_helpers():
    assert [fmt_age(s) for s in (5, 75, 3700, 90000, None)] == ["5s", "1m 15s", "1h 01m", "1d 1h", "-"]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_trial_results_of_the_log_and_the_state_are_one_type(state):
    # the dashboard reads TrialResult from the state: the fields it shows exist on the one result type
    t = state.trials[0]
    assert isinstance(t, TrialResult) and {"runner", "rps", "p50_ms", "p99_ms", "stability_cv"} <= set(vars(t))
    assert isinstance(DeadLetter.type, str)


def test_a_search_under_another_objective_shows_it_in_its_unit(parts):
    from services.domain.objectives import Objective
    from tests.helpers import REPO
    live = REPO / "bench" / "live" / "models" / "targets" / "reg-gru.csv"
    backend = ReplayBackend()
    sp = replace(spec("gru", 6), backend={"kind": "replay", "table": str(live), "trial_seconds": 900.0},
                 space=backend.table(str(live)).space, objective=Objective("usd-for-load", 5000))
    st = replace(run_search("ui-obj", sp, ["dense"], OPS, backend), status="completed")
    data = detail(st, 1.0e9, None)
    natural = st.spec.objective.natural(st.objective_value(st.best))
    assert data["best_text"] == f"${natural:.3g}/h for 5,000 RPS" and data["value_label"] == "usd-for-load ($/h)"
    assert data["best_so_far"][-1][1] == pytest.approx(natural)          # the chart plots the objective
    html = str(parts.summary(data)) + str(parts.recommendation(data)) + str(parts.trials(data)) + \
        str(parts.search_row(row(st, 1.0e9, None)))
    assert "best (usd-for-load)" in html and f"${natural:.3g}/h for 5,000 RPS" in html
    assert "a month at 5,000 RPS" in html and "no offline knowledge" not in html       # random reads none
    o = submit_options({"model": "gru", "replay_table": "t.csv", "objective": "usd-for-load", "load": "5000",
                        "max_usd_per_million": "0.01"})
    assert (o.objective, o.load, o.max_usd_per_million) == ("usd-for-load", 5000.0, 0.01)


async def test_the_runners_page_reads_adverts_as_the_searcher_does():
    """One reader of runner adverts (services.platform.runners): a malformed advert is skipped,
    not a failed page."""
    import json
    import time

    from services.platform.runners import RunnerAdvert
    from tools.ui.views import Views

    good = RunnerAdvert("r1", ("replay",), {"replay": {"any": "table"}}, heartbeat=time.time(), trials_done=3)

    class FakeRedis:
        async def scan_iter(self, match):
            for k in (b"falcon:runner:r1", b"falcon:runner:bad"):
                yield k

        async def mget(self, keys):
            return [good.to_json(), json.dumps({"classes": ["replay"]})]        # the second has no name

    rows = await Views(FakeRedis(), LogIndex(Settings())).runners()
    assert [r["runner"] for r in rows] == ["r1"] and rows[0]["trials_done"] == 3 and not rows[0]["stale"]
    assert rows[0]["capabilities"] == {"replay": {"any": "table"}} and rows[0]["classes"] == ["replay"]


def test_the_dashboard_prints_the_product_s_units_not_exponents_or_zero_costs(state, parts):
    """A live search's req/$ in the millions and CPU trials costing millionths of a dollar: the
    dashboard said 5.14e+06, $0.00 spent and 0.000 per trial; the report said 5.14 million and
    $0.000071."""
    live = [replace(t, rps_per_usd=5.14e6 + i, rps_per_usd_unit="req/$", cost_usd=7.1e-6 * (i + 1),
                    reason=None if t.status == "ok" else "ValueError: fixed at 1")
            for i, t in enumerate(state.trials)]
    failed = replace(live[1], status="failed", rps_per_usd=None, reason="ValueError: input data_0's batch is fixed at 1")
    st = replace(state, trials=(live[0], failed, *live[2:]))
    data = detail(st, 1.0e9, None)
    html = str(parts.summary(data)) + str(parts.trials(data)) + str(parts.search_row(row(st, 1.0e9, None)))
    assert "e+0" not in html and "5.14 million" in html
    assert "$0.00<" not in html and ">0.000<" not in html and "$0.0000071" in html
    assert "ValueError" not in html and "input data_0" in html
    assert data["spent_usd"] == pytest.approx(sum(t.cost_usd for t in st.trials), rel=0.01)


def test_a_served_search_page_draws_the_recommendations_curve_with_the_slo_and_states_its_peak(state, parts):
    from tests.unit.tools.served_search import served_search
    st = served_search()
    data = detail(st, 1.0e9, None)
    sv, peak = data["served"], st.best.details["peak"]
    assert sv["of"] == "recommendation" and sv["trial"] == st.best.index + 1 and sv["slo_p99_ms"] == 100.0
    assert [p["concurrency"] for p in sv["curve"]] == sorted(p["concurrency"] for p in st.best.details["curve"])
    rec = str(parts.recommendation(data))
    assert (f"peak {units.rps(peak['rps'])} within the p99 SLO of 100 ms, measured at {peak['concurrency']} requests "
            f"in flight") in rec and f"queue {units.ms(peak['queue_ms'])}" in rec
    table = str(parts.served(data))
    assert table.count("<tr") == len(sv["curve"]) + 1 and "SLO 100 ms" in table and "missed" in table
    assert f'best"><td class="num">{peak["concurrency"]}</td>' in table
    # the chart's data reaches the page (first load and every live update) for app.js to draw
    page = templates().get_template("search.html").render(s=data, read_only=True, page="search", path="/")
    assert '"slo_p99_ms": 100.0' in page and 'id="served-chart"' in page and "served-box\" hidden" not in page
    from tools.ui.app import Dashboard
    live = Dashboard(Settings(redis_url="redis://127.0.0.1:1/0"), None, REPO / ".falcon", follow=False).search_parts(data)
    assert live["served"] == sv and live["parts"]["served"] == table
    # a replay search shows none of it
    replay = detail(state, 1.0e9, None)
    assert replay["served"] is None and str(parts.served(replay)).strip() == ""
    assert "within the p99 SLO" not in str(parts.recommendation(replay))
    assert 'id="served-box" hidden' in templates().get_template("search.html").render(
        s=replay, read_only=True, page="search", path="/")
