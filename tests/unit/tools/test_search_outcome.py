"""How far a search got, read back from the event log: its outcome wins over its earlier events,
whatever order the log's topics were read in (``falcon watch`` of a search that failed before
the searcher kept any state of it)."""

import asyncio
from dataclasses import replace

from schemas import Event
from schemas.events import ModelSubmitted, SearchFailed
from services.platform.settings import Settings
from tests.helpers import spec
from tools.app.searches import furthest, in_log
from tools.archive import Archive, archive_path
from tools.localstack import free_port


def lifecycle(sid: str) -> tuple[Event, Event]:
    submitted = Event.new(ModelSubmitted(spec("gru"), None), sid, "other-client")
    failed = submitted.caused(SearchFailed("profile", "came without its operator profile"), "profiler")
    return submitted, failed


def test_the_outcome_wins_whatever_order_the_events_were_read_in():
    submitted, failed = lifecycle("s1")
    assert furthest([submitted, failed]) is failed
    assert furthest([failed, submitted]) is failed
    assert furthest([submitted]) is submitted
    assert furthest([]) is None


def test_in_log_finds_the_failure_the_archiver_stored_before_the_submission(tmp_path, monkeypatch):
    """The archiver reads every topic at once: a submission and the search-failed the profiler
    published a few milliseconds later can come in one fetch and be archived failure first."""
    submitted, failed = lifecycle("e2e-noprofile")
    other_submitted, _ = lifecycle("another")
    a = Archive(archive_path(tmp_path))
    a.add([("search-results", failed), ("model-submitted", other_submitted), ("model-submitted", submitted)])
    a.close()
    monkeypatch.setenv("FALCON_HOME", str(tmp_path))
    gone = replace(Settings(), broker=f"127.0.0.1:{free_port()}")        # the archive alone
    found = asyncio.run(asyncio.wait_for(in_log(gone, "e2e-noprofile"), 120))
    assert found is not None and found.type == "search-failed" and found.event_id == failed.event_id
    other = asyncio.run(asyncio.wait_for(in_log(gone, "another"), 120))       # each search its own events
    assert other is not None and other.event_id == other_submitted.event_id


def watch(monkeypatch, capsys, rows, logged):
    """falcon watch against a searcher state and an event log that stay as given."""
    import tools.cli
    from tools.cli import main, search_cmds

    async def search_rows(s, sid):
        return rows

    async def in_log(s, sid):
        return logged
    monkeypatch.setattr(search_cmds, "search_rows", search_rows)
    monkeypatch.setattr(search_cmds, "in_log", in_log)
    monkeypatch.setattr(tools.cli, "require_stack", lambda s: None)
    code = main(["watch", "e2e-noprofile", "--timeout", "0.3", "--interval", "0.1"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_watch_says_which_step_a_search_waits_for_when_it_gives_up(monkeypatch, capsys):
    submitted, failed = lifecycle("e2e-noprofile")
    code, _, err = watch(monkeypatch, capsys, [], submitted)
    assert code == 1 and "submitted, but not yet profiled (the profiler has not answered) after" in err, err
    profiled = submitted.caused(failed.payload, "profiler")
    profiled = Event(**{**profiled.as_dict(), "type": "kops-identified"})
    code, _, err = watch(monkeypatch, capsys, [], profiled)
    assert code == 1 and "profiled, but not yet started by the searcher after" in err, err
    code, out, _ = watch(monkeypatch, capsys, [], failed)
    assert code == 1 and out.strip() == "failed: came without its operator profile"
