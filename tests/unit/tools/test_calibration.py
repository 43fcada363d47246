"""falcon calibrate without a stack: the plan and its cost, the budget, bad input refused before
anything runs, resuming (only the missing searches are submitted), and the tables it publishes."""

import asyncio
import json

import numpy as np
import pytest

from schemas import Event
from schemas.events import SearchFailed, TrialRequested
from services.domain.pricing import DEFAULT_PRICES
from services.domain.space import Space
from services.knowledge import Knowledge, OfflineDataset
from services.knowledge.hardware import DEFAULT_HARDWARE
from services.searcher.search import SearchState, record_trial, start_search
from services.domain.spec import SearchSpec, StopRules
from tests.helpers import REPO
from tools import calibration as cal
from tools.app.submit import SERVED_TRIAL_S
from tools.cli import calibrate_cmds, main

LIVE_FILE = REPO / "deploy" / "config" / "live-cpu-space.yaml"
LIVE = Space.from_file(LIVE_FILE)


@pytest.fixture
def no_stack(monkeypatch, tmp_path):
    """No stack to ask, and any attempt to publish or run fails the test."""
    monkeypatch.setenv("FALCON_HOME", str(tmp_path / "home"))

    async def nothing(*a, **k):
        return None

    async def no_kops(*a, **k):
        return []

    def forbidden(*a, **k):
        raise AssertionError("nothing may run or be published")
    monkeypatch.setattr(calibrate_cmds, "advertising_runners", nothing)
    monkeypatch.setattr(calibrate_cmds, "seen_kops", no_kops)
    monkeypatch.setattr(calibrate_cmds, "discover", forbidden)
    monkeypatch.setattr(calibrate_cmds, "KafkaPublisher", forbidden)
    return tmp_path


def plan(ops=("conv2d", "dense"), shapes=2, points=16, **kw):
    kw.setdefault("mode", "closed-loop")
    return cal.make_plan(LIVE, DEFAULT_PRICES, DEFAULT_HARDWARE, list(ops), shapes, points, 2.0, **kw)


def test_the_plan_prices_every_design_point_and_routes_it():
    p = plan()
    assert [i.model for i in p.items] == ["op-conv2d-c16-32px", "op-conv2d-c64-16px", "op-dense-seq32-d128",
                                          "op-dense-seq1-d256"]
    assert len(p.design) == 16 and p.trials == 64 and p.runner_classes == {"live-cpu": 16}
    hourly = [DEFAULT_PRICES.hourly(c) for c in p.design]
    assert p.cost_usd == pytest.approx(4 * sum(hourly) * 6.0 / 3600)
    assert p.points_within(p.cost_usd) == 16 and p.points_within(p.cost_usd / 2) < 16
    assert p.points_within(1e-9) == 0
    text = p.text()
    assert "64 live trials" in text and "live-cpu" in text and "$0.0425/h" in text and "estimated cost" in text
    # the same calibration asked again has the same id and search ids (so it is resumed), more operators too
    again = plan(ops=("conv2d", "dense", "add"))
    assert again.calibration_id == p.calibration_id and again.items[0].search_id == p.items[0].search_id
    assert plan(points=12).calibration_id != p.calibration_id


def test_a_served_calibration_is_planned_as_served_trials_and_kept_apart_from_a_closed_loop_one():
    closed, served = plan(), plan(mode="served")
    assert served.trial_seconds == SERVED_TRIAL_S and closed.trial_seconds == 6.0
    assert served.cost_usd == pytest.approx(closed.cost_usd * SERVED_TRIAL_S / 6.0)
    assert "64 served trials (Triton + perf_analyzer, the peak load within p99 100 ms" in served.text()
    assert served.to_dict()["mode"] == "served" and served.to_dict()["slo_p99_ms"] == 100.0
    # its own id (its searches are not the closed-loop ones), which the SLO changes and measure_s does not
    assert served.calibration_id != closed.calibration_id
    assert plan(mode="served", slo_p99_ms=50.0).calibration_id != served.calibration_id
    assert cal.make_plan(LIVE, DEFAULT_PRICES, DEFAULT_HARDWARE, ["conv2d", "dense"], 2, 16, 9.0,
                         mode="served").calibration_id == served.calibration_id
    # a closed-loop calibration keeps the id it had before served trials: the shipped one resumes
    shipped = json.loads((REPO / "bench" / "live-calibrated" / "calibration.json").read_text())
    again = cal.make_plan(Space.from_dict(shipped["space"]), DEFAULT_PRICES, DEFAULT_HARDWARE, ["conv2d"], 2,
                          len(shipped["design"]), shipped["measure_s"], shipped["seed"], mode="closed-loop")
    assert again.calibration_id == shipped["calibration_id"]
    for bad, msg in (({"mode": "open"}, "--live-mode 'open'"), ({"slo_p99_ms": 0.0}, "--slo-p99-ms")):
        with pytest.raises(cal.CalibrationError, match=msg):
            plan(**{"mode": "served", **bad})


def test_operators_default_to_the_zoo_kops_and_the_submitted_models_buildable_ones():
    ops, notes = cal.choose_operators(None, ["conv2d", "nn.batch_matmul", "fancy_attention"])
    assert ops == [*cal.ZOO_KOPS, "batch_matmul"] and "fancy_attention" in notes[0]
    assert cal.choose_operators(["matmul", "dense", "relu"])[0] == ["dense", "relu"]
    with pytest.raises(cal.CalibrationError, match="no single-operator model can be built for operator 'fancy'"):
        cal.choose_operators(["conv2d", "fancy"])


def test_dry_run_prints_the_plan_and_starts_nothing(no_stack, capsys):
    assert main(["calibrate", "--space", str(LIVE_FILE), "--operators", "dense", "--shapes", "1", "--points", "8",
                 "--live-mode", "closed-loop", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "8 live trials" in text and "dry run: nothing was started" in text
    # served (the default): each point a served trial, its SLO and time stated
    assert main(["calibrate", "--space", str(REPO / "deploy" / "config" / "live-served-space.yaml"), "--operators",
                 "dense", "--shapes", "1", "--points", "8", "--slo-p99-ms", "50", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "8 served trials (Triton + perf_analyzer, the peak load within p99 50 ms; ~45 s each)" in text


def test_a_budget_below_the_estimate_is_refused_before_anything_runs(no_stack, capsys):
    assert main(["calibrate", "--space", str(LIVE_FILE), "--operators", "conv2d,dense", "--budget-usd", "0.001", "--live-mode", "closed-loop",
                 "--yes"]) == 2
    err = capsys.readouterr().err
    assert "is over --budget-usd $0.001; nothing was started" in err and "--points" in err


def test_without_a_terminal_it_asks_for_yes(no_stack, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["calibrate", "--space", str(LIVE_FILE), "--operators", "dense"]) == 2
    assert "pass --yes" in capsys.readouterr().err


@pytest.mark.parametrize("space, operators, expected", [
    ("knobs:\n  gputype: [T4, X100]\n  batchsize: [1, 2]\n", "dense",
     "gputype='X100' is not in the hardware catalogue"),
    (None, "conv2d,fancy_op", "no single-operator model can be built for operator 'fancy_op'"),
    (None, "dense", "a calibration measures on live runners"),
])
def test_bad_input_is_one_line_before_anything_runs(no_stack, capsys, space, operators, expected):
    path = LIVE_FILE
    if space:
        path = no_stack / "space.yaml"
        path.write_text(space)
    argv = ["calibrate", "--space", str(path), "--operators", operators, "--yes"]
    if expected.startswith("a calibration"):
        argv += ["--backend", "replay"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not (no_stack / "home" / "calibrations").exists() or not any(
        (no_stack / "home" / "calibrations").rglob("tables"))


def _state(p, item, attempt=1, trials=16, status="running"):
    sid = cal.search_id(p.calibration_id, item.op, item.shape, attempt)
    spec = SearchSpec(model={"name": item.model, "format": "onnx", "uri": "/m.onnx"},
                      backend={"kind": "live", "measure_s": 2.0, "trial_seconds": 6.0}, space=LIVE,
                      stop=StopRules(len(p.design)), strategy="design")
    d = start_search(sid, spec, [item.op], [{"op": item.op, "time_share": 1.0}])
    while d.request is not None and len(d.state.trials) < trials:
        d = record_trial(d.state, _measure(d.request, item))
    st = d.state
    return st if status == "running" or st.status == status else SearchState(**{**st.__dict__, "status": status})


def _measure(req: TrialRequested, item, scale=1.0):
    """A made-up single-operator landscape: bigger batches and graph_opt=all are faster, cores cost."""
    c = req.config
    rps = scale * 1000 * (1 + np.log2(c["batchsize"])) * (1.4 if c["graph_opt"] == "all" else 1.0) \
        * c["cpus"] ** 0.8
    return req.result("ok", rps_per_usd_unit="req/$", rps_per_usd=rps * 3600 / req.price_per_hour, duration_s=3.0, cost_usd=1e-5, rps=rps,
                      p50_ms=1.0, p99_ms=2.0, stability_cv=0.02)


def test_a_resumed_calibration_submits_only_the_missing_searches(home):
    p = plan(ops=("conv2d", "dense", "add"), shapes=1, points=8, models_dir=home / "models")
    conv, dense, add = p.items
    states = {conv.search_id: _state(p, conv, trials=8, status="completed"),
              dense.search_id: _state(p, dense, trials=3)}                       # running: followed, not resubmitted
    failed = Event.new(SearchFailed("profile", "model file gone"), add.search_id, "profiler")
    tracked = calibrate_cmds.resolve(p, states, {add.search_id: failed}, {add.search_id})
    assert [t.status for t in tracked] == ["completed", "running", "new"]
    assert tracked[2].search_id == add.search_id + "-a2" and "model file gone" in tracked[2].retried
    assert tracked[0].trials == 8 and tracked[1].trials == 3
    published = []

    async def publish(e):
        published.append(e)
    sent = asyncio.run(calibrate_cmds.submit_missing(
        tracked, lambda item, sid: calibrate_cmds.submission(p, item, sid, _Args(), None), publish))
    assert sent == [add.search_id + "-a2"] and [e.search_id for e in published] == sent
    sub = published[0].payload
    assert sub.spec.strategy == "design" and sub.spec.stop.max_trials == 8 and sub.operators[0]["op"] == "add"
    # a submitted search not yet started is followed, not submitted twice
    again = calibrate_cmds.resolve(p, states, {}, {add.search_id})
    assert again[2].status == "submitted" and again[2].search_id == add.search_id


class _Args:
    space, prices, budget_usd = str(LIVE_FILE), None, None


@pytest.fixture
def home(monkeypatch, tmp_path):
    monkeypatch.setenv("FALCON_HOME", str(tmp_path))
    return tmp_path


def test_the_tables_are_falcon_data_and_become_knowledge(tmp_path, home):
    p = plan(ops=("conv2d", "dense"), shapes=1, points=12)
    results = {i.model: list(_state(p, i, trials=12).trials) for i in p.items}
    results[p.items[1].model][3] = results[p.items[1].model][3].__class__(
        **{**results[p.items[1].model][3].__dict__, "status": "failed", "rps_per_usd": None, "reason": "oom"})
    w = cal.write_tables(p, results, tmp_path / "tables")
    fp = LIVE.fingerprint()[:8]
    assert w.sources == [f"cal-conv2d-c16-32px-{fp}", f"cal-dense-seq32-d128-{fp}"]
    assert w.points == {w.sources[0]: 12, w.sources[1]: 11} and w.failed[w.sources[1]] == 1
    assert len(w.curves) == 6 and any("graph_opt" in c for c in w.curves)
    ds = OfflineDataset.from_folder(tmp_path / "tables")
    assert sorted(ds.model_tables) == w.sources and ds.operators == ["conv2d", "dense"]
    table = ds.model_tables[w.sources[0]]
    assert max(r["value"] for r in table.rows.values()) == 1.0 and all(r["rps"] for r in table.rows.values())
    k = Knowledge.build(ds, LIVE)
    assert sorted(k.sources) == w.sources and sorted(k.operators) == ["conv2d", "dense"]
    best = LIVE.config_at(int(np.argmax(k.operators["conv2d"].score)))
    assert best["graph_opt"] == "all" and best["batchsize"] == 64        # the made-up landscape's optimum
    assert (tmp_path / "tables" / "NOTICE.md").exists() and (tmp_path / "tables" / "calibration.json").exists()


def test_a_model_without_a_successful_trial_publishes_nothing(tmp_path, home):
    p = plan(ops=("dense",), shapes=2, points=6)
    ok = list(_state(p, p.items[0], trials=6).trials)
    failed = [t.__class__(**{**t.__dict__, "status": "failed", "rps_per_usd": None}) for t in ok]
    with pytest.raises(cal.CalibrationError, match="no trial of op-dense-seq1-d256 succeeded"):
        cal.write_tables(p, {p.items[0].model: ok, p.items[1].model: failed}, tmp_path / "tables")
    assert not (tmp_path / "tables").exists()


def test_an_out_folder_that_is_not_a_calibration_s_is_refused_before_anything_runs(no_stack, capsys):
    other = no_stack / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["calibrate", "--space", str(LIVE_FILE), "--operators", "dense", "--out", str(other), "--yes"]) == 2
    assert "is not an earlier calibration's folder" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"
