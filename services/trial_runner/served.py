"""A served trial: deploy the model in Triton with the configuration applied, stress it with
perf_analyzer raising the load until p99 passes the SLO, and report the peak throughput within it.

The deployment is the model repository entry ``falcon export`` ships (:mod:`model_repo`), served
by Triton itself (nvidia-pytriton's bundled ``tritonserver``, Python backend running ONNX
Runtime), so what a trial measures is what the export deploys.

The I/O shell around two pure parts: :mod:`services.domain.serving` (knobs -> Triton/ORT
settings) and :mod:`services.trial_runner.peak_load` (which loads to measure). Wall time is
bounded (start, each load level and the whole sweep have limits) and reported split into start
(launch to model ready), warm-up and sweep. Every failure is a :class:`ServedTrialFailed` with a
one-line reason, and the server is stopped whatever happens (see :mod:`procs` for kill -9)."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from services.domain.serving import ServingConfig
from services.platform.ports import free_port
from services.trial_runner.model_repo import ModelIOError, backend_dir, write_entry
from services.trial_runner.peak_load import LoadError, LoadPoint, find_peak
from services.trial_runner.perf import PerfAnalyzer
from services.trial_runner.procs import Group, start_group
from services.trial_runner.serving_env import TRITON_VERSION, ServingEnv

MODEL_NAME = "model"
EXIT_TIMEOUT_S = 3          # Triton's own wait for in-flight requests at shutdown


class ServedTrialFailed(RuntimeError):
    """The trial could not give a peak: the reason is the message (one line)."""


@dataclass
class ServedOptions:
    slo_ms: float = 100.0
    start_timeout_s: float = 60.0       # launch -> model ready
    sweep_timeout_s: float = 45.0       # no new load level is started after this
    max_concurrency: int = 64
    max_levels: int = 10
    interval_ms: int = 800
    stability_pct: int = 25
    max_trials: int = 5
    remeasure_peak: bool = True


@dataclass
class ServedMeasurement:
    peak: LoadPoint
    curve: list[LoadPoint]
    stop: str
    stability_cv: float | None
    wall_s: dict[str, float]
    unstable_levels: list[int] = field(default_factory=list)
    peak_measurements: list[float] = field(default_factory=list)


def batch_refusal(model: Path, max_batch_size: int) -> str | None:
    """Why Triton's batcher cannot serve ``model`` at ``max_batch_size`` (a first dimension fixed
    at another size); None when it can. Read from the ONNX graph, before anything starts."""
    import onnx
    graph = onnx.load(str(model), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    for i in graph.input:
        if i.name in inits:
            continue
        dims = i.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and (dims[0].dim_value != 1 or max_batch_size > 1):
            return (f"the model's batch dimension is fixed at {dims[0].dim_value} (input {i.name}): batch size "
                    f"{max_batch_size} cannot be served by Triton's dynamic batcher (export it with a dynamic "
                    f"first dimension)")
    return None


def one_line(text: str, limit: int = 400) -> str:
    return " | ".join(ln.strip() for ln in str(text).splitlines() if ln.strip())[:limit]


def _log_line(line: str) -> str:
    """One of Triton's log lines as a reason: its message without the log prefix, the Python
    traceback it embeds (escaped newlines), and the trial's scratch path."""
    msg = line.split("] ", 1)[-1].split("\\n")[0].strip().strip('"')
    return one_line(re.sub(r"/\S*/repo/" + MODEL_NAME + r"/1/", "", msg))


def _tail_reason(server_log: Path) -> str:
    """The server's own account of why it stopped: the model's load error (the Python model's
    exception where it raised one), else Triton's last error line."""
    lines = server_log.read_text(errors="replace").splitlines() if server_log.is_file() else []
    for ln in lines:                         # e.g. "failed to load 'model' version 1: ... Error: ..."
        if "failed to load" in ln or ("Stub process" in ln and "error" in ln.lower()):
            return _log_line(ln)
    errors = [ln for ln in lines if ln.startswith("E") or "Error" in ln or "error" in ln]
    return _log_line((errors or lines or ["no output"])[-1])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready", timeout=1.0) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ServedTrial:
    def __init__(self, env: ServingEnv, state_dir: Path, model: Path, config: ServingConfig,
                 serving_cores: Sequence[int], client_cores: Sequence[int], options: ServedOptions) -> None:
        self.env, self.model, self.config, self.opts = env, model, config, options
        self.serving_cores, self.client_cores = list(serving_cores), list(client_cores)
        self.registry = state_dir / "groups"
        self.dir = state_dir / "trials" / uuid.uuid4().hex[:12]
        self.server: Group | None = None
        # scratch (TMPDIR of the server and its stubs), deleted with the trial
        self.workspace = Path(tempfile.mkdtemp(prefix="falcon-served-"))

    def _start(self) -> int:
        """Write the model repository entry (the one ``falcon export`` ships) and start Triton on
        it; returns its HTTP port once the model is ready."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            write_entry(self.dir / "repo", MODEL_NAME, self.model, self.config)
        except ModelIOError as exc:
            raise ServedTrialFailed(str(exc)) from None
        try:
            backends = backend_dir(self.env.site, self.env.python_version, self.registry.parent / "triton-backends")
        except OSError as exc:
            raise ServedTrialFailed(f"the Triton server cannot be laid out: {exc}") from None
        http = free_port()
        argv = [str(self.env.tritonserver), f"--model-repository={self.dir / 'repo'}",
                f"--backend-directory={backends}", "--http-address=127.0.0.1", f"--http-port={http}",
                "--allow-grpc=false", "--allow-metrics=false", "--exit-on-error=true", "--log-verbose=0",
                "--strict-model-config=true", f"--exit-timeout-secs={EXIT_TIMEOUT_S}"]
        out = (self.dir / "serve.log").open("w")
        try:
            # TMPDIR: the Python backend's copies of the model (/tmp/folder*) land in the trial's scratch
            # space, deleted after it; SIGTERM when the runner dies (Triton then unloads and exits)
            self.server = start_group(argv, self.registry, self.env.env(TMPDIR=str(self.workspace)), out,
                                      subprocess.STDOUT, self.serving_cores, pdeathsig="TERM",
                                      cleanup=[self.dir, self.workspace])
        finally:
            out.close()
        end = time.monotonic() + self.opts.start_timeout_s
        while time.monotonic() < end:
            if self.server.proc.poll() is not None:
                raise ServedTrialFailed(f"the Triton server did not start (exit {self.server.proc.returncode}): "
                                        f"{_tail_reason(self.dir / 'serve.log')}")
            if _ready(http):
                return http
            time.sleep(0.2)
        raise ServedTrialFailed(f"the Triton server did not get the model ready within "
                                f"{self.opts.start_timeout_s:.0f} s: {_tail_reason(self.dir / 'serve.log')}")

    def _alive_or_fail(self) -> None:
        assert self.server is not None
        if self.server.proc.poll() is not None:
            raise LoadError(f"the Triton server died under load (exit {self.server.proc.returncode}): "
                            f"{_tail_reason(self.dir / 'serve.log')}")

    def run(self) -> ServedMeasurement:
        t0 = time.monotonic()
        try:
            port = self._start()
            t_ready = time.monotonic()
            pa = PerfAnalyzer(self.env, MODEL_NAME, f"127.0.0.1:{port}", self.registry,
                              self.client_cores, self.config.client_batch, self.opts.interval_ms,
                              self.opts.stability_pct, self.opts.max_trials)
            try:
                pa.warm_up()
            except LoadError as exc:
                self._alive_or_fail_as_trial()
                raise ServedTrialFailed(f"warm-up failed: {exc}") from None
            t_warm = time.monotonic()
            sweep_end = t_warm + self.opts.sweep_timeout_s
            unstable: list[int] = []
            hint: dict[str, float] = {}

            def measure(c: int) -> LoadPoint:
                self._alive_or_fail()
                if time.monotonic() > sweep_end:
                    raise LoadError(f"the sweep ran out of its {self.opts.sweep_timeout_s:.0f} s")
                try:
                    point, stable = pa.measure(c, hint.get("rps"))
                except LoadError:
                    self._alive_or_fail()
                    raise
                if not stable:
                    unstable.append(c)
                hint["rps"] = point.rps
                return point
            res = find_peak(measure, self.opts.slo_ms, self.opts.max_concurrency, max_levels=self.opts.max_levels)
            if res.peak is None:
                raise ServedTrialFailed(str(res.reason))
            if res.stop == "failed" and self.server is not None and self.server.proc.poll() is not None:
                raise ServedTrialFailed(str(res.error))        # a deployment that dies under load failed
            peak, rps_seen, cv = res.peak, [res.peak.rps], None
            if self.opts.remeasure_peak and time.monotonic() < sweep_end:
                try:
                    again = measure(peak.concurrency)
                    rps_seen.append(again.rps)
                    cv = statistics.pstdev(rps_seen) / statistics.mean(rps_seen)
                    both = _mean_point(peak, again)
                    if both.meets(self.opts.slo_ms):    # else: a borderline peak, reported as first measured
                        peak = both
                except LoadError:
                    pass          # the peak measured once still stands
            t_end = time.monotonic()
            return ServedMeasurement(peak, list(res.curve), res.stop, cv,
                                     {"start": t_ready - t0, "warmup": t_warm - t_ready, "sweep": t_end - t_warm,
                                      "total": t_end - t0}, unstable, rps_seen)
        finally:
            self.stop()

    def _alive_or_fail_as_trial(self) -> None:
        try:
            self._alive_or_fail()
        except LoadError as exc:
            raise ServedTrialFailed(str(exc)) from None

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.workspace, ignore_errors=True)


def _mean_point(a: LoadPoint, b: LoadPoint) -> LoadPoint:
    def m(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None else (x + y) / 2
    split = {k: (a.split_ms[k] + b.split_ms[k]) / 2 for k in a.split_ms if k in b.split_ms}
    return LoadPoint(a.concurrency, (a.rps + b.rps) / 2, (a.p50_ms + b.p50_ms) / 2, (a.p99_ms + b.p99_ms) / 2,
                     m(a.p90_ms, b.p90_ms), m(a.p95_ms, b.p95_ms), m(a.queue_ms, b.queue_ms),
                     m(a.compute_ms, b.compute_ms), split)


def details(m: ServedMeasurement, config: ServingConfig, slo_ms: float, serving_cores: Sequence[int],
            client_cores: Sequence[int], deviation: dict[str, Any] | None) -> dict[str, Any]:
    """A served trial's ``details`` (the keys documented in docs/served-trials.md)."""
    import onnxruntime
    out: dict[str, Any] = {
        "mode": "served", "serving": config.as_dict(), "slo_p99_ms": slo_ms,
        "peak": {**m.peak.as_dict(), "measurements_rps": m.peak_measurements},
        "curve": [p.as_dict(slo_ms) for p in m.curve],
        "server_split_ms": dict(m.peak.split_ms),
        "wall_s": {k: round(v, 3) for k, v in m.wall_s.items()},
        "cores": {"serving": list(serving_cores), "client": list(client_cores)},
        "load": {"kind": "concurrency", "client_batch": config.client_batch, "levels_measured": len(m.curve),
                 "stop": m.stop, "unstable_levels": m.unstable_levels},
        "versions": {"tritonserver": TRITON_VERSION, "perf_analyzer": TRITON_VERSION,
                     "onnxruntime": onnxruntime.__version__},
    }
    if deviation is not None:
        out["output_deviation"] = deviation
    return out
