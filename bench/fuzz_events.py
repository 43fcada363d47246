"""Fuzz the consume path every service shares with malformed events (Hypothesis).

Each generated message goes through ``bus.handle_message`` into the real handler of the
service that consumes its topic (profiler, searcher, trial runner; Redis and the broker they
read from are real, started here). Generated: random bytes, random msgpack values, and
mutations of valid events (fields dropped or retyped, wrong version/type, truncation, oversize,
configurations outside the space, unknown search ids).

Prints the counts and, last, one JSON object
{"events", "crashes", "dead_lettered", "dead_lettered_without_reason", "accepted_valid",
 "invalid_not_dead_lettered"}. Goal: 0 crashes, every invalid event dead-lettered with a reason.

    python -m bench.fuzz_events [--events 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

import schemas
from schemas import Event, SchemaError
from services.platform.bus import ensure_topics, handle_message
from services.platform.settings import Settings
from services.domain.space import PAPER_SPACE
from services.domain.spec import SearchSpec
from services.platform.topics import TOPIC_EVENTS
from services.profiler.app import ProfilerHandlers
from services.searcher.app import SearcherHandlers
from services.searcher.store import SearchStore
from services.trial_runner.app import TrialRunner
from services.trial_runner.backends import ReplayBackend
from tools import localstack

CONSUMED = ["model-submitted", "kops-identified", "trial-requested", "trial-completed",   # topics with a handler
            "search-control"]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "falcon-data"


def valid_events() -> list[Event]:
    table = str(DATA / "models" / "targets" / "reg-gru.csv")
    spec = SearchSpec(model={"name": "gru", "format": "falcon-profile", "uri": None},
                      backend={"kind": "replay", "table": table, "trial_seconds": 900.0}).to_dict()
    cfg = PAPER_SPACE.config_at(5)
    ops = [{"op": "dense", "time_share": 0.6, "memory_share": None, "flops": None},
           {"op": "split", "time_share": 0.4, "memory_share": None, "flops": None}]
    return [
        Event("model-submitted", "fz", {"spec": spec, "operators": ops}, "fuzz"),
        Event("kops-identified", "fz", {"spec": spec, "operators": ops, "kops": ["dense"], "threshold": 0.05}, "fuzz"),
        Event("trial-requested", "fz", {"trial_id": "fz/t0", "index": 0, "config": cfg,
                                        "model": {"name": "gru", "format": "falcon-profile"},
                                        "backend": {"kind": "replay", "table": table}, "price_per_hour": 1.0}, "fuzz"),
        Event("trial-completed", "fz", {"trial_id": "fz/t0", "index": 0, "config": cfg, "status": "ok",
                                        "rps_per_usd": 0.5, "rps_per_usd_unit": "norm", "cost_usd": 0.1,
                                        "duration_s": 900.0, "runner": "r"}, "fuzz"),
        Event("search-cancelled", "fz", {"reason": "enough", "requested_by": "fuzz"}, "fuzz"),
    ]


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _set(obj: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        obj = dict(obj)
        if delete and not rest:
            obj.pop(head, None)
        else:
            obj[head] = _set(obj[head], rest, value, delete)
    elif isinstance(obj, list):
        obj = list(obj)
        if delete and not rest:
            obj.pop(head)
        else:
            obj[head] = _set(obj[head], rest, value, delete)
    return obj


@st.composite
def mutated(draw: st.DrawFn, bases: list[Event]) -> tuple[str, bytes]:
    base = draw(st.sampled_from(bases))
    d = msgpack.unpackb(msgpack.packb(base.as_dict()))      # a deep copy: never mutate the bases
    kind = draw(st.sampled_from(["drop", "retype", "version", "type", "extra", "truncate", "oversize",
                                 "outside-space", "unknown-search", "wrong-topic"]))
    topic = next(t for t, evs in TOPIC_EVENTS.items() if base.type in evs)
    paths = [p for p in _paths(d) if p]
    if kind == "drop":
        d = _set(d, draw(st.sampled_from(paths)), None, delete=True)
    elif kind == "retype":
        d = _set(d, draw(st.sampled_from(paths)), draw(json_like))
    elif kind == "version":
        d["version"] = draw(st.integers(-5, 10) | st.text(max_size=3))
    elif kind == "type":
        d["type"] = draw(st.text(max_size=20) | st.sampled_from(list(schemas.EVENT_TYPES)))
    elif kind == "extra":
        d[draw(st.text(min_size=1, max_size=8))] = draw(json_like)
    elif kind == "outside-space" and "config" in d["data"]:
        d["data"]["config"] = {**d["data"]["config"], draw(st.sampled_from(PAPER_SPACE.names)): draw(json_like)}
    elif kind == "unknown-search":
        d["search_id"] = draw(st.text(max_size=40))
    elif kind == "wrong-topic":
        topic = draw(st.sampled_from([t for t in CONSUMED if base.type not in TOPIC_EVENTS[t]]))
    raw = msgpack.packb(d, use_bin_type=True, default=repr)
    if kind == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif kind == "oversize":
        raw = raw + b"\x00" * (1024 * 1024)
    return topic, raw


def messages(bases: list[Event]) -> st.SearchStrategy[tuple[str, bytes]]:
    return st.one_of(
        st.tuples(st.sampled_from(CONSUMED), st.binary(max_size=200)),
        st.tuples(st.sampled_from(CONSUMED), json_like.map(lambda v: msgpack.packb(v, use_bin_type=True))),
        mutated(bases), mutated(bases), mutated(bases),
    )


@dataclass
class Recorder:
    events: list[Event] = field(default_factory=list)

    async def publish(self, event: Event, partition: int | None = None) -> None:
        schemas.encode(event)            # what a handler publishes must itself be valid
        self.events.append(event)


@dataclass
class Stats:
    events: int = 0
    crashes: int = 0
    dead_lettered: int = 0
    dead_lettered_without_reason: int = 0
    accepted_valid: int = 0
    invalid_not_dead_lettered: int = 0
    examples: list[str] = field(default_factory=list)


def run(n: int, seed_: int) -> Stats:
    work = Path(tempfile.mkdtemp(prefix="falcon-fuzz-"))
    bport, rport = localstack.free_port(), localstack.free_port()
    broker = localstack.start_broker(bport, work / "tansu.log")
    redis_proc = localstack.start_redis(rport, work / "redis.log")
    cfg = replace(Settings(), broker=f"127.0.0.1:{bport}", redis_url=f"redis://127.0.0.1:{rport}/0",
                  handler_retries=2, retry_backoff_s=0.001)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(ensure_topics(cfg))
    redis = Redis.from_url(cfg.redis_url)
    searcher = SearcherHandlers(SearchStore(redis), cfg)
    runner = TrialRunner(redis, {"replay": ReplayBackend()}, cfg, name="fuzz-runner")
    loop.run_until_complete(searcher.ensure_initialised())
    loop.run_until_complete(runner.ensure_initialised())
    handlers = {"model-submitted": ProfilerHandlers(cfg).on_model_submitted, "kops-identified": searcher.on_kops_identified,
                "trial-completed": searcher.on_trial_completed, "trial-requested": runner.on_trial_requested,
                "search-control": searcher.on_search_cancelled}
    stats = Stats()

    @seed(seed_)
    @settings(max_examples=n, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(messages(valid_events()))
    def one(msg: tuple[str, bytes]) -> None:
        topic, raw = msg
        stats.events += 1
        try:
            schemas.decode(raw, expect=TOPIC_EVENTS[topic])
            valid = True
        except SchemaError:
            valid = False
        pub = Recorder()
        try:
            loop.run_until_complete(handle_message(service="fuzz", settings=cfg, publisher=pub,
                                                   handler=handlers[topic], topic=topic, partition=0,
                                                   offset=stats.events, key=None, raw=raw,
                                                   expect=TOPIC_EVENTS[topic]))
        except Exception as exc:  # noqa: BLE001 - this is what the bench counts
            stats.crashes += 1
            stats.examples.append(f"crash on {topic}: {type(exc).__name__}: {exc}")
            return
        dls = [e for e in pub.events if e.type == "dead-letter"]
        stats.dead_lettered += bool(dls)
        stats.dead_lettered_without_reason += sum(not e.data["reason"].strip() for e in dls)
        if valid:
            stats.accepted_valid += 1
        elif not dls:
            stats.invalid_not_dead_lettered += 1
            stats.examples.append(f"invalid on {topic} not dead-lettered: {raw[:80]!r}")

    try:
        one()
    finally:
        loop.run_until_complete(redis.aclose())
        loop.close()
        for p in (broker, redis_proc):
            p.terminate()
            p.wait(10)
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    s = run(a.events, a.seed)
    print(f"events {s.events}: {s.crashes} crashes, {s.dead_lettered} dead-lettered "
          f"({s.dead_lettered_without_reason} without a reason), {s.accepted_valid} were valid events, "
          f"{s.invalid_not_dead_lettered} invalid ones not dead-lettered")
    for line in s.examples[:10]:
        print("  " + line)
    summary = {k: v for k, v in s.__dict__.items() if k != "examples"}
    print(json.dumps(summary))
    return 0 if not (s.crashes or s.invalid_not_dead_lettered or s.dead_lettered_without_reason) else 1


if __name__ == "__main__":
    sys.exit(main())
