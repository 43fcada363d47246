"""The layout the README draws: services talk only over the bus. A module under one service
never imports another service; what they share lives in services/common, services/knowledge
and schemas/, and none of those imports a service or the tooling."""

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

SERVICES = ("profiler", "searcher", "treebuilder", "trial_runner")
SHARED = ("common", "knowledge")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def owner(module: str) -> str | None:
    """'services.searcher.store' -> 'searcher'; 'tools.cli' -> 'tools'; else None."""
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return parts[1]
    return parts[0] if parts[0] in ("tools", "bench", "tests") else None


def modules_of(package: str) -> list[Path]:
    return sorted((REPO / package.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_and_no_tooling(service):
    bad = [f"{p.relative_to(REPO)} imports {m}" for p in modules_of(f"services.{service}")
           for m in imported_modules(p) if owner(m) not in (None, service, *SHARED)]
    assert bad == []


@pytest.mark.parametrize("package", ["services.common", "services.knowledge", "schemas"])
def test_shared_packages_import_no_service_and_no_tooling(package):
    bad = [f"{p.relative_to(REPO)} imports {m}" for p in modules_of(package)
           for m in imported_modules(p) if owner(m) not in (None, *SHARED)]
    assert bad == []


def test_the_walk_sees_a_cross_service_import(tmp_path):
    """The check above can fail: a module importing another service is caught."""
    bad = tmp_path / "m.py"
    bad.write_text("from services.trial_runner.backends import ReplayBackend\nimport services.common.space\n")
    assert {owner(m) for m in imported_modules(bad)} == {"trial_runner", "common"}


def test_services_hold_only_the_four_services_and_what_they_share():
    packages = {p.name for p in (REPO / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == {*SERVICES, *SHARED}
