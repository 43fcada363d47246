"""The whole path on the local stack: submit -> kops -> trials -> search-completed, the CLI's
exit codes and JSON, the treebuilder's dataset in Redis, and an audit rebuilt from the log."""

import asyncio
import json
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from schemas import Event
from schemas.events import ModelSubmitted
from services.platform.bus import KafkaPublisher
from services.domain.falcon_data import load_model_table
from services.platform.settings import Settings
from services.knowledge.store import KnowledgeStore
from tests.conftest import keep_logs_on_failure
from tests.helpers import DATA, PROFILES, TARGETS, gru_onnx, run_falcon, spec
from tools import localstack, units

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory, request):
    home = tmp_path_factory.mktemp("falcon-home")
    keep_logs_on_failure(request, home)
    base = replace(Settings(), session_timeout_s=2.0, heartbeat_s=0.2)
    info = localstack.up(home, base, runners=2, broker_port=localstack.free_port(), redis_port=localstack.free_port())
    yield home, info.settings(base)
    localstack.down(home)


def falcon(home, *args, timeout=180):
    return run_falcon(home, *args, timeout=timeout)


def test_search_end_to_end_and_its_audit(local_stack):
    home, settings = local_stack
    model = "resnet-101"
    r = falcon(home, "publish-offline", str(DATA), "--json")
    assert r.returncode == 0, r.stderr
    published = json.loads(r.stdout)["published"]

    r = falcon(home, "submit", model, "--profile", str(PROFILES / model / "operators.csv"),
               "--replay-table", str(TARGETS / f"reg-{model}.csv"), "--max-trials", "6", "--seed", "7",
               "--search-id", "e2e-resnet", "--wait", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "completed" and result["trials"] == 6 and result["stop_reason"] == "max-trials"
    assert result["kops"] == ["conv2d"]
    table = load_model_table(TARGETS / f"reg-{model}.csv")
    assert result["value"] == pytest.approx(table.lookup(result["recommended"])["value"])
    assert result["rps_per_usd_unit"] == "norm"           # "value" is RPS/$, normalised in a replay search

    r = falcon(home, "status", "e2e-resnet", "--json")
    status = json.loads(r.stdout)
    assert status["status"] == "completed" and status["best_value"] == pytest.approx(result["value"])

    r = falcon(home, "audit", "e2e-resnet", "--json")
    assert r.returncode == 0, r.stderr
    timeline = json.loads(r.stdout)
    types = [e["type"] for e in timeline]
    assert types[0] == "model-submitted" and types[1] == "kops-identified" and types[-1] == "search-completed"
    assert types.count("trial-requested") == 6 and types.count("trial-completed") == 6
    # every event but the submission was caused by an earlier event of the same search
    ids = {e["event_id"]: i for i, e in enumerate(timeline)}
    assert all(ids[e["causation_id"]] < i for i, e in enumerate(timeline) if e["type"] != "model-submitted")
    # the trial history in the log alone gives the same recommendation
    trials = [e for e in timeline if e["type"] == "trial-completed"]
    assert len({t["summary"].split()[1] for t in trials}) == 6           # "trial N ..."

    async def dataset():
        redis = Redis.from_url(settings.redis_url)
        try:
            for _ in range(100):
                ds = await KnowledgeStore(redis).load_dataset()
                if len(ds.model_tables) + len(ds.kop_curves) >= published:
                    return ds
                await asyncio.sleep(0.1)
            return ds
        finally:
            await redis.aclose()
    ds = asyncio.run(dataset())
    assert len(ds.model_tables) == 18 and len(ds.kop_curves) == published - 18


def publish_from_another_client(settings, sid, submitted):
    """A submission that does not come through falcon submit's checks (another client of the bus)."""
    async def go():
        async with KafkaPublisher(settings) as pub:
            await pub.publish(Event.new(submitted, sid, "other-client"))
    asyncio.run(go())


def test_failed_search_exits_non_zero_with_the_reason(local_stack):
    home, settings = local_stack
    # falcon submit refuses it before anything is published (exit 2, one line) ...
    r = falcon(home, "submit", "mystery", "--replay-table", str(TARGETS / "reg-gru.csv"), "--wait", "--json",
               "--search-id", "e2e-noprofile", "--timeout", "60")
    assert r.returncode == 2 and "needs the model's operators" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # ... and from another client the profiler fails the search, which falcon watch reports with exit 1
    publish_from_another_client(settings, "e2e-noprofile", ModelSubmitted(spec("gru"), None))
    r = falcon(home, "watch", "e2e-noprofile", "--timeout", "60", "--interval", "0.5")
    assert r.returncode == 1 and "operator profile" in r.stdout, r.stdout + r.stderr


def test_budget_stop_is_honoured(local_stack):
    home, _ = local_stack
    r = falcon(home, "submit", "gru", "--profile", str(PROFILES / "gru" / "operators.csv"),
               "--replay-table", str(TARGETS / "reg-gru.csv"), "--max-trials", "50", "--budget-usd", "1.0",
               "--search-id", "e2e-budget", "--wait", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["stop_reason"] == "budget" and out["spent_usd"] <= 1.0


def test_a_file_that_is_not_a_model_fails_the_search(local_stack, tmp_path):
    home, settings = local_stack
    bad = tmp_path / "resnet.onnx"
    bad.write_bytes(b"definitely not a protobuf \xff\xfe")
    # refused by falcon submit's intake, exit 2, before anything is published ...
    r = falcon(home, "submit", "resnet", "--model-file", str(bad), "--profile", str(PROFILES / "gru" / "operators.csv"),
               "--replay-table", str(TARGETS / "reg-gru.csv"), "--wait", "--json", "--timeout", "60")
    assert r.returncode == 2 and "is not an ONNX model" in r.stderr, r.stderr
    # ... and the profiler still fails such a search from another client, with the reason
    other = replace(spec("gru"), model={"name": "resnet", "format": "onnx", "uri": str(bad)})
    publish_from_another_client(settings, "e2e-not-a-model", ModelSubmitted(other, None))
    r = falcon(home, "watch", "e2e-not-a-model", "--timeout", "60", "--interval", "0.5")
    assert r.returncode == 1 and "not an ONNX model" in r.stdout, r.stdout + r.stderr


def test_a_model_tvm_cannot_import_is_searched_without_operator_knowledge(local_stack, tmp_path):
    """A valid ONNX GRU (TVM 0.27's ONNX frontend has no GRU): no KOPs, a notice, and a recommendation."""
    home, _ = local_stack
    r = falcon(home, "submit", "gru", "--model-file", str(gru_onnx(tmp_path / "gru.onnx")), "--replay-table",
               str(TARGETS / "reg-gru.csv"), "--max-trials", "3", "--search-id", "e2e-no-kops", "--wait", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "completed" and result["trials"] == 3 and result["kops"] == []
    notice = next(n for n in result["notices"] if "cannot import gru.onnx" in n)
    assert "GRU" in notice and "searching without operator knowledge" in notice
    for args in (("watch", "e2e-no-kops", "--timeout", "30"), ("status", "e2e-no-kops")):
        r = falcon(home, *args)
        assert r.returncode == 0 and notice in r.stdout, r.stdout + r.stderr


def test_falcon_mcts_bo_search_over_kafka_matches_the_in_process_run(local_stack):
    """The treebuilder's dataset in Redis gives the searcher the same knowledge as the bench."""
    from services.domain.falcon_data import read_operator_profile
    from services.domain.spec import DEFAULT_KOP_THRESHOLD
    from services.trial_runner.backends import ReplayBackend
    from tests.helpers import knowledge, spec
    from tools.harness import profiled, run_search

    home, settings = local_stack
    assert falcon(home, "publish-offline", str(DATA)).returncode == 0
    model = "bert-large"
    r = falcon(home, "submit", model, "--profile", str(PROFILES / model / "operators.csv"),
               "--replay-table", str(TARGETS / f"reg-{model}.csv"), "--strategy", "falcon", "--max-trials", "5",
               "--seed", "2", "--search-id", "e2e-falcon", "--wait", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["strategy"] == "falcon" and result["trials"] == 5 and set(result["kops"]) == {"transpose", "dense"}

    kops, operators = profiled(read_operator_profile(PROFILES / model / "operators.csv"), DEFAULT_KOP_THRESHOLD)
    ref = run_search("ref", spec(model, max_trials=5, strategy="falcon", seed=2), kops, operators, ReplayBackend(),
                     knowledge())
    expected = [t.config for t in ref.trials]
    timeline = json.loads(falcon(home, "audit", "e2e-falcon", "--json").stdout)
    requested = [e["summary"].split(" ", 2)[2] for e in timeline if e["type"] == "trial-requested"]
    assert requested == [units.config(c) for c in expected]
    assert result["value"] >= 0.98


def test_treebuilder_publishes_versioned_trees_and_exports_them(local_stack, tmp_path):
    from services.platform.bus import read_events
    home, settings = local_stack
    assert falcon(home, "publish-offline", str(DATA)).returncode == 0

    async def trees_ready():
        redis = Redis.from_url(settings.redis_url)
        version = int(await redis.get("falcon:offline:version"))
        await redis.aclose()

        def current(i):
            return i.event is not None and i.event.data["version"] == version
        async for item in read_events(settings, ("trees",), until=current, timeout_s=90):
            if current(item):
                return item.event
    ev = asyncio.run(trees_ready())
    assert ev is not None and ev.type == "trees-ready" and ev.data["version"] >= 1
    ops = {o["op"]: o for o in ev.data["operators"]}
    assert {"conv2d", "dense", "transpose"} <= set(ops) and len(ev.data["sources"]) == 18
    assert all(1 <= o["tree_height"] <= 8 and o["kept"] for o in ops.values())
    r = falcon(home, "trees", "--out", str(tmp_path / "trees"), "--json")
    assert r.returncode == 0, r.stderr
    conv = json.loads((tmp_path / "trees" / "conv2d.json").read_text())
    assert conv["size"] == 1440 and len(conv["children"]) == 2 and "svm" in conv


def test_rebuild_command_restores_searches_after_redis_is_wiped(local_stack):
    home, settings = local_stack
    before = json.loads(falcon(home, "status", "e2e-resnet", "--json").stdout)

    async def flush():
        redis = Redis.from_url(settings.redis_url)
        await redis.flushall()
        await redis.aclose()
    asyncio.run(flush())
    assert falcon(home, "status", "e2e-resnet").returncode == 1          # gone
    r = falcon(home, "rebuild", "--json")
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    assert counts["searches_restored"] >= 3 and counts["trial_results_restored"] >= 6
    after = json.loads(falcon(home, "status", "e2e-resnet", "--json").stdout)
    assert after == before


def test_a_served_live_search_deploys_each_trial_in_triton_and_reports_the_peak_within_the_slo(local_stack,
                                                                                               tmp_path):
    """The default live search: each trial a Triton deployment stressed by perf_analyzer (the
    runner service runs them), on the served space, judged against the SLO."""
    home, settings = local_stack
    r = falcon(home, "submit", "resnet8", "--zoo", "resnet8", "--backend", "live", "--max-trials", "1",
               "--slo-p99-ms", "100", "--search-id", "e2e-served", "--wait", "--json", timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "completed" and result["trials"] == 1 and result["rps"] > 0
    assert {"queue_delay_us", "replicas", "precision"} <= set(result["recommended"])
    r = falcon(home, "report", "e2e-served", "--out", str(tmp_path / "report"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert 0 < rep["recommended"]["p99_ms"] <= 100
    runners = json.loads(falcon(home, "runners", "--json").stdout)
    live = [x for x in runners if "live-cpu" in x["classes"]][0]["capabilities"]["live"]
    assert "closed-loop" in live["modes"] and "precision" in live


def test_live_search_of_a_zoo_model_profiles_it_with_tvm_measures_it_and_reports(local_stack, tmp_path):
    """A zoo model submitted as ONNX: the profiler finds its KOPs with TVM, a live runner (the only
    one serving class live-cpu) measures real RPS and p99 under an SLO, and the report shows it."""
    home, settings = local_stack
    r = falcon(home, "submit", "resnet8", "--zoo", "resnet8", "--backend", "live",
               "--live-mode", "closed-loop", "--max-trials", "4",
               "--measure-s", "0.5", "--slo-p99-ms", "500", "--search-id", "e2e-live", "--wait", "--json",
               timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "completed" and result["trials"] == 4 and result["kops"] == ["conv2d"]
    assert result["rps"] > 0 and set(result["recommended"]) == {"cpus", "batchsize", "graph_opt"}

    timeline = json.loads(falcon(home, "audit", "e2e-live", "--json").stdout)
    requested = [e for e in timeline if e["type"] == "trial-requested"]
    assert len(requested) == 4 and {e["topic"] for e in requested} == {"trial-requested.live-cpu"}

    r = falcon(home, "report", "e2e-live", "--out", str(tmp_path / "report"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["recommended"]["p99_ms"] <= 500 and rep["recommended"]["usd_per_million_requests"] > 0
    # every live measurement's spread reached the searcher's state (it weighs the trial by it)
    assert all(h["stability_cv"] is not None and h["stability_cv"] >= 0 for h in rep["history"])
    page = (tmp_path / "report" / "report.html").read_text()
    assert "resnet8" in page and "conv2d" in page and (tmp_path / "report" / "path.png").exists()

    runners = json.loads(falcon(home, "runners", "--json").stdout)
    live = [x for x in runners if "live-cpu" in x["classes"]]
    assert len(live) == 1 and live[0]["capabilities"]["live"]["gputype"] == ["none"]
    assert len(runners) == 2

    async def observed():      # the measured trials joined the treebuilder's dataset
        redis = Redis.from_url(settings.redis_url)
        try:
            for _ in range(100):
                ds = await KnowledgeStore(redis).load_dataset()
                tables = [t for n, t in ds.model_tables.items() if n.startswith("observed-resnet8-")
                          and set(t.knobs) == {"cpus", "batchsize", "graph_opt"}]    # this space's, not the served one's
                if tables:
                    return tables[0]
                await asyncio.sleep(0.1)
        finally:
            await redis.aclose()
    table = asyncio.run(observed())
    # one row per configuration measured; one re-measured (a live runner's spread can make the
    # search noisy, see estimate.noisy) is its measurements' mean
    measured: dict[tuple, list[float]] = {}
    for h in rep["history"]:
        if h["status"] == "ok":
            measured.setdefault(tuple(sorted(h["config"].items())), []).append(h["rps_per_usd"])
    assert table is not None and len(table.rows) == len(measured) >= 2
    for config, values in measured.items():
        assert table.lookup(dict(config))["value"] == pytest.approx(sum(values) / len(values))
