"""Chaos benchmark: N concurrent searches (replay backend, short simulated trials) on a real
tansu broker and redis-server, with 3 trial runners and 2 searchers, while a random service
process is killed (SIGKILL) every few seconds and replaced.

Prints searches completed, trials run vs expected, re-runs, duplicates, lost trials, results
that differ from the fault-free in-process reference, wall time; the last line is one JSON
object: {"searches", "completed", "lost_trials", "double_counted", "kills", "wall_s", ...}.

    python -m bench.chaos [--searches 50] [--trials 6] [--kill-every 3] [--seed 0] [--parallel 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from redis.asyncio import Redis

from schemas import Event
from services.platform.bus import KafkaPublisher, ensure_topics, read_events
from services.domain.falcon_data import read_operator_profile
from services.platform.settings import Settings
from services.domain.spec import SearchSpec, StopRules
from services.platform.redis_keys import TRIAL_RUNS
from services.profiler.kops import identify_kops
from services.trial_runner.backends import ReplayBackend
from tools import localstack
from tools.harness import run_search

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "falcon-data"


def search_spec(model: str, trials: int, seed: int, data: Path, parallel: int = 1) -> SearchSpec:
    """The random strategy: its choices depend on how many results are in, not on the order they
    arrived, so even a search with trials in parallel must equal the fault-free reference."""
    return SearchSpec(model={"name": model, "format": "falcon-profile", "uri": None},
                      backend={"kind": "replay", "table": str(data / "models" / "targets" / f"reg-{model}.csv"),
                               "trial_seconds": 900.0},
                      stop=StopRules(trials), strategy="random", seed=seed, parallel=parallel)


class Fleet:
    """The service processes, by role, with kill-and-replace."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings, self.logs, self.n = settings, logs, 0
        self.procs: dict[str, list[subprocess.Popen]] = {}

    def start(self, role: str, count: int = 1) -> None:
        started, paths = [], []
        for _ in range(count):
            self.n += 1
            log = self.logs / f"{role}-{self.n}.log"
            started.append(localstack.start_service(role, self.settings, log))
            paths.append(log)
        self.procs.setdefault(role, []).extend(started)
        localstack.wait_ready(paths, started, timeout_s=90)

    def kill_random(self, rng: random.Random) -> str:
        role = rng.choice(sorted(self.procs))
        victim = rng.choice(self.procs[role])
        victim.kill()
        victim.wait()
        self.procs[role].remove(victim)
        self.start(role)
        return role

    def stop(self) -> None:
        for procs in self.procs.values():
            for p in procs:
                p.terminate()
        for procs in self.procs.values():
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


async def collect(settings: Settings, ids: set[str], timeout_s: float) -> dict[str, Event]:
    results: dict[str, Event] = {}

    def done(item) -> bool:  # noqa: ANN001
        if item.event is not None and item.event.search_id in ids:
            results.setdefault(item.event.search_id, item.event)
        return len(results) == len(ids)
    async for _ in read_events(settings, ("search-results",), until=done, timeout_s=timeout_s):
        pass
    return results


async def main_async(a: argparse.Namespace) -> dict:
    rng = random.Random(a.seed)
    work = Path(tempfile.mkdtemp(prefix="falcon-chaos-"))
    bport, rport = localstack.free_port(), localstack.free_port()
    broker = localstack.start_broker(bport, work / "tansu.log")
    redis_proc = localstack.start_redis(rport, work / "redis.log")
    settings = replace(Settings(), broker=f"127.0.0.1:{bport}", redis_url=f"redis://127.0.0.1:{rport}/0",
                       partitions=a.partitions, session_timeout_s=2.0, heartbeat_s=0.2, trial_lease_s=4.0,
                       trial_time_scale=a.trial_real_s / 900.0, log_level="info")
    await ensure_topics(settings)
    fleet = Fleet(settings, work)
    try:
        fleet.start("profiler")
        fleet.start("searcher", a.searchers)
        fleet.start("trial_runner", a.runners)
        models = ["resnet-101", "bert-large", "gru", "mobilenet-v2"]
        searches = {f"chaos-{i:03d}": (models[i % 4], 1000 + i) for i in range(a.searches)}
        t0 = time.monotonic()
        async with KafkaPublisher(settings) as pub:
            for sid, (model, seed) in searches.items():
                ops = read_operator_profile(a.data / "models" / "operators" / model / "operators.csv")
                await pub.publish(Event("model-submitted", sid, {
                    "spec": search_spec(model, a.trials, seed, a.data, a.parallel).to_dict(), "operators": ops},
                    "chaos"))
        collector = asyncio.create_task(collect(settings, set(searches), a.timeout))
        kills: list[str] = []
        while not collector.done():
            try:
                await asyncio.wait_for(asyncio.shield(collector), timeout=a.kill_every)
            except asyncio.TimeoutError:
                kills.append(await asyncio.to_thread(fleet.kill_random, rng))
                print(f"  t={time.monotonic() - t0:5.1f}s killed a {kills[-1]} ({len(kills)} kills)", flush=True)
        results = collector.result()
        wall = time.monotonic() - t0

        redis = Redis.from_url(settings.redis_url)
        runs = {k.decode(): int(v) for k, v in (await redis.hgetall(TRIAL_RUNS)).items()}
        await redis.aclose()
        backend = ReplayBackend()
        completed = mismatched = double_counted = lost = 0
        for sid, (model, seed) in searches.items():
            r = results.get(sid)
            if r is None or r.type != "search-completed":
                lost += a.trials
                continue
            completed += 1
            trials = r.data["trials"]
            ids = [t["trial_id"] for t in trials]
            double_counted += len(ids) - len(set(ids)) + max(0, len(set(ids)) - a.trials)
            lost += max(0, a.trials - len(set(ids)))
            ops = read_operator_profile(a.data / "models" / "operators" / model / "operators.csv")
            ref = run_search(sid, search_spec(model, a.trials, seed, a.data, a.parallel), identify_kops(ops), ops,
                             backend)
            # by trial index: with several in flight, results arrive in any order
            if {t["index"]: t["config"] for t in trials} != {t.index: t.config for t in ref.trials} or \
                    r.data["best"]["config"] != ref.best.config:
                mismatched += 1
        expected = a.searches * a.trials
        reruns = sum(v - 1 for v in runs.values() if v > 1)
        print(f"searches completed   {completed}/{a.searches} ({a.parallel} trials of each in flight at once)")
        print(f"trials run/expected  {sum(runs.values())}/{expected} ({reruns} re-runs after a runner died "
              f"mid-trial, {len(runs)} distinct)")
        print(f"lost trials          {lost}")
        print(f"double-counted       {double_counted}")
        print(f"differ from fault-free reference  {mismatched}")
        print(f"kills                {len(kills)} ({', '.join(f'{k}: {kills.count(k)}' for k in sorted(set(kills)))})")
        print(f"wall time            {wall:.1f}s")
        return {"searches": a.searches, "completed": completed, "lost_trials": lost,
                "double_counted": double_counted, "kills": len(kills), "wall_s": round(wall, 1),
                "trials_expected": expected, "trials_run": sum(runs.values()), "reruns": reruns,
                "mismatched": mismatched, "parallel": a.parallel}
    finally:
        fleet.stop()
        for p in (broker, redis_proc):
            p.terminate()
            p.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--searches", type=int, default=50)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--runners", type=int, default=3)
    p.add_argument("--searchers", type=int, default=2)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    p.add_argument("--trial-real-s", type=float, default=0.3, help="real seconds a simulated trial takes")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=1, help="trials of each search in flight at once")
    p.add_argument("--data", type=Path, default=DATA)
    a = p.parse_args(argv)
    summary = asyncio.run(main_async(a))
    print(json.dumps(summary))
    ok = summary["completed"] == a.searches and not summary["lost_trials"] and not summary["double_counted"]
    return 0 if ok and not summary["mismatched"] else 1


if __name__ == "__main__":
    sys.exit(main())
