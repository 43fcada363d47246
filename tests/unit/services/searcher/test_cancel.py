"""search-cancelled in the searcher's core: no trial is requested after it, the result is published
at once and says it was cancelled, the trial in flight is still recorded, and a rebuild from the
log gives the state the searcher stored."""

from dataclasses import replace

import pytest

from schemas import Event
from schemas.events import SearchCancelled, SearchCompleted, SearchFailed, TrialResult
from services.domain.falcon_data import load_model_table
from services.searcher.search import (
    SearchState,
    cancel_reason,
    cancel_search,
    decision_events,
    rebuild_states,
    record_trial,
    start_search,
    with_outbox,
)
from tests.helpers import TARGETS, spec

TABLE = load_model_table(TARGETS / "reg-mobilenet-v2.csv")
OPS = [{"op": "conv2d", "time_share": 1.0, "memory_share": None, "flops": None}]


def answer(request, status="ok") -> TrialResult:
    value = TABLE.lookup(request.config)["value"] if status == "ok" else None
    return TrialResult(request.trial_id, request.index, request.config, status, value, 0.1, 900.0,
                       reason=None if status == "ok" else "boom")


def after_trials(n: int, **kw):
    d = start_search("s1", spec(max_trials=10, **kw), ["conv2d"], OPS)
    for _ in range(n):
        d = record_trial(d.state, answer(d.request))
    return d


def test_cancel_stops_at_once_with_the_best_so_far_and_keeps_the_trial_in_flight():
    d = after_trials(3)
    in_flight = d.request
    c = cancel_search(d.state, "enough")
    assert c.finished and c.request is None and not c.ignored
    st = c.state
    assert st.status == "cancelled" and st.stop_reason == "cancelled: enough"
    assert st.pending == (in_flight,) and len(st.trials) == 3
    cause = Event.new(SearchCancelled("enough", "ui"), "s1", "ui")
    (result,) = decision_events(cause, c)
    assert isinstance(result.payload, SearchCompleted)
    assert result.payload.stop_reason == "cancelled: enough" and len(result.payload.trials) == 3
    assert result.payload.best == st.best


def test_the_trial_in_flight_is_recorded_and_nothing_more_is_asked():
    c = cancel_search(after_trials(2).state, "stop")
    late = record_trial(c.state, answer(c.state.pending[0]))
    assert late.request is None and not late.finished and not late.ignored and not late.duplicate
    assert late.state.status == "cancelled" and len(late.state.trials) == 3 and late.state.pending == ()
    assert decision_events(Event.new(late.state.trials[-1], "s1", "runner"), late) == []
    # anything after that is refused like for any finished search
    again = record_trial(late.state, replace(answer(c.state.pending[0]), trial_id="s1/t9"))
    assert again.ignored


def test_cancel_without_a_feasible_trial_is_a_failed_search_saying_cancelled():
    d = start_search("s1", spec(max_trials=10), ["conv2d"], OPS)
    d = record_trial(d.state, answer(d.request, "failed"))
    c = cancel_search(d.state, "wrong model")
    (result,) = decision_events(Event.new(SearchCancelled("wrong model", "ui"), "s1", "ui"), c)
    assert isinstance(result.payload, SearchFailed)
    assert result.payload.stage == "search" and result.payload.reason.startswith("cancelled: wrong model")


def test_cancel_of_a_finished_search_is_ignored_and_a_second_cancel_is_a_duplicate():
    done = after_trials(10)
    assert done.state.status == "completed"
    assert "nothing to cancel" in cancel_search(done.state, "late").ignored
    c = cancel_search(after_trials(1).state, "first")
    second = cancel_search(c.state, "second")
    assert second.duplicate and second.state.stop_reason == "cancelled: first"


def test_a_cancelled_state_survives_serialisation():
    c = cancel_search(after_trials(2).state, "x")
    assert SearchState.from_dict(c.state.to_dict()) == c.state


def logged(cancel_after: int, late: bool, max_trials: int = 6):
    """Drive a search as the searcher does, cancel it after ``cancel_after`` trials, keep the log."""
    sp = spec(max_trials=max_trials)
    start = Event("kops-identified", "s9", {"spec": sp.to_dict(), "kops": ["conv2d"], "operators": OPS,
                                            "threshold": 0.05}, "profiler")
    d = start_search("s9", sp, ["conv2d"], OPS)
    state = with_outbox(d, decision_events(start, d))
    log = [start, *(Event(**e) for e in state.outbox)]
    for _ in range(cancel_after):
        done = Event.new(answer(d.request), "s9", "runner", causation_id=None)
        d = record_trial(state, done.payload)
        state = with_outbox(d, decision_events(done, d))
        log += [done, *(Event(**e) for e in state.outbox)]
    cancel = Event.new(SearchCancelled("enough", "ui"), "s9", "ui")
    d = cancel_search(state, cancel_reason(cancel.payload))
    state = with_outbox(d, decision_events(cancel, d))
    log += [cancel, *(Event(**e) for e in state.outbox)]
    if late:
        done = Event.new(answer(state.pending[0]), "s9", "runner")
        d = record_trial(state, done.payload)
        state = with_outbox(d, decision_events(done, d))
        log.append(done)
    return state, log


@pytest.mark.parametrize("late", [False, True])
@pytest.mark.parametrize("cancel_after", [0, 2])
def test_rebuild_from_the_log_gives_the_stored_cancelled_state(cancel_after, late):
    state, log = logged(cancel_after, late)
    assert state.status == "cancelled"
    assert rebuild_states(log)["s9"] == state
    # the log's topics are read in no particular order across topics: the cancel read last
    reordered = [e for e in log if e.type != "search-cancelled"] + [e for e in log if e.type == "search-cancelled"]
    assert rebuild_states(reordered)["s9"] == state


def test_rebuild_decides_a_cancel_whose_result_never_reached_the_log():
    state, log = logged(2, late=False)
    unpublished = [e for e in log if e.causation_id != next(c.event_id for c in log if c.type == "search-cancelled")]
    rebuilt = rebuild_states(unpublished)["s9"]
    assert replace(rebuilt, outbox=()) == replace(state, outbox=())     # same decision,
    assert [e["event_id"] for e in rebuilt.outbox] == [e["event_id"] for e in state.outbox]   # same event ids
