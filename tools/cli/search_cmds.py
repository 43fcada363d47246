"""Searches: submit, status, watch, audit, report, rebuild."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from schemas import Event
from schemas.events import (
    DeadLetter,
    KopsIdentified,
    ModelSubmitted,
    SearchCancelled,
    SearchCompleted,
    SearchFailed,
    TrialRequested,
    TrialResult,
)
from services.common.bus import KafkaPublisher, LoggedEvent, read_events
from services.common.connections import redis_client
from services.common.falcon_data import DataError, read_operator_profile
from services.common.pricing import PriceCatalogue
from services.common.settings import Settings
from services.common.space import Space
from services.common.spec import DEFAULT_KOP_THRESHOLD, DEFAULT_TRIAL_SECONDS, Constraints, SearchSpec, StopRules
from services.common.topics import SEARCH_LOG_TOPICS
from services.knowledge import Knowledge
from services.searcher.search import SearchState, rebuild_states
from services.searcher.store import SearchStore
from tools.cli._shared import EXIT_FAILED, EXIT_OK, PRODUCER, REPO, command, home, out, settings, slug

LIVE_SPACE = REPO / "deploy" / "config" / "live-cpu-space.yaml"
LIVE_OVERHEAD_S = 4.0     # a live trial's process start and warm-up, on top of its measurement


@dataclass(frozen=True)
class SubmitOptions:
    """What a submission says (``falcon submit``'s options; the demo fills it directly)."""
    model: str
    profile: str | None = None
    model_file: str | None = None
    zoo: str | None = None
    format: str | None = None
    backend: str | None = None
    replay_table: str | None = None
    measure_s: float = 3.0
    space: str | None = None
    prices: str | None = None
    max_trials: int = 15
    target_value: float | None = None
    budget_usd: float | None = None
    slo_p99_ms: float | None = None
    min_rps: float | None = None
    strategy: str = "falcon"
    seed: int = 0
    kop_threshold: float = DEFAULT_KOP_THRESHOLD
    trial_seconds: float = DEFAULT_TRIAL_SECONDS
    search_id: str | None = None

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "SubmitOptions":
        return cls(**{f.name: getattr(a, f.name) for f in fields(cls)})


def build_submission(o: SubmitOptions) -> tuple[str, ModelSubmitted]:
    """The model-submitted payload for a submission. Replay trials answer from a table; live
    trials run the model file (or a zoo model exported to ONNX) on a live runner."""
    kind = o.backend or ("replay" if o.replay_table else "live")
    model_file, fmt = o.model_file, o.format
    if o.zoo:
        from tools.zoo import export_onnx
        model_file, fmt = str(export_onnx(o.zoo, home() / "models" / f"{slug(o.zoo)}.onnx")), "onnx"
    space_file = o.space or (LIVE_SPACE if kind == "live" else None)
    space = Space.from_file(space_file) if space_file else None
    prices = PriceCatalogue.from_file(o.prices) if o.prices else None
    backend: dict[str, Any]
    if kind == "replay":
        if not o.replay_table:
            raise DataError("a replay search needs --replay-table (or --backend live with a model)")
        if not Path(o.replay_table).is_file():
            raise DataError(f"replay table {o.replay_table} does not exist")
        backend = {"kind": "replay", "table": str(Path(o.replay_table).resolve()), "trial_seconds": o.trial_seconds}
    elif kind == "live":
        if not model_file:
            raise DataError("a live search needs the model: --model-file FILE.onnx or --zoo NAME")
        backend = {"kind": "live", "measure_s": o.measure_s, "trial_seconds": o.measure_s + LIVE_OVERHEAD_S}
    else:
        raise DataError(f"unknown trial backend {kind!r} (replay or live)")
    model_format, uri = "falcon-profile", None
    if model_file:
        suffix = Path(model_file).suffix.lstrip(".").lower()
        model_format = fmt or {"pt2": "torch-export"}.get(suffix, suffix)
        uri = str(Path(model_file).resolve())
    spec = SearchSpec(model={"name": o.model, "format": model_format, "uri": uri}, backend=backend,
                      stop=StopRules(o.max_trials, o.target_value, o.budget_usd), strategy=o.strategy,
                      seed=o.seed, kop_threshold=o.kop_threshold, constraints=Constraints(o.slo_p99_ms, o.min_rps),
                      **({"space": space} if space else {}), **({"prices": prices} if prices else {}))
    operators = read_operator_profile(o.profile) if o.profile else None
    search_id = o.search_id or f"{slug(o.model)}-{uuid.uuid4().hex[:12]}"
    return search_id, ModelSubmitted(spec, operators)


async def submit(s: Settings, search_id: str, submission: ModelSubmitted, wait: bool,
                 timeout_s: float) -> Event | None:
    async with KafkaPublisher(s) as pub:
        await pub.publish(Event.new(submission, search_id, PRODUCER))
    if not wait:
        return None
    return await wait_result(s, search_id, timeout_s)


async def wait_result(s: Settings, search_id: str, timeout_s: float) -> Event | None:
    def done(item: LoggedEvent) -> bool:
        return item.event is not None and item.event.search_id == search_id
    async for item in read_events(s, ("search-results",), until=done, timeout_s=timeout_s):
        if done(item):
            return item.event
    return None


def result_summary(event: Event) -> dict[str, Any]:
    r = event.payload
    if isinstance(r, SearchCompleted):
        return {"search_id": event.search_id, "status": "completed", "recommended": r.best.config,
                "value": r.best.value, "rps": r.best.rps, "trials": len(r.trials),
                "spent_usd": round(r.spent_usd, 4), "stop_reason": r.stop_reason, "kops": r.kops,
                "strategy": r.strategy}
    assert isinstance(r, SearchFailed)
    return {"search_id": event.search_id, "status": "failed", "stage": r.stage, "reason": r.reason}


def cmd_submit(a: argparse.Namespace) -> int:
    search_id, submission = build_submission(SubmitOptions.from_args(a))
    result = asyncio.run(submit(settings(), search_id, submission, a.wait, a.timeout))
    if not a.wait:
        out({"search_id": search_id, "status": "submitted"}, a.json, search_id)
        return EXIT_OK
    if result is None:
        out({"search_id": search_id, "status": "timeout"}, True)
        return EXIT_FAILED
    out(result_summary(result), True)
    return EXIT_OK if result.type == "search-completed" else EXIT_FAILED


def state_summary(st: SearchState) -> dict[str, Any]:
    best = st.best
    return {"search_id": st.search_id, "model": st.spec.model["name"], "status": st.status,
            "trials": len(st.trials), "max_trials": st.spec.stop.max_trials,
            "best_value": best.value if best else None, "best_config": best.config if best else None,
            "spent_usd": round(st.spent_usd, 4), "stop_reason": st.stop_reason,
            "pending": st.pending.trial_id if st.pending else None, "kops": list(st.kops)}


async def _status(s: Settings, search_id: str | None) -> list[dict[str, Any]]:
    redis = redis_client(s)
    try:
        store = SearchStore(redis)
        ids = [search_id] if search_id else await store.list_ids()
        rows = []
        for i in ids:
            st = await store.get(i)
            if st is not None:
                rows.append(state_summary(st))
        return rows
    finally:
        await redis.aclose()


def cmd_status(a: argparse.Namespace) -> int:
    rows = asyncio.run(_status(settings(), a.search_id))
    if a.search_id and not rows:
        print(f"no search {a.search_id!r}", file=sys.stderr)
        return EXIT_FAILED
    text = "\n".join(f"{r['search_id']:40} {r['status']:9} trials {r['trials']:>3}/{r['max_trials']:<3} "
                     f"best {r['best_value'] if r['best_value'] is not None else '-'}" for r in rows) or "no searches"
    out(rows if not a.search_id else rows[0], a.json, text)
    return EXIT_OK


def cmd_watch(a: argparse.Namespace) -> int:
    s = settings()
    seen = -1
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        rows = asyncio.run(_status(s, a.search_id))
        if rows:
            r = rows[0]
            if r["trials"] != seen:
                seen = r["trials"]
                bar = "#" * r["trials"] + "." * max(0, r["max_trials"] - r["trials"])
                print(f"[{bar}] {r['trials']}/{r['max_trials']} best {r['best_value']} {r['best_config'] or ''}",
                      flush=True)
            if r["status"] != "running":
                print(f"{r['status']}: {r['stop_reason']}")
                return EXIT_OK if r["status"] == "completed" else EXIT_FAILED
        time.sleep(a.interval)
    return EXIT_FAILED


async def audit(s: Settings, search_id: str) -> list[dict[str, Any]]:
    """The search's timeline from the event log alone (every topic, deduplicated by event id)."""
    seen: dict[str, dict[str, Any]] = {}
    async for item in read_events(s):
        e = item.event
        if e is None or e.search_id != search_id:
            continue
        if e.event_id in seen:
            seen[e.event_id]["deliveries"] += 1
            continue
        seen[e.event_id] = audit_row(item.topic, e)
    return sorted(seen.values(), key=lambda r: r["ts"])


def audit_row(topic: str, e: Event) -> dict[str, Any]:
    """One row of a search's timeline (``falcon audit``; the dashboard shows the same rows)."""
    return {"ts": e.ts, "topic": topic, "type": e.type, "event_id": e.event_id, "causation_id": e.causation_id,
            "producer": e.producer, "deliveries": 1, "summary": _summary(e)}


def _summary(e: Event) -> str:
    try:
        p = e.payload
    except ValueError as exc:
        return f"unusable: {exc}"
    if isinstance(p, ModelSubmitted):
        return f"model {p.spec.model['name']} strategy {p.spec.strategy} max_trials {p.spec.stop.max_trials}"
    if isinstance(p, KopsIdentified):
        return f"kops {p.kops}"
    if isinstance(p, TrialRequested):
        return f"{p.trial_id} {p.config}"
    if isinstance(p, TrialResult):
        return f"{p.trial_id} {p.status} value={p.value} cost=${p.cost_usd:.4f}" + \
            (f" reason={p.reason}" if p.reason else "")
    if isinstance(p, SearchCompleted):
        return f"best {p.best.config} value={p.best.value} after {len(p.trials)} trials ({p.stop_reason})"
    if isinstance(p, SearchFailed):
        return f"{p.stage}: {p.reason}"
    if isinstance(p, SearchCancelled):
        return f"{p.reason} (by {p.requested_by})"
    if isinstance(p, DeadLetter):
        return f"{p.source_topic}@{p.offset}: {p.reason}"
    return ""


def cmd_audit(a: argparse.Namespace) -> int:
    rows = asyncio.run(audit(settings(), a.search_id))
    if not rows:
        print(f"no events for search {a.search_id!r}", file=sys.stderr)
        return EXIT_FAILED
    out(rows, a.json, "\n".join(f"{r['ts']}  {r['type']:17} {r['producer']:13} {r['summary']}" +
                                (f"  (delivered {r['deliveries']}x)" if r["deliveries"] > 1 else "")
                                for r in rows))
    return EXIT_OK


async def load_search(s: Settings, search_id: str) -> tuple[SearchState | None, Knowledge | None]:
    """A search's state (Redis, else rebuilt from the event log) and the offline knowledge stored
    for its space (None when none was built)."""
    from services.knowledge.store import KnowledgeStore
    redis = redis_client(s)
    try:
        st = await SearchStore(redis).get(search_id)
        if st is None:
            events = [i.event async for i in read_events(s, SEARCH_LOG_TOPICS) if i.event is not None
                      and i.event.search_id == search_id]
            st = rebuild_states(events).get(search_id)
        knowledge = await KnowledgeStore(redis).load(st.spec.space) if st is not None else None
        return st, knowledge
    finally:
        await redis.aclose()


def cmd_report(a: argparse.Namespace) -> int:
    from tools.report import write_report
    st, knowledge = asyncio.run(load_search(settings(), a.search_id))
    if st is None:
        print(f"no search {a.search_id!r} in Redis or in the event log", file=sys.stderr)
        return EXIT_FAILED
    out_dir = Path(a.out or home() / "reports" / slug(a.search_id))
    s = write_report(st, out_dir, knowledge)
    rec = s["recommended"]
    text = (f"report: {s['files']['html']}\n" + (
        f"recommended {rec['config']}: {rec['rps']} RPS, p99 {rec['p99_ms']} ms, ${rec['usd_per_hour']:.4f}/h"
        if rec else f"no recommendation ({s['stop_reason']})"))
    out(s, a.json, text)
    return EXIT_OK if rec else EXIT_FAILED


async def rebuild(s: Settings) -> dict[str, int]:
    from services.searcher.app import rebuild_from_log
    from services.trial_runner.app import restore_results
    redis = redis_client(s)
    try:
        return {"searches_restored": await rebuild_from_log(s, SearchStore(redis)),
                "trial_results_restored": await restore_results(redis, s)}
    finally:
        await redis.aclose()


def cmd_rebuild(a: argparse.Namespace) -> int:
    counts = asyncio.run(rebuild(settings()))
    out(counts, a.json, f"restored {counts['searches_restored']} searches and "
                        f"{counts['trial_results_restored']} trial results from the event log")
    return EXIT_OK


def register(sub: Any) -> None:
    def cmd(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        return command(sub, name, fn, help_)

    c = cmd("submit", cmd_submit, "submit a model for a configuration search (what upstream CI calls)")
    c.add_argument("model", help="model name")
    c.add_argument("--profile", help="operator profile csv (falcon-data operators.csv format)")
    c.add_argument("--model-file", help="the model itself (ONNX, or a trusted torch.export .pt2); the profiler "
                   "measures its operators with TVM unless --profile is given")
    c.add_argument("--zoo", help="submit a built-in zoo model (exported to ONNX); see falcon profile --list-zoo")
    c.add_argument("--format", help="model file format (default: from the file's suffix)")
    c.add_argument("--backend", choices=("replay", "live"),
                   help="replay: answer trials from --replay-table; live: run the model on a live runner "
                        "(default: replay when --replay-table is given)")
    c.add_argument("--replay-table", help="measurement table csv the replay backend answers from")
    c.add_argument("--measure-s", type=float, default=3.0, help="live trials: seconds of stress test per trial")
    c.add_argument("--space", help="configuration space file (.yaml/.toml); default: the paper's 1,440 points "
                   "(replay) or deploy/config/live-cpu-space.yaml (live)")
    c.add_argument("--prices", help="price catalogue file (.yaml/.toml); default: EC2 on-demand")
    c.add_argument("--max-trials", type=int, default=15)
    c.add_argument("--target-value", type=float, help="stop once a trial reaches this objective value")
    c.add_argument("--budget-usd", type=float, help="stop before the trials' cost would exceed this")
    c.add_argument("--slo-p99-ms", type=float, help="latency SLO: never recommend a configuration whose p99 "
                   "latency is above this")
    c.add_argument("--min-rps", type=float, help="peak load: never recommend a configuration serving fewer "
                   "requests per second")
    c.add_argument("--strategy", default="falcon", help="falcon (default), random, gp-ei, tpe, morphling, prior")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--kop-threshold", type=float, default=DEFAULT_KOP_THRESHOLD)
    c.add_argument("--trial-seconds", type=float, default=DEFAULT_TRIAL_SECONDS)
    c.add_argument("--search-id", help="default: <model>-<random>")
    c.add_argument("--wait", action="store_true", help="wait for the result; exit 1 if the search failed")
    c.add_argument("--timeout", type=float, default=600.0)
    c = cmd("status", cmd_status, "show searches (or one search) from the searcher's state")
    c.add_argument("search_id", nargs="?")
    c = cmd("watch", cmd_watch, "follow a search's progress until it ends")
    c.add_argument("search_id")
    c.add_argument("--interval", type=float, default=1.0)
    c.add_argument("--timeout", type=float, default=3600.0)
    c = cmd("audit", cmd_audit, "print a search's timeline from the event log")
    c.add_argument("search_id")
    c = cmd("report", cmd_report, "write a search's report (HTML + PNG plots): recommendation, runners-up, history")
    c.add_argument("search_id")
    c.add_argument("--out", help="folder for report.html and the plots (default: $FALCON_HOME/reports/<id>)")
    cmd("rebuild", cmd_rebuild, "rebuild the searches and trial results in Redis from the event log")
