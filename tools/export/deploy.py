"""The deployment manifests of an export (KServe, Kubernetes, compose) and the one entry point,
:func:`export`, that builds every format's files from a recommendation (the types, the sizing, the
headers and the Triton configuration are in :mod:`tools.export.artefacts`)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import yaml

from tools.export.artefacts import (
    DEFAULT_HEADROOM,
    DEFAULT_MAX_REPLICAS,
    Export,
    ExportRefused,
    FORMATS,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    GPU_PRODUCT,
    KSERVE_RUNTIME,
    Recommendation,
    Serving,
    Sizing,
    TRITON_IMAGE,
    figure_text,
    header_lines,
    model_name,
    refusal,
    serving,
    size,
    triton_files,
)


# ---- resources ----------------------------------------------------------------------------


def memory_mib(rec: Recommendation, s: Serving) -> int:
    """Host memory for one replica: Triton's own (~512 MiB) plus, per model instance, four times
    the model file (weights, the ONNX Runtime session's optimised copy and arenas) and the
    batch's activations; rounded up to 256 MiB. An estimate, stated as such in the files."""
    model_mib = (rec.model_bytes or 0) / 2**20
    per_instance = 4 * model_mib + 8 * max(1, s.config.max_batch_size)
    return int(math.ceil((512 + s.config.instances * per_instance) / 256) * 256)


def _cpu_quantity(cpus: int) -> str:
    return str(cpus)


def resources(rec: Recommendation, s: Serving) -> dict[str, Any]:
    mem = f"{memory_mib(rec, s)}Mi"
    limits: dict[str, Any] = {"cpu": _cpu_quantity(s.cpus), "memory": mem}
    if s.gputype:
        limits["nvidia.com/gpu"] = 1
    return {"requests": {"cpu": _cpu_quantity(s.cpus), "memory": mem}, "limits": limits}


def gpu_product(gputype: str) -> str:
    return GPU_PRODUCT.get(gputype, f"NVIDIA-{gputype}")


def triton_args(repo: str) -> list[str]:
    return ["tritonserver", f"--model-repository={repo}", f"--http-port={HTTP_PORT}", f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}", "--strict-readiness=true"]


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:       # no &id001 anchors: every mapping written out
        return True


def _yaml(docs: Sequence[Mapping[str, Any]]) -> str:
    return "---\n".join(yaml.dump(dict(d), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
                         for d in docs)


def _labels(name: str, rec: Recommendation) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "falcon-export",
            "falcon/search-id": model_name(rec.search_id)[:63]}


# ---- kserve -------------------------------------------------------------------------------


def kserve_doc(rec: Recommendation, sizing: Sizing, name: str, storage_uri: str) -> dict[str, Any]:
    s = serving(rec.applied)
    predictor: dict[str, Any] = {
        "minReplicas": sizing.replicas, "maxReplicas": sizing.max_replicas,
        "scaleMetric": "rps", "scaleTarget": max(1, int(sizing.target_rps)),
        "model": {"modelFormat": {"name": "onnx"}, "runtime": KSERVE_RUNTIME, "storageUri": storage_uri,
                  "args": ["--strict-readiness=true"], "resources": resources(rec, s)},
    }
    if s.gputype:
        predictor["nodeSelector"] = {"nvidia.com/gpu.product": gpu_product(s.gputype)}
        predictor["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "labels": _labels(name, rec),
                         "annotations": {"falcon/search-id": rec.search_id,
                                         "falcon/peak-rps-within-slo": f"{rec.rps:.6g}",
                                         "falcon/sized-on-rps": f"{sizing.peak_rps:.6g}",
                                         "falcon/headroom": f"{sizing.headroom:g}"}},
            "spec": {"predictor": predictor}}


# ---- k8s ----------------------------------------------------------------------------------


def k8s_docs(rec: Recommendation, sizing: Sizing, name: str, claim: str) -> list[dict[str, Any]]:
    s = serving(rec.applied)
    labels = _labels(name, rec)
    selector = {"app.kubernetes.io/name": name}
    container: dict[str, Any] = {
        "name": "triton", "image": TRITON_IMAGE, "args": triton_args("/models"),
        "ports": [{"containerPort": HTTP_PORT, "name": "http"}, {"containerPort": GRPC_PORT, "name": "grpc"},
                  {"containerPort": METRICS_PORT, "name": "metrics"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "initialDelaySeconds": 30,
                          "periodSeconds": 15},
        "resources": resources(rec, s),
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
    }
    pod: dict[str, Any] = {"containers": [container],
                           "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": claim,
                                                                                   "readOnly": True}}]}
    if s.gputype:
        pod["nodeSelector"] = {"nvidia.com/gpu.product": gpu_product(s.gputype)}
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                  "spec": {"replicas": sizing.replicas, "selector": {"matchLabels": selector},
                           "template": {"metadata": {"labels": labels,
                                                     "annotations": {"prometheus.io/scrape": "true",
                                                                     "prometheus.io/port": str(METRICS_PORT)}},
                                        "spec": pod}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
               "spec": {"type": "ClusterIP", "selector": selector,
                        "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http"},
                                  {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                                  {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]}}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name,
                                                                                            "labels": labels},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": sizing.replicas, "maxReplicas": sizing.max_replicas,
                    "metrics": [hpa_metric(sizing, s)]}}
    return [deployment, service, hpa]


# The per-pod request rate a GPU replica's HPA scales on: prometheus-adapter serves it from Triton's
# nv_inference_request_success counter (the rule is in docs/export.md).
REQUEST_RATE_METRIC = "triton_inference_requests_per_second"


def hpa_metric(sizing: Sizing, s: Serving) -> dict[str, Any]:
    """What the HPA scales on. CPU serving: CPU utilisation at the share of the peak each replica
    runs at. GPU serving: its CPU says little about its load, so the request rate per pod at the
    target (a Pods metric, served by prometheus-adapter from Triton's own counter)."""
    if s.gputype:
        return {"type": "Pods", "pods": {"metric": {"name": REQUEST_RATE_METRIC},
                                         "target": {"type": "AverageValue",
                                                    "averageValue": str(max(1, int(sizing.target_rps)))}}}
    return {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": cpu_target_percent(sizing)}}}


def cpu_target_percent(sizing: Sizing) -> int:
    """The HPA's CPU target: a CPU-bound server at its peak RPS uses all its cores, so running
    each replica at ``1 - headroom`` of the peak is about that share of its CPU."""
    return max(10, min(95, int(round(100 * sizing.target_rps / sizing.peak_rps))))


# ---- compose ------------------------------------------------------------------------------


def compose_doc(rec: Recommendation, sizing: Sizing, name: str) -> dict[str, Any]:
    s = serving(rec.applied)
    n = sizing.replicas

    def ports(host: int, container: int) -> str:
        return f"127.0.0.1:{host}:{container}" if n == 1 else f"127.0.0.1:{host}-{host + n - 1}:{container}"
    svc: dict[str, Any] = {
        "image": TRITON_IMAGE, "command": triton_args("/models"),
        "volumes": ["./model_repository:/models:ro"],
        "ports": [ports(HTTP_PORT, HTTP_PORT), ports(HTTP_PORT + 100, GRPC_PORT), ports(HTTP_PORT + 200, METRICS_PORT)],
        "shm_size": "1gb",
        "healthcheck": {"test": ["CMD", "curl", "-fsS", f"http://localhost:{HTTP_PORT}/v2/health/ready"],
                        "interval": "10s", "timeout": "5s", "retries": 5, "start_period": "60s"},
        "deploy": {"replicas": n, "resources": {"limits": {"cpus": str(s.cpus), "memory": f"{memory_mib(rec, s)}M"}}},
        "restart": "unless-stopped",
    }
    if s.gputype:
        svc["deploy"]["resources"]["reservations"] = {"devices": [{"driver": "nvidia", "count": 1,
                                                                   "capabilities": ["gpu"]}]}
    return {"name": f"falcon-{name}", "services": {name: svc}}


# ---- everything ---------------------------------------------------------------------------


def export(rec: Recommendation, fmt: str, model_py: str, load_rps: float | None = None,
           headroom: float = DEFAULT_HEADROOM, max_replicas: int = DEFAULT_MAX_REPLICAS,
           storage_uri: str | None = None, claim: str = "falcon-models") -> Export:
    """The files of ``fmt`` for ``rec`` (ExportRefused: why not, in one line)."""
    if fmt not in FORMATS:
        raise ExportRefused(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    why = refusal(rec, rec.search_id)
    if why:
        raise ExportRefused(why)
    if fmt == "triton" and load_rps is not None:
        sizing: Sizing | None = size(rec, "k8s", load_rps, headroom, max_replicas)
    else:
        sizing = None if fmt == "triton" else size(rec, fmt, load_rps, headroom, max_replicas)
    name, files, dest = triton_files(rec, sizing, fmt, model_py)
    s = serving(rec.applied)
    if fmt == "kserve":
        assert sizing is not None
        uri = storage_uri or f"pvc://{claim}/{model_name(rec.search_id)}"
        extra = [f"storageUri {uri}: upload model_repository/ there first",
                 "scaleMetric rps is Knative's per-pod request rate (KServe's Serverless mode); one request = one "
                 "inference as the trials counted (clients send single requests, Triton batches them)"]
        files["inferenceservice.yaml"] = "".join(f"# {ln}\n" for ln in header_lines(rec, sizing, fmt) + extra) \
            + "\n" + _yaml([kserve_doc(rec, sizing, name, uri)])
    elif fmt == "k8s":
        assert sizing is not None
        extra = [f"the model repository: copy model_repository/ into the PersistentVolumeClaim {claim!r} "
                 "(mounted read-only at /models)",
                 (f"HPA: {REQUEST_RATE_METRIC} at {max(1, int(sizing.target_rps))} per pod (GPU serving: CPU says "
                  f"little); prometheus-adapter must serve it from Triton's nv_inference_request_success "
                  f"(docs/export.md)" if s.gputype else
                  f"HPA: CPU utilisation target {cpu_target_percent(sizing)}% = the share of the peak each replica "
                  f"runs at; with prometheus-adapter, a Pods metric on Triton's nv_inference_request_success rate at "
                  f"{figure_text(sizing.target_rps)} per pod says the same in requests")]
        files["deployment.yaml"] = "".join(f"# {ln}\n" for ln in header_lines(rec, sizing, fmt) + extra) \
            + "\n" + _yaml(k8s_docs(rec, sizing, name, claim))
    elif fmt == "compose":
        assert sizing is not None
        extra = [f"one machine: {sizing.replicas} Triton container(s) of {s.cpus} core(s)"
                 + (f" and one {s.gputype} GPU" if s.gputype else "")
                 + f"; HTTP on 127.0.0.1:{HTTP_PORT}" + (f"-{HTTP_PORT + sizing.replicas - 1}"
                                                          if sizing.replicas > 1 else ""),
                 "start: docker compose up -d (beside model_repository/)"]
        files["docker-compose.yaml"] = "".join(f"# {ln}\n" for ln in header_lines(rec, sizing, fmt) + extra) \
            + "\n" + _yaml([compose_doc(rec, sizing, name)])
    return Export(fmt, name, files, dest, s, sizing, rec.notes)


def summary(e: Export) -> dict[str, Any]:
    """What the CLI prints with --json."""
    return {"format": e.format, "model": e.name, "files": sorted([*e.files, e.model_dest]),
            "serving": {**e.serving.config.as_dict(), "gputype": e.serving.gputype,
                        "gpu_mem_bytes": e.serving.gpu_mem_bytes},
            "sizing": None if e.sizing is None else dict(e.sizing.__dict__), "notes": list(e.notes)}
