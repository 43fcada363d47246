import pytest

import schemas
from schemas import Event
from services.domain.falcon_data import DataError
from tests.helpers import PROFILES, TARGETS
from tools.cli import main, parser
from tools.app.submit import SubmitOptions, build_submission


def args(*extra):
    return parser().parse_args(["submit", "gru", "--profile", str(PROFILES / "gru" / "operators.csv"),
                                "--replay-table", str(TARGETS / "reg-gru.csv"), *extra])


def test_submission_is_a_valid_model_submitted_event(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("knobs:\n  batchsize: [8, 16]\n  cpus: [1, 2]\n  gpumem: [1.2]\n  gpupower: [100]\n"
                     "  gputype: [T4, V100]\n")
    sid, submitted = build_submission(SubmitOptions.from_args(
        args("--space", str(space), "--max-trials", "4", "--budget-usd", "2.5")))
    ev = schemas.decode(schemas.encode(Event.new(submitted, sid, "cli")))
    spec = ev.data["spec"]
    assert sid.startswith("gru-") and spec["stop"] == {"max_trials": 4, "target_value": None, "budget_usd": 2.5}
    assert [k["name"] for k in spec["space"]["knobs"]] == ["batchsize", "cpus", "gpumem", "gpupower", "gputype"]
    assert {o["op"] for o in ev.data["operators"]} >= {"split", "dense", "multiply"}


def test_missing_table_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(DataError):
        build_submission(SubmitOptions.from_args(parser().parse_args(["submit", "m", "--replay-table",
                                                                     str(tmp_path / "x.csv")])))
    assert main(["submit", "m", "--replay-table", str(tmp_path / "x.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_every_command_has_help(capsys):
    for cmd in ("up", "down", "submit", "status", "watch", "audit", "demo", "publish-offline", "rebuild", "trees",
                "calibrate", "report", "runners", "profile", "dead-letters"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
    assert "audit" in capsys.readouterr().out


def test_usage_errors_are_one_line_with_exit_2(capsys):
    for argv, expected in ((["submit", "m", "--measure-s", "-2"], "argument --measure-s: must be a positive number"),
                           (["submit", "m", "--max-trials", "0"], "argument --max-trials: must be at least 1"),
                           (["dead-letters", "--since", "yesterday"], "is neither a duration")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_a_space_file_that_does_not_parse_is_one_line(tmp_path, capsys):
    bad = tmp_path / "space.yaml"
    bad.write_text("knobs:\n  batchsize: [8, 16\n  cpus: [1]\n")
    assert main(["submit", "gru", "--profile", str(PROFILES / "gru" / "operators.csv"), "--replay-table",
                 str(TARGETS / "reg-gru.csv"), "--space", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "is not valid YAML at line 3, column 7" in err and len(err.strip().splitlines()) == 1


def test_since_accepts_durations_and_iso_times():
    from datetime import datetime, timedelta, timezone
    from tools.cli.log_cmds import since_time
    now = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    assert since_time("90s", now) == now - timedelta(seconds=90)
    assert since_time("2h", now) == now - timedelta(hours=2) and since_time("1d", now) == now - timedelta(days=1)
    assert since_time("2026-11-24T02:00", now) == datetime(2026, 11, 24, 2, tzinfo=timezone.utc)
    assert since_time("2026-11-24T02:00:00Z", now) == datetime(2026, 11, 24, 2, tzinfo=timezone.utc)


def test_falcon_up_publishes_the_shipped_datasets_unless_told_otherwise(tmp_path):
    from tools.cli.stack_cmds import offline_datasets
    shipped = offline_datasets(None)
    assert [p.name for p in shipped[:3]] == ["live-offline", "live-calibrated",     # the live CPU space's
                                             "live-served-calibrated"]              # the served space's
    assert all((p / "models").is_dir() or (p / "kop-curves").is_dir() for p in shipped)
    assert offline_datasets([str(tmp_path)]) == [tmp_path]
    assert offline_datasets(None, none=True) == []


def test_objectives_stated_wrongly_are_one_line_before_anything_runs(capsys, monkeypatch):
    import tools.zoo
    monkeypatch.setattr(tools.zoo, "export_onnx", lambda *a, **k: pytest.fail("exported a model before refusing"))
    for argv, expected in (
            (["submit", "m", "--zoo", "resnet8", "--objective", "usd-for-load"],
             "falcon submit: --objective usd-for-load needs --load RPS (the requests per second to carry)"),
            (["submit", "m", "--objective", "usd-for-load", "--load", "-5"],
             "argument --load: must be a positive number, not -5"),
            (["submit", "m", "--objective", "usd-for-load", "--load", "0"],
             "argument --load: must be a positive number, not 0"),
            (["submit", "m", "--objective", "fastest"], "argument --objective: invalid choice: 'fastest'"),
            (["submit", "m", "--max-usd-per-million", "0"], "argument --max-usd-per-million: must be a positive")):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_a_replay_table_without_rps_refuses_a_cost_objective_in_one_line(capsys):
    assert main(["submit", "gru", "--profile", str(PROFILES / "gru" / "operators.csv"), "--replay-table",
                 str(TARGETS / "reg-gru.csv"), "--objective", "usd-for-load", "--load", "100"]) == 2
    err = capsys.readouterr().err
    assert "--objective usd-for-load: replay table gru has no rps column" in err and len(err.strip().splitlines()) == 1


def test_the_objective_travels_in_the_spec(tmp_path):
    from tests.helpers import REPO
    live = REPO / "bench" / "live" / "models"
    sid, submitted = build_submission(SubmitOptions.from_args(parser().parse_args(
        ["submit", "gru", "--profile", str(live / "operators" / "gru" / "operators.csv"), "--replay-table",
         str(live / "targets" / "reg-gru.csv"), "--space", str(REPO / "deploy" / "config" / "live-cpu-space.yaml"),
         "--objective", "p99", "--load", "5000", "--max-usd-per-million", "0.006"])))
    ev = schemas.decode(schemas.encode(Event.new(submitted, sid, "cli")))
    assert ev.data["spec"]["objective"] == {"name": "p99", "load_rps": 5000.0}
    assert ev.data["spec"]["constraints"]["max_usd_per_million"] == 0.006
    assert ev.payload.spec.objective.name == "p99"
    _, default = build_submission(SubmitOptions.from_args(args()))
    assert "objective" not in default.to_data()["spec"]          # the default reads as before


def test_a_live_submission_is_served_by_default_with_the_slo_and_the_served_space(tmp_path):
    from tests.helpers import REPO
    from tests.unit.tools.test_intake import stubborn
    model = stubborn(tmp_path)          # a real ONNX model (intake reads it at submission)
    ops = REPO / "bench" / "live" / "models" / "operators" / "gru" / "operators.csv"
    _, served = build_submission(SubmitOptions.from_args(parser().parse_args(
        ["submit", "m", "--model-file", str(model), "--profile", str(ops), "--backend", "live"])))
    assert served.spec.backend["mode"] == "served" and served.spec.backend["slo_p99_ms"] == 100.0
    assert {"queue_delay_us", "replicas", "precision"} <= set(served.spec.space.names)
    _, slo = build_submission(SubmitOptions.from_args(parser().parse_args(
        ["submit", "m", "--model-file", str(model), "--profile", str(ops), "--backend", "live",
         "--slo-p99-ms", "40"])))
    assert slo.spec.backend["slo_p99_ms"] == 40.0
    _, closed = build_submission(SubmitOptions.from_args(parser().parse_args(
        ["submit", "m", "--model-file", str(model), "--profile", str(ops), "--backend", "live",
         "--live-mode", "closed-loop", "--measure-s", "0.5"])))
    assert closed.spec.backend["mode"] == "closed-loop" and closed.spec.backend["measure_s"] == 0.5
    assert list(closed.spec.space.names) == ["cpus", "batchsize", "graph_opt"]
