"""Live trials on this machine: deploy the model under the requested configuration and measure
it. Two modes, chosen per trial by ``backend["mode"]``:

- ``served`` (the default): a Triton server with the configuration applied, stressed by
  perf_analyzer up to the peak throughput whose p99 meets the SLO (``backend["slo_p99_ms"]``,
  default 100 ms): :mod:`services.trial_runner.served`, docs/served-trials.md. Knobs: ``cpus``,
  ``batchsize``, ``queue_delay_us``, ``replicas``, ``precision``, ``graph_opt``. The runner keeps
  one core for the load generator (``client_cores``) and serves on the others.
- ``closed-loop``: one process, one batch in flight, RPS = batch / batch latency
  (:mod:`services.trial_runner.stress`): what the model's compute alone sustains, no server,
  queueing or batching; fast (tests, quick tables), knobs ``cpus``, ``batchsize``, ``graph_opt``.

Knobs it applies: ``cpus`` (cores pinned, thread pool of that size), ``batchsize``,
``graph_opt`` (ONNX Runtime graph optimisation level), and on a machine with an NVIDIA GPU
``gputype`` (that GPU, through ONNX Runtime's CUDA provider) with ``gpumem`` (the provider's
memory limit, GB). Knobs it cannot apply here (a GPU type that is not in this machine, a power
cap: setting one needs root ``nvidia-smi -pl``) are refused with the reason, never faked. :meth:`capabilities` is what the runner advertises; the searcher routes a request to the
runner class able to serve it (see ``services.platform.topics``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from dataclasses import replace
from typing import Any, Mapping

from services.domain.figures import REQ_PER_USD
from services.domain.roles import DEFAULT_ROLES, KnobRoles
from services.domain.serving import LIVE_MODES
from services.domain.space_rules import SpaceError
from services.platform.topics import is_no_gpu
from schemas.events import TrialRequested, TrialResult
from services.platform.model_files import ModelFileError, model_path
from services.trial_runner import energy
from services.trial_runner.backends.base import TrialBackend
from services.trial_runner.stress import GRAPH_OPT

# the knobs it applies, by role (the roles' default names: a space naming them otherwise is read
# through its roles, KnobRoles.by_role)
CPU_KNOB, BATCH_KNOB, OPT_KNOB = DEFAULT_ROLES.cpus, DEFAULT_ROLES.batch, DEFAULT_ROLES.graph_opt
GPU_KNOBS = (DEFAULT_ROLES.gpu, DEFAULT_ROLES.gpu_mem, DEFAULT_ROLES.gpu_power)
SERVED_KNOBS = (DEFAULT_ROLES.queue_delay, DEFAULT_ROLES.replicas, DEFAULT_ROLES.precision)   # served trials only
DEFAULT_MEASURE_S = 3.0
DEFAULT_SLO_P99_MS = 100.0


class LiveBackend(TrialBackend):
    kind = "live"

    def __init__(self, cache_dir: str | Path = ".falcon/compiled", max_cores: int | None = None,
                 timeout_s: float = 600.0, gpus: list[str] | None = None,
                 download_dir: str | Path = ".falcon/cache", max_model_bytes: int = 2 * 1024**3) -> None:
        self.cache_dir = Path(cache_dir)
        self.download_dir = Path(download_dir)
        self.max_model_bytes = max_model_bytes
        self.max_cores = max_cores or len(os.sched_getaffinity(0))
        self.timeout_s = timeout_s
        self.gpus = detect_gpus() if gpus is None else gpus      # e.g. ["NVIDIA H100 80GB HBM3"]
        self._energy: bool | None = None                          # NVML present (asked once)
        allowed = sorted(os.sched_getaffinity(0))[:self.max_cores]
        # served trials: the last core generates load (perf_analyzer), the others serve; on a
        # 1-core machine both share it (a trial's details say so). Production: client on another node.
        self.client_cores = allowed[-1:]
        self.serving_cores = allowed[:-1] or allowed
        self.state_dir = self.cache_dir.parent / "serving"
        self._serving_env: Any = None
        from services.trial_runner.procs import reap_leftovers
        reap_leftovers(self.state_dir / "groups")     # servers/clients a killed runner left behind

    def capabilities(self) -> dict[str, Any]:
        """What the default (served) mode applies: ``cpus`` counts serving cores (one is kept for
        the load generator); closed-loop trials may also use that one."""
        caps: dict[str, Any] = {CPU_KNOB: list(range(1, len(self.serving_cores) + 1)),
                                BATCH_KNOB: "any positive integer", OPT_KNOB: list(GRAPH_OPT),
                                "gputype": ["none", *self.gpus], "queue_delay_us": "any integer from 0 to 10000000",
                                "replicas": "1 to the serving cores (CPU)",
                                "precision": ["fp32", "int8", *(["fp16"] if self.gpus else [])]}
        if self.gpus:
            caps["gpumem"] = "any size within the GPU's memory"
        closed = {CPU_KNOB: list(range(1, self.max_cores + 1)), BATCH_KNOB: "any positive integer",
                  OPT_KNOB: list(GRAPH_OPT), "gputype": caps["gputype"],
                  **({"gpumem": caps["gpumem"]} if self.gpus else {})}
        caps["modes"] = {"closed-loop": closed}     # what a trial with backend mode closed-loop applies
        return caps

    def measures(self) -> list[str]:
        """What its trials report; energy per request and mean power on a GPU runner with NVML
        (for its GPU trials only: a CPU-only trial has no power meter here)."""
        base = ["rps", "p50_ms", "p99_ms", "stability_cv"]
        return base + ["energy_j_per_request", "mean_power_w"] if self.measures_energy else base

    @property
    def measures_energy(self) -> bool:
        if self._energy is None:
            self._energy = bool(self.gpus) and energy.available()
        return self._energy

    def gpu_present(self, gpu: str) -> bool:
        """'H100' names this machine's GPU if it appears in the driver's name for it."""
        return any(str(gpu).lower() in name.lower().split() or str(gpu).lower() == name.lower()
                   for name in self.gpus)

    def refusal(self, config: Mapping[str, Any], mode: str = "served",
                roles: KnobRoles = DEFAULT_ROLES) -> str | None:
        """Why this machine cannot apply ``config`` in ``mode``; None when it can. ``roles``: the
        space's knob roles (which knob is the batch, the cores, ...): this backend applies roles,
        whatever the space calls their knobs."""
        if mode not in LIVE_MODES:
            return f"live mode {mode!r} is not one of {list(LIVE_MODES)}"
        config = roles.by_role(config)
        served = mode == "served"
        for knob in config:
            if knob not in (CPU_KNOB, BATCH_KNOB, OPT_KNOB, *GPU_KNOBS, *(SERVED_KNOBS if served else ())):
                applies = [roles.space_name(k)
                           for k in (CPU_KNOB, BATCH_KNOB, OPT_KNOB, *(SERVED_KNOBS if served else ()))]
                return f"knob {knob!r} cannot be applied by the live backend's {mode} trials (they apply " \
                       f"{', '.join(applies)})"
        gpu = config.get("gputype")
        if not is_no_gpu(gpu) and not self.gpu_present(str(gpu)):
            return f"GPU type {gpu!r} is not present on this runner (it has {self.gpus or 'no GPU'})"
        if is_no_gpu(gpu) and config.get("gpumem") not in (0, None, "none"):
            return f"gpumem={config['gpumem']!r} needs a GPU, and this configuration asks for none"
        if config.get("gpupower") not in (0, None, "none", 100):
            return f"gpupower={config['gpupower']!r}: a power cap needs root nvidia-smi -pl, which this runner " \
                   f"does not do"
        cores = int(config.get(CPU_KNOB, 1))
        if not 1 <= cores <= self.max_cores:
            return f"{cores} CPU cores asked for; this runner has {self.max_cores}"
        if served and cores > len(self.serving_cores):
            return (f"{cores} serving cores asked for; this runner serves on {len(self.serving_cores)} and keeps "
                    f"core {self.client_cores[0]} for the load generator")
        if served:
            from services.domain.serving import ServingConfigError, serving_config
            from services.trial_runner.precision import precision_refusal
            try:
                sc = serving_config(config, len(self.serving_cores), gpu=not is_no_gpu(config.get("gputype")))
            except ServingConfigError as exc:
                return str(exc)
            why = precision_refusal(sc.precision, self.providers(sc.device))
            if why:
                return why
        if int(config.get(BATCH_KNOB, 1)) < 1:
            return f"batch size {config.get(BATCH_KNOB)} is not a positive integer"
        if str(config.get(OPT_KNOB, "all")) not in GRAPH_OPT:
            return f"graph_opt {config.get(OPT_KNOB)!r} is not one of {list(GRAPH_OPT)}"
        return None

    def providers(self, device: str) -> list[str]:
        """The ONNX Runtime execution providers a trial on ``device`` (cpu | gpu) gets here."""
        if device != "gpu":
            return ["CPUExecutionProvider"]
        import onnxruntime as ort
        return [p for p in ort.get_available_providers() if p != "CPUExecutionProvider"]

    def run(self, trial: TrialRequested) -> TrialResult:
        """The trial measured, its knobs applied by their roles (the request carries the space's
        roles that differ from the defaults: a space may call its batch knob ``bs``)."""
        try:
            roles = KnobRoles.from_dict(trial.roles)
        except SpaceError as exc:
            return trial.failed(str(exc))
        mode = str(trial.backend.get("mode", "served"))
        why = self.refusal(trial.config, mode, roles)
        if why:
            return trial.failed(why)
        # below, every knob with a role goes by the role's default name (what the serving mapping,
        # the stress test and the advert read); the result names the configuration as requested
        result = self._run(replace(trial, config=roles.by_role(trial.config)), mode)
        return replace(result, config=dict(trial.config))

    def _run(self, trial: TrialRequested, mode: str) -> TrialResult:
        try:
            model = model_path(str(trial.model.get("uri") or ""), self.max_model_bytes, self.download_dir)
        except ModelFileError as exc:
            return trial.failed(str(exc))
        if trial.model.get("format") != "onnx" or not model.is_file():
            return trial.failed(f"the live backend runs ONNX model files; got {dict(trial.model)}")
        if mode == "served":
            return self._served(trial, model)
        measure_s = float(trial.backend.get("measure_s", DEFAULT_MEASURE_S))
        req = {"model": str(model.resolve()), "batch": int(trial.config.get(BATCH_KNOB, 1)),
               "cores": int(trial.config.get(CPU_KNOB, 1)), "graph_opt": str(trial.config.get(OPT_KNOB, "all")),
               "measure_s": measure_s, "warmup_s": float(trial.backend.get("warmup_s", 1.0)),
               "cache_dir": str(self.cache_dir.resolve()),
               "gpu_mem_gb": None if is_no_gpu(trial.config.get("gputype")) else
               float(trial.config.get("gpumem") or 0)}
        t0 = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-m", "services.trial_runner.stress", json.dumps(req)],
                                  capture_output=True, text=True, timeout=self.timeout_s,
                                  env={**os.environ, "OMP_NUM_THREADS": str(req["cores"])})
        except subprocess.TimeoutExpired:
            return trial.result("failed", duration_s=time.monotonic() - t0,
                                reason=f"the stress test did not finish within {self.timeout_s:.0f} s")
        duration = time.monotonic() - t0
        cost = trial.price_per_hour * duration / 3600.0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
            return trial.result("failed", duration_s=duration, cost_usd=cost,
                                reason=f"the stress test process died (exit {proc.returncode}): {tail}")
        out = json.loads(lines[-1])
        if out["status"] != "ok":
            return trial.result("failed", duration_s=duration, cost_usd=cost, reason=out["reason"])
        value = requests_per_dollar(out["rps"], trial.price_per_hour)
        return trial.result("ok", rps_per_usd=value, rps_per_usd_unit=REQ_PER_USD, duration_s=duration, cost_usd=cost, rps=out["rps"],
                            p50_ms=out["p50_ms"], p99_ms=out["p99_ms"], stability_cv=out["cv"],
                            energy_j_per_request=out.get("energy_j_per_request"),
                            mean_power_w=out.get("mean_power_w"),
                            details={"mode": "closed-loop",
                                     **{k: out[k] for k in ("compile_s", "compile_cached", "batches", "measured_s",
                                                            "threads", "providers", "energy_source")
                                        if out.get(k) is not None or k != "energy_source"}})

    def _served(self, trial: TrialRequested, model: Path) -> TrialResult:
        """A served trial (see :mod:`services.trial_runner.served`); every failure is a failed
        result with its reason."""
        from services.domain.serving import serving_config
        from services.trial_runner import precision as prec
        from services.trial_runner.procs import reap_leftovers
        from services.trial_runner.served import ServedOptions, ServedTrial, ServedTrialFailed, batch_refusal, details
        from services.trial_runner.serving_env import ServingEnv, ServingStackMissing
        t0 = time.monotonic()
        b = trial.backend

        def failed(reason: str) -> TrialResult:
            d = time.monotonic() - t0
            return trial.result("failed", duration_s=d, cost_usd=trial.price_per_hour * d / 3600.0, reason=reason)
        try:
            slo = float(b.get("slo_p99_ms") or DEFAULT_SLO_P99_MS)
            opts = ServedOptions(slo_ms=slo, **{k: type(getattr(ServedOptions, k))(b[k]) for k in
                                                ("start_timeout_s", "sweep_timeout_s", "max_concurrency",
                                                 "max_levels", "interval_ms", "stability_pct") if k in b})
        except (TypeError, ValueError) as exc:
            return failed(f"bad served-trial option: {exc}")
        if slo <= 0:
            return failed(f"the p99 SLO must be positive, not {slo:g} ms")
        sc = serving_config(trial.config, len(self.serving_cores), gpu=not is_no_gpu(trial.config.get("gputype")))
        try:
            if self._serving_env is None:
                self._serving_env = ServingEnv.find()
            env = self._serving_env
        except ServingStackMissing as exc:
            return failed(str(exc))
        reap_leftovers(self.state_dir / "groups")
        try:
            why = batch_refusal(model, sc.max_batch_size)
        except Exception as exc:   # noqa: BLE001 — not an ONNX file Triton could load
            return failed(f"the model cannot be read as ONNX: {type(exc).__name__}: {str(exc)[:300]}")
        if why:
            return failed(why)
        try:
            served_model = prec.prepare(model.resolve(), sc.precision, self.cache_dir.resolve() / "precision")
            deviation = None if sc.precision == "fp32" else prec.output_deviation(model, served_model)
        except Exception as exc:   # noqa: BLE001 — a model the converter cannot take is the trial's failure
            return failed(f"precision {sc.precision} could not be applied: {type(exc).__name__}: {str(exc)[:300]}")
        cores = self.serving_cores[:sc.cores]
        run = ServedTrial(env, self.state_dir, served_model, sc, cores, self.client_cores, opts)
        try:
            m = run.run()
        except ServedTrialFailed as exc:
            return failed(str(exc))
        except Exception as exc:   # noqa: BLE001 — the runner never crashes on a trial
            return failed(f"the served trial failed: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            run.stop()
        duration = time.monotonic() - t0
        return trial.result("ok", rps_per_usd=requests_per_dollar(m.peak.rps, trial.price_per_hour),
                            rps_per_usd_unit=REQ_PER_USD, duration_s=duration,
                            cost_usd=trial.price_per_hour * duration / 3600.0, rps=m.peak.rps, p50_ms=m.peak.p50_ms,
                            p99_ms=m.peak.p99_ms, stability_cv=m.stability_cv,
                            details=details(m, sc, slo, cores, self.client_cores, deviation))


def detect_gpus() -> list[str]:
    """Names of this machine's NVIDIA GPUs (empty without the driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []


def requests_per_dollar(rps: float, usd_per_hour: float) -> float:
    """The objective (RPS per $): requests served for one dollar at this configuration's price."""
    if usd_per_hour <= 0:
        raise ValueError("a configuration's price must be positive")
    return rps * 3600.0 / usd_per_hour
