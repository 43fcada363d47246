"""Treebuilder service shell: collects the offline dataset from offline-table-published events
into Redis (one key per table, an index, and a version bumped whenever the content changes).
Learning KOP curves and trees from it is the search issue's work; this shell is where it plugs in."""

from __future__ import annotations

import logging

import faust
import msgpack
from redis.asyncio import Redis

from schemas import Event
from services.common.bus import Publisher, Reject, create_app, run_worker, subscribe
from services.common.falcon_data import DataError
from services.common.connections import redis_client
from services.common.settings import Settings
from services.treebuilder.dataset import OfflineDataset, content_hash

SERVICE = "treebuilder"
TABLE = "falcon:offline:table:{}:{}"
INDEX = "falcon:offline:index"          # hash: "<kind>:<name>" -> content hash
VERSION = "falcon:offline:version"
log = logging.getLogger("falcon.treebuilder")


class TreebuilderHandlers:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def on_offline_table(self, event: Event, publisher: Publisher) -> None:
        d = event.data
        kind, name, columns, rows = d["kind"], d["name"], d["columns"], d["rows"]
        try:
            OfflineDataset().add(kind, name, columns, rows)       # parse = validate
        except DataError as exc:
            raise Reject(str(exc)) from None
        digest = content_hash(kind, name, columns, rows)
        if (await self.redis.hget(INDEX, f"{kind}:{name}")) == digest.encode():
            return                                                # redelivery or unchanged re-publish
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(TABLE.format(kind, name), msgpack.packb({"columns": columns, "rows": rows,
                                                              "dataset": d["dataset"]}))
            pipe.hset(INDEX, f"{kind}:{name}", digest)
            pipe.incr(VERSION)
            await pipe.execute()
        log.info("offline table %s:%s stored (%d rows)", kind, name, len(rows))


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
    handlers = TreebuilderHandlers(redis_client(settings))
    subscribe(app, settings, "offline-data", handlers.on_offline_table)
    return app


def main() -> None:
    settings = Settings.from_env()
    run_worker(build(settings), settings)
