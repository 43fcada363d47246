"""A Redis lock shared by the services: SET NX with an expiry (a dead holder frees it by
itself) and a compare-and-delete release (a holder never frees someone else's lock)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator

from redis.asyncio import Redis

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@asynccontextmanager
async def redis_lock(redis: Redis, key: str, ttl_s: float) -> AsyncIterator[None]:
    token, delay = uuid.uuid4().hex, 0.02
    while not await redis.set(key, token, nx=True, px=int(ttl_s * 1000)):
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    try:
        yield
    finally:
        await redis.eval(_RELEASE, 1, key, token)
