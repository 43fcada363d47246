"""trial-completed, search-completed and search-failed v2 name a trial's RPS/$ ``rps_per_usd`` and
state its unit; v1 (``value``, unit implied by the backend) is still read everywhere it can come
from: the wire, an old stored search state, the event log a search is rebuilt from."""

import msgpack
import pytest

import schemas
from schemas import Event, SchemaError
from schemas.events import SearchCompleted, SearchFailed, TrialResult
from schemas.upcast import upcast
from services.domain.figures import NORMALISED, REQ_PER_USD
from services.domain.space import PAPER_SPACE
from services.searcher.search import SearchState, rebuild_states, record_trial, start_search
from tests.helpers import spec

CONFIG = dict(PAPER_SPACE.config_at(7))


def v1_row(value: float | None = 0.81, status: str = "ok", **over) -> dict:
    return {"trial_id": "s1/t0", "index": 0, "config": CONFIG, "status": status, "value": value, "cost_usd": 0.2,
            "duration_s": 900.0, "runner": "r1", "rps": None, "p50_ms": None, "p99_ms": None, "reason": None, **over}


def v1_wire(event_type: str, data: dict, search_id: str = "s1", causation_id: str | None = None) -> bytes:
    """A v1 event as an older writer put it on the wire."""
    return msgpack.packb(Event(event_type, search_id, data, "old-writer", causation_id=causation_id,
                               version=1).as_dict(), use_bin_type=True)


def test_writers_write_v2_with_the_unit_stated():
    r = TrialResult("s1/t0", 0, CONFIG, "ok", 0.81, 0.2, 900.0, rps_per_usd_unit=NORMALISED)
    event = schemas.decode(schemas.encode(Event.new(r, "s1", "runner")))
    assert event.version == 2 and event.data["rps_per_usd"] == 0.81 and "value" not in event.data
    assert event.data["rps_per_usd_unit"] == "norm" and event.payload == r


def test_a_v2_figure_without_its_unit_or_in_an_unknown_unit_is_refused_at_the_writer():
    unstated = TrialResult("s1/t0", 0, CONFIG, "ok", 0.81, 0.2, 900.0)
    with pytest.raises(SchemaError, match="rps_per_usd_unit"):
        schemas.encode(Event.new(unstated, "s1", "runner"))
    with pytest.raises(SchemaError, match="rps_per_usd_unit"):
        schemas.encode(Event.new(TrialResult("s1/t0", 0, CONFIG, "ok", 0.81, 0.2, 900.0,
                                             rps_per_usd_unit="req/h"), "s1", "runner"))   # type: ignore[arg-type]
    failed = TrialResult("s1/t0", 0, CONFIG, "failed", None, 0.0, 1.0, reason="oom")    # no figure, no unit
    assert schemas.decode(schemas.encode(Event.new(failed, "s1", "runner"))).payload == failed
    with pytest.raises(SchemaError, match="'rps_per_usd' is a required"):       # v2 has no "value"
        schemas.decode(msgpack.packb({**Event.new(failed, "s1", "r").as_dict(), "data": v1_row()}))


def test_a_v1_trial_completed_is_read_and_takes_the_unit_of_the_search_that_records_it():
    event = schemas.decode(v1_wire("trial-completed", v1_row(0.81)), expect=("trial-completed",))
    assert event.version == 1
    result = event.payload
    assert result.rps_per_usd == 0.81 and result.rps_per_usd_unit is None and result.ok   # v1 did not say
    for kind, unit in (("replay", NORMALISED), ("live", REQ_PER_USD)):
        sp = spec(max_trials=3)
        sp = type(sp).from_dict({**sp.to_dict(), "backend": {**sp.backend, "kind": kind}})
        d = start_search("s1", sp, ["conv2d"], [])
        r = d.request
        old = schemas.decode(v1_wire("trial-completed", v1_row(0.81, trial_id=r.trial_id, index=r.index,
                                                                config=dict(r.config))))
        recorded = record_trial(d.state, old.payload).state.trials[-1]
        assert (recorded.rps_per_usd, recorded.rps_per_usd_unit) == (0.81, unit), kind


@pytest.mark.parametrize("kind, unit", [("replay", NORMALISED), ("live", REQ_PER_USD), ("", None)])
def test_a_v1_search_completed_is_read_with_the_unit_of_its_backend(kind, unit):
    data = {"best": v1_row(0.97), "stop_reason": "max-trials", "trials": [v1_row(0.97), v1_row(None, "failed",
                                                                                               reason="oom")],
            "spent_usd": 0.4, "strategy": "falcon", "kops": ["conv2d"], "runners_up": [v1_row(0.5)],
            "backend_kind": kind}
    p = schemas.decode(v1_wire("search-completed", data)).payload
    assert isinstance(p, SearchCompleted)
    assert (p.best.rps_per_usd, p.best.rps_per_usd_unit) == (0.97, unit)
    assert [(t.rps_per_usd, t.rps_per_usd_unit) for t in p.trials] == [(0.97, unit), (None, None)]
    assert p.runners_up[0].rps_per_usd == 0.5 and p.runners_up[0].rps_per_usd_unit == unit


def test_a_v1_search_failed_with_trials_is_read():
    p = schemas.decode(v1_wire("search-failed", {"stage": "trial", "reason": "every trial failed",
                                                 "trials": [v1_row(None, "failed", reason="oom")]})).payload
    assert isinstance(p, SearchFailed) and p.trials[0].rps_per_usd is None and p.trials[0].reason == "oom"
    assert upcast("search-failed", 1, {"stage": "profile", "reason": "x"}) == {"stage": "profile", "reason": "x"}


def test_a_search_state_stored_before_units_were_stated_migrates():
    d = start_search("s1", spec(max_trials=3), ["conv2d"], [])
    r = d.request
    stored = d.state.to_dict()
    stored["trials"] = [v1_row(0.81, trial_id=r.trial_id, index=r.index, config=dict(r.config))]
    stored["pending"] = []
    st = SearchState.from_dict(stored)
    assert (st.trials[0].rps_per_usd, st.trials[0].rps_per_usd_unit) == (0.81, NORMALISED)
    assert st.rps_per_usd_unit == NORMALISED and st.best is not None and st.best.rps_per_usd == 0.81
    assert SearchState.from_dict(st.to_dict()) == st          # and is stored in the new shape


def test_a_search_rebuilt_from_a_v1_log_has_its_results_in_their_unit():
    sp = spec(max_trials=2)
    ops = [{"op": "conv2d", "time_share": 1.0, "memory_share": None, "flops": None}]
    start = Event("kops-identified", "s9", {"spec": sp.to_dict(), "kops": ["conv2d"], "operators": ops,
                                            "threshold": 0.05}, "profiler")
    from services.searcher.search import decision_events
    d = start_search("s9", sp, ["conv2d"], ops)
    log = [start, *decision_events(start, d)]
    r = d.request
    done = schemas.decode(v1_wire("trial-completed", v1_row(0.66, trial_id=r.trial_id, index=r.index,
                                                            config=dict(r.config)), "s9", start.event_id))
    log.append(done)
    st = rebuild_states(log)["s9"]
    assert [(t.rps_per_usd, t.rps_per_usd_unit) for t in st.trials] == [(0.66, NORMALISED)]
