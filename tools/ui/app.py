"""The dashboard's web app (Starlette): server-rendered pages, a JSON API behind them, and live
updates over server-sent events.

Read side: the searcher's state in Redis (``SearchStore``) and the event log (``LogIndex``, which
follows the topics with the bus's ``read_events``). Write side, only with the token
(``FALCON_UI_TOKEN``, sent by the page in the ``X-Falcon-Token`` header): a submission is the CLI's
own ``build_submission`` published as model-submitted, a cancel is a search-cancelled event the
searcher handles like any other. Without a token the dashboard is read-only."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from contextlib import asynccontextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, AsyncIterator

import jinja2
from aiokafka.errors import KafkaError
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from schemas import Event
from schemas.events import SearchCancelled
from services.platform.bus import KafkaPublisher
from services.platform.connections import redis_client
from services.platform.settings import Settings
from services.platform.topics import SEARCH_CONTROL
from tools import units
from tools.app.submit import SubmitOptions, build_submission
from tools.ui.logindex import LogIndex, Note
from tools.ui.views import SORTS, STATUSES, Views

log = logging.getLogger("falcon.ui")
HERE = Path(__file__).parent
PRODUCER = "ui"
TOKEN_HEADER = "x-falcon-token"
FRESH_WAIT_S = 3.0        # how long a stream waits for the searcher to store a trial the log announced
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
REPORT_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"
SUBMIT_FIELDS = {f.name: f for f in fields(SubmitOptions)}


def templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    # the product's number formats (tools/units.py), as the CLI and the report print them
    env.filters["num"] = lambda v, spec=None: "-" if v is None else (format(v, spec) if spec else units.number(v))
    env.filters["usd"] = units.usd
    env.filters["usd_per_hour"] = units.usd_per_hour
    env.filters["reason"] = units.reason
    env.filters["cfg"] = lambda c: units.config(dict(c or {}))
    env.filters["age"] = fmt_age
    env.filters["ms"] = units.ms
    return env


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


class Dashboard:
    def __init__(self, settings: Settings, token: str | None, reports_dir: Path, follow: bool = True) -> None:
        self.settings = settings
        self.token = token or None
        self.reports_dir = reports_dir
        self.follow = follow
        self.redis = redis_client(settings)
        self.index = LogIndex(settings)
        self.views = Views(self.redis, self.index)
        self.env = templates()
        self._publisher: KafkaPublisher | None = None
        self._publish_lock = asyncio.Lock()
        self._reports: dict[str, tuple[Any, ...]] = {}    # search id -> what its report was made from
        self._report_lock = asyncio.Lock()

    # -- lifecycle -----------------------------------------------------------------------------
    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(self.index.run()) if self.follow else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if self._publisher is not None:
                await self._publisher.__aexit__(None, None, None)
            await self.redis.aclose()

    async def publish(self, event: Event) -> JSONResponse | None:
        """Publish with the dashboard's one producer (started on first use); the refusal to send
        when the broker cannot be reached, else None."""
        try:
            async with self._publish_lock:
                if self._publisher is None:
                    pub = KafkaPublisher(self.settings)
                    await pub.__aenter__()
                    self._publisher = pub
            await asyncio.wait_for(self._publisher.publish(event), 30.0)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            log.warning("cannot publish %s: %s", event.type, exc)
            return JSONResponse({"error": f"the broker is not reachable ({type(exc).__name__}); nothing was sent"},
                                503)
        return None

    # -- helpers -------------------------------------------------------------------------------
    @property
    def parts(self) -> Any:
        return self.env.get_template("parts.html").module

    def page(self, request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(read_only=self.token is None, page=name.split(".")[0],
                                                  path=request.url.path, **ctx)
        return HTMLResponse(html, status_code)

    def authorise(self, request: Request) -> JSONResponse | None:
        """None when the request carries the token; else the refusal."""
        if self.token is None:
            return JSONResponse({"error": "read-only: this dashboard was started without FALCON_UI_TOKEN"}, 403)
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return JSONResponse({"error": "missing or wrong token (X-Falcon-Token header)"}, 401)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"error": "send JSON (Content-Type: application/json)"}, 415)
        return None

    # -- pages ---------------------------------------------------------------------------------
    async def searches_page(self, request: Request) -> Response:
        started = time.perf_counter()
        f = list_filter(request)
        rows = await self.views.searches(**f)
        resp = self.page(request, "searches.html", rows=rows, filter=f, statuses=STATUSES, sorts=list(SORTS))
        return timed(resp, started)

    async def search_page(self, request: Request) -> Response:
        search_id = request.path_params["search_id"]
        data = await self.views.search(search_id)
        if data is None:
            return self.page(request, "404.html", 404, what=no_search(search_id))
        return self.page(request, "search.html", s=data)

    async def runners_page(self, request: Request) -> Response:
        return self.page(request, "runners.html", rows=await self.views.runners())

    async def dead_letters_page(self, request: Request) -> Response:
        return self.page(request, "dead_letters.html", data=self.views.dead_letters())

    async def report(self, request: Request) -> Response:
        """The search's full report (``tools.report``), made on demand and again when the search moved."""
        search_id = request.path_params["search_id"]
        name = request.path_params.get("name", "report.html")
        if not re.fullmatch(r"[a-z]+\.(png|html)", name):
            raise HTTPException(404)
        st = await self.views.state(search_id)
        if st is None:
            return self.page(request, "404.html", 404, what=no_search(search_id))
        folder = self.reports_dir / re.sub(r"[^A-Za-z0-9._-]", "_", search_id)
        made_from = (len(st.trials), st.status, st.stop_reason)
        async with self._report_lock:
            if self._reports.get(search_id) != made_from or not (folder / "report.html").exists():
                from tools.app.searches import load_search
                from tools.report import write_report
                loaded = await load_search(self.settings, search_id)
                await asyncio.to_thread(write_report, st, folder, loaded.knowledge, wall_s=loaded.wall_s)
                self._reports[search_id] = made_from
        path = folder / name
        if not path.is_file():
            raise HTTPException(404)
        resp = FileResponse(path)
        resp.headers["Content-Security-Policy"] = REPORT_CSP
        return resp

    async def export(self, request: Request) -> Response:
        """``falcon export`` as a download: the search's recommendation as a zip of the chosen
        format's files (``?load=RPS`` sizes the replicas); a refusal is its one line, 409."""
        search_id, fmt = request.path_params["search_id"], request.path_params["format"]
        from tools.export.artefacts import FORMATS, ExportRefused
        from tools.export.files import build, zipped
        if fmt not in FORMATS:
            raise HTTPException(404)
        try:
            load = float(request.query_params["load"]) if request.query_params.get("load") else None
        except ValueError:
            return JSONResponse({"error": f"load must be a number of requests per second, not "
                                          f"{request.query_params['load']!r}"}, 400)
        st = await self.views.state(search_id)
        if st is None:
            return JSONResponse({"error": no_search(search_id)}, 404)
        folder = re.sub(r"[^A-Za-z0-9._-]", "_", search_id) + f"-{fmt}"
        try:
            e, model = await asyncio.to_thread(build, st, fmt, self.reports_dir.parent / "cache", load)
        except ExportRefused as exc:
            return JSONResponse({"error": str(exc)}, 409)
        data = await asyncio.to_thread(zipped, e, model, folder)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{folder}.zip"'})

    # -- JSON API ------------------------------------------------------------------------------
    async def api_searches(self, request: Request) -> Response:
        started = time.perf_counter()
        return timed(JSONResponse(await self.views.searches(**list_filter(request))), started)

    async def api_search(self, request: Request) -> Response:
        data = await self.views.search(request.path_params["search_id"])
        if data is None:
            return JSONResponse({"error": f"no search {request.path_params['search_id']!r}"}, 404)
        return JSONResponse(data)

    async def api_runners(self, request: Request) -> Response:
        return JSONResponse(await self.views.runners())

    async def api_dead_letters(self, request: Request) -> Response:
        return JSONResponse(self.views.dead_letters(int_param(request, "limit", 200, 1, 10_000)))

    async def api_submit(self, request: Request) -> Response:
        refused = self.authorise(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
            options = submit_options(body)
            search_id, submission = await asyncio.to_thread(build_submission, options)
        except (ValueError, FileNotFoundError, TypeError) as exc:    # bad JSON, DataError, SpaceError, ...
            return JSONResponse({"error": str(exc)}, 400)
        event = Event.new(submission, search_id, PRODUCER)
        if (refused := await self.publish(event)) is not None:
            return refused
        self.index.published("model-submitted", event)
        log.info("submitted %s (model %r) from the dashboard", search_id, options.model)
        return JSONResponse({"search_id": search_id, "event_id": event.event_id, "url": f"/searches/{search_id}"},
                            201)

    async def api_cancel(self, request: Request) -> Response:
        refused = self.authorise(request)
        if refused is not None:
            return refused
        search_id = request.path_params["search_id"]
        try:
            body = await request.json()
        except ValueError:
            body = {}
        reason = str((body or {}).get("reason") or "cancelled from the dashboard").strip()[:500] or "cancelled"
        st = await self.views.state(search_id)
        if st is None:
            return JSONResponse({"error": f"no search {search_id!r} (a search can be cancelled once it is "
                                          f"profiled and running)"}, 404)
        if st.status != "running":
            return JSONResponse({"error": f"search is {st.status}: nothing to cancel"}, 409)
        event = Event.new(SearchCancelled(reason, "dashboard"), search_id, PRODUCER)
        if (refused := await self.publish(event)) is not None:
            return refused
        self.index.published(SEARCH_CONTROL, event)
        log.info("cancel of %s requested from the dashboard", search_id)
        return JSONResponse({"search_id": search_id, "event_id": event.event_id}, 202)

    async def healthz(self, request: Request) -> Response:
        checks = {"event_log": "ok" if self.index.error is None else self.index.error}
        try:
            await asyncio.wait_for(self.redis.ping(), 2.0)
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["redis"] = f"{type(exc).__name__}: {exc}"[:200]
        return JSONResponse(checks, 200 if all(v == "ok" for v in checks.values()) else 503)

    # -- live updates ----------------------------------------------------------------------------
    async def stream(self, request: Request) -> Response:
        """Server-sent events for one page: ``view`` = searches | search (``id``) | runners |
        dead-letters. Each message carries the fresh data and the events that caused it (their
        envelope ``ts``: the page measures how late it applied them)."""
        view = request.query_params.get("view", "searches")
        search_id = request.query_params.get("id", "")
        if view not in ("searches", "search", "runners", "dead-letters"):
            return JSONResponse({"error": f"unknown view {view!r}"}, 400)
        return StreamingResponse(self._stream(request, view, search_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _stream(self, request: Request, view: str, search_id: str) -> AsyncIterator[str]:
        with self.index.listen() as queue:
            yield "retry: 1000\n\n"
            # search -> (notes its state does not show yet, since when, ids of those already pushed)
            waiting: dict[str, tuple[list[Note], float, set[str]]] = {}
            last_runners: Any = None
            while True:
                timeout = 0.05 if waiting else (1.0 if view == "runners" else 15.0)
                notes: list[Note] = []
                try:
                    notes.append(await asyncio.wait_for(queue.get(), timeout))
                    while not queue.empty():
                        notes.append(queue.get_nowait())
                except asyncio.TimeoutError:
                    pass
                if await request.is_disconnected():
                    return
                if view == "runners":
                    rows = await self.views.runners()
                    shown = [{k: v for k, v in r.items() if k not in ("heartbeat_age_s", "stale")} for r in rows]
                    if shown != last_runners or notes:
                        last_runners = shown
                        yield sse("runners", {"html": str(self.parts.runners(rows)),
                                              "causes": [n.as_dict() for n in notes]})
                    continue
                if view == "dead-letters":
                    if any(n.type == "dead-letter" for n in notes):
                        yield sse("dead-letters", {"html": str(self.parts.dead_letters(self.views.dead_letters())),
                                                   "causes": [n.as_dict() for n in notes if n.type == "dead-letter"]})
                    elif not notes:
                        yield ": keep-alive\n\n"
                    continue
                by_search: dict[str, list[Note]] = {}
                for n in notes:
                    if n.search_id and (view == "searches" or n.search_id == search_id):
                        by_search.setdefault(n.search_id, []).append(n)
                for sid, (old, _, _) in list(waiting.items()):
                    by_search.setdefault(sid, [])[:0] = old
                if not by_search and not notes:
                    yield ": keep-alive\n\n"
                    continue
                for sid, ns in by_search.items():
                    held = waiting.pop(sid, None)
                    since, shown = (held[1], held[2]) if held else (time.monotonic(), set())
                    st = await self.views.state(sid)
                    unseen = {n.event_id for n in ns if n.type == "trial-completed" and n.trial_id
                              and (st is None or not st.has_trial(n.trial_id))}
                    if unseen and time.monotonic() - since < FRESH_WAIT_S:
                        # the searcher has not stored the trial yet: show that its result arrived now,
                        # and look again soon for the state that records it
                        fresh = [n for n in ns if n.event_id not in shown]
                        waiting[sid] = (ns, since, shown | {n.event_id for n in ns})
                        if view == "search" and fresh:
                            data = await self.views.search(sid)
                            if data is not None:
                                yield sse("search", {**self.search_parts(data), "causes": [
                                    {**n.as_dict(), "stage": "arrived" if n.event_id in unseen else "shown"}
                                    for n in fresh]})
                        continue
                    causes = [{**n.as_dict(), "stage": "recorded" if n.event_id in shown else "shown"} for n in ns]
                    if view == "search":
                        data = await self.views.search(sid)
                        if data is not None:
                            yield sse("search", {**self.search_parts(data), "causes": causes})
                    else:
                        r = await self.views.search_row(sid)
                        if r is not None:
                            yield sse("search-row", {"html": str(self.parts.search_row(r)), "search_id": sid,
                                                     "status": r["status"], "model": r["model"], "causes": causes})

    def search_parts(self, data: dict[str, Any]) -> dict[str, Any]:
        """The live parts of a search page, rendered by the same macros as the page itself."""
        p = self.parts
        return {"parts": {"summary": str(p.summary(data)), "recommendation": str(p.recommendation(data)),
                          "inflight": str(p.inflight(data)), "trials": str(p.trials(data)),
                          "timeline": str(p.timeline(data)), "operators": str(p.operators(data)),
                          "links": str(p.links(data)), "served": str(p.served(data))},
                "served": data["served"],
                "best_so_far": data["best_so_far"], "status": data["status"], "can_cancel": data["can_cancel"]}


def no_search(search_id: str) -> str:
    return f"No search {search_id!r}: neither the searcher's state in Redis nor the event log knows it."


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


def timed(resp: Response, started: float) -> Response:
    resp.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
    return resp


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        return max(lo, min(hi, int(request.query_params.get(name, default))))
    except ValueError:
        return default


def list_filter(request: Request) -> dict[str, Any]:
    qp = request.query_params
    status = qp.get("status", "")
    sort = qp.get("sort", "age")
    return {"q": qp.get("q", "")[:200], "status": status if status in STATUSES else "",
            "sort": sort if sort in SORTS else "age", "desc": qp.get("order", "desc") != "asc",
            "limit": int_param(request, "limit", 100, 1, 1000)}


def submit_options(body: Any) -> SubmitOptions:
    """A submission from the page or a script: the CLI's submit options (same names), checked."""
    if not isinstance(body, dict):
        raise ValueError("send a JSON object with the submission's fields")
    unknown = sorted(set(body) - set(SUBMIT_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(SUBMIT_FIELDS)}")
    values: dict[str, Any] = {}
    for name, value in body.items():
        if value is None or value == "":
            continue
        kind = str(SUBMIT_FIELDS[name].type)
        if kind == "bool":
            values[name] = value is True or str(value).lower() in ("true", "on", "1", "yes")
        elif kind.startswith("int"):
            values[name] = int(value)
        elif kind.startswith("float"):
            values[name] = float(value)
        else:
            values[name] = str(value)
    if not values.get("model"):
        raise ValueError("a submission needs a model name")
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,100}", values.get("search_id", "x")):
        raise ValueError("search_id: letters, digits and . _ : - only")
    return SubmitOptions(**values)


class SecurityHeaders:
    """Every response: a content security policy (no inline script, nothing from elsewhere), no
    MIME sniffing, no framing, no referrer. Pure ASGI, so server-sent events stream untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = CSP
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Frame-Options"] = "DENY"
            await send(message)
        await self.app(scope, receive, send_with_headers)


def create_app(settings: Settings, token: str | None = None, reports_dir: Path | None = None,
               follow: bool = True) -> Starlette:
    """The dashboard for the stack ``settings`` points at. ``token``: enables submit and cancel.
    ``follow``: follow the event log (timelines, dead letters, live updates)."""
    d = Dashboard(settings, token, reports_dir or Path(".falcon/reports/ui"), follow)

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "not found"}, 404)
        return d.page(request, "404.html", 404, what=f"Nothing at {request.url.path}.")

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("error serving %s", request.url.path)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": f"{type(exc).__name__}"}, 500)
        return HTMLResponse("<!doctype html><title>error</title><h1>Something went wrong</h1>"
                            "<p>The error is in the dashboard's log.</p>", 500)

    app = Starlette(routes=[
        Route("/", d.searches_page),
        Route("/searches/{search_id}", d.search_page),
        Route("/searches/{search_id}/report/", d.report),
        Route("/searches/{search_id}/report/{name}", d.report),
        Route("/searches/{search_id}/export/{format}.zip", d.export),
        Route("/runners", d.runners_page),
        Route("/dead-letters", d.dead_letters_page),
        Route("/api/searches", d.api_searches),
        Route("/api/searches", d.api_submit, methods=["POST"]),
        Route("/api/searches/{search_id}", d.api_search),
        Route("/api/searches/{search_id}/cancel", d.api_cancel, methods=["POST"]),
        Route("/api/runners", d.api_runners),
        Route("/api/dead-letters", d.api_dead_letters),
        Route("/api/stream", d.stream),
        Route("/healthz", d.healthz),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ], exception_handlers={404: not_found, 500: server_error}, lifespan=d.lifespan,
        middleware=[Middleware(SecurityHeaders)])

    app.state.dashboard = d
    return app
