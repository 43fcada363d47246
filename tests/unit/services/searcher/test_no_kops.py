"""A model with no operator knowledge (TVM could not import it, so kops-identified has no
operators and no KOPs) is still searched: every strategy that can do without KOPs starts and
proposes trials, falcon on its model-free parts (the source models' tables and BO, no KOP curves
and no trees), the ones that cannot say so at once; and the profiler's notice reaches the
state, survives a rebuild from the log, and is in the result, status and watch."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from redis.asyncio import Redis

from schemas import Event
from schemas.events import KopsIdentified, SearchCompleted
from services.knowledge.store import KnowledgeStore
from services.platform.redis_keys import SEARCHER_INITIALISED
from services.platform.settings import Settings
from services.searcher.app import KnowledgeView, SearcherHandlers
from services.searcher.search import decision_events, rebuild_states, start_search, trade_offs
from services.searcher.store import SearchStore
from services.searcher.strategies import STRATEGIES, SearchContext, make_strategy
from services.searcher.strategies.falcon import SMOOTHING, Columns
from services.trial_runner.backends import ReplayBackend
from tests.helpers import TARGETS, knowledge, spec
from tools.app.searches import state_summary
from tools.harness import run_search

NOTICE = ("TVM 0.27 cannot import gru.onnx (OpNotImplemented: The following operators are not supported for "
          "frontend ONNX: GRU): searching without operator knowledge (no KOPs, so no KOP curves or trees)")
NEED_KOPS = {"cost-model": "operator profile", "prior": "no KOPs"}     # rank by the operators, nothing else


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_starts_without_kops_or_says_at_once_why_it_cannot(name):
    d = start_search("s", spec("gru", strategy=name), [], [], knowledge(), notices=[NOTICE])
    st = d.state
    assert st.kops == () and st.operators == () and st.notices == (NOTICE,)
    if name in NEED_KOPS:
        assert st.status == "failed" and NEED_KOPS[name] in (st.stop_reason or "") and not d.requests
    else:
        assert st.status == "running" and len(d.requests) == 1, st.stop_reason
        assert st.spec.space.allows(d.requests[0].config)


def test_falcon_without_kops_searches_on_the_source_tables_and_bo_without_trees():
    k, space = knowledge(), spec("gru").space
    without = make_strategy("falcon", SearchContext(space, 0, (), (), k))
    dense = make_strategy("falcon", SearchContext(space, 0, ("dense",), ({"op": "dense", "time_share": 1.0},), k))
    experts, with_curve = without.experts(), dense.experts()
    assert experts is not None and with_curve is not None       # the source models' tables are experts still
    assert len(experts[0]) == len(with_curve[0]) - len(SMOOTHING)   # less the KOP curve's, at each width
    untried = without.untried_mask()
    mu = np.zeros(len(untried))
    assert without.select_region(mu, Columns.everything(untried, without.observed()), without.observed()) is None
    assert dense.select_region(mu, Columns.everything(untried, dense.observed()), dense.observed()) is not None


def test_a_replay_search_without_kops_runs_to_its_recommendation():
    s = spec("gru", max_trials=6, strategy="falcon")
    st = run_search("no-kops", s, [], [], ReplayBackend(), knowledge())
    assert st.status == "completed" and len(st.trials) == 6 and st.best is not None
    table = ReplayBackend().table(str(TARGETS / "reg-gru.csv"))
    assert st.best.rps_per_usd == max(table.lookup(t.config)["value"] for t in st.trials)


def begun_event(notices=(NOTICE,), search_id="gru-no-kops") -> Event:
    return Event.new(KopsIdentified(spec("gru", strategy="falcon"), [], [], 0.05, list(notices) or None),
                     search_id, "profiler")


def test_the_notice_survives_a_rebuild_from_the_log_and_reaches_the_result():
    start = begun_event()
    d = start_search(start.search_id, start.payload.spec, [], [], None, notices=start.payload.notices)
    logged = [start, *decision_events(start, d)]
    rebuilt = rebuild_states(logged)[start.search_id]
    assert rebuilt.notices == (NOTICE,) and rebuilt.pending == d.state.pending
    assert trade_offs(rebuilt, None)["notices"][0] == NOTICE
    assert state_summary(rebuilt)["notices"] == [NOTICE]              # what falcon status and watch print
    plain = begun_event(())
    assert "notices" not in plain.data
    assert rebuild_states([plain])[plain.search_id].notices == ()


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, partition: int | None = None) -> None:
        self.events.append(event)


def test_the_searcher_service_starts_a_search_with_no_kops_and_keeps_the_notice(redis_url):
    async def go():
        redis = Redis.from_url(redis_url)
        try:
            await redis.set(SEARCHER_INITIALISED, "1")       # nothing to rebuild from a log
            handlers = SearcherHandlers(SearchStore(redis), Settings(redis_url=redis_url),
                                        KnowledgeView(KnowledgeStore(redis), 0.2))
            out = Collect()
            event = begun_event()
            await handlers.on_kops_identified(event, out)
            return await SearchStore(redis).get(event.search_id), out.events
        finally:
            await redis.aclose()
    state, events = asyncio.run(go())
    assert state is not None and state.status == "running" and state.kops == ()
    assert state.notices[0] == NOTICE           # the profiler's first, then any the searcher adds
    assert [e.type for e in events if e.type == "trial-requested"] == ["trial-requested"]
    assert not any(isinstance(e.payload, SearchCompleted) or e.type == "search-failed" for e in events)


def test_the_report_of_a_search_without_kops_says_why(tmp_path):
    from dataclasses import replace

    from tools.report import write_report
    st = run_search("no-kops", spec("gru", max_trials=4, strategy="falcon"), [], [], ReplayBackend(), knowledge())
    s = write_report(replace(st, notices=(NOTICE,)), tmp_path, knowledge())
    html = (tmp_path / "report.html").read_text()
    assert s["kops"] == [] and s["notices"][0] == NOTICE
    assert "cannot import gru.onnx (OpNotImplemented" in html and (tmp_path / "kops.png").stat().st_size > 0
