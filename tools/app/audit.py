"""A search's timeline from the event log alone (``falcon audit``; the dashboard's timeline shows
the same rows)."""

from __future__ import annotations

from typing import Any

from schemas import Event
from schemas.upcast import stated
from schemas.events import (
    DeadLetter,
    KnowledgeRequested,
    KopsIdentified,
    ModelSubmitted,
    SearchCancelled,
    SearchCompleted,
    SearchFailed,
    TrialRequested,
    TrialResult,
)
from services.domain.figures import FIGURES
from services.platform.settings import Settings
from tools import units
from tools.app.searches import search_events

# the figures a trial's audit line writes out in their own words (the others: label, value, unit)
SHOWN = frozenset({"rps_per_usd", "rps", "stability_cv", "p50_ms", "p99_ms", "energy_j_per_request", "mean_power_w"})


async def audit(s: Settings, search_id: str) -> list[dict[str, Any]]:
    """The search's timeline from the event log alone (every topic, deduplicated by event id;
    the local stack's archive too, so it outlives a restart of the broker)."""
    rows = []
    logged = await search_events(s, search_id)
    # the search's backend: what a v1 trial result, which does not state its RPS/$ unit, measured in
    kinds = [e.data["spec"]["backend"].get("kind") for _, e in logged if e.type in ("model-submitted", "kops-identified")]
    for topic, e in logged:
        rows.append(audit_row(topic, e, kinds[0] if kinds else None))
    return sorted(rows, key=lambda r: r["ts"])


def audit_row(topic: str, e: Event, backend_kind: str | None = None) -> dict[str, Any]:
    """One row of a search's timeline (``falcon audit``; the dashboard shows the same rows).
    ``backend_kind``: the search's, where known (the unit of a v1 trial result's RPS/$)."""
    return {"ts": e.ts, "topic": topic, "type": e.type, "event_id": e.event_id, "causation_id": e.causation_id,
            "producer": e.producer, "deliveries": 1, "summary": _summary(e, backend_kind)}


def _trial_summary(p: TrialResult, backend_kind: str | None = None) -> str:
    head = f"trial {p.index + 1} {p.status}"          # numbered as the report and the dashboard number it
    if p.status != "ok":
        return head + (f": {units.reason(p.reason)}" if p.reason else "") + (f" (cost {units.usd(p.cost_usd)})"
                                                                             if p.cost_usd else "")
    p = stated(p, backend_kind)
    figures = [units.rps_per_usd(p.rps_per_usd, p.rps_per_usd_unit) if p.rps_per_usd_unit is not None
               else f"RPS/$ {units.sig(p.rps_per_usd or 0)} (unit not stated)"]
    if p.rps is not None:
        figures.append(units.rps(p.rps) + (f" ±{p.stability_cv * 100:.0f}%" if p.stability_cv is not None else ""))
    if p.p50_ms is not None:
        figures.append(f"p50 {units.ms(p.p50_ms)}")
    if p.p99_ms is not None:
        figures.append(f"p99 {units.ms(p.p99_ms)}")
    if p.energy_j_per_request is not None:
        figures.append(f"{units.sig(p.energy_j_per_request, 3)} J/request"
                       + (f" at {units.sig(p.mean_power_w, 3)} W" if p.mean_power_w is not None else ""))
    for f in FIGURES:          # a registered figure not written out above: its label, value and unit
        v = getattr(p, f.name, None) if f.on_trial and f.name not in SHOWN else None
        if v is not None:
            figures.append(f"{f.label} {units.sig(v, 3)}{' ' + f.unit if f.unit else ''}")
    figures.append(f"cost {units.usd(p.cost_usd)} for {units.seconds(p.duration_s)}")
    return f"{head} " + ", ".join(figures)


def _summary(e: Event, backend_kind: str | None = None) -> str:
    try:
        p = e.payload
    except ValueError as exc:
        return f"unusable: {exc}"
    if isinstance(p, ModelSubmitted):
        return (f"model {p.spec.model['name']} ({p.spec.backend.get('kind')}) strategy {p.spec.strategy} "
                f"max_trials {p.spec.stop.max_trials}")
    if isinstance(p, KopsIdentified):
        return f"kops {p.kops}"
    if isinstance(p, KnowledgeRequested):
        return f"knowledge for space {p.space.fingerprint()} ({', '.join(p.space.names)}; {p.space.size:,} configurations)"
    if isinstance(p, TrialRequested):
        return f"trial {p.index + 1} {units.config(p.config)}"
    if isinstance(p, TrialResult):
        return _trial_summary(p, backend_kind)
    if isinstance(p, SearchCompleted):
        shown = units.objective_text(p.objective, p.objective_value if p.objective is not None else p.best.rps_per_usd,
                                     p.best.rps_per_usd_unit)
        return (f"best {units.config(p.best.config)}: {shown} after {len(p.trials)} "
                f"trials ({p.stop_reason}), {units.usd(p.spent_usd)} spent")
    if isinstance(p, SearchFailed):
        return f"{p.stage}: {p.reason}"
    if isinstance(p, SearchCancelled):
        return f"{p.reason} (by {p.requested_by})"
    if isinstance(p, DeadLetter):
        return f"{p.source_topic}@{p.offset}: {p.reason}"
    return ""
