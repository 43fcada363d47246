"""Treebuilder service shell: collects the offline dataset from offline-table-published events
into Redis (one key per table, an index, and a version bumped whenever the content changes), and,
once the dataset is quiet, learns the KOP curves and per-KOP trees for the default space, stores
them (``falcon:knowledge:<space>`` and each tree's JSON under ``falcon:trees:<space>:<op>``) with
the dataset version they come from, and publishes ``trees-ready``."""

from __future__ import annotations

import asyncio
import json
import logging

import faust
import msgpack
from redis.asyncio import Redis

from schemas import Event
from services.common.bus import Publisher, Reject, create_app, run_worker, subscribe
from services.common.connections import redis_client
from services.common.falcon_data import VALUE_COLUMN, DataError
from services.common.settings import Settings
from services.common.space import PAPER_SPACE, Space
from services.treebuilder.dataset import OfflineDataset, content_hash
from services.treebuilder.kop_curves import Knowledge

SERVICE = "treebuilder"
KNOWLEDGE = "falcon:knowledge:{}"       # msgpack {"version", "knowledge"} per space fingerprint
TREE_JSON = "falcon:trees:{}:{}"        # JSON export of one operator's tree (with its SVMs)
BUILD_EVERY_S = 2.0
TABLE = "falcon:offline:table:{}:{}"
INDEX = "falcon:offline:index"          # hash: "<kind>:<name>" -> content hash
VERSION = "falcon:offline:version"
log = logging.getLogger("falcon.treebuilder")


class TreebuilderHandlers:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def on_offline_table(self, event: Event, publisher: Publisher) -> None:
        d = event.data
        try:
            await self.store_table(d["kind"], d["name"], d["columns"], d["rows"], d["dataset"])
        except DataError as exc:
            raise Reject(str(exc)) from None

    async def store_table(self, kind: str, name: str, columns: list, rows: list, dataset: str) -> bool:
        """Validate and store one table; bump the dataset version if its content is new."""
        OfflineDataset().add(kind, name, columns, rows)           # parse = validate (DataError)
        digest = content_hash(kind, name, columns, rows)
        if (await self.redis.hget(INDEX, f"{kind}:{name}")) == digest.encode():
            return False                                          # redelivery or unchanged re-publish
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(TABLE.format(kind, name), msgpack.packb({"columns": columns, "rows": rows, "dataset": dataset}))
            pipe.hset(INDEX, f"{kind}:{name}", digest)
            pipe.incr(VERSION)
            await pipe.execute()
        log.info("offline table %s:%s stored (%d rows)", kind, name, len(rows))
        return True

    async def on_search_result(self, event: Event, publisher: Publisher) -> None:
        """Live-measured trials of a finished search join the dataset as a (partial) source table
        of that model over that space, merged with earlier searches of the same model. Replayed
        trials are copies of tables already known (and may be benchmark targets): never learnt."""
        d = event.data
        if event.type != "search-completed" or d.get("backend_kind") != "live" or not d.get("space"):
            return
        space = Space.from_dict(d["space"])
        name = observed_table_name(str(d.get("model") or "model"), space)
        raw = await self.redis.get(TABLE.format("model-table", name))
        known = {} if raw is None else {space.key(dict(zip(space.names, r[:-1]))): r
                                        for r in msgpack.unpackb(raw, raw=False)["rows"]}
        for t in d["trials"]:
            if t["status"] == "ok" and t["value"] is not None:
                cfg = space.canonical(t["config"])
                known[space.key(cfg)] = [*(cfg[k] for k in space.names), float(t["value"])]
        rows = sorted(known.values(), key=lambda r: [str(x) for x in r[:-1]])
        await self.store_table("model-table", name, [*space.names, VALUE_COLUMN], rows, "live-trials")


def observed_table_name(model: str, space: Space) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model)[:60]
    return f"observed-{safe}-{space.fingerprint()[:8]}"


async def build_and_store(redis: Redis, space: Space, publisher: Publisher | None = None) -> Event | None:
    """Build the knowledge for ``space`` from the stored dataset if its version changed; store it
    and announce it. Returns the trees-ready event (None when there was nothing new)."""
    raw = await redis.get(VERSION)
    if raw is None:
        return None
    version = int(raw)
    key = KNOWLEDGE.format(space.fingerprint())
    stored = await redis.get(key)
    if stored is not None and msgpack.unpackb(stored, raw=False)["version"] == version:
        return None
    dataset = await load_dataset(redis)
    knowledge = await asyncio.to_thread(Knowledge.build, dataset, space)
    blob = await asyncio.to_thread(lambda: msgpack.packb({"version": version, "knowledge": knowledge.to_dict()}))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(key, blob)
        for op in knowledge.operators:
            pipe.set(TREE_JSON.format(space.fingerprint(), op), json.dumps(knowledge.tree(op).to_json()))
        await pipe.execute()
    event = Event("trees-ready", "", {
        "version": version, "space_key": space.fingerprint(), "redis_key": key, "sources": sorted(knowledge.sources),
        "operators": [{"op": op, "kept": list(oc.kept), "importance": dict(oc.importance), "shapes": dict(oc.shapes),
                       "tree_height": knowledge.tree(op).height, "tree_leaves": knowledge.tree(op).leaves}
                      for op, oc in sorted(knowledge.operators.items())]}, SERVICE)
    if publisher is not None:
        await publisher.publish(event)
    log.info("knowledge v%d for space %s: %d operators, %d source models", version, space.fingerprint(),
             len(knowledge.operators), len(knowledge.sources))
    return event


async def load_knowledge(redis: Redis, space: Space, version: int) -> Knowledge | None:
    """The stored knowledge for ``space`` if it was built from dataset ``version``."""
    stored = await redis.get(KNOWLEDGE.format(space.fingerprint()))
    if stored is None:
        return None
    d = msgpack.unpackb(stored, raw=False)
    return Knowledge.from_dict(d["knowledge"]) if d["version"] == version else None


async def load_dataset(redis: Redis) -> OfflineDataset:
    """The whole offline dataset as stored by the treebuilder."""
    ds = OfflineDataset()
    for entry in await redis.hkeys(INDEX):
        kind, name = entry.decode().split(":", 1)
        raw = await redis.get(TABLE.format(kind, name))
        if raw is not None:
            t = msgpack.unpackb(raw, raw=False)
            ds.add(kind, name, t["columns"], t["rows"])
    return ds


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings)
    redis = redis_client(settings)
    handlers = TreebuilderHandlers(redis)
    publisher = subscribe(app, settings, "offline-data", handlers.on_offline_table)
    subscribe(app, settings, "search-results", handlers.on_search_result)

    seen: dict[str, bytes | None] = {"version": None}

    @app.timer(interval=BUILD_EVERY_S)
    async def build_knowledge() -> None:   # noqa: ANN202
        version = await redis.get(VERSION)
        if version != seen["version"]:     # tables are still arriving: wait for a quiet tick
            seen["version"] = version
            return
        try:
            await build_and_store(redis, PAPER_SPACE, publisher)
        except Exception:  # noqa: BLE001 - a failed build is retried at the next tick
            log.exception("building the knowledge failed; retrying")
    return app


def main() -> None:
    settings = Settings.from_env()
    run_worker(build(settings), settings)
