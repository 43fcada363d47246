"""A client that shares no code with the project (kafka-python, msgpack, jsonschema, PyYAML and the
csv module; the contract from schemas/README.md and schemas/v1) submits a search over the real
broker and reads its result: what upstream CI in another language would do."""

import csv
import json
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import msgpack
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.helpers import PROFILES, REPO, TARGETS

with warnings.catch_warnings():     # kafka-python 3.0 reads its protocol files with a deprecated importlib API
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer

pytestmark = pytest.mark.integration
CONTRACT = REPO / "schemas"          # v1/, v2/: one folder per version


def validator(name: str, version: int = 1) -> Draft202012Validator:
    registry = Registry()
    for path in CONTRACT.glob("v*/defs.json"):
        defs = json.loads(path.read_text())
        registry = registry.with_resource(defs["$id"], Resource.from_contents(defs))
    return Draft202012Validator(json.loads((CONTRACT / f"v{version}" / f"{name}.json").read_text()), registry=registry)


def operator_shares(path: Path) -> list[dict]:
    """falcon-data operators.csv (percent of running time) -> the contract's 0-1 time shares."""
    with path.open() as f:
        rows = [(r[0], float(r[1])) for r in list(csv.reader(f))[1:] if r]
    total = sum(p for _, p in rows)
    return [{"op": op, "time_share": p / total, "memory_share": None, "flops": None} for op, p in rows]


def submission(search_id: str) -> dict:
    """model-submitted, built by hand: the whole space and price catalogue embedded (copied from
    the project's default files), percentages turned into shares."""
    space = yaml.safe_load((REPO / "deploy" / "config" / "paper-space.yaml").read_text())
    prices = yaml.safe_load((REPO / "deploy" / "config" / "ec2-prices.yaml").read_text())
    spec = {
        "model": {"name": "gru", "format": "falcon-profile", "uri": None},
        "backend": {"kind": "replay", "table": str(TARGETS / "reg-gru.csv"), "trial_seconds": 900},
        "space": {"knobs": [{"name": k, "values": v} for k, v in space["knobs"].items()]},
        "prices": prices,
        "stop": {"max_trials": 3},
        "strategy": {"name": "random", "seed": 1},
        "kop_threshold": 0.05,
    }
    return {"type": "model-submitted", "version": 1, "event_id": uuid.uuid4().hex, "search_id": search_id,
            "causation_id": None, "ts": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "producer": "kafka-python-client",
            "data": {"spec": spec, "operators": operator_shares(PROFILES / "gru" / "operators.csv")}}


def test_a_client_without_project_code_submits_a_search_and_reads_its_result(infra, start_services):
    start_services("profiler", wait=False)
    start_services("searcher", wait=False)
    start_services("trial_runner")
    search_id = f"kafka-python-{uuid.uuid4().hex[:8]}"
    event = submission(search_id)
    validator("envelope").validate(event)                   # the client checks its event against the contract
    validator("model-submitted").validate(event["data"])

    producer = KafkaProducer(bootstrap_servers=infra.broker, acks="all")
    producer.send("model-submitted", msgpack.packb(event, use_bin_type=True), key=search_id.encode()).get(timeout=30)
    producer.close()

    consumer = KafkaConsumer("search-results", bootstrap_servers=infra.broker, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    result, deadline = None, time.monotonic() + 120
    try:
        while result is None and time.monotonic() < deadline:
            for message in consumer:
                got = msgpack.unpackb(message.value, raw=False)
                if got["search_id"] == search_id:
                    result = got
                    break
    finally:
        consumer.close()
    assert result is not None, "no search result within 120 s"
    validator("envelope").validate(result)
    assert result["type"] == "search-completed", result["data"]
    assert result["version"] == 2                            # a trial's RPS/$ is rps_per_usd, its unit stated
    validator("search-completed", result["version"]).validate(result["data"])
    data = result["data"]
    assert len(data["trials"]) == 3 and data["stop_reason"] == "max-trials" and data["backend_kind"] == "replay"
    assert data["best"]["rps_per_usd"] == max(t["rps_per_usd"] for t in data["trials"] if t["status"] == "ok")
    assert {t["rps_per_usd_unit"] for t in data["trials"] if t["status"] == "ok"} == {"norm"}     # a table's RPS/$
    assert set(data["best"]["config"]) == {"batchsize", "cpus", "gpumem", "gpupower", "gputype"}
    assert message.key == search_id.encode()                 # results are keyed by search id
