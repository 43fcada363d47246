"""The local stack: up, down, and the demo (the README's main job)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack

from schemas import Event
from services.platform.bus import KafkaPublisher
from services.platform.connections import redis_client
from services.platform.redis_keys import SEARCH_OPEN, TRIAL_RESULT
from services.platform.settings import Settings
from services.domain.space import PAPER_SPACE, Space
from services.domain.spec import DEFAULT_TRIAL_SECONDS
from services.searcher.store import SearchStore
from tools import localstack
from tools.archive import archive_path
from tools.cli._shared import DEFAULT_DATA, EXIT_FAILED, EXIT_OK, EXIT_USAGE, REPO, command, home, out
from tools.app.audit import audit
from tools.app.submit import SubmitOptions, build_submission, result_summary, submit
from tools.cli.data_cmds import publish_offline, wait_knowledge


async def resume_open_searches(s: Settings) -> list[str]:
    """After ``falcon up`` the broker starts empty, so a search that was waiting for a trial when
    the stack went down would wait for ever. Re-publish what each one waits for: its trial's stored
    result when a runner finished it, else its trial request (same event ids: a runner answers a
    measured trial from Redis and takes over an unfinished one once the old claim's lease ends)."""
    redis = redis_client(s)
    store, resumed = SearchStore(redis), []
    try:
        async with KafkaPublisher(s) as pub:
            for raw_id in sorted(await redis.smembers(SEARCH_OPEN)):
                sid = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                st = await store.get(sid)
                if st is None or st.status != "running" or not st.pending:
                    continue
                for p in st.pending:
                    stored = await redis.get(TRIAL_RESULT.format(p.trial_id))
                    if stored is not None:
                        event: Event | None = Event(**msgpack.unpackb(stored, raw=False))
                    else:
                        event = next((Event(**e) for e in st.pending_events if e["data"]["trial_id"] == p.trial_id),
                                     None)
                    if event is not None:
                        await pub.publish(event)
                resumed.append(sid)
    finally:
        await redis.aclose()
    return resumed


def cmd_up(a: argparse.Namespace) -> int:
    base = replace(Settings.from_env(), trial_time_scale=a.time_scale)
    info = localstack.up(home(), base, runners=a.runners, broker_port=a.broker_port, redis_port=a.redis_port,
                         ui_port=a.ui_port)
    ui = f"http://127.0.0.1:{info.ui_port}/" if info.ui_port else None
    resumed = asyncio.run(resume_open_searches(info.settings(base)))
    if resumed:
        print(f"resumed {len(resumed)} search(es) that were running at falcon down: {', '.join(resumed)}",
              file=sys.stderr)
    published = offline_datasets(a.offline, a.no_offline)
    for folder in published:
        n = asyncio.run(publish_offline(info.settings(base), folder))
        print(f"published {n} offline tables from {folder}", file=sys.stderr)
    knowledge = knowledge_ready(info.settings(base), a.knowledge_timeout if published else 0.0)
    out({"knowledge": knowledge, "broker": f"127.0.0.1:{info.broker_port}", "redis": f"127.0.0.1:{info.redis_port}",
         "processes": info.pids, "logs": str(home() / "logs"), "redis_data": str(home() / "redis"),
         "archive": str(archive_path(home())), "ui": ui,
         "metrics": {k: f"http://127.0.0.1:{v}/metrics" for k, v in info.metrics.items()}}, a.json,
        f"stack up: broker 127.0.0.1:{info.broker_port}, redis 127.0.0.1:{info.redis_port}, "
        f"{len(info.metrics)} service processes (logs in {home() / 'logs'}; /metrics and /healthz on ports "
        f"{', '.join(f'{k}={v}' for k, v in info.metrics.items())}); history kept in {home() / 'redis'} "
        f"and {archive_path(home())}" + (f"\ndashboard: {ui}" + (
            "" if os.environ.get("FALCON_UI_TOKEN") else " (read-only: set FALCON_UI_TOKEN to submit and cancel)")
            if ui else "") + "\n" + knowledge_line(knowledge))
    return EXIT_OK


def shipped_spaces() -> dict[str, Space]:
    """The spaces the stack ships offline knowledge for (SHIPPED_OFFLINE)."""
    from tools.app.submit import LIVE_SPACE, SERVED_SPACE
    return {"the paper's space": PAPER_SPACE, "the live CPU space": Space.from_file(LIVE_SPACE),
            "the served live space": Space.from_file(SERVED_SPACE)}


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def knowledge_ready(s: Settings, timeout_s: float) -> dict[str, str]:
    """Wait (with progress) until the treebuilder has built the shipped spaces' knowledge; with a
    timeout of 0, only look."""
    spaces = shipped_spaces()
    if timeout_s > 0:
        print(f"building the offline knowledge for {_and(list(spaces))} (a search waits for it; "
              f"up to {timeout_s:.0f} s) ...", file=sys.stderr, flush=True)
    return asyncio.run(wait_knowledge(s, spaces, timeout_s))


def knowledge_line(state: dict[str, str]) -> str:
    ready = [n for n, v in state.items() if v == "ready"]
    building = [n for n, v in state.items() if v == "building"]
    if not building and ready:
        return f"ready: offline knowledge built for {_and(ready)}"
    if building:
        return (f"ready, but the offline knowledge for {_and(building)} is still building: a search of "
                "that space submitted now waits up to 60 s for it, then runs without it and says so in its notices")
    return "ready: no offline dataset published, so searches run without offline knowledge (and say so)"


SHIPPED_OFFLINE = (
    REPO / "bench" / "live-offline",   # lstm and dcgan measured live over deploy/config/live-cpu-space.yaml on a
                                       # 2-core machine of this project (python -m bench.live_table --role sources)
    REPO / "bench" / "live-calibrated",  # falcon calibrate of that space on the same machine: single-operator
                                         # models' tables and KOP curves (its NOTICE.md says how and when)
    REPO / "bench" / "live-served-calibrated",  # falcon calibrate of the served live space (served trials), the
                                                # knowledge of the default live searches (its NOTICE.md)
    DEFAULT_DATA,                      # Falcon's public tables over the paper's space, where the checkout has them
)


def offline_datasets(chosen: list[str] | None, none: bool = False) -> list[Path]:
    """What ``falcon up`` publishes to the treebuilder: the folders named with --offline, else
    the datasets shipped for the spaces the stack offers (the served and CPU live spaces, the paper's),
    so a first search has knowledge without a manual step; nothing with --no-offline."""
    if none:
        return []
    if chosen:
        return [Path(c) for c in chosen]
    return [p for p in SHIPPED_OFFLINE if (p / "models").is_dir() or (p / "kop-curves").is_dir()]


def cmd_down(a: argparse.Namespace) -> int:
    stopped = localstack.down(home())
    out({"stopped": stopped}, a.json, f"stopped: {', '.join(stopped) or 'nothing was running'}")
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
    info = localstack.up(home(), base, runners=2, broker_port=a.broker_port, redis_port=a.redis_port)
    try:
        s = info.settings(base)
        n = asyncio.run(publish_offline(s, data))
        state = asyncio.run(wait_knowledge(s, {"the paper's space": PAPER_SPACE}, a.knowledge_timeout))
        if state["the paper's space"] != "ready":
            print(f"the offline knowledge is still building after {a.knowledge_timeout:.0f} s: this search runs "
                  "without it (its notices say so)", file=sys.stderr)
        print(f"published {n} offline tables; searching a configuration for {target} "
              f"({a.max_trials} trials of a simulated {DEFAULT_TRIAL_SECONDS / 60:.0f} min each) ...", file=sys.stderr)
        search_id, submission = build_submission(SubmitOptions(
            model=target, profile=str(profile), replay_table=str(table), backend="replay",
            max_trials=a.max_trials, strategy=a.strategy, seed=a.seed))
        result = asyncio.run(submit(s, search_id, submission, True, a.timeout))
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
            localstack.down(home())


def register(sub: Any) -> None:
    def cmd(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        return command(sub, name, fn, help_)

    c = cmd("up", cmd_up, "start the local stack (tansu, redis-server, the four services)")
    c.add_argument("--runners", type=int, default=2)
    c.add_argument("--time-scale", type=float, default=0.0, help="real seconds slept per simulated trial second")
    c.add_argument("--broker-port", type=int, default=19092)
    c.add_argument("--redis-port", type=int, default=16379)
    c.add_argument("--offline", action="append", help="publish this offline dataset folder (falcon-data layout) "
                   "once up; repeatable (default: the datasets shipped for the live CPU and the paper's spaces)")
    c.add_argument("--no-offline", action="store_true", help="publish no offline dataset")
    c.add_argument("--ui-port", type=int, default=18080, help="the dashboard's port on 127.0.0.1 (0: no dashboard)")
    c.add_argument("--knowledge-timeout", type=float, default=600.0, help="seconds to wait for the offline "
                   "knowledge of the shipped spaces to be built before saying ready (0: do not wait)")
    cmd("down", cmd_down, "stop the local stack")
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
    c.add_argument("--knowledge-timeout", type=float, default=600.0, help="seconds to wait for the offline "
                   "knowledge of the paper's space before searching")
