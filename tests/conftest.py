"""Real infrastructure for integration and e2e tests: a tansu broker and a redis-server on
free loopback ports, started and stopped by the tests themselves (fresh per test module), and
the services as real processes started through the same code as ``falcon up``."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import pytest

from services.platform.bus import ensure_topics
from services.platform.settings import Settings
from tools import localstack


INFRA_PROCS: dict[str, subprocess.Popen] = {}   # "broker"/"redis" of the current module's infra
KEPT_LOGS = Path(os.environ.get("FALCON_TEST_LOGS") or Path(__file__).resolve().parents[1] / "test-logs")
TAIL_LINES = 15


def keep_logs_on_failure(request: pytest.FixtureRequest, folder: Path) -> None:
    """Register a stack's folder (its logs, its event archive) with the test module: when one of
    the module's tests fails, the folder's logs and archive are copied to ``test-logs/<test>/``
    (``$FALCON_TEST_LOGS``) and the failure report shows where, with each log's last lines."""
    module = request.node.getparent(pytest.Module) or request.node
    folders = getattr(module, "falcon_log_folders", [])
    module.falcon_log_folders = [*folders, Path(folder)]   # type: ignore[attr-defined]


def _kept_files(folder: Path) -> list[Path]:
    """The logs and the archive (events.sqlite and its WAL) under a stack's folder; not its
    caches or Redis data."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and (p.suffix == ".log" or ".sqlite" in p.name))


def keep_logs(nodeid: str, folders: list[Path]) -> tuple[Path, str]:
    """Copy the folders' logs and archives to KEPT_LOGS/<the test>/; (that folder, the logs' tails)."""
    dest = KEPT_LOGS / "".join(c if c.isalnum() or c in "._-" else "_" for c in nodeid)[-150:]
    tails = []
    for i, folder in enumerate(folders):
        for f in _kept_files(folder):
            target = dest / f"{i}-{folder.name}" / f.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
            if f.suffix == ".log":
                lines = f.read_text(errors="replace").splitlines()[-TAIL_LINES:]
                tails.append(f"--- {target.relative_to(dest)} (last {len(lines)} lines)\n" + "\n".join(lines))
    return dest, "\n".join(tails)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    report = yield
    module = item.getparent(pytest.Module)
    folders = getattr(module, "falcon_log_folders", None)
    if report.failed and folders:
        try:
            dest, tails = keep_logs(item.nodeid, folders)
            report.sections.append(("falcon stack logs", f"kept in {dest}\n{tails}"))
        except OSError as exc:            # keeping them must not hide the failure itself
            report.sections.append(("falcon stack logs", f"could not be kept: {exc}"))
    return report


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Settings]:
    logs = tmp_path_factory.mktemp("infra")
    keep_logs_on_failure(request, logs)
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
def start_services(infra: Settings, tmp_path_factory: pytest.TempPathFactory,
                   request: pytest.FixtureRequest) -> Iterator[Callable[..., list[subprocess.Popen]]]:
    """start_services("trial_runner", count=2) -> the processes, once every one is ready.
    ``wait=False``: return at once; the next call that waits (the default) waits for these too, so
    a module's services start side by side instead of one after the other."""
    logs = tmp_path_factory.mktemp("services")
    keep_logs_on_failure(request, logs)
    procs: list[subprocess.Popen] = []
    starting: list[tuple[Path, subprocess.Popen]] = []

    def start(name: str, count: int = 1, settings: Settings | None = None,
              wait: bool = True) -> list[subprocess.Popen]:
        started = []
        for _ in range(count):
            log = logs / f"{name}-{len(procs)}.log"
            p = localstack.start_service(name, settings or infra, log)
            procs.append(p)
            started.append(p)
            starting.append((log, p))
        if wait:
            localstack.wait_ready([log for log, _ in starting], [p for _, p in starting], timeout_s=60)
            starting.clear()
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
