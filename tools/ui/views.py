"""What the pages and the JSON API show, as plain data: searches from the searcher's state in
Redis (``SearchStore``, read only), their timelines and dead letters from the event log
(:class:`LogIndex`), runners from their adverts. Figures per trial come from the report's own
summary (``tools.report.summary``: the search's overview, its figures per trial and its
best-so-far curve), so the dashboard, ``falcon status`` and the report never disagree."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from services.platform.runners import read_adverts
from services.searcher.search import SearchState
from services.searcher.store import SearchStore
from services.domain.objectives import RPS_PER_USD
from tools import units
from tools.report.summary import best_so_far, overview, served_text, split_text
from tools.report.summary import summary as report_summary
from tools.ui.logindex import LogIndex, SearchLog

STATUSES = ("running", "submitted", "completed", "cancelled", "failed")
SORTS = {"age": "created", "model": "model", "status": "status", "trials": "trials", "best": "best_value",
         "spent": "spent_usd", "id": "search_id"}
RUNNER_STALE_S = 20.0          # a runner re-advertises every 5 s; its advert expires after 20 s


class Views:
    def __init__(self, redis: Redis, index: LogIndex) -> None:
        self.redis = redis
        self.store = SearchStore(redis)       # long-lived: a search's spec is parsed once
        self.index = index

    # -- searches ------------------------------------------------------------------------------
    async def searches(self, q: str = "", status: str = "", sort: str = "age", desc: bool = True,
                       limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` searches (Redis, plus those only the log knows yet: submitted and
        not profiled, or failed before the searcher), filtered and sorted."""
        recent = await self.store.recent(limit)
        states = await self.store.get_many([i for i, _ in recent])
        rows = [row(st, created, self.index.searches.get(st.search_id))
                for st, (_, created) in zip(states, recent) if st is not None]
        listed = {r["search_id"] for r in rows}
        others = [sid for sid, s in self.index.searches.items() if sid not in listed and s.submitted is not None]
        rows += [log_only_row(sid, self.index.searches[sid])
                 for sid, created in zip(others, await self.store.created(others)) if created is None]
        q = q.strip().lower()
        if q:
            rows = [r for r in rows if q in r["search_id"].lower() or q in (r["model"] or "").lower()]
        if status:
            rows = [r for r in rows if r["status"] == status]
        key = SORTS.get(sort, "created")
        known = sorted((r for r in rows if r[key] is not None), key=lambda r: r[key], reverse=desc)
        return (known + [r for r in rows if r[key] is None])[:limit]

    async def search_row(self, search_id: str) -> dict[str, Any] | None:
        st = await self.store.get(search_id)
        s = self.index.searches.get(search_id)
        if st is not None:
            (created,) = await self.store.created([search_id])
            return row(st, created or time.time(), s)
        return log_only_row(search_id, s) if s is not None and s.submitted is not None else None

    async def search(self, search_id: str) -> dict[str, Any] | None:
        """Everything the search page shows; None when neither Redis nor the log knows it."""
        st = await self.store.get(search_id)
        s = self.index.searches.get(search_id)
        if st is None:
            if s is None:
                return None
            return {**log_only_row(search_id, s), "history": [], "best_so_far": [], "operators": [], "kops": [],
                    "pending": [], "recommendation": None, "runners_up": [], "constraints": {},
                    "notices": [], "pareto": [], "best_per_objective": {}, "load_rps": None, "value_label": "RPS/$",
                    "served": None,
                    "timeline": s.timeline(), "report_url": None, "can_cancel": False, "stored": False}
        (created,) = await self.store.created([search_id])
        return detail(st, created or time.time(), s)

    async def state(self, search_id: str) -> SearchState | None:
        return await self.store.get(search_id)

    # -- runners and dead letters --------------------------------------------------------------
    async def runners(self) -> list[dict[str, Any]]:
        """The advertising runners (read as falcon runners and the searcher read them:
        ``services.platform.runners.read_adverts``), with their heartbeat's age."""
        now = time.time()
        out = []
        for a in await read_adverts(self.redis):
            beat = a.heartbeat
            out.append({"runner": a.runner, "classes": list(a.classes),
                        "capabilities": {k: dict(v) for k, v in a.capabilities.items()},
                        "current": [dict(c) for c in a.current], "trials_done": a.trials_done, "heartbeat": beat,
                        "heartbeat_age_s": None if beat is None else round(max(0.0, now - beat), 1),
                        "stale": beat is None or now - beat > RUNNER_STALE_S})
        return out

    def dead_letters(self, limit: int = 200) -> dict[str, Any]:
        return {"total": self.index.dead_letter_total, "dead_letters": list(self.index.dead_letters)[:limit]}


def row(st: SearchState, created: float, s: SearchLog | None) -> dict[str, Any]:
    o = overview(st)
    return {"search_id": o["search_id"], "model": str(o["model"]), "status": o["status"],
            "strategy": o["strategy"], "trials": o["trials"], "max_trials": o["max_trials"],
            "best_value": o["best_value"], "spent_usd": units.round_sig(o["spent_usd"]),
            # what the search optimises and its best, in the objective's unit (best_value stays RPS/$)
            "objective": o["objective"], "objective_title": o["objective_title"],
            "best_objective": o["best_objective"],
            "best_text": o["best_text"] if o["best_config"] is not None else None,
            "created": created, "age_s": round(max(0.0, time.time() - created), 1), "stop_reason": o["stop_reason"],
            "in_flight": ", ".join(o["pending"]) or None, "parallel": o["parallel"],
            "running_text": running_text([p.index for p in st.pending]),
            "backend": o["backend"]}


def running_text(indices: list[int]) -> str | None:
    """"trial 4 running", "trials 4, 5, 6 running" (1-based, as people count trials)."""
    if not indices:
        return None
    return f"trial{'s' if len(indices) > 1 else ''} {', '.join(str(i + 1) for i in indices)} running"


def log_only_row(search_id: str, s: SearchLog) -> dict[str, Any]:
    """A search the searcher holds no state for: submitted (being profiled), or failed before."""
    failed = s.result is not None and s.result["type"] == "search-failed"
    created = s.submitted or time.time()
    return {"search_id": search_id, "model": s.model, "status": "failed" if failed else "submitted",
            "strategy": s.strategy, "trials": 0, "max_trials": s.max_trials, "best_value": None, "spent_usd": 0.0,
            "objective": None, "objective_title": None, "best_objective": None, "best_text": None,
            "created": created, "age_s": round(max(0.0, time.time() - created), 1),
            "stop_reason": s.result["reason"] if failed else None, "in_flight": None, "backend": None,
            "running_text": None}


def served_view(rep: dict[str, Any], final: bool) -> dict[str, Any] | None:
    """The served curve the search page draws: the recommendation's (the best so far's while the
    search runs), from the report's summary; None when its trial was not served."""
    best = rep["recommended"]
    if not best or not best.get("served"):
        return None
    return {**best["served"], "trial": best["trial"], "of": "recommendation" if final else "best so far",
            "text": served_text(best["served"]), "split": split_text(best["served"])}


def detail(st: SearchState, created: float, s: SearchLog | None) -> dict[str, Any]:
    rep = report_summary(st)
    history = []
    for t, r in zip(st.trials, rep["history"]):
        history.append({**r, "trial_id": t.trial_id, "runner": t.runner, "cost_usd": t.cost_usd,
                        "duration_s": t.duration_s, "feasible": st.feasible(t)})
    obj = st.spec.objective
    # the objective in its own unit (RPS/$ by default): the report's best-so-far curve (a noisy
    # search's recommendation estimate, not its luckiest measurement) and each trial's measurement
    curve = best_so_far(st).curve
    measured = [obj.natural(st.objective_value(t)) if t.status == "ok" else None for t in st.trials]
    # every trial is drawn: a failed one as a red mark on the chart's floor (the lowest value shown)
    floor = min([v for v in measured + list(curve) if v is not None], default=0.0)
    series = [[t.index + 1, best, value, floor if t.status != "ok" else None]
              for t, best, value in zip(st.trials, curve, measured)]
    kops = set(st.kops)
    operators = sorted(({"op": str(o.get("op")), "time_share": float(o.get("time_share") or 0.0),
                         "memory_share": o.get("memory_share"), "kop": o.get("op") in kops} for o in st.operators),
                       key=lambda o: -o["time_share"])
    recommendation = None
    if st.status != "running" and rep["recommended"]:
        r = rep["recommended"]
        cv = r.get("stability_cv")
        e = rep["estimate"]
        believed = e is not None and e["high"] > e["low"]       # noisy: the search's estimate, with its interval
        recommendation = {**r, "estimate": e if believed else None,
                          "interval": None if cv is None or r["rps"] is None else {
                              "cv": cv, "rps": [r["rps"] * (1 - cv), r["rps"] * (1 + cv)],
                              "rps_per_usd": [e["low"], e["high"]] if believed else
                              None if r["rps_per_usd"] is None else
                              [r["rps_per_usd"] * (1 - cv), r["rps_per_usd"] * (1 + cv)]}}
    return {**row(st, created, s), "seed": st.spec.seed, "kops": list(st.kops), "operators": operators,
            "constraints": rep["constraints"], "budget_usd": st.spec.stop.budget_usd,
            "target_value": st.spec.stop.target_value, "history": history, "best_so_far": series,
            "pending": [{"trial_id": p.trial_id, "index": p.index, "config": dict(p.config),
                         "runner_class": p.runner_class,
                         # its result is in the log, the searcher is recording it
                         "arrived": s.trials.get(p.trial_id) if s else None} for p in st.pending],
            "recommendation": recommendation, "runners_up": rep["runners_up"],
            "value_label": "RPS/$" if obj.name == RPS_PER_USD else f"{obj.name} ({obj.unit()})",
            "pareto": rep["pareto"], "best_per_objective": rep["best_per_objective"], "notices": rep["notices"],
            "load_rps": rep["load_rps"], "served": served_view(rep, recommendation is not None),
            "timeline": s.timeline() if s is not None else [],
            "report_url": f"/searches/{st.search_id}/report/", "can_cancel": st.status == "running", "stored": True}
