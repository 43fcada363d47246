"""One load level measured by perf_analyzer against a running Triton (the client side of a
served trial): concurrency C, requests of ``client_batch`` samples over HTTP, p99 latency and
Triton's server-side split (queue / compute) from its CSV (``--verbose-csv``)."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from services.trial_runner.peak_load import LoadError, LoadPoint
from services.trial_runner.procs import start_group
from services.trial_runner.serving_env import ServingEnv

US = 1000.0    # perf_analyzer reports microseconds


def perf_error(log: str) -> str:
    """The telling line of perf_analyzer's output when it failed (the server's error, not the
    traceback lines around it), one line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    telling = [ln for ln in lines if re.search(r"error|failed|unable|unavailable", ln, re.I)
               and not ln.startswith(("File ", "/"))]
    return ((telling or lines or ["no output"])[-1])[:300]


def parse_perf_csv(text: str) -> LoadPoint:
    """The first row of perf_analyzer's ``-f out.csv --verbose-csv`` as a :class:`LoadPoint`."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise ValueError("perf_analyzer wrote no measurement")
    r = rows[0]

    def ms(key: str) -> float:
        return float(r[key]) / US
    split = {"client_send": ms("Client Send"), "network_and_server": ms("Network+Server Send/Recv"),
             "queue": ms("Server Queue"), "compute_input": ms("Server Compute Input"),
             "compute_infer": ms("Server Compute Infer"), "compute_output": ms("Server Compute Output"),
             "client_recv": ms("Client Recv")}
    return LoadPoint(int(r["Concurrency"]), float(r["Inferences/Second"]), ms("p50 latency"), ms("p99 latency"),
                     p90_ms=ms("p90 latency"), p95_ms=ms("p95 latency"), queue_ms=split["queue"],
                     compute_ms=split["compute_input"] + split["compute_infer"] + split["compute_output"],
                     split_ms=split)


@dataclass
class PerfAnalyzer:
    env: ServingEnv
    model: str
    url: str                     # host:port of Triton's HTTP endpoint
    registry: Path
    cores: Sequence[int] = ()
    client_batch: int = 1
    interval_ms: int = 800       # a measurement window
    stability_pct: int = 25      # max/min of the last 3 windows, throughput and p99
    max_trials: int = 5          # windows before giving up on stability
    timeout_s: float = 60.0

    def command(self, concurrency: int, out: Path, request_count: int | None = None) -> list[str]:
        cmd = [str(self.env.perf_analyzer), "-m", self.model, "-u", self.url, "-i", "http",
               "-b", str(self.client_batch),
               "--concurrency-range", str(concurrency), "--percentile=99", "-f", str(out), "--verbose-csv",
               # zeros: valid for every input (random int64 would index past a token embedding)
               "--input-data", "zero"]
        if request_count:
            return [*cmd, "--request-count", str(request_count)]
        return [*cmd, "--measurement-interval", str(self.interval_ms), "-s", str(self.stability_pct),
                "-r", str(self.max_trials)]

    def _run(self, cmd: list[str], out: Path) -> tuple[int, str, str]:
        with tempfile.TemporaryFile("w+") as log:
            group = start_group(cmd, self.registry, self.env.env(), log, subprocess.STDOUT, self.cores)
            try:
                rc = group.proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                group.stop()
            log.seek(0)
            text = log.read()
        if rc is None:
            raise LoadError(f"perf_analyzer did not finish within {self.timeout_s:.0f} s")
        return rc, text, out.read_text() if out.is_file() else ""

    def warm_up(self, requests: int = 20) -> None:
        """Send ``requests`` at concurrency 1 and measure nothing: the backend's first batches
        (session arenas, the stub's first calls) are paid before the sweep. LoadError if it fails."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "warmup.csv"
            rc, log, _ = self._run(self.command(1, out, request_count=requests), out)
        if rc != 0:
            raise LoadError(f"perf_analyzer exit {rc}: {perf_error(log)}")

    def measure(self, concurrency: int, rps_hint: float | None = None) -> tuple[LoadPoint, bool]:
        """Measure ``concurrency``: time windows until throughput and p99 are stable; where they
        do not settle within ``max_trials`` windows (a shared machine), one count-based
        measurement of about as many requests. Returns (point, stable)."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "pa.csv"
            rc, log, text = self._run(self.command(concurrency, out), out)
            stable = True
            if rc != 0 and "stable measurement" in log:
                stable = False
                n = max(50, int((rps_hint or 50.0) * self.interval_ms / 1000 * 3 / self.client_batch))
                out.unlink(missing_ok=True)
                rc, log, text = self._run(self.command(concurrency, out, request_count=n), out)
            if rc != 0 or not text:
                raise LoadError(f"perf_analyzer failed at concurrency {concurrency} (exit {rc}): {perf_error(log)}")
        return parse_perf_csv(text), stable
