"""The registry of measured figures is the one list: TrialResult's figures, trial-completed's and
trial_row's properties and the table columns are the registry's, so a figure cannot be half-added."""

import json
from dataclasses import fields

import pytest

from schemas.events import TrialRequested, TrialResult
from services.domain import objectives
from services.domain.falcon_data import DataError, model_table_from_rows
from services.domain.figures import (
    BY_NAME,
    FIGURES,
    NORMALISED,
    OPTIONAL_COLUMNS,
    TRIAL_FIGURES,
    UNIT_FIELDS,
    VALUE_COLUMN,
    figure,
)
from services.trial_runner.backends import ReplayBackend
from tests.helpers import REPO

# what every trial has besides its measured figures: identity, outcome, cost, provenance
NOT_FIGURES = {"trial_id", "index", "config", "status", "cost_usd", "duration_s", "runner", "reason", "details"}
SCHEMAS = REPO / "schemas" / "v2"          # trial-completed's newest version (v1 is read and upcast)


def test_trial_results_carry_exactly_the_registered_figures_and_their_unit_fields():
    assert {f.name for f in fields(TrialResult)} - NOT_FIGURES - set(UNIT_FIELDS) == set(TRIAL_FIGURES)
    assert set(UNIT_FIELDS) <= {f.name for f in fields(TrialResult)} and UNIT_FIELDS == ("rps_per_usd_unit",)


def test_the_wire_schema_names_every_registered_figure_and_trial_completed_is_trial_row():
    completed = json.loads((SCHEMAS / "trial-completed.json").read_text())
    row = json.loads((SCHEMAS / "defs.json").read_text())["$defs"]["trial_row"]
    assert completed["$ref"] == "urn:falcon:defs:v2#/$defs/trial_row"      # one definition, no drift
    for name in TRIAL_FIGURES:
        assert row["properties"][name]["type"] == ["number", "null"], name
    for f in FIGURES:          # a figure in several units: its unit field admits exactly the registered ones
        if f.unit_field:
            assert row["properties"][f.unit_field]["enum"] == [*f.units, None], f.name
            assert row["then"]["properties"][f.unit_field]["enum"] == list(f.units)
            assert row["if"]["properties"][f.name] == {"type": "number"}
    assert set(row["properties"]) == {f.name for f in fields(TrialResult)}
    assert row["additionalProperties"] is False and set(row["required"]) <= set(completed["required"])
    for name in ("search-completed", "search-failed"):    # their trial rows are the same definition
        assert "urn:falcon:defs:v1#/$defs/trial_row" not in (SCHEMAS / f"{name}.json").read_text()


def test_objectives_read_registered_figures():
    for name, (fig, _) in objectives.FIGURES.items():
        assert figure(fig).direction is not None, name
    with pytest.raises(KeyError, match="known: rps_per_usd, rps"):
        figure("throughput")


def test_a_registered_column_is_a_figure_and_an_unknown_one_is_an_error_not_a_knob():
    columns = ["cpus", VALUE_COLUMN, *OPTIONAL_COLUMNS]
    t = model_table_from_rows("t", columns, [[1, 0.5, *range(1, len(OPTIONAL_COLUMNS) + 1)]])
    assert t.knobs == ("cpus",) and set(t.lookup({"cpus": 1})) == {"value", *OPTIONAL_COLUMNS}
    with pytest.raises(DataError, match="unknown measured column.*'p99ms'.*services/domain/figures.py"):
        model_table_from_rows("t", ["cpus", VALUE_COLUMN, "p99ms"], [[1, 0.5, 3.0]])


def test_the_replay_backend_answers_every_tabled_figure(tmp_path):
    table = tmp_path / "reg-m.csv"
    tabled = [f for f in FIGURES if f.on_trial and f.column and f.column != VALUE_COLUMN]
    table.write_text(",".join(["cpus", VALUE_COLUMN, *(f.column for f in tabled)]) + "\n"
                     + ",".join(["1", "0.5", *(str(i + 2.0) for i in range(len(tabled)))]) + "\n")
    r = ReplayBackend().run(TrialRequested("s/t0", 0, {"cpus": 1}, {"name": "m"}, {"kind": "replay",
                                           "table": str(table)}, 1.0))
    assert r.ok and r.rps_per_usd == 0.5 and r.rps_per_usd_unit == NORMALISED       # a table's RPS/$
    assert [getattr(r, f.name) for f in tabled] == [i + 2.0 for i in range(len(tabled))]
    assert BY_NAME["stability_cv"].column == "cv"


def test_the_audit_line_shows_a_figure_it_has_no_words_for_by_the_registry(monkeypatch):
    import tools.app.audit as audit
    r = TrialResult("s/t0", 0, {"cpus": 1}, "ok", 0.5, 0.1, 3.0, p99_ms=12.5)
    monkeypatch.setattr(audit, "SHOWN", audit.SHOWN - {"p99_ms"})     # as a newly registered figure is
    assert "p99 12.5 ms" in audit._trial_summary(r, None)
