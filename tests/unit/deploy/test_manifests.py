"""The deploy files are checked by real tools, since Docker and Kubernetes do not run here: the
compose file by the compose-spec parser (after YAML merge keys are resolved, as docker compose
does), the Kubernetes manifests against the Kubernetes 1.37 schemas (kubernetes-validate,
strict), and both against this code base (modules that exist, settings that exist)."""

import json
from dataclasses import fields

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyCompose

from services.platform.settings import Settings
from tests.helpers import REPO
from tools.ui import UI_ENV

DEPLOY = REPO / "deploy"
SETTINGS = {"FALCON_" + f.name.upper() for f in fields(Settings)}
K8S = sorted((DEPLOY / "k8s").glob("*.yaml"))


def module_exists(module: str) -> bool:
    return (REPO / module.replace(".", "/") / "__main__.py").exists()


def known_env(module: str) -> set[str]:
    """Settings a process reads: the services' FALCON_* settings, and the dashboard's own."""
    return SETTINGS | (set(UI_ENV) if module == "tools.ui" else set())


def test_compose_file_parses_and_wires_the_stack():
    doc = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    compose = PyCompose.from_json(json.dumps(doc))
    compose.validate()
    services = doc["services"]
    assert {"kafka", "redis", "profiler", "treebuilder", "searcher", "trial-runner-cpu"} <= set(services)
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        if name not in ("kafka", "redis"):
            assert module_exists(svc["command"][0]), f"{name}: no module {svc['command']}"
            unknown = set(svc["environment"]) - known_env(svc["command"][0])
            assert not unknown, f"{name}: unknown settings {unknown}"
    assert services["trial-runner-cpu"]["deploy"]["replicas"] >= 2
    assert services["ui"]["ports"] == ["127.0.0.1:8080:8080"]            # the dashboard: this host only
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"   # KRaft
    gpu = services["trial-runner-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]


def test_a_broken_compose_file_is_caught():
    doc = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    doc["services"]["searcher"]["deploy"] = {"replicas": "two"}
    with pytest.raises(ValueError, match="expected u64"):
        PyCompose.from_json(json.dumps(doc)).validate()


@pytest.mark.parametrize("path", K8S, ids=[p.name for p in K8S])
def test_kubernetes_manifests_validate_strictly(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
        if doc["kind"] == "Deployment":
            c = doc["spec"]["template"]["spec"]["containers"][0]
            assert module_exists(c["args"][0])
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert not {e["name"] for e in c.get("env", [])} - known_env(c["args"][0])
        if doc["kind"] == "ConfigMap":
            assert not set(doc["data"]) - SETTINGS


def test_gpu_runners_are_scheduled_on_gpu_nodes_and_scale_as_a_deployment():
    docs = [d for p in K8S for d in yaml.safe_load_all(p.read_text())]
    gpu = next(d for d in docs if d["kind"] == "Deployment" and "h100" in d["metadata"]["name"])
    pod = gpu["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu.product" in pod["nodeSelector"]
    searcher = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "searcher")
    assert searcher["spec"]["replicas"] >= 2
    assert any(d["kind"] == "HorizontalPodAutoscaler" for d in docs)


def test_the_dashboard_is_a_deployment_behind_a_cluster_internal_service():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "25-ui.yaml").read_text()))
    ui = next(d for d in docs if d["kind"] == "Deployment")
    c = ui["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][0] == "tools.ui" and c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    token = next(e for e in c["env"] if e["name"] == "FALCON_UI_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["optional"] is True        # no Secret: read-only, still up
    svc = next(d for d in docs if d["kind"] == "Service")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["selector"] == ui["spec"]["selector"]["matchLabels"]


def test_a_broken_manifest_is_caught():
    doc = next(yaml.safe_load_all((DEPLOY / "k8s" / "22-searcher.yaml").read_text()))
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_the_runner_image_and_setup_install_the_same_serving_stack():
    """Served live trials need Triton + perf_analyzer (deploy/requirements-serving.txt, its own
    virtualenv) and Debian's libb64-0d; the image points the runner at that virtualenv."""
    from services.trial_runner.serving_env import TRITON_VERSION
    docker = (DEPLOY / "Dockerfile").read_text()
    setup = (REPO / "scripts" / "setup.sh").read_text()
    reqs = [ln.split("#")[0].strip() for ln in (DEPLOY / "requirements-serving.txt").read_text().splitlines()]
    reqs = [r for r in reqs if r]
    assert all("==" in r for r in reqs)                                   # pinned, every one
    assert f"tritonclient[all]=={TRITON_VERSION}" in reqs and "nvidia-pytriton==0.7.0" in reqs
    venv = docker.split("FALCON_SERVING_VENV=", 1)[1].split()[0]
    assert f"python -m venv {venv}" in docker and f"{venv}/bin/pip install --no-cache-dir -r " \
        "deploy/requirements-serving.txt" in docker
    assert "libb64-0d" in docker and "libb64-0d" in setup and "deploy/requirements-serving.txt" in setup
