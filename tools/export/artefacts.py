"""A recommendation as deployable artefacts: the pure core of ``falcon export``.

In: a :class:`Recommendation` (the recommended configuration's knob values, the figures the
winning trial measured, the model's inputs and outputs) and the user's load. Out: an
:class:`Export`, file texts by relative path, or :class:`ExportRefused` with a one-line reason.
No I/O here: the shell (``tools/cli/export_cmds.py``, the dashboard) reads the search and the
model, copies the model file and writes the texts.

Formats:
- ``triton``: a model repository entry ``model_repository/<name>/``: ``config.pbtxt`` for
  Triton's ONNX Runtime backend (what a plain Triton container serves), ``configs/python-ort.pbtxt``
  (the same settings on Triton's Python backend running ONNX Runtime, as the served trials do:
  ``tritonserver --model-config-name=python-ort``), ``1/model.py`` and the model file
  ``1/model.onnx`` (copied by the shell, in the recommended precision);
- ``kserve``: an InferenceService (serving.kserve.io/v1beta1) on the ``kserve-tritonserver``
  runtime, plus the model repository it serves;
- ``k8s``: a Deployment, a Service and a HorizontalPodAutoscaler running a plain Triton
  container, plus the model repository;
- ``compose``: the same on one machine (docker compose), plus the model repository.

Sizing (k8s, kserve, compose): each replica is run at ``1 - headroom`` of the peak RPS within
the SLO (the search's noise-robust estimate of it where that is below the trial's measurement); the replicas for ``--load`` are ceil(load / that target), the
autoscaler keeps at least those and targets the same per-replica load."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from services.domain.objectives import replicas_for
from services.domain.roles import DEFAULT_ROLES, KnobRoles
from services.domain import triton_repo
from services.domain.serving import ServingConfig, ServingConfigError, serving_config
from services.domain.triton_repo import MODEL_FILE, PYTHON_CONFIG, Tensor

FORMATS = ("triton", "kserve", "k8s", "compose")
DEFAULT_HEADROOM = 0.3          # each replica runs at 70% of the peak RPS measured within the SLO
DEFAULT_MAX_REPLICAS = 100      # k8s/KServe: a load needing more pods than this is refused
SCALE_UP_FACTOR = 2             # the autoscaler may grow to twice the replicas the stated load needs
# The Triton release the exported manifests run: the NGC image of Triton 2.51.0, the release of
# the server nvidia-pytriton 0.7.0 bundles (the server the served trials and the export's test
# use); the image has the ONNX Runtime backend that config.pbtxt names.
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
KSERVE_RUNTIME = "kserve-tritonserver"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
LIVE_KINDS = ("live", "served")   # trial backends that deployed the model (replay answers from a table)

# The cloud space's GPU knobs (the serving knobs are services.domain.serving's).
GPU_TYPE, GPU_MEM, GPU_POWER = "gputype", "gpumem", "gpupower"
NO_GPU = ("none", "cpu", "no-gpu", "", None, 0)

# The label GPU feature discovery puts on a node (nvidia.com/gpu.product): the driver's product
# name with spaces as dashes. The cloud variants each GPU type names in this project's spaces.
GPU_PRODUCT = {"T4": "Tesla-T4", "V100": "Tesla-V100-SXM2-16GB", "M60": "Tesla-M60", "K80": "Tesla-K80",
               "A10G": "NVIDIA-A10G", "A10": "NVIDIA-A10", "L4": "NVIDIA-L4", "L40S": "NVIDIA-L40S",
               "A100": "NVIDIA-A100-SXM4-40GB", "H100": "NVIDIA-H100-80GB-HBM3", "H200": "NVIDIA-H200"}


class ExportRefused(ValueError):
    """The search cannot be exported as asked (one line: why, and what to do)."""


@dataclass(frozen=True)
class Recommendation:
    """What a search recommends and the figures it rests on (the winning trial's measurement)."""
    search_id: str
    model: str
    config: Mapping[str, Any]
    backend_kind: str                         # live, served, replay
    trial: int                                # the winning trial's number (1-based, as the report shows)
    rps: float | None                         # peak RPS within the SLO (served) / measured RPS (in-process)
    p99_ms: float | None
    usd_per_hour: float | None
    date: str                                 # when the export was made (ISO 8601)
    p50_ms: float | None = None
    slo_p99_ms: float | None = None
    estimate: Mapping[str, Any] | None = None   # value, low, high (95%), measurements; in estimate_unit
    estimate_unit: str = ""
    measured_at: str | None = None            # the load the peak was measured at (served trials)
    inputs: tuple[Tensor, ...] = ()
    outputs: tuple[Tensor, ...] = ()
    model_uri: str | None = None
    model_bytes: int | None = None            # size of the (precision variant's) model file
    space_max_cpus: int | None = None         # the largest machine the space describes (compose)
    notes: tuple[str, ...] = ()               # e.g. the trials ran in-process, not served
    served: bool = True                       # measured served behind Triton (else in-process, closed loop)
    deviation: Mapping[str, Any] | None = None   # a lower precision's outputs against fp32 (the trial's figure)
    sizing_rps: float | None = None           # the noise-robust peak replicas are sized on (None: rps)
    roles: KnobRoles = DEFAULT_ROLES          # the space's knob roles: which of ``config`` is the batch, ...

    @property
    def peak_for_sizing(self) -> float:
        """What each replica is expected to carry at its peak: the search's robust figure, never
        above the measurement (a lucky measurement would under-provision)."""
        assert self.rps
        return min(self.rps, self.sizing_rps) if self.sizing_rps else self.rps

    @property
    def applied(self) -> dict[str, Any]:
        """``config`` by role (the roles' default names: what the serving mapping reads)."""
        return self.roles.by_role(self.config)


@dataclass(frozen=True)
class Serving:
    """A knob assignment as a deployment: the served-trials mapping's Triton/ONNX Runtime settings
    (:class:`services.domain.serving.ServingConfig`) and the GPU the replica runs on."""
    config: ServingConfig
    gputype: str | None
    gpu_mem_bytes: int | None                 # ONNX Runtime CUDA arena limit per instance

    @property
    def cpus(self) -> int:
        return self.config.cores

    @property
    def kind(self) -> str:
        return "KIND_GPU" if self.gputype else "KIND_CPU"


@dataclass(frozen=True)
class Sizing:
    load_rps: float | None
    peak_rps: float                           # the peak sized on: the search's robust estimate of it
    headroom: float
    target_rps: float                         # what each replica is run at: peak x (1 - headroom)
    replicas: int
    max_replicas: int
    measured_rps: float | None = None         # the recommended trial's own measurement, where higher

    def text(self) -> str:
        head = (f"{self.replicas} replica{'s' if self.replicas != 1 else ''} for {figure_text(self.load_rps)} RPS"
                if self.load_rps else "1 replica (no --load given)")
        scaling = (f"autoscaling {self.replicas}..{self.max_replicas} replicas at that target"
                   if self.max_replicas > self.replicas else "a fixed count (no autoscaler)")
        robust = (f" (the search's noise-robust estimate; the trial measured {figure_text(self.measured_rps)})"
                  if self.measured_rps and self.measured_rps > self.peak_rps else "")
        return (f"{head}: each runs at {figure_text(self.target_rps)} RPS = {figure_text(self.peak_rps)} RPS peak within the SLO"
                f"{robust} x (1 - {self.headroom:g} headroom); {scaling}")


@dataclass(frozen=True)
class Export:
    format: str
    name: str                                 # the Triton model name
    files: Mapping[str, str]                  # relative path -> text
    model_dest: str                           # where the shell copies the model file
    serving: Serving
    sizing: Sizing | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def figure_text(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"


def model_name(model: str) -> str:
    """A Triton model (and Kubernetes object) name: lower-case letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")[:50].strip("-")
    return name or "model"


def has_gpu(config: Mapping[str, Any]) -> bool:
    return config.get(GPU_TYPE) not in NO_GPU


def serving(config: Mapping[str, Any]) -> Serving:
    """The Triton configuration that applies ``config``'s knobs: the served trials' own mapping
    (absent knobs take its defaults, as a trial that did not search them ran)."""
    gpu = has_gpu(config)
    try:
        sc = serving_config(config, gpu=gpu)
    except ServingConfigError as exc:
        raise ExportRefused(f"the recommended configuration cannot be served: {exc}") from None
    mem = config.get(GPU_MEM)
    return Serving(sc, str(config[GPU_TYPE]) if gpu else None,
                   int(float(mem) * 2**30 / sc.instances) if gpu and mem else None)


def refusal(rec: Recommendation | None, search_id: str, status: str = "", stop_reason: str | None = None) -> str | None:
    """Why this search cannot be exported at all (None: it can)."""
    if rec is None:
        why = f" ({stop_reason})" if stop_reason else ""
        return (f"search {search_id} has no recommendation to export{why}"
                + ("; it is still running" if status == "running" else ""))
    if rec.backend_kind not in LIVE_KINDS:
        return (f"search {search_id}'s recommendation came from a replay table: no "
                f"configuration was served, so there is nothing measured to deploy; its knob values are "
                f"{_config_text(rec.config)} (falcon report {search_id}); run a live search to export")
    if not rec.rps or rec.rps <= 0:
        return f"search {search_id}'s recommendation has no measured RPS, so no deployment can be sized from it"
    if not rec.inputs or not rec.outputs:
        return f"the model of search {search_id} declares no inputs or outputs: Triton cannot serve it"
    return None


def _config_text(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def size(rec: Recommendation, fmt: str, load_rps: float | None, headroom: float = DEFAULT_HEADROOM,
         max_replicas: int = DEFAULT_MAX_REPLICAS) -> Sizing:
    """Replicas to carry ``load_rps`` with each replica at ``1 - headroom`` of its peak; refused
    when the load cannot be carried within the space (more pods than ``max_replicas``, or for
    compose more than the one machine the space describes holds)."""
    if not 0 <= headroom < 1:
        raise ExportRefused(f"--headroom must be at least 0 and below 1, not {headroom:g}")
    if load_rps is not None and not (math.isfinite(load_rps) and load_rps > 0):
        raise ExportRefused(f"--load must be a positive number of requests per second, not {load_rps:g}")
    peak = rec.peak_for_sizing
    target = peak * (1 - headroom)
    n = replicas_for(load_rps, target) if load_rps else 1
    assert n is not None
    if fmt == "compose":
        s = serving(rec.applied)
        host = rec.space_max_cpus or s.cpus
        fit = 1 if s.gputype else max(1, host // s.cpus)
        if n > fit:
            where = (f"one machine has one {s.gputype} GPU, so it runs 1 replica" if s.gputype else
                     f"one machine of the space has at most {host} core{'s' if host != 1 else ''}, "
                     f"{fit} replica{'s' if fit != 1 else ''} "
                     f"of {s.cpus}")
            raise ExportRefused(f"a load of {figure_text(load_rps)} RPS needs {n} replicas at {figure_text(target)} RPS each "
                                f"({figure_text(peak)} peak x (1 - {headroom:g} headroom)), but {where}: it cannot be "
                                f"carried within the space on one machine; export --format k8s or kserve")
        return Sizing(load_rps, peak, headroom, target, n, n, rec.rps)
    if n > max_replicas:
        raise ExportRefused(f"a load of {figure_text(load_rps)} RPS needs {n} replicas at {figure_text(target)} RPS each "
                            f"({figure_text(peak)} peak x (1 - {headroom:g} headroom)), more than --max-replicas "
                            f"{max_replicas}: it cannot be carried within the space; raise --max-replicas if "
                            f"that many pods is intended")
    return Sizing(load_rps, peak, headroom, target, n, min(max_replicas, max(n * SCALE_UP_FACTOR, 2)), rec.rps)


# ---- the comment header every file carries ------------------------------------------------


def header_lines(rec: Recommendation, sizing: Sizing | None, fmt: str) -> list[str]:
    est = rec.estimate
    slo = f" (SLO p99 {figure_text(rec.slo_p99_ms)} ms)" if rec.slo_p99_ms else " (no SLO was set)"
    lines = [
        f"Exported by falcon export --format {fmt} on {rec.date}",
        f"search {rec.search_id}, model {rec.model}, recommended trial {rec.trial} ({rec.backend_kind} trials)",
        f"configuration: {_config_text(rec.config)}",
        (f"peak RPS within the SLO: {figure_text(rec.rps)}{slo}" if rec.served else
         f"RPS measured in-process (closed loop, not a served peak): {figure_text(rec.rps)}{slo}")
        + (f", measured at {rec.measured_at}" if rec.measured_at else ""),
        f"p99 at that load: {figure_text(rec.p99_ms)} ms" + (f", p50 {figure_text(rec.p50_ms)} ms" if rec.p50_ms is not None else ""),
        f"price: {'$' + format(rec.usd_per_hour, '.4g') + '/h' if rec.usd_per_hour is not None else 'unknown'}"
        " per replica",
    ]
    if est:
        n = est.get("measurements", 1)
        interval = (f"95% interval {figure_text(est.get('low'))} to {figure_text(est.get('high'))}" if est.get("high") != est.get("low")
                    else "no interval (no spread measured)")
        lines.append(f"estimate: {figure_text(est.get('value'))} {rec.estimate_unit}, {interval}, from {n} "
                     f"measurement{'s' if n != 1 else ''}")
    if sizing is not None:
        lines.append(f"sizing: {sizing.text()}")
    if rec.deviation:
        lines.append(f"precision {rec.applied.get('precision')}: outputs moved from fp32 by at most "
                     f"{rec.deviation.get('max_abs', 0):.3g} (relative L2 {rec.deviation.get('rel_l2', 0):.3g}) on "
                     f"the trial's inputs")
    power = rec.applied.get(GPU_POWER)
    if has_gpu(rec.applied) and power not in (None, 100, "none"):
        lines.append(f"GPU power cap {power}% of the board's TDP: not a Triton or Kubernetes setting; set it on the "
                     f"node (nvidia-smi -pl) or the measured figures do not hold")
    lines += list(rec.notes)
    return lines


def commented(rec: Recommendation, sizing: Sizing | None, fmt: str, body: str) -> str:
    return "".join(f"# {ln}\n" for ln in header_lines(rec, sizing, fmt)) + "\n" + body


# ---- triton -------------------------------------------------------------------------------


def config_pbtxt(name: str, rec: Recommendation, s: Serving, backend: str) -> str:
    """The entry's configuration for ``backend``: the one a served trial deploys
    (:func:`services.domain.triton_repo.model_config`)."""
    return triton_repo.config_pbtxt(name, s.config, rec.inputs, rec.outputs, backend, s.gpu_mem_bytes)


def triton_files(rec: Recommendation, sizing: Sizing | None, fmt: str, model_py: str,
                 root: str = "model_repository") -> tuple[str, dict[str, str], str]:
    name = model_name(rec.model)
    s = serving(rec.applied)
    base = f"{root}/{name}"
    notes = [f"model file: {base}/1/{MODEL_FILE} ({s.config.precision}"
             + (f"; from {rec.model_uri}" if rec.model_uri else "") + ")",
             f"config.pbtxt: Triton's ONNX Runtime backend; configs/{PYTHON_CONFIG}.pbtxt: the same settings on "
             f"the Python backend (tritonserver --model-config-name={PYTHON_CONFIG}), as the served trials ran"]
    files = {
        f"{base}/config.pbtxt": commented(rec, sizing, fmt, config_pbtxt(name, rec, s, "onnxruntime")),
        f"{base}/configs/{PYTHON_CONFIG}.pbtxt": commented(rec, sizing, fmt, config_pbtxt(name, rec, s, "python")),
        f"{base}/1/model.py": "".join(f"# {ln}\n" for ln in header_lines(rec, sizing, fmt) + notes) + model_py,
    }
    return name, files, f"{base}/1/{MODEL_FILE}"
