"""Typed subscriptions: a handler's signature names the payload type it takes
(``async def on_trial_completed(self, event: Event[TrialResult], publisher)``), so the bus, not the
handler, checks what it is given: :func:`services.platform.bus.subscribe` refuses (at start) a topic
carrying an event kind the handler does not name, and :func:`services.platform.bus.handle_message`
dead-letters an event whose payload is not of the named type instead of calling the handler."""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Any, Callable

from schemas import Event


def payload_types(handler: Callable[..., Any]) -> tuple[type, ...] | None:
    """The payload classes the handler's first parameter names (``Event[A]`` or ``Event[A | B]``);
    None when it names none (a plain ``Event``: it takes whatever the topic carries)."""
    return _payload_types(getattr(handler, "__func__", handler))


@functools.cache
def _payload_types(handler: Callable[..., Any]) -> tuple[type, ...] | None:
    params = [p for p in inspect.signature(handler).parameters.values() if p.name != "self"]
    if not params:
        return None
    hints = typing.get_type_hints(handler)
    hint = hints.get(params[0].name)
    if typing.get_origin(hint) is not Event:
        return None
    (arg,) = typing.get_args(hint)
    if typing.get_origin(arg) in (typing.Union, types.UnionType):
        return tuple(typing.get_args(arg))
    return (arg,)


def check_handles(handler: Callable[..., Any], event_types: tuple[str, ...], where: str) -> tuple[type, ...] | None:
    """The handler's payload types, after checking that it names a type for every event kind
    ``where`` (a topic) carries: TypeError (a programming error, found at start) if not."""
    from schemas.events import PAYLOADS
    accepted = payload_types(handler)
    if accepted is None:
        return None
    missing = [t for t in event_types if not issubclass(PAYLOADS[t], accepted)]
    if missing:
        raise TypeError(f"{getattr(handler, '__qualname__', handler)} takes {[c.__name__ for c in accepted]} but "
                        f"{where} also carries {missing}")
    return accepted
