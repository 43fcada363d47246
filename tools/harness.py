"""The searcher's core driven in-process against a trial backend: what a search over Kafka
decides, without Kafka (the benchmark, and the reference that fault tests compare against).

It is the same loop as the searcher service's (``start_search``/``record_trial``), so stop
rules, constraints and failed trials behave as in production."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from services.domain.spec import SearchSpec
from services.knowledge import Knowledge
from services.profiler.kops import aggregate, identify_kops
from services.searcher.search import SearchState, record_trial, start_search
from services.trial_runner.backends import TrialBackend


@dataclass(frozen=True)
class Simulated:
    state: SearchState
    finished_at: tuple[float, ...]     # per trial (state.trials order): when its result came, in seconds


def simulate(search_id: str, spec: SearchSpec, kops: Sequence[str], operators: Sequence[Mapping[str, Any]],
             backend: TrialBackend, knowledge: Knowledge | None = None) -> Simulated:
    """Run the search to its end on a simulated clock: every trial in flight takes its
    ``duration_s`` and the earliest to finish reports first (ties in request order), so with
    ``spec.parallel`` = Q the searcher tops its batch up as each result arrives, as in
    production. The backend answers each trial synchronously when it is requested."""
    d = start_search(search_id, spec, kops, operators, knowledge)
    running: list[tuple[float, int, Any]] = []
    seq = 0
    now = 0.0
    finished: list[float] = []
    while True:
        for request in d.requests:
            result = backend.run(request)
            heapq.heappush(running, (now + max(result.duration_s, 0.0), seq, result))
            seq += 1
        if not running:
            return Simulated(d.state, tuple(finished))
        now, _, result = heapq.heappop(running)
        before = len(d.state.trials)
        d = record_trial(d.state, result, knowledge)
        if len(d.state.trials) > before:
            finished.append(now)


def run_search(search_id: str, spec: SearchSpec, kops: Sequence[str], operators: Sequence[Mapping[str, Any]],
               backend: TrialBackend, knowledge: Knowledge | None = None) -> SearchState:
    """Run the search to its end (see :func:`simulate`)."""
    return simulate(search_id, spec, kops, operators, backend, knowledge).state


def profiled(operators: Sequence[Mapping[str, Any]], threshold: float) -> tuple[list[str], list[dict[str, Any]]]:
    """(KOPs, operator table) as the profiler service derives them from a submitted profile."""
    if not operators:
        return [], []
    table = [o.to_dict() for o in aggregate(operators)]
    return identify_kops(table, threshold), table
