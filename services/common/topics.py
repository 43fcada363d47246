"""Topic names and which event types may appear on each (the bus dead-letters the rest)."""

DEAD_LETTER = "dead-letter"

TOPIC_EVENTS: dict[str, tuple[str, ...]] = {
    "model-submitted": ("model-submitted",),
    "kops-identified": ("kops-identified",),
    "trial-requested": ("trial-requested",),
    "trial-completed": ("trial-completed",),
    "search-results": ("search-completed", "search-failed"),
    "offline-data": ("offline-table-published",),
    "trees": ("trees-ready",),
    DEAD_LETTER: ("dead-letter",),
}

EVENT_TOPIC: dict[str, str] = {ev: topic for topic, evs in TOPIC_EVENTS.items() for ev in evs}
ALL_TOPICS: tuple[str, ...] = tuple(TOPIC_EVENTS)
