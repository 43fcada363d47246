import pytest

from services.domain.falcon_data import DataError, load_model_table, model_table_from_rows
from services.domain.pricing import DEFAULT_PRICES
from schemas.events import TrialRequested
from services.trial_runner.backends import ReplayBackend
from tests.helpers import TARGETS

TABLE = TARGETS / "reg-gru.csv"
CFG = {"batchsize": 128, "cpus": 5, "gpumem": 1.6, "gpupower": 50, "gputype": "V100"}


def trial(config, table=TABLE, seconds=900.0):
    return TrialRequested("s/t0", 0, config, {"name": "gru", "format": "falcon-profile"},
                     {"kind": "replay", "table": str(table), "trial_seconds": seconds}, DEFAULT_PRICES.hourly(config))


def test_answers_from_the_table_with_simulated_duration_and_cost():
    out = ReplayBackend().run(trial(CFG))
    row = next(r for r in TABLE.read_text().splitlines() if r.startswith("128,5,1.6,50,V100,"))
    assert out.status == "ok" and out.rps_per_usd == pytest.approx(float(row.split(",")[-1]))
    assert out.rps_per_usd_unit == "norm"                # a table's RPS/$, normalised to its best
    assert out.duration_s == 900.0
    assert out.cost_usd == pytest.approx(DEFAULT_PRICES.hourly(CFG) * 0.25)


def test_configuration_missing_from_the_table_fails_with_reason():
    out = ReplayBackend().run(trial({**CFG, "batchsize": 256}))
    assert out.status == "failed" and "not in table" in out.reason and out.cost_usd == 0


def test_unreadable_table_fails_with_reason(tmp_path):
    out = ReplayBackend().run(trial(CFG, table=tmp_path / "nope.csv"))
    assert out.status == "failed" and "cannot read table" in out.reason


def test_table_reader_knows_the_falcon_layout():
    t = load_model_table(TABLE)
    assert t.name == "gru" and len(t.rows) == 1440 and t.space.size == 1440
    key, best = t.best()
    assert best == max(r["value"] for r in t.rows.values())


def test_table_without_objective_column_is_refused():
    with pytest.raises(DataError, match="norm"):
        model_table_from_rows("x", ["cpus", "rps"], [[1, 2.0]])


def test_a_table_with_measured_spread_reports_it_like_a_live_runner(tmp_path):
    t = tmp_path / "reg-x.csv"
    t.write_text("cpus,batchsize,norm.(rps/budget),cv\n1,8,0.9,0.04\n2,8,0.5,\n")
    out = ReplayBackend().run(TrialRequested("s/t0", 0, {"cpus": 1, "batchsize": 8}, {"name": "x"},
                                        {"kind": "replay", "table": str(t)}, 0.1))
    assert out.status == "ok" and out.stability_cv == 0.04
    out = ReplayBackend().run(TrialRequested("s/t1", 0, {"cpus": 2, "batchsize": 8}, {"name": "x"},
                                        {"kind": "replay", "table": str(t)}, 0.1))
    assert out.status == "ok" and out.stability_cv is None


def test_a_non_numeric_measurement_is_refused_with_the_column_named():
    with pytest.raises(DataError, match="rps 'fast' is not a number"):
        model_table_from_rows("x", ["cpus", "norm.(rps/budget)", "rps"], [[1, 0.5, "fast"]])
