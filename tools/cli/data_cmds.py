"""Offline data and the fleet: publish-offline, trees, runners, profile."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from schemas import Event
from schemas.events import KnowledgeRequested, OfflineTablePublished
from services.platform.bus import KafkaPublisher, ensure_topics
from services.platform.connections import redis_client
from services.domain.falcon_data import iter_offline_tables
from services.platform.runners import read_adverts
from services.platform.settings import Settings
from services.domain.space import PAPER_SPACE, Space
from services.knowledge.store import KnowledgeStore
from tools import localstack
from tools.cli._shared import EXIT_FAILED, EXIT_OK, PRODUCER, command, out, settings


async def publish_offline(s: Settings, root: Path, wait_s: float = 120.0) -> int:
    """Publish every table of an offline dataset folder; with ``wait_s`` > 0, return only once the
    treebuilder has stored them all (so a search submitted next sees the whole dataset)."""
    await ensure_topics(s)
    names = set()
    async with KafkaPublisher(s) as pub:
        for kind, name, columns, rows in iter_offline_tables(root):
            await pub.publish(Event.new(OfflineTablePublished(root.name, kind, name, columns, rows), "", PRODUCER))
            names.add(f"{kind}:{name}")
    if wait_s > 0:
        redis = redis_client(s)
        try:
            store, deadline = KnowledgeStore(redis), time.monotonic() + wait_s
            while not names <= await store.table_names():
                if time.monotonic() > deadline:
                    raise localstack.StackError(f"the treebuilder did not store the {len(names)} tables in "
                                                f"{wait_s:.0f}s")
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()
    return len(names)


async def wait_knowledge(s: Settings, spaces: dict[str, Space], timeout_s: float, progress_every_s: float = 10.0,
                         say: Any = None) -> dict[str, str]:
    """Ask the treebuilder for the knowledge of ``spaces`` (name -> space) and wait until each is
    built from the dataset's current version, saying every ``progress_every_s`` which are still
    building; at most ``timeout_s``. Returns name -> "ready" | "building" | "no dataset"."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    redis = redis_client(s)
    try:
        store = KnowledgeStore(redis)
        version = await store.dataset_version()
        if version is None:
            return {name: "no dataset" for name in spaces}
        async with KafkaPublisher(s) as pub:
            for space in spaces.values():
                if await store.stored_version(space) != version:
                    await pub.publish(Event.new(KnowledgeRequested(space), "", PRODUCER))
        t0 = time.monotonic()
        told = t0
        while True:
            version = await store.dataset_version()
            waiting = [n for n, sp in spaces.items() if await store.stored_version(sp) != version]
            now = time.monotonic()
            if not waiting or now - t0 > timeout_s:
                return {n: "building" if n in waiting else "ready" for n in spaces}
            if now - told >= progress_every_s:
                told = now
                done = len(spaces) - len(waiting)
                say(f"building the offline knowledge ({done}/{len(spaces)} spaces ready; waiting for "
                    f"{', '.join(waiting)}): {now - t0:.0f} s")
            await asyncio.sleep(0.5)
    finally:
        await redis.aclose()


def cmd_publish_offline(a: argparse.Namespace) -> int:
    n = asyncio.run(publish_offline(settings(), Path(a.dir), 0.0 if a.no_wait else a.timeout))
    out({"published": n}, a.json, f"published {n} offline tables")
    return EXIT_OK


async def runners(s: Settings) -> list[dict[str, Any]]:
    redis = redis_client(s)
    try:
        return [json.loads(a.to_json()) for a in await read_adverts(redis)]
    finally:
        await redis.aclose()


def cmd_runners(a: argparse.Namespace) -> int:
    rows = asyncio.run(runners(settings()))
    out(rows, a.json, "\n".join(f"{r['runner']:40} {','.join(r['classes']):22} "
                                f"{json.dumps(r['capabilities'])}"
                                + (f" measures {json.dumps(r['measures'])}" if r.get("measures") else "")
                                for r in rows) or "no runner is advertising")
    return EXIT_OK


async def export_trees(s: Settings, out_dir: Path) -> dict[str, Any]:
    """The per-KOP trees the treebuilder built for the paper's space, one JSON file per operator."""
    redis = redis_client(s)
    try:
        store = KnowledgeStore(redis)
        knowledge = await store.load(PAPER_SPACE)
        if knowledge is None:
            return {}
        out_dir.mkdir(parents=True, exist_ok=True)
        ops = sorted(knowledge.operators)
        for op in ops:
            raw = await store.tree_json(PAPER_SPACE, op)
            if raw is not None:
                (out_dir / f"{op}.json").write_bytes(raw)
        return {"version": knowledge.version, "space": PAPER_SPACE.fingerprint(), "operators": ops,
                "out": str(out_dir)}
    finally:
        await redis.aclose()


def cmd_trees(a: argparse.Namespace) -> int:
    info = asyncio.run(export_trees(settings(), Path(a.out)))
    if not info:
        print("no trees yet: publish an offline dataset first (falcon publish-offline DIR)", file=sys.stderr)
        return EXIT_FAILED
    out(info, a.json, f"trees v{info['version']} for {len(info['operators'])} operators written to {info['out']}")
    return EXIT_OK


def cmd_profile(a: argparse.Namespace) -> int:
    """The TVM operator profile and KOPs of a model file or zoo model (no stack needed)."""
    from tools.profile import format_profile, profile_report
    if a.list_zoo:
        from tools.zoo import ZOO
        if a.json:
            print(json.dumps([{"name": m.name, "family": m.family, "tiny": m.tiny, "note": m.note}
                              for m in ZOO.values()]))
        else:
            for m in ZOO.values():
                print(f"{m.name:20}{m.family:13}{'tiny  ' if m.tiny else '      '}{m.note}")
        return EXIT_OK
    if not a.model:
        raise ValueError("MODEL is required (or --list-zoo)")
    try:
        rep = profile_report(a.model, a.batch, a.target, a.threshold, a.memory_threshold, not a.static, a.budget_s,
                             a.trust_torch_archive)
    except ValueError as exc:    # ProfilerError, ZooError, ProfileError
        if a.json:
            print(json.dumps({"error": str(exc)}))
        raise
    print(json.dumps(rep) if a.json else format_profile(rep))
    return EXIT_OK


def register(sub: Any) -> None:
    def cmd(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        return command(sub, name, fn, help_)

    c = cmd("publish-offline", cmd_publish_offline, "publish an offline dataset folder to the treebuilder")
    c.add_argument("dir")
    c.add_argument("--no-wait", action="store_true", help="do not wait for the treebuilder to store the tables")
    c.add_argument("--timeout", type=float, default=120.0)
    cmd("runners", cmd_runners, "list the trial runners, the trial classes they serve and what they can apply")
    c = cmd("trees", cmd_trees, "export the treebuilder's per-KOP trees (JSON, one file per operator)")
    c.add_argument("--out", default="trees")
    c = cmd("profile", cmd_profile, "TVM operator profile and KOPs of an ONNX/.pt2 file or a zoo model")
    c.add_argument("model", nargs="?", help="ONNX file, torch.export .pt2 file or zoo model name")
    c.add_argument("--threshold", type=float, default=0.05, help="KOP threshold on time share (paper: 0.05)")
    c.add_argument("--memory-threshold", type=float, default=None, help="KOP threshold on memory share "
                   "(default: --threshold)")
    c.add_argument("--batch", type=int, default=1)
    c.add_argument("--target", choices=("llvm", "cuda"), default="llvm")
    c.add_argument("--static", action="store_true", help="no run: time shares estimated from FLOPs")
    c.add_argument("--budget-s", type=float, default=120.0, help="time limit for the timed runs")
    c.add_argument("--trust-torch-archive", action="store_true",
                   help="allow a .pt2 file (torch.export.load may unpickle its weights: trusted files only)")
    c.add_argument("--list-zoo", action="store_true", help="list the built-in zoo models")
