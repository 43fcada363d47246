"""falcon down stops the stack's processes side by side: each gets SIGTERM at once and its own
grace before SIGKILL, so stopping N services takes about the slowest one's time, not their sum."""

import subprocess
import time

from services.platform.processes import alive
from tools import localstack
from tools.localstack import StackInfo


def ignores_sigterm() -> subprocess.Popen:
    p = subprocess.Popen(["bash", "-c", "trap '' TERM; echo ready; while true; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"         # the trap is set
    return p


def test_processes_are_stopped_side_by_side_each_after_its_own_grace():
    stubborn = [ignores_sigterm() for _ in range(3)]
    polite = subprocess.Popen(["sleep", "60"])
    try:
        t0 = time.monotonic()
        localstack._kill_all({**{p.pid: 1.0 for p in stubborn}, polite.pid: 5.0})
        took = time.monotonic() - t0
        assert not any(alive(p.pid) for p in [*stubborn, polite])
        assert 1.0 <= took < 2.5, took          # the three 1 s graces ran at once, not one after the other
        assert polite.wait(5) == -15 and all(p.wait(5) == -9 for p in stubborn)   # SIGTERM, SIGKILL
    finally:
        for p in [*stubborn, polite]:
            p.kill()
            p.wait()


def test_down_stops_the_services_before_the_archiver_and_the_broker(tmp_path):
    procs = {name: subprocess.Popen(["sleep", "60"]) for name in ("searcher-0", "trial_runner-0", "archiver", "tansu")}
    try:
        StackInfo(1, 2, pids={n: p.pid for n, p in procs.items()}, home=str(tmp_path)).save()
        assert localstack.down(tmp_path) == ["searcher-0", "trial_runner-0", "archiver", "tansu"]
        assert not any(alive(p.pid) for p in procs.values())
        assert not (tmp_path / "stack.json").exists() and (tmp_path / "stack.last.json").exists()
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
