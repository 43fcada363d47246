"""Searches: submit, status, watch, audit, report, rebuild (the commands; what they do with a
search is the application layer's, :mod:`tools.app`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from services.domain.objectives import OBJECTIVES, Objective
from services.domain.serving import LIVE_MODES
from services.domain.spec import DEFAULT_KOP_THRESHOLD, DEFAULT_TRIAL_SECONDS
from services.searcher.strategies import STRATEGIES
from tools import units
from tools.app.audit import audit, audit_row
from tools.app.searches import Loaded, in_log, load_search, rebuild, search_events, search_rows, state_summary
from tools.app.submit import (
    DEFAULT_SLO_P99_MS,
    LIVE_OVERHEAD_S,
    LIVE_SPACE,
    SubmissionError,
    SubmitOptions,
    advertising_runners,
    build_submission,
    result_summary,
    submit,
    wait_result,
)
from tools.cli._shared import EXIT_FAILED, EXIT_OK, command, home, out, require_stack, settings, slug

# the application layer's names, as other modules imported them from here before it existed
__all__ = ["LIVE_OVERHEAD_S", "LIVE_SPACE", "Loaded", "SubmissionError", "SubmitOptions", "advertising_runners",
           "audit", "audit_row", "build_submission", "load_search", "positive", "positive_int", "register",
           "result_summary", "search_events", "state_summary", "submit", "wait_result"]



def cmd_submit(a: argparse.Namespace) -> int:
    o = SubmitOptions.from_args(a)
    Objective(o.objective, o.load)           # ObjectiveError (one line, exit 2) before the stack is asked anything
    s = settings()
    runners = None
    if (o.backend or ("replay" if o.replay_table else "live")) == "live":
        runners = asyncio.run(advertising_runners(s))
        if runners is not None and not any("live" in r.capabilities for r in runners):
            print("falcon submit: warning: no runner advertises the live backend now, so the space is not checked "
                  "against what runners can apply (falcon runners)", file=sys.stderr)
    notices: list[str] = []
    search_id, submission = build_submission(o, runners, notices)
    for n in notices:
        print(f"falcon submit: {n}", file=sys.stderr)
    require_stack(s)                         # the input is good: now the stack must answer (exit 3 if not)
    result = asyncio.run(submit(s, search_id, submission, a.wait, a.timeout))
    if not a.wait:
        out({"search_id": search_id, "status": "submitted"}, a.json, search_id)
        return EXIT_OK
    if result is None:
        out({"search_id": search_id, "status": "timeout"}, True)
        return EXIT_FAILED
    out(result_summary(result), True)
    return EXIT_OK if result.type == "search-completed" else EXIT_FAILED


def status_line(r: dict[str, Any]) -> str:
    """One search for people: its status, trials, best objective with its unit, RPS and cost."""
    best = r["best_text"] if r["best_value"] is not None else \
        ("no result yet" if r["status"] == "running" else "no recommendation")
    extra = "".join(f", {x}" for x in (units.rps(r["best_rps"]) if r["best_rps"] is not None else None,
                                        f"p99 {units.ms(r['best_p99_ms'])}" if r["best_p99_ms"] is not None else None)
                    if x)
    return (f"{r['search_id']:40} {r['status']:9} trials {r['trials']:>3}/{r['max_trials']:<3} "
            f"best {best}{extra}, {units.usd(r['spent_usd'])} spent")


def cmd_status(a: argparse.Namespace) -> int:
    rows = asyncio.run(search_rows(settings(), a.search_id))
    if a.search_id and not rows:
        print(f"no search {a.search_id!r}", file=sys.stderr)
        return EXIT_FAILED
    text = "\n".join(status_line(r) for r in rows) or "no searches"
    if a.search_id and rows and rows[0]["best_config"]:
        text += f"\n  best configuration: {units.config(rows[0]['best_config'])}"
    if a.search_id and rows:
        text += "".join(f"\n  {n}" for n in rows[0]["notices"])
    out(rows if not a.search_id else rows[0], a.json, text)
    return EXIT_OK


def cmd_watch(a: argparse.Namespace) -> int:
    s = settings()
    seen = -1
    deadline = time.monotonic() + a.timeout
    rows = asyncio.run(search_rows(s, a.search_id))
    logged = None
    if not rows:          # not in the searcher's state: submitted a moment ago, failed early, or unknown
        logged = asyncio.run(in_log(s, a.search_id))
        if logged is None:
            print(f"no search {a.search_id!r}: not in the searcher's state nor in the event log "
                  f"(falcon status lists the searches)", file=sys.stderr)
            return EXIT_FAILED
        if logged.type == "search-failed":
            print(f"failed: {logged.payload.reason}")            # type: ignore[union-attr]
            return EXIT_FAILED
    while time.monotonic() < deadline:
        rows = asyncio.run(search_rows(s, a.search_id))
        if rows:
            r = rows[0]
            if seen < 0:         # once: what the search's user should know (e.g. no operator knowledge)
                for n in r["notices"]:
                    print(n, flush=True)
            if r["trials"] != seen:
                seen = r["trials"]
                bar = "#" * r["trials"] + "." * max(0, r["max_trials"] - r["trials"])
                best = r["best_text"] if r["best_value"] is not None else "-"
                rps = f" ({units.rps(r['best_rps'])})" if r["best_rps"] is not None else ""
                print(f"[{bar}] {r['trials']}/{r['max_trials']} best {best}{rps} "
                      f"{units.config(r['best_config'] or {})}", flush=True)
            if r["status"] != "running":
                print(f"{r['status']}: {r['stop_reason']}")
                return EXIT_OK if r["status"] == "completed" else EXIT_FAILED
        else:
            logged = asyncio.run(in_log(s, a.search_id))
            if logged is not None and logged.type == "search-failed":
                print(f"failed: {logged.payload.reason}")        # type: ignore[union-attr]
                return EXIT_FAILED
        time.sleep(a.interval)
    print(f"{_not_done(rows, logged)} after {units.seconds(a.timeout)} (falcon watch again to go on)", file=sys.stderr)
    return EXIT_FAILED


def _not_done(rows: list[dict[str, Any]], logged: Any) -> str:
    """What a search that has not ended waits for: the searcher (it is running), or, while the
    searcher keeps no state of it, the step the event log says comes next."""
    if rows:
        return "still running"
    if logged is not None and logged.type == "kops-identified":
        return "profiled, but not yet started by the searcher"
    return "submitted, but not yet profiled (the profiler has not answered)"


def cmd_audit(a: argparse.Namespace) -> int:
    rows = asyncio.run(audit(settings(), a.search_id))
    if not rows:
        print(f"no events for search {a.search_id!r}", file=sys.stderr)
        return EXIT_FAILED
    out(rows, a.json, "\n".join(f"{r['ts']}  {r['type']:17} {r['producer']:13} {r['summary']}" for r in rows))
    return EXIT_OK


def cmd_report(a: argparse.Namespace) -> int:
    from tools.report import Baseline, parse_config, write_report
    loaded = asyncio.run(load_search(settings(), a.search_id))
    st = loaded.state
    if st is None:
        print(f"no search {a.search_id!r} in Redis or in the event log", file=sys.stderr)
        return EXIT_FAILED
    baseline = None
    if a.baseline:
        baseline = Baseline.of(st, parse_config(a.baseline, st.spec.space), a.load_rps, home() / "cache")
    out_dir = Path(a.out or home() / "reports" / slug(a.search_id))
    s = write_report(st, out_dir, loaded.knowledge, wall_s=loaded.wall_s, baseline=baseline)
    rec = s["recommended"]
    figures = [] if not rec else [rec.get("objective_text") or units.rps_per_usd(rec["rps_per_usd"],
                                                                                   rec["rps_per_usd_unit"]),
                                  units.rps(rec["rps"]) if rec["rps"] is not None else None,
                                  f"p99 {units.ms(rec['p99_ms'])}" if rec["p99_ms"] is not None else None,
                                  units.usd_per_hour(rec["usd_per_hour"])]
    text = f"report: {s['files']['html']}\n" + (
        f"recommended {units.config(rec['config'])}: {', '.join(f for f in figures if f)}"
        if rec else f"no recommendation ({s['stop_reason']})")
    if rec and rec.get("monthly") and s.get("load_rps"):
        m = rec["monthly"]
        text += (f"\n{units.usd(m['usd'])} a month at {units.rps(s['load_rps'])} ({m['replicas']} "
                 f"replica{'s' if m['replicas'] != 1 else ''})")
    text += "".join(f"\n{n}" for n in s.get("notices", []))
    if s.get("baseline"):
        text += f"\nagainst the baseline {units.config(s['baseline']['config'])}: {s['baseline']['verdict']}"
    text += "".join(f"\n{c}" for c in s.get("closest", []))
    out(s, a.json, text)
    return EXIT_OK if rec else EXIT_FAILED


def cmd_rebuild(a: argparse.Namespace) -> int:
    counts = asyncio.run(rebuild(settings()))
    out(counts, a.json, f"restored {counts['searches_restored']} searches and "
                        f"{counts['trial_results_restored']} trial results from the event log")
    return EXIT_OK


def number(text: str) -> float:
    """A command-line number (argparse's one-line error when it is not one)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive(text: str) -> float:
    """argparse type: a positive finite number."""
    x = number(text)
    if not (x > 0 and x != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return x


def positive_int(text: str) -> int:
    try:
        x = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if x < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return x


def register(sub: Any) -> None:
    def cmd(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        return command(sub, name, fn, help_)

    c = cmd("submit", cmd_submit, "submit a model for a configuration search (what upstream CI calls)")
    c.add_argument("model", help="model name")
    c.add_argument("--profile", help="operator profile csv (falcon-data operators.csv format)")
    c.add_argument("--model-file", help="the model itself (ONNX, or a trusted torch.export .pt2): a path or a "
                   "file://, s3:// or https:// URI; the profiler measures its operators with TVM unless --profile "
                   "is given")
    c.add_argument("--zoo", help="submit a built-in zoo model (exported to ONNX); see falcon profile --list-zoo")
    c.add_argument("--format", help="model file format (default: from the file's suffix)")
    c.add_argument("--backend", choices=("replay", "live"),
                   help="replay: answer trials from --replay-table; live: run the model on a live runner "
                        "(default: replay when --replay-table is given)")
    c.add_argument("--replay-table", help="measurement table csv the replay backend answers from (a path or a "
                   "file://, s3:// or https:// URI)")
    c.add_argument("--live-mode", choices=LIVE_MODES, default="served",
                   help="live trials: served (Triton + perf_analyzer, the peak RPS within the p99 SLO, default "
                        f"{DEFAULT_SLO_P99_MS:g} ms) or closed-loop (one batch in flight in one process: fast, no "
                        "server); docs/served-trials.md")
    c.add_argument("--measure-s", type=positive, default=3.0, help="closed-loop live trials: seconds of stress "
                   "test per trial")
    c.add_argument("--space", help="configuration space file (.yaml/.toml); default: the paper's 1,440 points "
                   "(replay), deploy/config/live-served-space.yaml (live) or live-cpu-space.yaml (live "
                   "closed-loop)")
    c.add_argument("--prices", help="price catalogue file (.yaml/.toml); default: EC2 on-demand")
    c.add_argument("--max-trials", type=positive_int, default=15)
    c.add_argument("--target-value", type=float, help="stop once a trial reaches this objective value, in the "
                   "objective's unit (at least this many RPS/$; at most this many $/h, ms or J per request)")
    c.add_argument("--budget-usd", type=positive, help="stop before the trials' cost would exceed this")
    c.add_argument("--slo-p99-ms", type=positive, help="latency SLO: never recommend a configuration whose p99 "
                   "latency is above this")
    c.add_argument("--min-rps", type=positive, help="peak load: never recommend a configuration serving fewer "
                   "requests per second")
    c.add_argument("--max-usd-per-million", type=positive, help="cost ceiling: never recommend a configuration "
                   "costing more than this many $ per million requests at its measured RPS (e.g. with --objective "
                   "p99: the fastest configuration within a budget)")
    c.add_argument("--objective", choices=OBJECTIVES, default="rps-per-usd",
                   help="what to optimise: rps-per-usd (requests per $, default), usd-for-load (the cheapest "
                        "deployment carrying --load requests/s: replicas x price), energy-per-request (joules, "
                        "GPU runners with NVML), p99 (latency); the constraints hold for each")
    c.add_argument("--load", type=positive, help="the load to carry, requests/s: required by usd-for-load; with "
                   "any objective, the load the report states monthly costs at")
    c.add_argument("--strategy", default="falcon", help=f"falcon (default), {', '.join(s for s in STRATEGIES if s != 'falcon')}")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--kop-threshold", type=float, default=DEFAULT_KOP_THRESHOLD)
    c.add_argument("--trial-seconds", type=positive, default=DEFAULT_TRIAL_SECONDS,
                   help="replay: the simulated length (and so the cost) of one trial")
    c.add_argument("--parallel", type=int, help="trials in flight at once (default: as many as live runners "
                   "serve the search's hardware classes; 1 for replay)")
    c.add_argument("--cost-aware", action="store_true", help="weigh each candidate's expected improvement per $ "
                   "of its trial (cheap trials first when they promise as much)")
    c.add_argument("--search-id", help="default: <model>-<random>")
    c.add_argument("--wait", action="store_true", help="wait for the result; exit 1 if the search failed")
    c.add_argument("--timeout", type=positive, default=600.0)
    c = cmd("status", cmd_status, "show searches (or one search) from the searcher's state")
    c.add_argument("search_id", nargs="?")
    c = cmd("watch", cmd_watch, "follow a search's progress until it ends")
    c.add_argument("search_id")
    c.add_argument("--interval", type=positive, default=1.0)
    c.add_argument("--timeout", type=positive, default=3600.0)
    c = cmd("audit", cmd_audit, "print a search's timeline from the event log")
    c.add_argument("search_id")
    c = cmd("report", cmd_report, "write a search's report (HTML + PNG plots): recommendation, runners-up, history")
    c.add_argument("search_id")
    c.add_argument("--out", help="folder for report.html and the plots (default: $FALCON_HOME/reports/<id>)")
    c.add_argument("--baseline", help="the configuration you run today, e.g. 'cpus=2,batchsize=8,graph_opt=all': "
                   "the report compares the recommendation with it (RPS/$, $ per million requests, monthly cost)")
    c.add_argument("--load-rps", type=positive, help="the load the monthly costs are stated at (default: the "
                   "search's --load, else the --min-rps constraint, else the baseline's measured RPS)")
    cmd("rebuild", cmd_rebuild, "rebuild the searches and trial results in Redis from the event log")
