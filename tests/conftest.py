"""Real infrastructure for integration and e2e tests: a tansu broker and a redis-server on
free loopback ports, started and stopped by the tests themselves (fresh per test module), and
the services as real processes started through the same code as ``falcon up``."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from services.platform.bus import ensure_topics
from services.platform.settings import Settings
from tools import localstack


INFRA_PROCS: dict[str, subprocess.Popen] = {}   # "broker"/"redis" of the current module's infra


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    logs = tmp_path_factory.mktemp("infra")
    bport, rport = localstack.free_port(), localstack.free_port()
    broker = localstack.start_broker(bport, logs / "tansu.log")
    redis = localstack.start_redis(rport, logs / "redis.log")
    settings = replace(Settings(), broker=f"127.0.0.1:{bport}", redis_url=f"redis://127.0.0.1:{rport}/0",
                       session_timeout_s=2.0, heartbeat_s=0.2, trial_lease_s=6.0, handler_retries=3)
    asyncio.run(ensure_topics(settings))
    INFRA_PROCS.update(broker=broker, redis=redis)
    yield settings
    for p in (broker, redis):
        p.terminate()
        p.wait(10)


@pytest.fixture(scope="module")
def start_services(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., list[subprocess.Popen]]]:
    """start_services("trial_runner", count=2) -> the processes, once every one is ready."""
    logs = tmp_path_factory.mktemp("services")
    procs: list[subprocess.Popen] = []

    def start(name: str, count: int = 1, settings: Settings | None = None) -> list[subprocess.Popen]:
        started, paths = [], []
        for _ in range(count):
            log = logs / f"{name}-{len(procs)}.log"
            p = localstack.start_service(name, settings or infra, log)
            procs.append(p)
            started.append(p)
            paths.append(log)
        localstack.wait_ready(paths, started, timeout_s=60)
        return started

    start.logs = logs  # type: ignore[attr-defined]
    yield start
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def log_text(logs: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(logs.glob("*.log")))
