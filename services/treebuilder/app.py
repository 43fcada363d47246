"""Treebuilder service shell: collects the offline dataset from offline-table-published events
(and the live trials of finished searches), and keeps the knowledge (KOP curves, per-KOP trees,
source tables; :mod:`services.knowledge`) current for every space that searches use.

A space is registered when a search asks for it (knowledge-requested) - the paper's space is
registered from the start. Each registered space's knowledge is rebuilt once the dataset has a
new version and is quiet, stored with that version (:class:`KnowledgeStore`) and announced by
``trees-ready``; a request for a space already built at the current version is answered with
a trees-ready at once, so the asking searcher can go on."""

from __future__ import annotations

import asyncio
import logging

import faust
import msgpack

from schemas import Event
from schemas.events import KnowledgeRequested, OfflineTablePublished, SearchCompleted, SearchFailed, TreesReady
from services.platform.bus import Publisher, Reject, create_app, run_worker, subscribe
from services.platform.connections import redis_client
from services.domain.falcon_data import VALUE_COLUMN, DataError
from services.platform.redis_keys import KNOWLEDGE
from services.platform.settings import Settings
from services.domain.space import PAPER_SPACE, Space
from services.knowledge import Knowledge, OfflineDataset
from services.knowledge.dataset import observed_rows
from services.knowledge.store import KnowledgeStore

SERVICE = "treebuilder"
BUILD_EVERY_S = 2.0
CALIBRATION_STRATEGY = "design"      # the strategy of falcon calibrate's searches (services/searcher/strategies/design.py)
log = logging.getLogger("falcon.treebuilder")


class TreebuilderHandlers:
    def __init__(self, store: KnowledgeStore) -> None:
        self.store = store
        self._building = asyncio.Lock()      # one build at a time: a request and the timer may race
        self._dataset: tuple[int, OfflineDataset] | None = None   # read once per version for every space

    async def on_offline_table(self, event: Event[OfflineTablePublished], publisher: Publisher) -> None:
        t = event.payload
        try:
            if await self.store.store_table(t.kind, t.name, t.columns, t.rows, t.dataset):
                log.info("offline table %s:%s stored (%d rows)", t.kind, t.name, len(t.rows))
        except DataError as exc:
            raise Reject(str(exc)) from None

    async def on_search_result(self, event: Event[SearchCompleted | SearchFailed], publisher: Publisher) -> None:
        """Live-measured trials of a finished search join the dataset as a (partial) source table
        of that model over that space, merged with earlier searches of the same model. Replayed
        trials are copies of tables already known (and may be benchmark targets): never learnt.
        Nor are a calibration's searches (strategy ``design``): ``falcon calibrate`` publishes
        their measurements itself, as a whole, once every one of its searches is done."""
        done = event.payload
        if not isinstance(done, SearchCompleted) or done.backend_kind != "live" or done.space is None \
                or done.strategy == CALIBRATION_STRATEGY:
            return
        space = done.space
        name = observed_table_name(done.model or "model", space)
        rows = observed_rows(space, await self.store.table_rows("model-table", name) or (), done.trials)
        await self.store.store_table("model-table", name, [*space.names, VALUE_COLUMN], rows, "live-trials")

    async def on_knowledge_requested(self, event: Event[KnowledgeRequested], publisher: Publisher) -> None:
        request = event.payload
        await self.store.register_space(request.space)
        ready = await self.build(request.space, publisher, cause=event, always_announce=True)
        if ready is None:
            log.info("search=%s asked for knowledge of space %s, but no offline dataset is published",
                     event.search_id, request.space.fingerprint())

    async def build(self, space: Space, publisher: Publisher | None = None, cause: Event | None = None,
                    always_announce: bool = False) -> Event | None:
        """Build the knowledge for ``space`` if the dataset's version is newer than the stored
        one; store and announce it. Returns the trees-ready event (None: nothing to announce)."""
        async with self._building:
            version = await self.store.dataset_version()
            if version is None:
                return None
            knowledge = None
            if await self.store.stored_version(space) != version:
                if self._dataset is None or self._dataset[0] != version:
                    self._dataset = (version, await self.store.load_dataset())
                dataset = self._dataset[1]
                knowledge = await asyncio.to_thread(Knowledge.build, dataset, space, version=version)
                blob = await asyncio.to_thread(
                    lambda: msgpack.packb({"version": version, "knowledge": knowledge.to_dict()}))
                await self.store.save(knowledge, version, blob)
                log.info("knowledge v%d for space %s: %d operators, %d source models", version,
                         space.fingerprint(), len(knowledge.operators), len(knowledge.sources))
            elif always_announce:
                knowledge = await self.store.load(space)
            if knowledge is None:
                return None
        ready = trees_ready(knowledge, version)
        event = cause.caused(ready, SERVICE, salt=str(version), search_id="") if cause is not None \
            else Event.new(ready, "", SERVICE)
        if publisher is not None:
            await publisher.publish(event)
        return event

    async def build_all(self, publisher: Publisher | None = None) -> list[Event]:
        """Bring every registered space's knowledge up to the dataset's version."""
        events = []
        for space in await self.store.spaces():
            if (e := await self.build(space, publisher)) is not None:
                events.append(e)
        return events


def trees_ready(knowledge: Knowledge, version: int) -> TreesReady:
    fp = knowledge.space.fingerprint()
    return TreesReady(version=version, space_key=fp, redis_key=KNOWLEDGE.format(fp),
                      sources=sorted(knowledge.sources), operators=[
                          {"op": op, "kept": list(oc.kept), "importance": dict(oc.importance),
                           "shapes": dict(oc.shapes), "tree_height": knowledge.tree(op).height,
                           "tree_leaves": knowledge.tree(op).leaves}
                          for op, oc in sorted(knowledge.operators.items())])


def observed_table_name(model: str, space: Space) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model)[:60]
    return f"observed-{safe}-{space.fingerprint()[:8]}"


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings)
    store = KnowledgeStore(redis_client(settings))
    handlers = TreebuilderHandlers(store)
    publisher = subscribe(app, settings, "offline-data", handlers.on_offline_table)
    subscribe(app, settings, "search-results", handlers.on_search_result)
    subscribe(app, settings, "knowledge-requests", handlers.on_knowledge_requested)

    seen: dict[str, int | None] = {"version": None}

    @app.task
    async def register_default_space() -> None:   # noqa: ANN202 - the paper's space is always kept built
        await store.register_space(PAPER_SPACE)

    @app.timer(interval=BUILD_EVERY_S)
    async def build_knowledge() -> None:   # noqa: ANN202
        version = await store.dataset_version()
        if version != seen["version"]:     # tables are still arriving: wait for a quiet tick
            seen["version"] = version
            return
        try:
            await handlers.build_all(publisher)
        except Exception:  # noqa: BLE001 - a failed build is retried at the next tick
            log.exception("building the knowledge failed; retrying")
    return app


def main() -> None:
    settings = Settings.from_env()
    run_worker(build(settings), settings)
