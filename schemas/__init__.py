"""The event contract: JSON Schema files (one per event type and version) + msgpack on the wire.

Every consumer calls :func:`decode` at its edge; anything it rejects raises :class:`SchemaError`
with a reason a person can act on, and the bus sends the raw bytes to the dead-letter topic.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgpack
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

if TYPE_CHECKING:
    from schemas.events import Payload

# an event's payload type: ``Event[TrialResult]`` is a trial-completed event (a handler's
# signature names it, and the bus hands it only such events: services.platform.bus.subscribe)
P = TypeVar("P", bound="Payload", covariant=True)

SCHEMA_DIR = Path(__file__).parent
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024

# Event type -> versions this code reads. Writers always write the newest; an older version's data
# is upcast to the newest shape before it becomes a payload (schemas/upcast.py).
SUPPORTED_VERSIONS: dict[str, tuple[int, ...]] = {
    "model-submitted": (1,),
    "kops-identified": (1,),
    "trial-requested": (1,),
    "trial-completed": (1, 2),      # v2: a trial row's value is rps_per_usd, with rps_per_usd_unit
    "search-completed": (1, 2),
    "search-failed": (1, 2),
    "dead-letter": (1,),
    "offline-table-published": (1,),
    "trees-ready": (1,),
    "knowledge-requested": (1,),
    "search-cancelled": (1,),
}
EVENT_TYPES = tuple(SUPPORTED_VERSIONS)
_EVENT_NS = uuid.UUID("6f1d3c2e-8a47-4c55-9b1e-5a0f0c1d2e3f")


class SchemaError(ValueError):
    """A message that does not satisfy the contract; ``str(err)`` is the dead-letter reason."""


@dataclass(frozen=True)
class Event(Generic[P]):
    type: str
    search_id: str
    data: dict[str, Any]
    producer: str
    causation_id: str | None = None
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts: str = field(default_factory=lambda: utc_now())
    version: int = 0  # 0 = newest supported, filled in by __post_init__

    def __post_init__(self) -> None:
        if self.version == 0:
            object.__setattr__(self, "version", SUPPORTED_VERSIONS[self.type][-1])

    @classmethod
    def new(cls, payload: "Payload", search_id: str, producer: str, **envelope: Any) -> "Event":
        """An event carrying ``payload`` (its type is the payload's kind)."""
        event = cls(type=payload.type, search_id=search_id, data=payload.to_data(), producer=producer, **envelope)
        event.__dict__["payload"] = payload        # already typed: no conversion back
        return event

    def caused(self, payload: "Payload", producer: str, salt: str = "", search_id: str | None = None) -> "Event":
        """A new event caused by this one (same search unless ``search_id``, causation id = this
        event's id).

        Its id is derived from the cause, so handling a redelivered cause again produces the
        same event id: consumers and the audit see a duplicate, not a second decision."""
        return Event.new(payload, self.search_id if search_id is None else search_id, producer,
                         causation_id=self.event_id,
                         event_id=uuid.uuid5(_EVENT_NS, f"{self.event_id}/{payload.type}/{salt}").hex)

    @cached_property
    def payload(self) -> P:
        """``data`` as its kind's dataclass (converted once; the bus does it at the edge), an older
        version's data upcast to the newest shape first (schemas/upcast.py).
        ValueError when the content is schema-valid but unusable (e.g. an impossible space)."""
        from schemas.events import PAYLOADS
        from schemas.upcast import upcast
        try:
            return PAYLOADS[self.type].from_data(upcast(self.type, self.version, self.data))  # type: ignore[return-value]
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"{self.type} v{self.version}: data does not fit its payload: {exc!r}") from None

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "version": self.version, "event_id": self.event_id,
                "search_id": self.search_id, "causation_id": self.causation_id, "ts": self.ts,
                "producer": self.producer, "data": self.data}


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@cache
def _registry() -> Registry:
    """Every version's shared definitions (``v<N>/defs.json``, each under its ``$id``)."""
    registry = Registry()
    for path in sorted(SCHEMA_DIR.glob("v*/defs.json")):
        defs = json.loads(path.read_text())
        registry = registry.with_resource(defs["$id"], Resource.from_contents(defs))
    return registry


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"v{_version_dir(name)}" / f"{_base(name)}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())


def _base(name: str) -> str:
    return name.split("@")[0]


def _version_dir(name: str) -> int:
    return int(name.split("@")[1]) if "@" in name else 1


def _check(name: str, obj: Any, what: str) -> None:
    errors = sorted(_validator(name).iter_errors(obj), key=lambda e: list(e.absolute_path))
    if errors:
        err: ValidationError = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise SchemaError(f"{what}: {where}: {err.message[:300]}")


def validate(event: Event) -> None:
    """Raise SchemaError unless the event satisfies its schema (writers validate too)."""
    _check("envelope", event.as_dict(), "envelope")
    if event.type not in SUPPORTED_VERSIONS:
        raise SchemaError(f"unknown event type {event.type!r}")
    if event.version not in SUPPORTED_VERSIONS[event.type]:
        raise SchemaError(f"unsupported version {event.version} of {event.type!r} "
                          f"(this reader knows {list(SUPPORTED_VERSIONS[event.type])})")
    _check(f"{event.type}@{event.version}", event.data, f"{event.type} v{event.version}")


def encode(event: Event, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    validate(event)
    raw = msgpack.packb(event.as_dict(), use_bin_type=True)
    if len(raw) > max_bytes:
        raise SchemaError(f"event of {len(raw)} bytes is over the {max_bytes}-byte limit")
    return raw


def _is_json(raw: bytes) -> bool:
    if raw.lstrip()[:1] not in (b"{", b"["):
        return False
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def decode(raw: bytes | None, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
           expect: tuple[str, ...] | None = None) -> Event:
    """Bytes from the wire -> a validated Event, or SchemaError with the reason."""
    if raw is None:
        raise SchemaError("empty message (no value)")
    if len(raw) > max_bytes:
        raise SchemaError(f"message of {len(raw)} bytes is over the {max_bytes}-byte limit")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        if _is_json(raw):
            raise SchemaError("not msgpack: the message is JSON; events go on the wire as msgpack-encoded maps "
                              "(the same envelope and data, see schemas/README.md)") from None
        raise SchemaError(f"not msgpack: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise SchemaError(f"message is a msgpack {type(obj).__name__}, not a map")
    _check("envelope", obj, "envelope")
    event = Event(type=obj["type"], version=obj["version"], event_id=obj["event_id"],
                  search_id=obj["search_id"], causation_id=obj["causation_id"], ts=obj["ts"],
                  producer=obj["producer"], data=obj["data"])
    if expect is not None and event.type not in expect:
        raise SchemaError(f"event type {event.type!r} does not belong on this topic (expected {list(expect)})")
    validate(event)
    return event
