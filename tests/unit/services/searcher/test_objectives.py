"""Searches under each objective: the searcher ranks and tells strategies the objective (not the
runner's RPS/$), stops at a target stated in the objective's unit, says when no offline knowledge
backs the objective, and search-completed carries the Pareto front with each objective's pick."""

from dataclasses import replace
from functools import cache

import pytest

import schemas
from schemas import Event
from services.domain.falcon_data import read_operator_profile
from services.domain.objectives import Objective
from services.domain.spec import Constraints, SearchSpec, StopRules
from services.knowledge import Knowledge, OfflineDataset
from services.searcher.search import completed, validate_spec
from services.searcher.strategies import SearchContext, StrategyError, knowledge_notice, make_strategy
from services.trial_runner.backends import ReplayBackend
from tools.harness import profiled, run_search
from tests.helpers import REPO

LIVE = REPO / "bench" / "live"
BACKEND = ReplayBackend()


def table(model="gru"):
    return BACKEND.table(str(LIVE / "models" / "targets" / f"reg-{model}.csv"))


@cache
def knowledge() -> Knowledge:
    return Knowledge.build(OfflineDataset.from_folder(REPO / "bench" / "live-offline"), table().space)


def live_spec(objective: Objective, model="gru", trials=8, strategy="random", **kw) -> SearchSpec:
    return SearchSpec(model={"name": model, "format": "falcon-profile", "uri": None},
                      backend={"kind": "replay", "table": str(LIVE / "models" / "targets" / f"reg-{model}.csv"),
                               "trial_seconds": 900.0},
                      space=table(model).space, stop=StopRules(trials, kw.pop("target_value", None)),
                      strategy=strategy, objective=objective, **kw)


def run(spec, with_knowledge=False, model="gru"):
    kops, ops = profiled(read_operator_profile(LIVE / "models" / "operators" / model / "operators.csv"), 0.05)
    return run_search(f"obj-{spec.objective.name}", spec, kops, ops, BACKEND, knowledge() if with_knowledge else None)


def test_the_search_ranks_and_tells_the_cost_of_the_load_not_rps_per_usd():
    st = run(live_spec(Objective("usd-for-load", 3000), trials=42))         # the whole space
    cost = {id(t): st.spec.prices.hourly(t.config) * -(-3000 // t.rps) for t in st.trials}
    cheapest = min(cost.values())
    assert st.spec.objective.natural(st.objective_value(st.best)) == pytest.approx(cheapest)
    # on a tie of the cost, the more headroom (higher RPS/$), then the earlier
    tied = [t for t in st.trials if cost[id(t)] == pytest.approx(cheapest)]
    assert st.best.rps_per_usd == max(t.rps_per_usd for t in tied)
    assert st.observed_values() == [st.objective_value(t) for t in st.trials]       # no constraint: as measured
    assert all(v < 0 for v in st.observed_values())                                  # higher is better


def test_an_infeasible_trial_is_told_as_the_worst_objective_seen():
    st = run(live_spec(Objective("p99"), trials=12, constraints=Constraints(max_usd_per_million=0.0055)))
    told = st.observed_values()
    floor = min(st.objective_value(t) for t in st.trials)
    assert any(st.violations(t) for t in st.trials) and any(not st.violations(t) for t in st.trials)
    for t, v in zip(st.trials, told):
        assert v == (st.objective_value(t) if not st.violations(t) else floor)
    assert st.best.p99_ms == min(t.p99_ms for t in st.trials if not st.violations(t))


def test_a_target_is_stated_in_the_objectives_unit():
    st = run(live_spec(Objective("p99"), trials=42, target_value=1.0))
    assert st.stop_reason == "target" and st.best.p99_ms <= 1.0 and st.trials[-1] is st.best
    assert all(t.p99_ms > 1.0 for t in st.trials[:-1])


def test_search_completed_carries_the_objective_the_front_and_each_objectives_pick():
    st = run(live_spec(Objective("usd-for-load", 20000), trials=10, strategy="falcon"), with_knowledge=True)
    done = completed(st)
    assert done.objective == Objective("usd-for-load", 20000)
    assert done.objective_value == pytest.approx(-st.objective_value(st.best))
    assert done.best_per_objective["usd-for-load"] == st.best.trial_id
    assert set(done.best_per_objective) == {"usd-for-load", "rps-per-usd", "p99"}
    assert done.pareto and [p.usd_per_million for p in done.pareto] == sorted(p.usd_per_million for p in done.pareto)
    p99_pick = next(t for t in st.trials if t.trial_id == done.best_per_objective["p99"])
    assert p99_pick.p99_ms == min(t.p99_ms for t in st.trials)
    assert any("p99" in p.best_for for p in done.pareto)        # the fastest is always on the front
    assert done.notices and "read as the cost of 20,000 RPS" in done.notices[0]
    wire = schemas.decode(schemas.encode(Event.new(done, st.search_id, "test")))
    assert wire.payload == done


def test_an_objective_without_offline_knowledge_is_said_and_runs_on_the_online_model():
    energy = Objective("energy-per-request")
    assert "no offline knowledge for objective energy-per-request" in knowledge_notice("falcon", energy)
    assert "plain GP-EI" in knowledge_notice("falcon", energy)
    assert knowledge_notice("gp-ei", energy) is None                 # it never reads offline knowledge
    assert knowledge_notice("falcon", Objective()) is None
    ctx = SearchContext(table().space, 0, knowledge=knowledge(), objective=energy)
    assert make_strategy("falcon", ctx).ctx.knowledge is None
    assert make_strategy("falcon", replace(ctx, objective=Objective("p99"))).ctx.knowledge is knowledge()
    assert make_strategy("morphling", replace(ctx, objective=Objective("usd-for-load", 10))).ctx.knowledge is None
    with pytest.raises(StrategyError, match="the prior strategy ranks configurations by what its offline knowledge "
                                            "predicts"):
        make_strategy("prior", ctx)
    problems = validate_spec(live_spec(energy, strategy="cost-model"))
    assert any("cost-model strategy" in p and "energy-per-request" in p for p in problems)


@pytest.mark.parametrize("strategy", ["falcon", "gp-ei", "prior", "cost-model", "tpe"])
def test_every_strategy_optimises_the_objective(strategy):
    st = run(live_spec(Objective("p99"), trials=8, strategy=strategy), with_knowledge=True)
    assert st.status == "completed" and len(st.trials) == 8
    assert st.best.p99_ms == min(t.p99_ms for t in st.trials)
