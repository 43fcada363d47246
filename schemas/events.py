"""One dataclass per event kind: an event's ``data``, typed.

The JSON Schemas (``v1/*.json``, ``v2/*.json``: each kind's newest version is written, the
older ones read and upcast by ``schemas/upcast.py``) stay the wire contract (a test checks that every class and its
schema name the same fields); the bus converts ``data`` into the kind's class once, at the edge
(:attr:`schemas.Event.payload`), so handlers read attributes instead of string keys and the
search spec is parsed once per event, not once per reader.

:class:`TrialResult` is the one trial-result type: a backend returns it, the runner publishes it
as trial-completed, the searcher keeps it in the search state, and reports read it. A new measured
figure is registered in ``services/domain/figures.py``, a field here and a property of
``v2/defs.json``'s ``trial_row`` (trial-completed's schema); the backend that measures it fills it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Mapping, TypeVar

from services.domain.figures import RpsPerUsdUnit
from services.domain.objectives import Objective, ParetoPoint
from services.domain.space import Config, Space
from services.domain.spec import SearchSpec

P = TypeVar("P", bound="Payload")


class Payload:
    """An event kind's data. ``type`` is the event type; fields named in ``omit_if_none`` are left
    out of the wire form when unset (their schema has no null)."""
    type: ClassVar[str]
    omit_if_none: ClassVar[frozenset[str]] = frozenset()

    def to_data(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is None and f.name in self.omit_if_none:
                continue
            out[f.name] = _wire(v)
        return out

    @classmethod
    def from_data(cls: type[P], d: Mapping[str, Any]) -> P:
        """The wire dict (already schema-valid) as this class; ValueError for content the schema
        admits but the domain cannot use (e.g. a space with a knob listed twice)."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in d.items() if k in names})


def _wire(v: Any) -> Any:
    if isinstance(v, Payload):
        return v.to_data()
    if isinstance(v, (SearchSpec, Space, Objective, ParetoPoint)):
        return v.to_dict()
    if isinstance(v, Mapping):
        return {k: _wire(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_wire(x) for x in v]
    return v


@dataclass(frozen=True)
class ModelSubmitted(Payload):
    type: ClassVar[str] = "model-submitted"
    spec: SearchSpec
    operators: list[dict[str, Any]] | None = None     # the operator profile, when it comes with the model

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> "ModelSubmitted":
        return cls(SearchSpec.from_dict(d["spec"]), d.get("operators"))


@dataclass(frozen=True)
class KopsIdentified(Payload):
    type: ClassVar[str] = "kops-identified"
    omit_if_none: ClassVar[frozenset[str]] = frozenset({"notices"})
    spec: SearchSpec
    operators: list[dict[str, Any]]
    kops: list[str]
    threshold: float
    notices: list[str] | None = None     # e.g. TVM cannot import the model: no operators, no KOPs

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> "KopsIdentified":
        return cls(SearchSpec.from_dict(d["spec"]), list(d["operators"]), list(d["kops"]), float(d["threshold"]),
                   [str(n) for n in d["notices"]] if d.get("notices") is not None else None)


@dataclass(frozen=True)
class TrialRequested(Payload):
    """A trial the searcher asks for; also what a backend is given to run."""
    type: ClassVar[str] = "trial-requested"
    omit_if_none: ClassVar[frozenset[str]] = frozenset({"parallel", "predicted", "roles"})
    trial_id: str
    index: int
    config: Config
    model: Mapping[str, Any]
    backend: Mapping[str, Any]
    price_per_hour: float
    runner_class: str = "replay"
    parallel: int | None = None                     # the searcher's record: its trials in flight at once
    predicted: Mapping[str, float] | None = None     # the searcher's record (noisy searches): see SearchState
    roles: Mapping[str, str] | None = None   # the space's knob roles unlike the defaults (None: the defaults)

    def result(self, status: Literal["ok", "failed"], *, rps_per_usd: float | None = None,
               rps_per_usd_unit: RpsPerUsdUnit | None = None, cost_usd: float = 0.0, duration_s: float = 0.0,
               **measured: Any) -> "TrialResult":
        """This trial's result (a backend's answer): its RPS/$ in the unit the backend measures it
        in (services/domain/figures.py); ``measured``: rps, p50_ms, p99_ms, stability_cv, reason,
        details, energy_j_per_request, mean_power_w."""
        return TrialResult(self.trial_id, self.index, dict(self.config), status, rps_per_usd, cost_usd, duration_s,
                           rps_per_usd_unit=rps_per_usd_unit, **measured)

    def failed(self, reason: str) -> "TrialResult":
        return self.result("failed", reason=reason)


@dataclass(frozen=True)
class TrialResult(Payload):
    """What a trial measured (or why it failed) and what it cost (event trial-completed)."""
    type: ClassVar[str] = "trial-completed"
    trial_id: str
    index: int
    config: Config
    status: Literal["ok", "failed"]
    rps_per_usd: float | None    # requests per dollar, in the unit ``rps_per_usd_unit`` states
    cost_usd: float
    duration_s: float
    runner: str = ""
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    reason: str | None = None
    stability_cv: float | None = None      # coefficient of variation of RPS over the measurement's time slices
    details: Mapping[str, Any] = field(default_factory=dict)   # backend-specific facts (compile time, threads)
    energy_j_per_request: float | None = None   # joules per request over the measurement (NVML), where measured
    mean_power_w: float | None = None           # the device's mean power during the measurement (NVML)
    # rps_per_usd's unit, stated by the backend that measured it: "req/$" (live, served) or "norm"
    # (a replay table's RPS/$ over its best, 0-1). None with no rps_per_usd, or in a result of a v1
    # event whose unit the reader fills in from the search's backend (schemas/upcast.py)
    rps_per_usd_unit: RpsPerUsdUnit | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.rps_per_usd is not None


@dataclass(frozen=True)
class SearchCompleted(Payload):
    type: ClassVar[str] = "search-completed"
    omit_if_none: ClassVar[frozenset[str]] = frozenset({"space", "estimate", "objective", "objective_value",
                                                        "predicted"})
    best: TrialResult
    stop_reason: str
    trials: list[TrialResult]
    spent_usd: float
    strategy: str
    kops: list[str]
    runners_up: list[TrialResult] = field(default_factory=list)
    constraints: Mapping[str, Any] = field(default_factory=dict)
    model: str = ""
    backend_kind: str = ""
    space: Space | None = None
    infeasible: Mapping[str, str] = field(default_factory=dict)    # trial id -> why it cannot be recommended
    # what the search believes the recommendation is worth: value (posterior mean), 95% low/high,
    # measurements behind it (a noisy runner's lucky measurement is not the estimate)
    estimate: Mapping[str, Any] | None = None
    parallel: int = 1                       # trials that ran at once
    predicted: Mapping[str, float] | None = None   # noisy searches: the model's expectations (SearchState)
    objective: Objective | None = None          # what was optimised (None: an older searcher's, RPS/$)
    objective_value: float | None = None        # the recommendation's objective, in the objective's unit
    best_per_objective: Mapping[str, str] = field(default_factory=dict)   # objective -> trial id recommended by it
    pareto: list[ParetoPoint] = field(default_factory=list)   # p99 vs $ per million requests, cheapest first
    notices: list[str] = field(default_factory=list)          # e.g. no offline knowledge for the objective

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> "SearchCompleted":
        return cls(TrialResult.from_data(d["best"]), d["stop_reason"], [TrialResult.from_data(t) for t in d["trials"]],
                   float(d["spent_usd"]), d["strategy"], list(d["kops"]),
                   [TrialResult.from_data(t) for t in d.get("runners_up", ())], dict(d.get("constraints") or {}),
                   d.get("model", ""), d.get("backend_kind", ""),
                   Space.from_dict(d["space"]) if d.get("space") else None, dict(d.get("infeasible") or {}),
                   d.get("estimate"), int(d.get("parallel") or 1), d.get("predicted"),
                   Objective.from_dict(d["objective"]) if d.get("objective") else None, d.get("objective_value"),
                   dict(d.get("best_per_objective") or {}), [ParetoPoint.from_dict(p) for p in d.get("pareto", ())],
                   list(d.get("notices") or ()))


@dataclass(frozen=True)
class SearchFailed(Payload):
    type: ClassVar[str] = "search-failed"
    stage: Literal["profile", "search", "trial"]
    reason: str
    trials: list[TrialResult] = field(default_factory=list)

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> "SearchFailed":
        return cls(d["stage"], d["reason"], [TrialResult.from_data(t) for t in d.get("trials", ())])


@dataclass(frozen=True)
class SearchCancelled(Payload):
    """Stop a running search (dashboard or script): no trial is requested after it; a trial in
    flight finishes and is recorded. The search's result says it was cancelled."""
    type: ClassVar[str] = "search-cancelled"
    reason: str
    requested_by: str


@dataclass(frozen=True)
class DeadLetter(Payload):
    type: ClassVar[str] = "dead-letter"
    source_topic: str
    partition: int
    offset: int
    reason: str
    service: str
    raw_b64: str
    raw_size: int
    key: str | None = None       # the message's key, as text


@dataclass(frozen=True)
class OfflineTablePublished(Payload):
    type: ClassVar[str] = "offline-table-published"
    dataset: str
    kind: Literal["model-table", "kop-curve", "operator-profile"]
    name: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class KnowledgeRequested(Payload):
    """A search needs the offline knowledge for a space the treebuilder has not built yet."""
    type: ClassVar[str] = "knowledge-requested"
    space: Space

    @classmethod
    def from_data(cls, d: Mapping[str, Any]) -> "KnowledgeRequested":
        return cls(Space.from_dict(d["space"]))


@dataclass(frozen=True)
class TreesReady(Payload):
    """The treebuilder stored knowledge (KOP curves, trees, source tables) for a space."""
    type: ClassVar[str] = "trees-ready"
    version: int                 # the offline dataset version it was built from
    space_key: str               # Space.fingerprint()
    redis_key: str
    sources: list[str]
    operators: list[dict[str, Any]]


PAYLOADS: dict[str, type[Payload]] = {cls.type: cls for cls in (
    ModelSubmitted, KopsIdentified, TrialRequested, TrialResult, SearchCompleted, SearchFailed, SearchCancelled,
    DeadLetter, OfflineTablePublished, KnowledgeRequested, TreesReady)}

__all__ = ["PAYLOADS", "DeadLetter", "KnowledgeRequested", "KopsIdentified", "ModelSubmitted",
           "OfflineTablePublished", "Payload", "SearchCancelled", "SearchCompleted", "SearchFailed", "TreesReady",
           "TrialRequested", "TrialResult"]
