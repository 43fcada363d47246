"""Processes a served trial starts (the Triton server, perf_analyzer) and how none outlives it.

Three guards: each runs in a process group of its own, killed as a group when the trial ends;
each asks the kernel for a signal when the runner dies (``setpriv --pdeathsig``: SIGTERM for
Triton, which then unloads the model and stops its Python-backend stubs; SIGKILL for
perf_analyzer), so ``kill -9`` of the runner takes them down; and every group is recorded in a directory, so a runner starting on the machine kills
the groups a dead runner left (a check at start, :func:`reap_leftovers`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

from services.platform.processes import alive

MARKERS = ("tritonserver", "perf_analyzer", "triton_python_backend_stub")
ACTIVE: set[int] = set()      # groups this process runs now (never reaped as leftovers)


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` whose command line is one of ours (so a reused
    group id is never killed)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] == "Z" or int(fields[2]) != pgid:
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if any(m in cmd for m in MARKERS):
            out.append(int(d.name))
    return out


STUB_DIR = re.compile(r"(/tmp/folder[A-Za-z0-9]{6})/")   # Triton's Python backend copies each model there


def stub_dirs(pids: list[int]) -> set[str]:
    """The scratch directories of Triton's Python backend stubs among ``pids`` (Triton deletes
    them when it unloads a model, never when it is killed)."""
    out: set[str] = set()
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "triton_python_backend_stub" in cmd:
            out.update(STUB_DIR.findall(cmd))
    return out


def kill_group(pgid: int, grace_s: float = 2.0) -> None:
    """SIGTERM the group (Triton unloads the model and stops its stubs), SIGKILL what is left;
    then delete the stubs' scratch directories."""
    dirs = stub_dirs(group_members(pgid))
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 1.0)):
        if not group_members(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            break
        end = time.monotonic() + wait
        while time.monotonic() < end and group_members(pgid):
            time.sleep(0.05)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Group:
    """A process started in a group of its own and recorded in ``registry``."""
    proc: subprocess.Popen
    record: Path

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        kill_group(self.pgid)
        ACTIVE.discard(self.pgid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.record.unlink(missing_ok=True)


def start_group(argv: Sequence[str], registry: Path, env: dict[str, str], stdout: IO | int, stderr: IO | int,
                cores: Sequence[int] | None = None, pdeathsig: str = "KILL",
                cleanup: Sequence[Path] = ()) -> Group:
    """Start ``argv`` as the leader of a new process group, pinned to ``cores``, signalled with
    ``pdeathsig`` when the runner dies; recorded in ``registry`` (with paths to delete when a
    later runner reaps it) until :meth:`Group.stop`."""
    pre = ["setpriv", f"--pdeathsig={pdeathsig}", "--"]
    if cores:
        pre += ["taskset", "-c", ",".join(str(c) for c in cores)]
    proc = subprocess.Popen([*pre, *argv], env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    ACTIVE.add(proc.pid)
    registry.mkdir(parents=True, exist_ok=True)
    record = registry / f"{proc.pid}.json"
    tmp = registry / f".{proc.pid}.tmp"
    tmp.write_text(json.dumps({"pgid": proc.pid, "runner_pid": os.getpid(), "argv0": str(argv[0]),
                               "started": time.time(), "cleanup": [str(p) for p in cleanup]}))
    tmp.replace(record)             # whole or absent, for a reaper reading it now
    return Group(proc, record)


def reap_leftovers(registry: Path) -> list[int]:
    """Kill the process groups a dead runner left behind (its record's runner is gone) and delete
    their scratch directories; returns the groups killed. Groups of live runners are left alone."""
    killed = []
    if not registry.is_dir():
        return killed
    for rec in registry.glob("*.json"):
        try:
            info = json.loads(rec.read_text())
            pgid, runner = int(info["pgid"]), int(info["runner_pid"])
        except (OSError, ValueError, KeyError):
            rec.unlink(missing_ok=True)
            continue
        if pgid in ACTIVE or (runner != os.getpid() and alive(runner)):
            continue
        if group_members(pgid):
            kill_group(pgid)
            killed.append(pgid)
        for path in info.get("cleanup", ()):
            shutil.rmtree(path, ignore_errors=True)
        rec.unlink(missing_ok=True)
    return killed
