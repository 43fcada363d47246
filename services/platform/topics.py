"""Topic names and which event types may appear on each (the bus dead-letters the rest).

Trial requests are routed by *runner class*, so a request reaches only runners able to serve
it: ``replay`` (table replay, any configuration of its table) on ``trial-requested``, and live
classes on ``trial-requested.<class>``: ``live-cpu`` for configurations without a GPU, and
``live-<gpu type>`` (e.g. ``live-h100``) for a GPU. A runner subscribes to the classes its
hardware serves (``FALCON_RUNNER_CLASSES``)."""

from __future__ import annotations

import re
from typing import Any, Mapping

from services.domain.roles import DEFAULT_ROLES

DEAD_LETTER = "dead-letter"
TRIAL_REQUESTED = "trial-requested"
SEARCH_CONTROL = "search-control"     # requests about a running search (cancel), keyed by search id like the rest
NO_GPU = ("", "none", "cpu")
KNOWN_GPUS = ("k80", "m60", "t4", "v100", "a10g", "a100", "h100", "h200")
RUNNER_CLASSES: tuple[str, ...] = ("replay", "live-cpu", *(f"live-{g}" for g in KNOWN_GPUS))


def trial_topic(cls: str) -> str:
    return TRIAL_REQUESTED if cls == "replay" else f"{TRIAL_REQUESTED}.{cls}"


TOPIC_EVENTS: dict[str, tuple[str, ...]] = {
    "model-submitted": ("model-submitted",),
    "kops-identified": ("kops-identified",),
    **{trial_topic(c): ("trial-requested",) for c in RUNNER_CLASSES},
    "trial-completed": ("trial-completed",),
    "search-results": ("search-completed", "search-failed"),
    SEARCH_CONTROL: ("search-cancelled",),
    "offline-data": ("offline-table-published",),
    "knowledge-requests": ("knowledge-requested",),
    "trees": ("trees-ready",),
    DEAD_LETTER: ("dead-letter",),
}

EVENT_TOPIC: dict[str, str] = {ev: topic for topic, evs in TOPIC_EVENTS.items() for ev in evs}
EVENT_TOPIC["trial-requested"] = TRIAL_REQUESTED   # the replay class; others: trial_topic()
ALL_TOPICS: tuple[str, ...] = tuple(TOPIC_EVENTS)
TRIAL_TOPICS: tuple[str, ...] = tuple(t for t, evs in TOPIC_EVENTS.items() if evs == ("trial-requested",))
# what a search's state is rebuilt from: its start, the searcher's decisions, the trial results and cancels
SEARCH_LOG_TOPICS: tuple[str, ...] = ("kops-identified", "trial-completed", *TRIAL_TOPICS, "search-results",
                                      SEARCH_CONTROL)


def is_no_gpu(value: Any) -> bool:
    """A GPU knob value that asks for no GPU (absent, '', 'none', 'cpu', any case)."""
    return value is None or str(value).strip().lower() in NO_GPU


def runner_class(backend_kind: str, config: Mapping[str, Any], gpu_knob: str = DEFAULT_ROLES.gpu) -> str:
    """Which runners can serve this trial: 'replay' for table replay, else live-cpu / live-<gpu>
    (``gpu_knob``: the space's GPU role, as the spec's prices carry it)."""
    if backend_kind == "replay":
        return "replay"
    gpu = config.get(gpu_knob)
    if is_no_gpu(gpu):
        return f"{backend_kind}-cpu"
    gpu = str(gpu).strip().lower()
    return f"{backend_kind}-{re.sub(r'[^a-z0-9]+', '-', gpu).strip('-')}"


def topic_for(event_type: str, data: Mapping[str, Any]) -> str:
    if event_type == "trial-requested":
        return trial_topic(str(data.get("runner_class") or "replay"))
    return EVENT_TOPIC[event_type]


def topic_events(topic: str) -> tuple[str, ...]:
    """Event types allowed on ``topic`` (trial topics of classes not listed above included)."""
    if topic in TOPIC_EVENTS:
        return TOPIC_EVENTS[topic]
    if topic.startswith(TRIAL_REQUESTED + "."):
        return ("trial-requested",)
    raise KeyError(f"unknown topic {topic!r}")
