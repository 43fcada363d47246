"""The event log for operators: dead-letters."""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from schemas.events import DeadLetter
from services.platform.settings import Settings
from services.platform.topics import DEAD_LETTER
from tools import units
from tools.archive import archive_path, history
from tools.cli._shared import EXIT_OK, command, home, out, settings

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def since_time(text: str, now: datetime | None = None) -> datetime:
    """``--since``: a duration back from now (``90s``, ``10m``, ``2h``, ``1d``) or an ISO time
    (``2026-11-24T02:00``, UTC unless it says otherwise)."""
    now = now or datetime.now(timezone.utc)
    m = _DURATION.match(text)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2).lower()])
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a duration (90s, 10m, 2h, 1d) nor an ISO time "
                                         "(2026-11-24T02:00)") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _when(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def dead_letters(s: Settings, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every dead letter (the broker's and the local stack's archive), oldest first."""
    rows = []
    async for item in history(s, (DEAD_LETTER,), archive_path(home())):
        e = item.event
        if since is not None and _when(e.ts) < since:
            continue
        d: DeadLetter = e.payload        # the dead-letters topic carries dead letters only
        rows.append({"ts": e.ts, "source_topic": d.source_topic, "partition": d.partition, "offset": d.offset,
                     "service": d.service, "reason": d.reason, "raw_size": d.raw_size, "key": d.key,
                     "search_id": e.search_id or None, "event_id": e.event_id})
    return sorted(rows, key=lambda r: r["ts"])


def _size(n: int) -> str:
    return f"{units.number(n)} B" if n < 10_000 else f"{units.sig(n / 1024, 3)} KiB"


def cmd_dead_letters(a: argparse.Namespace) -> int:
    rows = asyncio.run(dead_letters(settings(), a.since))
    text = "\n".join(f"{r['ts'][:19].replace('T', ' ')}  {r['source_topic']}[{r['partition']}]@{r['offset']}  "
                     f"{r['service']:12} {_size(r['raw_size']):>9}  {r['reason'].splitlines()[0][:160]}"
                     for r in rows) or "no dead letters" + (" in that time" if a.since else "")
    out(rows, a.json, text)
    return EXIT_OK


def register(sub: Any) -> None:
    c = command(sub, "dead-letters", cmd_dead_letters,
                "list the messages consumers could not use (dead-letter topic), with their reasons")
    c.add_argument("--since", type=since_time, help="only those from this long ago (90s, 10m, 2h, 1d) or since this "
                   "ISO time")


__all__ = ["dead_letters", "since_time"]
