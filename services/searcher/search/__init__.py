"""The searcher's pure core, by concern: :mod:`.state` (a search's state and its stored
shapes), :mod:`.decide` (the decision taken on each event), :mod:`.rebuild` (states rebuilt
from the event log) and :mod:`.results` (what a finished search publishes)."""

from services.searcher.search.state import SearchState, Status
from services.searcher.search.results import completed, estimate_data, failed, result_payload, trade_offs
from services.searcher.search.decide import (
    Decision,
    accept_trial,
    cancel_reason,
    cancel_search,
    decision_events,
    fresh_measurements,
    record_trial,
    resolve_parallel,
    serving_runners,
    start_search,
    validate_spec,
    with_outbox,
    with_predictions,
)
from services.searcher.search.rebuild import rebuild_states

__all__ = ["Decision", "SearchState", "Status", "accept_trial", "cancel_reason", "cancel_search", "completed",
           "decision_events", "estimate_data", "failed", "fresh_measurements", "rebuild_states", "record_trial",
           "resolve_parallel", "result_payload", "serving_runners", "start_search", "trade_offs", "validate_spec",
           "with_outbox", "with_predictions"]
