"""A failing test on a real stack keeps the stack's logs and event archive (test-logs/<test>/)
and shows each log's last lines in its failure report, so that a flaky run can be diagnosed
after the fact; a passing one keeps nothing."""

pytest_plugins = ["pytester"]

INNER = '''
import pytest
from tests.conftest import keep_logs_on_failure


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    home = tmp_path_factory.mktemp("home")
    keep_logs_on_failure(request, home)
    (home / "logs").mkdir()
    (home / "logs" / "profiler-0.log").write_text("\\n".join(f"line {i}" for i in range(40)) + "\\nlast words\\n")
    (home / "archive").mkdir()
    (home / "archive" / "events.sqlite").write_bytes(b"events")
    (home / "cache").mkdir()
    (home / "cache" / "model.onnx").write_bytes(b"big")
    return home


def test_passes(stack):
    pass


def test_fails(stack):
    assert False, "the search did not end"
'''


def test_a_failing_test_keeps_its_stack_logs_and_shows_their_tails(pytester, monkeypatch, tmp_path):
    kept = tmp_path / "kept"
    monkeypatch.setattr("tests.conftest.KEPT_LOGS", kept)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makepyfile(test_stack=INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "falcon stack logs" in out and "last words" in out and "line 24" not in out   # the last lines only
    (folder,) = kept.iterdir()
    assert folder.name.endswith("test_stack.py__test_fails")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["0-home0/archive/events.sqlite", "0-home0/logs/profiler-0.log"]      # not the cache
    assert f"kept in {folder}" in out
