"""How a configuration's knobs become a served model: the one mapping from knob values to Triton's
model settings and ONNX Runtime's session settings. Pure (no I/O, no Triton import), so the live
trial runner, the exporter of a winning trial (Triton model repository / KServe / k8s / compose)
and the reports all read the same answer.

Knobs (names agreed for served trials): ``cpus`` (serving cores), ``batchsize`` (Triton's
``max_batch_size``: the largest batch the dynamic batcher forms), ``queue_delay_us`` (the dynamic
batcher's ``max_queue_delay_microseconds``), ``replicas`` (``instance_group`` count),
``precision`` (fp32 | fp16 | int8: the ONNX file served), ``graph_opt`` (ONNX Runtime's graph
optimisation level). Missing knobs take the defaults below. These are the knob roles' default
names (``services/domain/roles.py``): a space that names a role's knob otherwise (``batch: bs``)
is read through its roles first (``KnobRoles.by_role``, as the live backend does).

The load generator sends requests of ``client_batch`` samples (1: each request one sample, as
Triton Model Analyzer does), so that the dynamic batcher, not the client, forms the batches up to
``max_batch_size``; throughput is counted in samples (inferences) per second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from services.domain.roles import DEFAULT_ROLES

# what a live trial measures: a Triton deployment stressed to its peak within the SLO, or the
# in-process closed loop (docs/served-trials.md); served is the default
LIVE_MODES = ("served", "closed-loop")
GRAPH_OPT_LEVELS = ("disabled", "basic", "extended", "all")
PRECISIONS = ("fp32", "fp16", "int8")
# ONNX Runtime's names for the graph optimisation levels (onnxruntime.GraphOptimizationLevel)
ORT_LEVEL = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
             "all": "ORT_ENABLE_ALL"}
SERVING_KNOBS = (DEFAULT_ROLES.cpus, DEFAULT_ROLES.batch, DEFAULT_ROLES.queue_delay, DEFAULT_ROLES.replicas,
                 DEFAULT_ROLES.precision, DEFAULT_ROLES.graph_opt)
DEFAULTS: Mapping[str, Any] = {"cpus": 1, "batchsize": 1, "queue_delay_us": 0, "replicas": 1,
                               "precision": "fp32", "graph_opt": "all"}
MAX_QUEUE_DELAY_US = 10_000_000


class ServingConfigError(ValueError):
    """A knob value no served deployment can take (the message says which and why)."""


@dataclass(frozen=True)
class ServingConfig:
    """One served deployment of a model: what Triton and ONNX Runtime are told."""
    cores: int                  # CPU cores pinned for the server and its model instances
    max_batch_size: int         # Triton model config max_batch_size (from ``batchsize``)
    queue_delay_us: int         # dynamic_batching.max_queue_delay_microseconds
    instances: int              # instance_group[0].count (from ``replicas``)
    precision: str              # fp32 | fp16 | int8
    graph_opt: str              # ONNX Runtime graph optimisation level (GRAPH_OPT_LEVELS)
    intra_op_threads: int       # per instance: the pinned cores shared among the instances
    client_batch: int = 1       # samples per request the load generator sends
    device: str = "cpu"         # cpu | gpu (CUDA provider)

    @property
    def ort_level(self) -> str:
        return ORT_LEVEL[self.graph_opt]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def triton_model_config(self, name: str, platform_backend: str = "python") -> dict[str, Any]:
        """Triton's model configuration (the fields of model_config.proto that this mapping sets),
        as a dict: ``backend`` 'python' is what the bundled PyTriton server runs (ONNX Runtime inside
        the Python model); 'onnxruntime' is what a full Triton image runs from the same settings."""
        cfg: dict[str, Any] = {
            "name": name, "backend": platform_backend, "max_batch_size": self.max_batch_size,
            "dynamic_batching": {"max_queue_delay_microseconds": self.queue_delay_us},
            "instance_group": [{"count": self.instances, "kind": "KIND_GPU" if self.device == "gpu" else "KIND_CPU"}],
        }
        if platform_backend == "onnxruntime":
            cfg["parameters"] = {"intra_op_thread_count": {"string_value": str(self.intra_op_threads)},
                                 "inter_op_thread_count": {"string_value": "1"}}
            # Triton's ORT backend encodes the level itself (its README): -1 basic, 1 basic + extended,
            # 2 all disabled, unset: all optimisations
            level = {"disabled": 2, "basic": -1, "extended": 1, "all": 0}[self.graph_opt]
            if level:
                cfg["optimization"] = {"graph": {"level": level}}
        return cfg


def _int(knobs: Mapping[str, Any], name: str, low: int, high: int | None = None) -> int:
    raw = knobs.get(name, DEFAULTS[name])
    try:
        val = int(raw)
        if val != float(raw):
            raise ValueError
    except (TypeError, ValueError):
        raise ServingConfigError(f"{name}={raw!r} is not an integer") from None
    if val < low or (high is not None and val > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ServingConfigError(f"{name}={val} must be {bound}")
    return val


def serving_config(knobs: Mapping[str, Any], max_cores: int | None = None, gpu: bool = False) -> ServingConfig:
    """The served deployment for ``knobs`` (a trial's configuration; knobs other than
    :data:`SERVING_KNOBS` are ignored here). ``max_cores``: serving cores available (a runner's
    advertised ones). Raises :class:`ServingConfigError` with the reason for a value that cannot be
    served; whether this device has the precision is the runner's question (it depends on the
    device), not this mapping's."""
    cores = _int(knobs, "cpus", 1, max_cores)
    batch = _int(knobs, "batchsize", 1)
    delay = _int(knobs, "queue_delay_us", 0, MAX_QUEUE_DELAY_US)
    instances = _int(knobs, "replicas", 1)
    precision = str(knobs.get("precision", DEFAULTS["precision"])).lower()
    if precision not in PRECISIONS:
        raise ServingConfigError(f"precision={precision!r} is not one of {list(PRECISIONS)}")
    graph_opt = str(knobs.get("graph_opt", DEFAULTS["graph_opt"])).lower()
    if graph_opt not in GRAPH_OPT_LEVELS:
        raise ServingConfigError(f"graph_opt={graph_opt!r} is not one of {list(GRAPH_OPT_LEVELS)}")
    if not gpu and instances > cores:
        raise ServingConfigError(f"replicas={instances} on {cores} core(s): each CPU model instance needs a core "
                                 f"of its own")
    return ServingConfig(cores=cores, max_batch_size=batch, queue_delay_us=delay, instances=instances,
                         precision=precision, graph_opt=graph_opt,
                         intra_op_threads=cores if gpu else max(1, cores // instances),
                         device="gpu" if gpu else "cpu")
