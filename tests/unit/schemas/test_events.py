"""The typed payloads and the JSON Schemas are one contract: every event kind has a class, the
class and its schema name the same fields (required ones without defaults), and a payload
survives the wire (to_data -> encode -> decode -> payload) unchanged."""

import dataclasses
import json

import pytest

import schemas
from schemas import SCHEMA_DIR, SUPPORTED_VERSIONS, Event, SchemaError
from schemas.events import (
    PAYLOADS,
    KnowledgeRequested,
    KopsIdentified,
    SearchCompleted,
    SearchFailed,
    TrialRequested,
    TrialResult,
)
from services.domain.space import PAPER_SPACE
from tests.helpers import spec


def schema_of(kind: str) -> dict:
    """The kind's schema; one that is a shared definition (trial-completed: defs.json's trial_row)
    with that definition's properties."""
    schema = json.loads((SCHEMA_DIR / f"v{SUPPORTED_VERSIONS[kind][-1]}" / f"{kind}.json").read_text())
    ref = schema.get("$ref", "")
    if ref.startswith("urn:falcon:defs:v"):
        version = ref.removeprefix("urn:falcon:defs:v").split("#")[0]
        defs = json.loads((SCHEMA_DIR / f"v{version}" / "defs.json").read_text())["$defs"]
        schema = {**defs[ref.rsplit("/", 1)[1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def test_every_event_kind_has_a_payload_class():
    assert set(PAYLOADS) == set(SUPPORTED_VERSIONS)


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_class_fields_are_the_schema_properties(kind):
    schema, cls = schema_of(kind), PAYLOADS[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(fields) == set(schema["properties"])
    no_default = {n for n, f in fields.items()
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert no_default <= set(schema.get("required", ())) <= set(fields)


def result(**kw) -> TrialResult:
    return TrialResult(**{"trial_id": "s/t0", "index": 0, "config": dict(PAPER_SPACE.config_at(7)), "status": "ok",
                          "rps_per_usd": 0.7, "rps_per_usd_unit": "norm", "cost_usd": 0.1, "duration_s": 900.0, "runner": "r1", "rps": 120.5,
                          "p99_ms": 31.0, "stability_cv": 0.04, "details": {"threads": 2}, **kw})


@pytest.mark.parametrize("payload", [
    result(),
    TrialRequested("s/t1", 1, dict(PAPER_SPACE.config_at(3)), {"name": "m", "format": "onnx", "uri": None},
                   {"kind": "replay", "table": "t.csv"}, 0.42, "replay"),
    KopsIdentified(spec(), [{"op": "conv2d", "time_share": 1.0, "memory_share": None, "flops": None}],
                   ["conv2d"], 0.05),
    SearchCompleted(result(), "max-trials", [result()], 0.1, "falcon", ["conv2d"], space=PAPER_SPACE),
    SearchFailed("profile", "no operator profile"),
    KnowledgeRequested(PAPER_SPACE),
])
def test_a_payload_survives_the_wire(payload):
    event = schemas.decode(schemas.encode(Event.new(payload, "s", "test")))
    assert event.type == payload.type and event.payload == payload


def test_a_trial_request_answers_with_the_one_result_type():
    req = TrialRequested("s/t2", 2, {"cpus": 1}, {"name": "m", "format": "onnx"}, {"kind": "live"}, 0.1, "live-cpu")
    assert req.failed("refused").reason == "refused" and req.failed("x").trial_id == "s/t2"
    ok = req.result("ok", rps_per_usd=3.0, rps_per_usd_unit="req/$", rps=10.0, stability_cv=0.1)
    assert isinstance(ok, TrialResult) and ok.ok and ok.index == 2 and ok.stability_cv == 0.1


def test_content_the_schema_admits_but_the_domain_cannot_use_is_a_value_error():
    bad_space = {"knobs": [{"name": "cpus", "values": [1, 2]}, {"name": "cpus", "values": [3]}]}
    ev = Event("knowledge-requested", "s", {"space": bad_space}, "test")
    schemas.validate(ev)                                  # the schema admits it
    with pytest.raises(ValueError, match="duplicate") as err:
        ev.payload
    assert not isinstance(err.value, SchemaError)        # the bus hands it to on_unusable, not the DLQ as garbage
