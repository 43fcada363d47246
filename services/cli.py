"""``falcon``: the command line for people and for upstream CI.

Exit codes: 0 success, 1 the search failed (or did not finish in time), 2 bad usage/input,
3 the stack is not reachable."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from schemas import Event
from services.common import stack
from services.common.bus import KafkaPublisher, LoggedEvent, ensure_topics, read_events
from services.common.connections import redis_client
from services.common.falcon_data import (
    DataError,
    iter_offline_tables,
    read_operator_profile,
)
from services.common.pricing import PriceCatalogue
from services.common.settings import Settings
from services.common.space import Space
from services.common.spec import (
    DEFAULT_KOP_THRESHOLD,
    DEFAULT_TRIAL_SECONDS,
    Constraints,
    SearchSpec,
    StopRules,
)
from services.common.topics import SEARCH_LOG_TOPICS
from services.searcher.search import SearchState
from services.searcher.store import SearchStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
PRODUCER = "cli"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "falcon-data"


def home() -> Path:
    return Path(os.environ.get("FALCON_HOME", REPO / ".falcon"))


def settings() -> Settings:
    """Environment first; else the stack that ``falcon up`` started; else defaults."""
    base = Settings.from_env()
    if "FALCON_BROKER" in os.environ:
        return base
    info = stack.StackInfo.load(home())
    return info.settings(base) if info else base


def out(obj: Any, as_json: bool, text: str | None = None) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json or text is None else text)


# -- commands -----------------------------------------------------------------------------------
def cmd_up(a: argparse.Namespace) -> int:
    base = replace(Settings.from_env(), trial_time_scale=a.time_scale)
    info = stack.up(home(), base, runners=a.runners, broker_port=a.broker_port, redis_port=a.redis_port)
    if a.offline:
        n = asyncio.run(publish_offline(info.settings(base), Path(a.offline)))
        print(f"published {n} offline tables from {a.offline}", file=sys.stderr)
    out({"broker": f"127.0.0.1:{info.broker_port}", "redis": f"127.0.0.1:{info.redis_port}",
         "processes": info.pids, "logs": str(home() / "logs"),
         "metrics": {k: f"http://127.0.0.1:{v}/metrics" for k, v in info.metrics.items()}}, a.json,
        f"stack up: broker 127.0.0.1:{info.broker_port}, redis 127.0.0.1:{info.redis_port}, "
        f"{len(info.pids) - 2} service processes (logs in {home() / 'logs'}; /metrics and /healthz on ports "
        f"{', '.join(f'{k}={v}' for k, v in info.metrics.items())})")
    return EXIT_OK


def cmd_down(a: argparse.Namespace) -> int:
    stopped = stack.down(home())
    out({"stopped": stopped}, a.json, f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return EXIT_OK


async def publish_offline(s: Settings, root: Path, wait_s: float = 120.0) -> int:
    """Publish every table of an offline dataset folder; with ``wait_s`` > 0, return only once the
    treebuilder has stored them all (so a search submitted next sees the whole dataset)."""
    from services.treebuilder.app import INDEX
    await ensure_topics(s)
    names = set()
    async with KafkaPublisher(s) as pub:
        for kind, name, columns, rows in iter_offline_tables(root):
            await pub.publish(Event("offline-table-published", "", {
                "dataset": root.name, "kind": kind, "name": name, "columns": columns, "rows": rows}, PRODUCER))
            names.add(f"{kind}:{name}")
    if wait_s > 0:
        redis = redis_client(s)
        try:
            deadline = time.monotonic() + wait_s
            while not names <= {k.decode() for k in await redis.hkeys(INDEX)}:
                if time.monotonic() > deadline:
                    raise stack.StackError(f"the treebuilder did not store the {len(names)} tables in {wait_s:.0f}s")
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()
    return len(names)


def cmd_publish_offline(a: argparse.Namespace) -> int:
    n = asyncio.run(publish_offline(settings(), Path(a.dir), 0.0 if a.no_wait else a.timeout))
    out({"published": n}, a.json, f"published {n} offline tables")
    return EXIT_OK


LIVE_SPACE = REPO / "deploy" / "config" / "live-cpu-space.yaml"
LIVE_OVERHEAD_S = 4.0     # a live trial's process start and warm-up, on top of its measurement


def build_submission(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The model-submitted payload for the CLI's arguments. Replay trials answer from a table;
    live trials run the model file (or a zoo model exported to ONNX) on a live runner."""
    kind = getattr(a, "backend", None) or ("replay" if a.replay_table else "live")
    model_file, fmt = a.model_file, a.format
    if getattr(a, "zoo", None):
        from services.profiler.zoo import export_onnx
        model_file, fmt = str(export_onnx(a.zoo, home() / "models" / f"{_slug(a.zoo)}.onnx")), "onnx"
    space_file = a.space or (LIVE_SPACE if kind == "live" else None)
    space = Space.from_file(space_file) if space_file else None
    prices = PriceCatalogue.from_file(a.prices) if a.prices else None
    backend: dict[str, Any]
    if kind == "replay":
        if not a.replay_table:
            raise DataError("a replay search needs --replay-table (or --backend live with a model)")
        if not Path(a.replay_table).is_file():
            raise DataError(f"replay table {a.replay_table} does not exist")
        backend = {"kind": "replay", "table": str(Path(a.replay_table).resolve()), "trial_seconds": a.trial_seconds}
    elif kind == "live":
        if not model_file:
            raise DataError("a live search needs the model: --model-file FILE.onnx or --zoo NAME")
        measure_s = getattr(a, "measure_s", 3.0)
        backend = {"kind": "live", "measure_s": measure_s, "trial_seconds": measure_s + LIVE_OVERHEAD_S}
    else:
        raise DataError(f"unknown trial backend {kind!r} (replay or live)")
    fmt_, uri = "falcon-profile", None
    if model_file:
        suffix = Path(model_file).suffix.lstrip(".").lower()
        fmt_ = fmt or {"pt2": "torch-export"}.get(suffix, suffix)
        uri = str(Path(model_file).resolve())
    spec = SearchSpec(model={"name": a.model, "format": fmt_, "uri": uri}, backend=backend,
                      stop=StopRules(a.max_trials, a.target_value, a.budget_usd), strategy=a.strategy,
                      seed=a.seed, kop_threshold=a.kop_threshold,
                      constraints=Constraints(getattr(a, "slo_p99_ms", None), getattr(a, "min_rps", None)),
                      **({"space": space} if space else {}), **({"prices": prices} if prices else {}))
    operators = read_operator_profile(a.profile) if a.profile else None
    search_id = a.search_id or f"{_slug(a.model)}-{uuid.uuid4().hex[:12]}"
    return search_id, {"spec": spec.to_dict(), "operators": operators}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:60]


async def submit(s: Settings, search_id: str, data: dict[str, Any], wait: bool, timeout_s: float) -> Event | None:
    event = Event("model-submitted", search_id, data, PRODUCER)
    async with KafkaPublisher(s) as pub:
        await pub.publish(event)
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
    d = event.data
    if event.type == "search-completed":
        return {"search_id": event.search_id, "status": "completed", "recommended": d["best"]["config"],
                "value": d["best"]["value"], "rps": d["best"].get("rps"), "trials": len(d["trials"]),
                "spent_usd": round(d["spent_usd"], 4), "stop_reason": d["stop_reason"], "kops": d["kops"],
                "strategy": d["strategy"]}
    return {"search_id": event.search_id, "status": "failed", "stage": d["stage"], "reason": d["reason"]}


def cmd_submit(a: argparse.Namespace) -> int:
    search_id, data = build_submission(a)
    s = settings()
    result = asyncio.run(submit(s, search_id, data, a.wait, a.timeout))
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
        seen[e.event_id] = {"ts": e.ts, "topic": item.topic, "type": e.type, "event_id": e.event_id,
                            "causation_id": e.causation_id, "producer": e.producer, "deliveries": 1,
                            "summary": _summary(e)}
    return sorted(seen.values(), key=lambda r: r["ts"])


def _summary(e: Event) -> str:
    d = e.data
    if e.type == "model-submitted":
        return f"model {d['spec']['model']['name']} strategy {d['spec']['strategy']['name']} " \
               f"max_trials {d['spec']['stop']['max_trials']}"
    if e.type == "kops-identified":
        return f"kops {d['kops']}"
    if e.type == "trial-requested":
        return f"{d['trial_id']} {d['config']}"
    if e.type == "trial-completed":
        return f"{d['trial_id']} {d['status']} value={d['value']} cost=${d['cost_usd']:.4f}" + \
            (f" reason={d['reason']}" if d.get("reason") else "")
    if e.type == "search-completed":
        return f"best {d['best']['config']} value={d['best']['value']} after {len(d['trials'])} trials ({d['stop_reason']})"
    if e.type == "search-failed":
        return f"{d['stage']}: {d['reason']}"
    if e.type == "dead-letter":
        return f"{d['source_topic']}@{d['offset']}: {d['reason']}"
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


async def load_search(s: Settings, search_id: str) -> tuple[SearchState | None, Any]:
    """A search's state (Redis, else rebuilt from the event log) and the offline knowledge for
    its space (None when no offline dataset was published)."""
    from services.searcher.app import KnowledgeCache
    from services.searcher.search import rebuild_states
    redis = redis_client(s)
    try:
        st = await SearchStore(redis).get(search_id)
        if st is None:
            events = [i.event async for i in read_events(s, SEARCH_LOG_TOPICS) if i.event is not None
                      and i.event.search_id == search_id]
            st = rebuild_states(events).get(search_id)
        knowledge = await KnowledgeCache(redis).for_space(st.spec.space) if st is not None else None
        return st, knowledge
    finally:
        await redis.aclose()


def cmd_report(a: argparse.Namespace) -> int:
    from services.report import write_report
    st, knowledge = asyncio.run(load_search(settings(), a.search_id))
    if st is None:
        print(f"no search {a.search_id!r} in Redis or in the event log", file=sys.stderr)
        return EXIT_FAILED
    out_dir = Path(a.out or home() / "reports" / _slug(a.search_id))
    s = write_report(st, out_dir, knowledge)
    rec = s["recommended"]
    text = (f"report: {s['files']['html']}\n" + (
        f"recommended {rec['config']}: {rec['rps']} RPS, p99 {rec['p99_ms']} ms, ${rec['usd_per_hour']:.4f}/h"
        if rec else f"no recommendation ({s['stop_reason']})"))
    out(s, a.json, text)
    return EXIT_OK if rec else EXIT_FAILED


async def runners(s: Settings) -> list[dict[str, Any]]:
    from services.trial_runner.app import RUNNER
    redis = redis_client(s)
    try:
        keys = [k async for k in redis.scan_iter(match=RUNNER.format("*"))]
        return sorted((json.loads(v) for v in await redis.mget(keys) if v), key=lambda r: r["runner"]) if keys else []
    finally:
        await redis.aclose()


def cmd_runners(a: argparse.Namespace) -> int:
    rows = asyncio.run(runners(settings()))
    out(rows, a.json, "\n".join(f"{r['runner']:40} {','.join(r['classes']):22} "
                                f"{json.dumps(r['capabilities'])}" for r in rows) or "no runner is advertising")
    return EXIT_OK


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


async def export_trees(s: Settings, out_dir: Path) -> dict[str, Any]:
    from services.common.space import PAPER_SPACE
    from services.treebuilder.app import KNOWLEDGE, TREE_JSON
    redis = redis_client(s)
    try:
        fp = PAPER_SPACE.fingerprint()
        stored = await redis.get(KNOWLEDGE.format(fp))
        if stored is None:
            return {}
        import msgpack
        meta = msgpack.unpackb(stored, raw=False)
        out_dir.mkdir(parents=True, exist_ok=True)
        ops = sorted(meta["knowledge"]["operators"])
        for op in ops:
            raw = await redis.get(TREE_JSON.format(fp, op))
            if raw is not None:
                (out_dir / f"{op}.json").write_bytes(raw)
        return {"version": meta["version"], "space": fp, "operators": ops, "out": str(out_dir)}
    finally:
        await redis.aclose()


def cmd_trees(a: argparse.Namespace) -> int:
    info = asyncio.run(export_trees(settings(), Path(a.out)))
    if not info:
        print("no trees yet: publish an offline dataset first (falcon publish-offline DIR)", file=sys.stderr)
        return EXIT_FAILED
    out(info, a.json, f"trees v{info['version']} for {len(info['operators'])} operators written to {info['out']}")
    return EXIT_OK


def cmd_demo(a: argparse.Namespace) -> int:
    """Start the stack, run one search on a falcon-data target model, print the recommendation."""
    data = Path(a.data)
    target = a.target
    table = data / "models" / "targets" / f"reg-{target}.csv"
    profile = data / "models" / "operators" / target / "operators.csv"
    if not table.exists() or not profile.exists():
        print(f"demo needs {table} and {profile}", file=sys.stderr)
        return EXIT_USAGE
    base = replace(Settings.from_env(), trial_time_scale=a.time_scale)
    print(f"starting the local stack in {home()} ...", file=sys.stderr)
    info = stack.up(home(), base, runners=2, broker_port=a.broker_port, redis_port=a.redis_port)
    try:
        s = info.settings(base)
        n = asyncio.run(publish_offline(s, data))
        print(f"published {n} offline tables; searching a configuration for {target} "
              f"({a.max_trials} trials of a simulated {DEFAULT_TRIAL_SECONDS / 60:.0f} min each) ...", file=sys.stderr)
        ns = argparse.Namespace(model=target, profile=str(profile), replay_table=str(table), space=None, prices=None,
                                max_trials=a.max_trials, target_value=None, budget_usd=None, strategy=a.strategy,
                                seed=a.seed, kop_threshold=DEFAULT_KOP_THRESHOLD, trial_seconds=DEFAULT_TRIAL_SECONDS,
                                search_id=None, model_file=None, format=None, backend="replay", zoo=None)
        search_id, sub = build_submission(ns)
        result = asyncio.run(submit(s, search_id, sub, True, a.timeout))
        if result is None:
            print("the search did not finish in time", file=sys.stderr)
            return EXIT_FAILED
        timeline = asyncio.run(audit(s, search_id))
        print(f"audit: {len(timeline)} events for {search_id} "
              f"({', '.join(sorted({r['type'] for r in timeline}))})", file=sys.stderr)
        out(result_summary(result), True)
        return EXIT_OK if result.type == "search-completed" else EXIT_FAILED
    finally:
        if not a.keep:
            stack.down(home())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="falcon", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_, description=help_)
        c.add_argument("--json", action="store_true", help="print JSON")
        c.set_defaults(fn=fn)
        return c

    c = cmd("up", cmd_up, "start the local stack (tansu, redis-server, the four services)")
    c.add_argument("--runners", type=int, default=2)
    c.add_argument("--time-scale", type=float, default=0.0, help="real seconds slept per simulated trial second")
    c.add_argument("--broker-port", type=int, default=19092)
    c.add_argument("--redis-port", type=int, default=16379)
    c.add_argument("--offline", help="publish this offline dataset folder (falcon-data layout) once up")
    cmd("down", cmd_down, "stop the local stack")
    c = cmd("publish-offline", cmd_publish_offline, "publish an offline dataset folder to the treebuilder")
    c.add_argument("dir")
    c.add_argument("--no-wait", action="store_true", help="do not wait for the treebuilder to store the tables")
    c.add_argument("--timeout", type=float, default=120.0)
    c = cmd("submit", cmd_submit, "submit a model for a configuration search (what upstream CI calls)")
    c.add_argument("model", help="model name")
    c.add_argument("--profile", help="operator profile csv (falcon-data operators.csv format)")
    c.add_argument("--model-file", help="the model itself (ONNX, or a trusted torch.export .pt2); the profiler "
                   "measures its operators with TVM unless --profile is given")
    c.add_argument("--zoo", help="submit a built-in zoo model (exported to ONNX); see python -m "
                   "services.profiler.profile --list-zoo")
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
    cmd("runners", cmd_runners, "list the trial runners, the trial classes they serve and what they can apply")
    c = cmd("trees", cmd_trees, "export the treebuilder's per-KOP trees (JSON, one file per operator)")
    c.add_argument("--out", default="trees")
    cmd("rebuild", cmd_rebuild, "rebuild the searches and trial results in Redis from the event log")
    c = cmd("demo", cmd_demo, "start the stack, search a configuration for a falcon-data target, print it")
    c.add_argument("--data", default=str(DEFAULT_DATA), help="falcon-data folder")
    c.add_argument("--target", default="mobilenet-v2")
    c.add_argument("--max-trials", type=int, default=6)
    c.add_argument("--strategy", default="falcon")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--time-scale", type=float, default=0.0005)
    c.add_argument("--timeout", type=float, default=300.0)
    c.add_argument("--broker-port", type=int, default=19092)
    c.add_argument("--redis-port", type=int, default=16379)
    c.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        return a.fn(a)
    except (ValueError, FileNotFoundError) as exc:   # SpaceError, PricingError, DataError, SchemaError, ZooError
        print(f"falcon {a.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except stack.StackError as exc:
        print(f"falcon {a.command}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ConnectionError, OSError, KafkaError) as exc:
        print(f"falcon {a.command}: cannot reach the stack: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
