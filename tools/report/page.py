"""The report's page: the summary rendered with Jinja (``templates/report.html``, the dashboard's
engine), and :func:`write_report`, which writes the page, its plots and ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import jinja2

from services.domain import objectives
from services.domain.figures import NORMALISED, unit_text
from services.domain.objectives import HOURS_PER_MONTH, Objective
from services.knowledge import Knowledge
from services.searcher.search import SearchState
from tools import units
from tools.report.plots import (_value_label, plot_kops, plot_pareto, plot_path, plot_progress,
                                plot_served_curves)
from tools.report.summary import PARETO_TITLE, Baseline, objective_label, served_text, split_text, summary

_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
_ENV.filters.update(reason=units.reason, cfg=lambda c: units.config(dict(c)), ms=units.ms, usd=units.usd, rps=units.rps,
                    usd_per_hour=units.usd_per_hour)


def rps_text(r: Mapping[str, Any]) -> str:
    """RPS with the runner's measured spread, when it reported one."""
    cv = r.get("stability_cv")
    return units.rps(r["rps"]) + (f" ±{cv * 100:.0f}%" if cv is not None and r["rps"] is not None else "")




def energy_text(r: Mapping[str, Any]) -> str:
    e, w = r.get("energy_j_per_request"), r.get("mean_power_w")
    if e is None:
        return "not measured"
    return f"{units.sig(e, 3)} J ({units.sig(w, 3)} W)" if w is not None else f"{units.sig(e, 3)} J"


def _monthly(m: Any) -> str:
    return "-" if not m else f"{units.usd(m[1])} ({m[0]} replica{'s' if m[0] != 1 else ''})"


def _baseline_rows(b: Mapping[str, Any], rec: Mapping[str, Any], unit: str) -> list[tuple[str, str, str]]:
    load = b.get("load_rps")
    return [("objective", units.rps_per_usd_cell(b["rps_per_usd"], unit),
             units.rps_per_usd_cell(rec["rps_per_usd"], rec.get("rps_per_usd_unit") or unit)),
            ("RPS", rps_text(b), rps_text(rec)),
            ("p99 latency", units.ms(b.get("p99_ms")), units.ms(rec.get("p99_ms"))),
            ("$/hour", units.usd_per_hour(b["usd_per_hour"]), units.usd_per_hour(rec["usd_per_hour"])),
            ("$ per million requests", units.usd(b.get("usd_per_million_requests")),
             units.usd(rec.get("usd_per_million_requests"))),
            (f"monthly cost at {units.rps(load)}" if load else "monthly cost (give --load-rps)",
             _monthly(b.get("monthly")), _monthly(b.get("recommended_monthly")))]


def _estimate(e: Mapping[str, Any] | None, s: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the search believes the recommendation is worth, when measurements were noisy (in the
    objective's own unit)."""
    if not e or e["high"] <= e["low"]:
        return None
    obj = Objective.from_dict(s.get("objective_spec")) if s.get("objective_spec") else Objective()

    def text(v: float) -> str:
        return units.objective_text(obj, v, s["rps_per_usd_unit"])
    return {"value": text(e["value"]), "low": text(e["low"]), "high": text(e["high"]),
            "measurements": int(e["measurements"])}


def _constraints(c: Mapping[str, Any]) -> str:
    return ", ".join(x for x in (f"p99 latency at most {units.ms(c['slo_p99_ms'])}" if c.get("slo_p99_ms") else None,
                                 f"at least {units.rps(c['min_rps'])}" if c.get("min_rps") else None,
                                 f"at most {units.usd(c['max_usd_per_million'])} per million requests"
                                 if c.get("max_usd_per_million") else None) if x) or "none"


def _facts(s: Mapping[str, Any]) -> list[tuple[str, str]]:
    load = s.get("load_rps")
    return [("search", s["search_id"]), ("status", f"{s['status']} ({s['stop_reason']})"),
            ("objective", s["objective"]),
            *([("load", f"{units.rps(load)} (monthly costs are stated at it)")] if load else []),
            ("trials", f"{s['trials']} ({units.usd(s['spent_usd'])} spent on them)"
             + (f", {s['parallel']} at a time" if (s.get("parallel") or 1) > 1 else "")),
            ("hardware", s["hardware"]), ("measurement", s["measurement"]),
            ("wall time", units.seconds(s["wall_s"]) + " from submission to result" if s.get("wall_s") is not None
             else "-"),
            ("strategy", s["strategy"]), ("KOPs", ", ".join(s["kops"]) or "none"),
            ("constraints", _constraints(s["constraints"]))]


def _recommendation_figures(rec: Mapping[str, Any]) -> list[str]:
    figures = [rps_text(rec) if rec["rps"] is not None else None,
               f"p50 {units.ms(rec['p50_ms'])}" if rec["p50_ms"] is not None else None,
               f"p99 {units.ms(rec['p99_ms'])}" if rec["p99_ms"] is not None else None,
               units.usd_per_hour(rec["usd_per_hour"]),
               f"{units.usd(rec['usd_per_million_requests'])} per million requests"
               if rec["usd_per_million_requests"] is not None else None]
    return [f for f in figures if f]


def render_html(s: Mapping[str, Any], images: Mapping[str, str]) -> str:
    kind = s["backend"]
    unit = s["rps_per_usd_unit"]            # the unit the search's trials state their RPS/$ in
    obj = Objective.from_dict(s.get("objective_spec"))
    rec = s["recommended"]
    b = s.get("baseline")
    columns = (["objective"] if not obj.is_default and obj.name != objectives.RPS_PER_USD else []) + \
        (["energy"] if any(r.get("energy_j_per_request") is not None for r in s["history"]) else [])
    return _ENV.get_template("report.html").render(
        s=s, kind=kind, rec=rec, load=s.get("load_rps"), columns=columns, normalised=unit == NORMALISED,
        obj_unit=obj.unit(unit), obj_head=unit_text(unit)[0],
        facts=_facts(s), figures=_recommendation_figures(rec) if rec else [],
        rec_objective=(rec.get("objective_text") or units.rps_per_usd(rec["rps_per_usd"], rec["rps_per_usd_unit"]))
        if rec else None,
        estimate=_estimate(s.get("estimate"), s), hours=f"{HOURS_PER_MONTH:.0f}",
        baseline=b, baseline_rows=_baseline_rows(b, rec, unit) if b and b.get("gain") is not None and rec else [],
        chosen=s["objective_spec"]["name"], history_by_trial={r["trial"]: r for r in s["history"]},
        pareto_title=PARETO_TITLE, pareto_image=images.get(PARETO_TITLE),
        served_title=SERVED_TITLE, served_image=images.get(SERVED_TITLE),
        rec_served=rec.get("served") if rec else None, served_text=served_text, split_text=split_text,
        images=[(title, src) for title, src in images.items() if title not in (PARETO_TITLE, SERVED_TITLE)],
        objective_label=objective_label, rps_text=rps_text,
        objective_cell=lambda r: units.rps_per_usd_cell(r["rps_per_usd"], r.get("rps_per_usd_unit") or unit),
        energy_text=energy_text, no_runner_up=no_runner_up(s),
        constrained=any(v is not None for v in (s.get("constraints") or {}).values()))


SERVED_TITLE = "Throughput vs p99 latency under rising load (served trials, SLO line)"


def served_curves(s: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The served curves the report overlays: the recommendation's, then its runners-up's."""
    rows = ([("recommended", s["recommended"])] if s.get("recommended") else []) + \
        [("runner-up", r) for r in s.get("runners_up", [])]
    return [(f"trial {r['trial']} ({what})", r["served"]) for what, r in rows if r.get("served")]


def no_runner_up(s: Mapping[str, Any]) -> str:
    """Why the recommendation has no runner-up: the other trials failed, or missed a constraint
    (named so only when one was set), or there was no other trial."""
    others = [r for r in s["history"] if not s["recommended"] or r["trial"] != s["recommended"]["trial"]]
    failed = sum(1 for r in others if r["status"] != "ok")
    missed = len(others) - failed
    constrained = any(v is not None for v in (s.get("constraints") or {}).values())
    if not others:
        return "No other trial was run."
    if failed == len(others):
        return ("The other trial failed" if failed == 1 else f"All {failed} other trials failed") + \
            " (their reasons are in the trial history below)."
    why = "missed a constraint" if constrained else "did not measure what the objective needs"
    return (f"Of the {len(others)} other trials, {failed} failed and {missed} {why}" if failed else
            f"The other trial{'s' if missed != 1 else ''} {why}") + " (see the trial history below)."


def write_report(state: SearchState, out_dir: Path, knowledge: Knowledge | None = None, wall_s: float | None = None,
                 baseline: Baseline | None = None) -> dict[str, Any]:
    """Write report.html, the PNGs beside it and summary.json; returns the summary with paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s = summary(state, wall_s, baseline)
    images: dict[str, str] = {}
    plot_progress(state, out_dir / "progress.png", knowledge)
    obj = state.spec.objective
    images[f"Best {_value_label(s['rps_per_usd_unit'], obj if not obj.is_default else None)} so far vs trial"
           .replace("normalised RPS/$ (table's best = 1)", "normalised RPS/$")] = "progress.png"
    if state.trials:
        kx, ky = plot_path(state, out_dir / "path.png")
        images[f"Search path ({kx} x {ky})"] = "path.png"
    if plot_served_curves(served_curves(s), out_dir / "served.png"):
        images[SERVED_TITLE] = "served.png"
    if plot_pareto(state, s, out_dir / "pareto.png"):
        images[PARETO_TITLE] = "pareto.png"
    shown = plot_kops(state, knowledge, out_dir / "kops.png")
    images["KOPs and their resource curves" if shown != "measured" else
           "KOPs, and the resource curve measured in this search"] = "kops.png"
    (out_dir / "report.html").write_text(render_html(s, images))
    s["files"] = {"html": str(out_dir / "report.html"), **{k: str(out_dir / v) for k, v in images.items()}}
    (out_dir / "summary.json").write_text(json.dumps(s, indent=2, default=str))
    return s
