"""`falcon calibrate` on the real broker, Redis and services: a tiny live space (1 core x 3 batch
sizes x 1 graph level, one single-operator model, 3 design points) measured as ordinary trials,
published as offline tables, turned into knowledge by the treebuilder, and used by the next
search; asked again, nothing is measured twice."""

import asyncio
import json
from dataclasses import replace

import numpy as np
import pytest
from redis.asyncio import Redis

from services.platform.bus import read_events
from services.domain.space import Space
from services.knowledge.store import KnowledgeStore
from services.searcher.store import SearchStore
from services.searcher.strategies import SearchContext, make_strategy
from tools.cli import main

pytestmark = pytest.mark.integration

TINY = "knobs:\n  cpus: [1]\n  batchsize: [1, 2, 4]\n  graph_opt: [all]\n"


@pytest.fixture(scope="module")
def stack(infra, start_services):
    start_services("profiler", wait=False)
    start_services("treebuilder", wait=False)
    start_services("searcher", wait=False)
    start_services("trial_runner", settings=replace(infra, runner_classes="replay,live-cpu"))
    return infra


def falcon(monkeypatch, capsys, settings, home, *argv):
    monkeypatch.setenv("FALCON_BROKER", settings.broker)
    monkeypatch.setenv("FALCON_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("FALCON_HOME", str(home))
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def _knowledge(settings, space):
    redis = Redis.from_url(settings.redis_url)
    try:
        store = KnowledgeStore(redis)
        return await store.load(space), await store.table_names()
    finally:
        await redis.aclose()


async def _trees_ready(settings, fp):
    return [i.event.payload async for i in read_events(settings, ("trees",))
            if i.event is not None and i.event.payload.space_key == fp]


async def _search(settings, sid):
    redis = Redis.from_url(settings.redis_url)
    try:
        return await SearchStore(redis).get(sid)
    finally:
        await redis.aclose()


def test_calibrate_publishes_knowledge_the_next_search_uses(stack, tmp_path, monkeypatch, capsys):
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(TINY)
    space = Space.from_file(space_file)
    argv = ["calibrate", "--space", str(space_file), "--operators", "dense", "--shapes", "1", "--points", "3",
            "--live-mode", "closed-loop", "--measure-s", "0.3", "--yes", "--json", "--out", str(tmp_path / "tables")]
    code, out, err = falcon(monkeypatch, capsys, stack, tmp_path / "home", *argv)
    assert code == 0, err
    summary = json.loads(out)
    table = f"cal-dense-seq32-d128-{space.fingerprint()[:8]}"
    assert summary["status"] == "published" and summary["trials"] == 3 and summary["sources"] == [table]
    assert summary["knowledge"]["sources"] == [table] and summary["knowledge"]["operators"] == ["dense"]
    assert "3 live trials" in err and "3/3 trials" in err                  # the plan, then the progress
    assert (tmp_path / "tables" / "models" / "sources" / f"reg-{table}.csv").exists()

    knowledge, tables = asyncio.run(_knowledge(stack, space))
    assert table in knowledge.sources and "dense" in knowledge.operators
    assert not any(t.startswith("model-table:observed-") for t in tables)   # design searches are not learnt twice
    ready = asyncio.run(_trees_ready(stack, space.fingerprint()))
    assert any(table in r.sources for r in ready)
    # every measurement was an ordinary trial: audited and priced
    sid = summary["searches"][0]
    st = asyncio.run(_search(stack, sid))
    assert st.spec.strategy == "design" and len(st.trials) == 3 and all(t.cost_usd > 0 for t in st.trials)

    # the next search over that space starts from the calibration's knowledge: falcon's first trial is
    # the knowledge's best, on a seed where a search without knowledge would try another configuration
    # (measured as the calibration was, closed-loop: a served trial would add half a minute, not a check)
    kops, ops = ["dense"], [{"op": "dense", "time_share": 1.0}]
    seed = next(s for s in range(20)
                if make_strategy("falcon", SearchContext(space, s, tuple(kops), ops, knowledge)).ask()
                != make_strategy("falcon", SearchContext(space, s, tuple(kops), ops, None)).ask())
    expected = make_strategy("falcon", SearchContext(space, seed, tuple(kops), ops, knowledge)).ask()
    profile = tmp_path / "operators.csv"
    profile.write_text("op_name,running time percentage\ndense,100\n")
    model = next((tmp_path / "home" / "calibrations").rglob("op-dense-seq32-d128.onnx"))
    code, out, err = falcon(monkeypatch, capsys, stack, tmp_path / "home", "submit", "my-model", "--model-file",
                            str(model), "--profile", str(profile), "--backend", "live", "--space", str(space_file),
                            "--live-mode", "closed-loop", "--measure-s", "0.3", "--max-trials", "1",
                            "--seed", str(seed), "--wait", "--json", "--timeout", "60")
    assert code == 0, err
    result = json.loads(out)
    assert result["recommended"] == expected
    assert np.isfinite(knowledge.sources[table]).all()

    # asked again: every search is found complete, nothing is measured again, the same tables are published
    code, out, err = falcon(monkeypatch, capsys, stack, tmp_path / "home", *argv)
    assert code == 0, err
    assert "resuming calibration" in err and "1 search(es) complete, 0 running, 0 to submit" in err
    assert json.loads(out)["trials"] == 3
    st2 = asyncio.run(_search(stack, sid))
    assert [t.trial_id for t in st2.trials] == [t.trial_id for t in st.trials]
