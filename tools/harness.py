"""The searcher's core driven in-process against a trial backend: what a search over Kafka
decides, without Kafka (the benchmark, and the reference that fault tests compare against).

It is the same loop as the searcher service's (``start_search``/``record_trial``), so stop
rules, constraints and failed trials behave as in production."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from services.common.spec import SearchSpec
from services.knowledge import Knowledge
from services.profiler.kops import aggregate, identify_kops
from services.searcher.search import SearchState, record_trial, start_search
from services.trial_runner.backends import TrialBackend


def run_search(search_id: str, spec: SearchSpec, kops: Sequence[str], operators: Sequence[Mapping[str, Any]],
               backend: TrialBackend, knowledge: Knowledge | None = None) -> SearchState:
    """Run the search to its end; every trial goes to ``backend`` synchronously."""
    d = start_search(search_id, spec, kops, operators, knowledge)
    while d.request is not None:
        d = record_trial(d.state, backend.run(d.request), knowledge)
    return d.state


def profiled(operators: Sequence[Mapping[str, Any]], threshold: float) -> tuple[list[str], list[dict[str, Any]]]:
    """(KOPs, operator table) as the profiler service derives them from a submitted profile."""
    if not operators:
        return [], []
    table = [o.to_dict() for o in aggregate(operators)]
    return identify_kops(table, threshold), table
