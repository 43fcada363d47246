"""Every command, with the stack down, says so in one line naming the address it tried and what to
do, exits 3, and prints no traceback nor asyncio noise (run as a user runs it: a process)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import PROFILES, TARGETS
from tools import localstack
from tools.cli import main, parser

REPO = Path(__file__).resolve().parents[3]
TABLE = str(TARGETS / "reg-gru.csv")
NO_STACK = {"up", "down", "demo", "profile"}       # these start the stack, or need none
ARGS = {
    "status": [], "runners": [], "dead-letters": [], "rebuild": [], "trees": [], "ui": [],
    "report": ["some-search"], "watch": ["some-search"], "audit": ["some-search"],
    "export": ["some-search", "--format", "k8s", "--load", "100"],
    "publish-offline": [str(REPO / "bench" / "live-offline")],
    "submit": ["gru", "--replay-table", TABLE, "--profile", str(PROFILES / "gru" / "operators.csv")],
    "calibrate": ["--space", str(REPO / "deploy" / "config" / "live-cpu-space.yaml"), "--operators", "dense",
                  "--points", "4", "--shapes", "1", "--yes"],
}


def commands() -> list[str]:
    sub = next(a for a in parser()._actions if a.dest == "command")
    return sorted(set(sub.choices) - NO_STACK)


def test_every_command_that_needs_the_stack_is_covered():
    assert set(commands()) == set(ARGS), "add the new command to ARGS"


def falcon(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    env.update(FALCON_HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=REPO)


def stopped_stack(home: Path, redis_port: int, broker_port: int) -> None:
    """What falcon up then falcon down leave behind."""
    home.mkdir(parents=True, exist_ok=True)
    localstack.StackInfo(broker_port, redis_port, home=str(home)).save()
    localstack.down(home)
    assert not (home / "stack.json").exists()


def assert_one_line(p: subprocess.CompletedProcess, cmd: str, address: str) -> None:
    err = p.stderr.strip()
    assert p.returncode == 3, (cmd, p.returncode, err)
    assert "Traceback" not in err and "Unclosed" not in err and "Exception ignored" not in err, (cmd, err)
    last = err.splitlines()[-1]
    assert last.startswith(f"falcon {cmd}: cannot reach the stack") and address in last and "falcon up" in last, \
        (cmd, err)
    assert len(err.splitlines()) <= 2, (cmd, err)     # calibrate may warn first that no runner advertises


def test_with_nothing_running_every_command_names_the_stopped_stack_s_redis(tmp_path):
    redis_port, broker_port = localstack.free_port(), localstack.free_port()
    stopped_stack(tmp_path, redis_port, broker_port)
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:          # the commands' processes side by side
        done = dict(zip(commands(), pool.map(lambda cmd: falcon(tmp_path, cmd, *ARGS[cmd]), commands())))
    for cmd, p in done.items():
        assert_one_line(p, cmd, f"127.0.0.1:{redis_port}")


def test_without_falcon_up_ever_the_default_ports_of_falcon_up_are_named(tmp_path):
    p = falcon(tmp_path, "status")
    if p.returncode != 3:
        pytest.skip("something listens on falcon up's default Redis port on this machine")
    assert_one_line(p, "status", f"127.0.0.1:{localstack.REDIS_PORT}")


def test_with_redis_up_and_the_broker_down_the_broker_s_address_is_named(tmp_path):
    redis_port, broker_port = localstack.free_port(), localstack.free_port()
    proc = localstack.start_redis(redis_port, tmp_path / "redis.log")
    try:
        stopped_stack(tmp_path / "home", redis_port, broker_port)
        for cmd in ("submit", "dead-letters", "audit", "status"):
            assert_one_line(falcon(tmp_path / "home", cmd, *ARGS[cmd]), cmd, f"127.0.0.1:{broker_port}")
    finally:
        proc.terminate()
        proc.wait(10)


class ClosedPipe:
    """stdout whose reader has gone (``falcon status | head -3`` once head has its lines)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_output_cut_short_by_the_reader_is_no_error(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["profile", "--list-zoo"]) == 0
    assert capsys.readouterr().err == ""
