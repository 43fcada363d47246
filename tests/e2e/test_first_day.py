"""A user's first day on the local stack: bad input is refused in one line before anything is
spent (by ``falcon submit``, and by the searcher for other clients), ``watch`` of an unknown id
answers at once, dead letters are listed with their reasons, and the stack keeps its history
across ``falcon down``/``falcon up`` (searches, audit trail, reports, what the treebuilder learnt
from a live search)."""

import asyncio
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from redis.asyncio import Redis

from schemas import Event
from schemas.events import ModelSubmitted
from services.platform.bus import KafkaPublisher, read_events
from services.domain.falcon_data import read_operator_profile
from services.platform.settings import Settings
from services.domain.space import Space
from services.knowledge.store import KnowledgeStore
from tests.conftest import keep_logs_on_failure
from tests.helpers import PROFILES, REPO, TARGETS, run_falcon, spec
from tools import localstack

pytestmark = pytest.mark.e2e

GRU = ["--profile", str(PROFILES / "gru" / "operators.csv"), "--replay-table", str(TARGETS / "reg-gru.csv")]
LIVE_SPACE = REPO / "deploy" / "config" / "live-cpu-space.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    home = tmp_path_factory.mktemp("first-day-home")
    keep_logs_on_failure(request, home)
    ports = {"broker_port": localstack.free_port(), "redis_port": localstack.free_port()}
    base = replace(Settings(), session_timeout_s=2.0, heartbeat_s=0.2)
    info = localstack.up(home, base, runners=1, **ports)
    yield home, info.settings(base), ports, base
    localstack.down(home)


def falcon(home, *args, timeout=240):
    return run_falcon(home, *args, timeout=timeout)


def tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), str(path))
    return path


def space_file(tmp_path, text, name="space.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


PAPER_TYPO = "knobs:\n  batchsize: [8, 16]\n  cpu: [1, 2]\n  gpumem: [1.2]\n  gpupower: [100]\n  gputype: [T4, V100]\n"
GPU_TYPO = "knobs:\n  batchsize: [8, 16]\n  cpus: [1, 2]\n  gpumem: [1.2]\n  gpupower: [100]\n  gputype: [T4, V1OO]\n"


def test_bad_input_is_refused_in_one_line_before_anything_is_published(stack, tmp_path):
    home, settings, _, _ = stack
    model = str(tiny_onnx(tmp_path / "m.onnx"))
    cases = [
        (["--space", space_file(tmp_path, "knobs:\n  batchsize: [8, 16\n  cpus: [1]\n", "broken.yaml")],
         "is not valid YAML at line 3"),
        (["--space", space_file(tmp_path, PAPER_TYPO, "typo.yaml")],
         "knob(s) cpu of the space are not in replay table gru (its knobs: batchsize, cpus, gpumem, gpupower, gputype)"),
        (["--space", space_file(tmp_path, GPU_TYPO, "gpu.yaml")], "no price for gputype value(s) ['V1OO']"),
        (["--slo-p99-ms", "50"], "replay table gru has no p99_ms column"),
        (["--measure-s", "-2"], "argument --measure-s: must be a positive number, not -2"),
        (["--max-trials", "0"], "argument --max-trials: must be at least 1"),
    ]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:          # the commands' processes side by side
        runs = list(pool.map(lambda i: falcon(home, "submit", "gru", *GRU, *cases[i][0], "--search-id", f"bad-{i}"),
                             range(len(cases))))
    for (extra, expected), r in zip(cases, runs):
        assert r.returncode == 2, (extra, r.stdout, r.stderr)
        assert expected in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr
    # a live space value no runner can apply (the runner advertises graph_opt's levels)
    live = space_file(tmp_path, "knobs:\n  cpus: [1, 2]\n  batchsize: [1, 8]\n  graph_opt: [al, all]\n", "live.yaml")
    r = falcon(home, "submit", "m", "--model-file", model, "--backend", "live",
               "--live-mode", "closed-loop", "--space", live, "--profile",
               str(PROFILES / "gru" / "operators.csv"), "--search-id", "bad-live")
    assert r.returncode == 2 and "graph_opt value(s) al cannot be applied by any live runner" in r.stderr, r.stderr
    assert "disabled, basic" in r.stderr
    # nothing reached the broker for any of them

    async def submitted():
        return {i.event.search_id async for i in read_events(settings, ("model-submitted",)) if i.event is not None}
    assert not {s for s in asyncio.run(submitted()) if s.startswith("bad-")}


def test_the_searcher_refuses_a_bad_spec_from_another_client_before_any_trial(stack):
    home, settings, _, _ = stack
    bad = replace(spec("gru"), space=Space.from_dict({"knobs": {"batchsize": [8, 16], "cpu": [1, 2], "gpumem": [1.2],
                                                                 "gpupower": [100], "gputype": ["T4"]}}))
    sid = f"other-{uuid.uuid4().hex[:6]}"

    async def go():
        async with KafkaPublisher(settings) as pub:
            await pub.publish(Event.new(ModelSubmitted(bad, read_operator_profile(PROFILES / "gru" / "operators.csv")),
                                        sid, "other-client"))
        async for item in read_events(settings, ("search-results",), timeout_s=90,
                                      until=lambda i: i.event is not None and i.event.search_id == sid):
            if item.event is not None and item.event.search_id == sid:
                return item.event
    result = asyncio.run(go())
    assert result is not None and result.type == "search-failed"
    assert "knob(s) cpu of the space are not in replay table gru" in result.data["reason"]
    timeline = json.loads(falcon(home, "audit", sid, "--json").stdout)
    assert [e["type"] for e in timeline] == ["model-submitted", "kops-identified", "search-failed"]


def test_watch_of_an_unknown_search_answers_at_once(stack):
    home, *_ = stack
    t0 = time.monotonic()
    r = falcon(home, "watch", "no-such-id", timeout=60)
    assert r.returncode == 1 and "no search 'no-such-id'" in r.stderr
    assert time.monotonic() - t0 < 30


def test_dead_letters_are_listed_with_their_reasons(stack):
    home, settings, _, _ = stack

    async def poison():
        async with KafkaPublisher(settings) as pub:
            await pub.publish_raw("model-submitted", json.dumps({"type": "model-submitted", "data": {}}).encode(),
                                  key=b"json-client")
    asyncio.run(poison())
    for _ in range(60):
        r = falcon(home, "dead-letters", "--since", "10m", "--json")
        rows = json.loads(r.stdout)
        if any(x["key"] == "json-client" for x in rows):
            break
        time.sleep(1)
    row = next(x for x in rows if x["key"] == "json-client")
    assert row["source_topic"] == "model-submitted" and row["service"] == "profiler"
    assert "the message is JSON" in row["reason"] and row["raw_size"] > 0
    text = falcon(home, "dead-letters").stdout
    assert "model-submitted" in text and "the message is JSON" in text
    since_2000 = falcon(home, "dead-letters", "--since", "2000-01-01T00:00").stdout
    assert "no dead letters" in since_2000 or "the message is JSON" in since_2000


def test_history_survives_down_and_up(stack, tmp_path):
    """A replay and a live search, falcon down, falcon up: status, audit and report still show
    them, and what the treebuilder learnt from the live search is still there and used."""
    home, settings, ports, base = stack
    assert falcon(home, "publish-offline", str(REPO / "bench" / "live-offline")).returncode == 0
    r = falcon(home, "submit", "gru", *GRU, "--max-trials", "4", "--search-id", "keep-replay", "--wait", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    ops = tmp_path / "operators.csv"
    ops.write_text("op_name,running time percentage\nconv2d,90\nrelu,10\n")
    r = falcon(home, "submit", "resnet8", "--zoo", "resnet8", "--profile", str(ops), "--backend", "live",
               "--live-mode", "closed-loop",
               # random, 12 trials: random search never proposes a configuration twice, and a noisy search
               # without a model re-measures only after half its budget (estimate.REMEASURE_FROM_BLIND),
               # so at least 6 distinct configurations, what a partly measured source needs
               # (knowledge.MIN_OBSERVED); which ones does not matter here, what the treebuilder keeps does
               "--strategy", "random", "--seed", "1",
               "--max-trials", "12", "--measure-s", "0.2", "--search-id", "keep-live", "--wait", "--json", timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    live = json.loads(r.stdout)
    space = Space.from_file(LIVE_SPACE)

    async def learnt():
        redis = Redis.from_url(settings.redis_url)
        try:
            for _ in range(450):          # the live space's knowledge is rebuilt with it (calibrated tables too)
                k = await KnowledgeStore(redis).load(space)
                if k is not None and any(s.startswith("observed-resnet8-") for s in k.sources):
                    return k
                await asyncio.sleep(0.2)
        finally:
            await redis.aclose()
    before = asyncio.run(learnt())
    assert before is not None, "the live search's trials did not become a source of the live space's knowledge"
    status_before = {s: json.loads(falcon(home, "status", s, "--json").stdout) for s in ("keep-replay", "keep-live")}
    audit_before = {s: json.loads(falcon(home, "audit", s, "--json").stdout) for s in ("keep-replay", "keep-live")}

    localstack.down(home)
    info = localstack.up(home, base, runners=1, **ports)
    settings = info.settings(base)

    for sid in ("keep-replay", "keep-live"):
        assert json.loads(falcon(home, "status", sid, "--json").stdout) == status_before[sid]
        assert json.loads(falcon(home, "audit", sid, "--json").stdout) == audit_before[sid]
    r = falcon(home, "report", "keep-live", "--out", str(tmp_path / "report"), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["recommended"]["config"] == live["recommended"] and rep["wall_s"] > 0
    after = asyncio.run(learnt())
    assert after is not None and after.version == before.version
    assert sorted(after.sources) == sorted(before.sources)
    # a new search in that space is given the stored knowledge at once: the first live search had to ask
    # the treebuilder for it (knowledge-requested), the one after the restart does not
    r = falcon(home, "submit", "resnet8", "--zoo", "resnet8", "--profile", str(ops), "--backend", "live",
               "--live-mode", "closed-loop",
               "--max-trials", "1", "--measure-s", "0.2", "--search-id", "keep-live-2", "--wait", "--json",
               timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "knowledge-requested" in [e["type"] for e in audit_before["keep-live"]]
    assert "knowledge-requested" not in [e["type"] for e in json.loads(falcon(home, "audit", "keep-live-2",
                                                                              "--json").stdout)]
    # Redis wiped as well: falcon rebuild restores from the archive (the broker restarted empty)

    async def flush():
        redis = Redis.from_url(settings.redis_url)
        await redis.flushall()
        await redis.aclose()
    asyncio.run(flush())
    r = falcon(home, "rebuild", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["searches_restored"] >= 3
    assert json.loads(falcon(home, "status", "keep-replay", "--json").stdout) == status_before["keep-replay"]


def test_a_search_running_at_falcon_down_goes_on_after_falcon_up(stack):
    """The broker forgets the trial a search was waiting for; falcon up re-publishes it (or its
    stored result), and the search ends as if nothing had happened."""
    home, _, ports, _ = stack
    r = falcon(home, "submit", "gru", *GRU, "--max-trials", "30", "--strategy", "random",
               "--search-id", "keep-running")
    assert r.returncode == 0, r.stderr
    for _ in range(120):
        r = falcon(home, "status", "keep-running", "--json")
        if r.returncode == 0 and json.loads(r.stdout)["trials"] >= 3:
            break
        time.sleep(0.5)
    assert json.loads(r.stdout)["status"] == "running", "the search ended before the stack could be stopped"
    localstack.down(home)
    r = falcon(home, "up", "--runners", "1", "--broker-port", str(ports["broker_port"]),
               "--redis-port", str(ports["redis_port"]), "--knowledge-timeout", "60")
    assert r.returncode == 0, r.stderr
    assert "resumed 1 search(es) that were running at falcon down: keep-running" in r.stderr
    r = falcon(home, "watch", "keep-running", "--timeout", "240", "--interval", "0.5", timeout=300)
    assert r.returncode == 0 and "completed: max-trials" in r.stdout, r.stdout + r.stderr
    status = json.loads(falcon(home, "status", "keep-running", "--json").stdout)
    assert status["trials"] == 30
    trials = [e for e in json.loads(falcon(home, "audit", "keep-running", "--json").stdout)
              if e["type"] == "trial-completed"]
    assert len({t["summary"].split()[1] for t in trials}) == 30          # every trial once, none lost ("trial N")


def test_knowledge_is_waited_for_with_progress_until_it_is_built(stack):
    """What falcon up does before it says ready: ask the treebuilder for the shipped spaces'
    knowledge and wait, saying which are still building, until each is built from the dataset."""
    from tools.cli.data_cmds import publish_offline, wait_knowledge
    _, settings, _, _ = stack
    space = Space.from_file(LIVE_SPACE)
    asyncio.run(publish_offline(settings, REPO / "bench" / "live-offline"))
    said: list[str] = []
    state = asyncio.run(wait_knowledge(settings, {"the live CPU space": space}, 180, progress_every_s=0,
                                       say=said.append))
    assert state == {"the live CPU space": "ready"}

    async def built():
        redis = Redis.from_url(settings.redis_url)
        try:
            store = KnowledgeStore(redis)
            return await store.stored_version(space), await store.dataset_version()
        finally:
            await redis.aclose()
    stored, current = asyncio.run(built())
    assert stored == current is not None
    assert all("building the offline knowledge" in line and "the live CPU space" in line for line in said)
