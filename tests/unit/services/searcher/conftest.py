"""Fixtures of the searcher's unit tests."""

import pytest

from tools import localstack


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server on loopback for the test (the searcher's state store)."""
    port = localstack.free_port()
    proc = localstack.start_redis(port, tmp_path / "redis.log")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)
