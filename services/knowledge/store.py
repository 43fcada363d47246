"""Redis repository of the offline dataset and the knowledge built from it, per space.

The treebuilder writes (tables, the dataset version, knowledge per space, the spaces searches
asked for); the searcher, the CLI and the report read. Keys: :mod:`services.platform.redis_keys`."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from redis.asyncio import Redis

from services.platform.redis_keys import (
    KNOWLEDGE,
    KNOWLEDGE_SPACES,
    KNOWLEDGE_TREE_JSON,
    OFFLINE_INDEX,
    OFFLINE_TABLE,
    OFFLINE_VERSION,
)
from services.domain.space import Space
from services.knowledge.dataset import OfflineDataset, content_hash
from services.knowledge.knowledge import Knowledge


class KnowledgeStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    # -- the offline dataset --------------------------------------------------------------------
    async def dataset_version(self) -> int | None:
        """None until a first table was stored."""
        raw = await self.redis.get(OFFLINE_VERSION)
        return None if raw is None else int(raw)

    async def store_table(self, kind: str, name: str, columns: list, rows: list, dataset: str) -> bool:
        """Validate and store one table; bump the dataset version if its content is new.
        Returns False for a redelivery or an unchanged re-publish. DataError if it is invalid."""
        OfflineDataset().add(kind, name, columns, rows)           # parse = validate (DataError)
        digest = content_hash(kind, name, columns, rows)
        if (await self.redis.hget(OFFLINE_INDEX, f"{kind}:{name}")) == digest.encode():
            return False
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(OFFLINE_TABLE.format(kind, name),
                     msgpack.packb({"columns": columns, "rows": rows, "dataset": dataset}))
            pipe.hset(OFFLINE_INDEX, f"{kind}:{name}", digest)
            pipe.incr(OFFLINE_VERSION)
            await pipe.execute()
        return True

    async def table_rows(self, kind: str, name: str) -> list[list[Any]] | None:
        raw = await self.redis.get(OFFLINE_TABLE.format(kind, name))
        return None if raw is None else msgpack.unpackb(raw, raw=False)["rows"]

    async def table_names(self) -> set[str]:
        """'<kind>:<name>' of every stored table."""
        return {k.decode() for k in await self.redis.hkeys(OFFLINE_INDEX)}

    async def load_dataset(self) -> OfflineDataset:
        ds = OfflineDataset()
        for entry in await self.table_names():
            kind, name = entry.split(":", 1)
            raw = await self.redis.get(OFFLINE_TABLE.format(kind, name))
            if raw is not None:
                t = msgpack.unpackb(raw, raw=False)
                ds.add(kind, name, t["columns"], t["rows"])
        return ds

    # -- knowledge per space --------------------------------------------------------------------
    async def register_space(self, space: Space) -> bool:
        """Remember that searches use ``space`` (the treebuilder keeps its knowledge current)."""
        return bool(await self.redis.hsetnx(KNOWLEDGE_SPACES, space.fingerprint(), json.dumps(space.to_dict())))

    async def spaces(self) -> list[Space]:
        return [Space.from_dict(json.loads(v)) for v in (await self.redis.hgetall(KNOWLEDGE_SPACES)).values()]

    async def stored_version(self, space: Space) -> int | None:
        """The dataset version the stored knowledge for ``space`` was built from."""
        raw = await self.redis.get(KNOWLEDGE.format(space.fingerprint()))
        return None if raw is None else int(msgpack.unpackb(raw, raw=False)["version"])

    async def load(self, space: Space) -> Knowledge | None:
        raw = await self.redis.get(KNOWLEDGE.format(space.fingerprint()))
        if raw is None:
            return None
        d = msgpack.unpackb(raw, raw=False)
        k = Knowledge.from_dict(d["knowledge"])
        k.version = int(d["version"])
        return k

    async def save(self, knowledge: Knowledge, version: int, blob: bytes | None = None) -> str:
        """Store the knowledge and each tree's JSON export; returns the knowledge's key."""
        fp = knowledge.space.fingerprint()
        key = KNOWLEDGE.format(fp)
        blob = blob or msgpack.packb({"version": version, "knowledge": knowledge.to_dict()})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, blob)
            for op in knowledge.operators:
                pipe.set(KNOWLEDGE_TREE_JSON.format(fp, op), json.dumps(knowledge.tree(op).to_json()))
            await pipe.execute()
        return key

    async def tree_json(self, space: Space, op: str) -> bytes | None:
        return await self.redis.get(KNOWLEDGE_TREE_JSON.format(space.fingerprint(), op))
