"""The searcher's core driven in-process against a trial backend: what a search over Kafka
decides, without Kafka (benchmarks, and the reference that fault tests compare against)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from services.common.spec import SearchSpec
from services.searcher.search import (
    SearchState,
    TrialRecord,
    record_trial,
    start_search,
)
from services.trial_runner.backends import TrialBackend, TrialSpec


def run_search(search_id: str, spec: SearchSpec, kops: Sequence[str], operators: Sequence[Mapping[str, Any]],
               backend: TrialBackend) -> SearchState:
    d = start_search(search_id, spec, kops, operators)
    while d.request is not None:
        r = d.request
        o = backend.run(TrialSpec(r.trial_id, r.config, spec.model, spec.backend, r.price_per_hour))
        d = record_trial(d.state, TrialRecord(r.trial_id, r.index, r.config, o.status, o.value, o.cost_usd,
                                              o.duration_s, o.rps, o.p50_ms, o.p99_ms, o.reason,
                                              o.extra.get("cv")))
    return d.state
