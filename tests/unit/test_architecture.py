"""The layout the README draws: services talk only over the bus. A module under one service
never imports another service; what they share lives in services/domain, services/platform,
services/knowledge and schemas/, and none of those imports a service or the tooling. The domain
imports neither the platform nor the schemas; no two packages import each other."""

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

SERVICES = ("profiler", "searcher", "treebuilder", "trial_runner")
SHARED = ("domain", "platform", "knowledge")


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


@pytest.mark.parametrize("package", ["services.domain", "services.platform", "services.knowledge", "schemas"])
def test_shared_packages_import_no_service_and_no_tooling(package):
    bad = [f"{p.relative_to(REPO)} imports {m}" for p in modules_of(package)
           for m in imported_modules(p) if owner(m) not in (None, *SHARED)]
    assert bad == []


def test_the_walk_sees_a_cross_service_import(tmp_path):
    """The check above can fail: a module importing another service is caught."""
    bad = tmp_path / "m.py"
    bad.write_text("from services.trial_runner.backends import ReplayBackend\nimport services.domain.space\n")
    assert {owner(m) for m in imported_modules(bad)} == {"trial_runner", "domain"}


def test_services_hold_only_the_four_services_and_what_they_share():
    packages = {p.name for p in (REPO / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == {*SERVICES, *SHARED}


# -- packages, sizes, the README ---------------------------------------------------------------
def package_of(module: str) -> str | None:
    """'services.searcher.search.state' -> 'services.searcher'; 'schemas.events' -> 'schemas';
    'tools.cli' -> 'tools'; 'bench.search' -> 'bench'; anything else (stdlib, tests) -> None."""
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return f"services.{parts[1]}"
    return parts[0] if parts[0] in ("schemas", "tools", "bench") else None


def packages() -> list[str]:
    under = sorted(p.name for p in (REPO / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists())
    return ["schemas", *(f"services.{p}" for p in under), "tools", "bench"]


def package_imports() -> dict[str, dict[str, set[str]]]:
    """package -> package it imports -> the modules that do (lazy imports inside functions count)."""
    graph: dict[str, dict[str, set[str]]] = {}
    for pkg in packages():
        for path in modules_of(pkg):
            for m in imported_modules(path):
                to = package_of(m)
                if to is not None and to != pkg:
                    graph.setdefault(pkg, {}).setdefault(to, set()).add(str(path.relative_to(REPO)))
    return graph


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Every elementary cycle's packages, each found once (from its smallest name)."""
    found = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, {})):
            if nxt == start:
                found.append(path)
            elif nxt > start and nxt not in path:
                walk(start, nxt, path + [nxt])
    for start in sorted(graph):
        walk(start, start, [start])
    return found


KNOWN_CYCLES: list[list[str]] = []       # none: keep it so


def test_the_domain_imports_neither_the_platform_nor_the_schemas():
    bad = [f"{p.relative_to(REPO)} imports {m}" for p in modules_of("services.domain")
           for m in imported_modules(p) if package_of(m) not in (None, "services.domain")]
    assert bad == []


def test_no_import_cycle_between_packages():
    graph = package_imports()
    found = cycles(graph)
    new = [c for c in found if c not in KNOWN_CYCLES]
    where = {" -> ".join(c): {f"{a} -> {b}": sorted(graph[a][b])[:3] for a, b in zip(c, c[1:] + c[:1])} for c in new}
    assert new == [], where


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b": {"a.py"}}, "b": {"c": {"b.py"}}, "c": {"a": {"c.py"}}, "d": {"a": {"d.py"}}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert package_of("services.searcher.search.state") == "services.searcher" and package_of("os") is None


MAX_MODULE_LINES = 550


def project_modules(*tops: str) -> list[Path]:
    """The project's Python files under ``tops``: what git tracks or would track (not what it
    ignores, such as a bench run's copy of Triton's backend in its cache)."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *tops],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):       # not a git checkout: every file
        return [p for top in tops for p in (REPO / top).rglob("*.py")]
    return [REPO / f for f in out.splitlines() if f.endswith(".py") and (REPO / f).is_file()]


def test_no_module_is_over_550_lines():
    big = {str(p.relative_to(REPO)): n for p in project_modules("schemas", "services", "tools", "bench", "tests")
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert big == {}


def test_the_readme_is_an_entry_point_and_its_links_resolve():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    assert "./scripts/demo.sh" in readme and "./scripts/test.sh" in readme        # the two commands
    for doc in (REPO / "docs").glob("*.md"):
        assert f"(docs/{doc.name})" in readme, f"{doc.name} is not linked from the README"
    for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:\s]+)", path.read_text()):          # relative links, images too
            assert (path.parent / target).exists(), f"{path.name} links to {target}, which is not there"
