"""Key operators (KOPs), the paper's rule: an operator kind whose share of compute time, and of
memory where it is known, is at least the threshold (5% by default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from services.domain.operators import normalise_op


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class OperatorShare:
    op: str
    time_share: float
    memory_share: float | None = None
    flops: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "time_share": self.time_share, "memory_share": self.memory_share,
                "flops": self.flops}


def aggregate(operators: Iterable[Mapping[str, Any]]) -> list[OperatorShare]:
    """Merge rows of the same kind ('nn.conv2d' and 'conv2d' are one kind), shares renormalised
    so they sum to 1; sorted by time share, largest first."""
    time: dict[str, float] = {}
    mem: dict[str, float | None] = {}
    flops: dict[str, float | None] = {}
    for row in operators:
        kind = normalise_op(str(row["op"]))
        if not kind:
            raise ProfileError("an operator row has an empty name")
        t = float(row["time_share"])
        if t < 0:
            raise ProfileError(f"{kind}: negative time share {t}")
        time[kind] = time.get(kind, 0.0) + t
        m = row.get("memory_share")
        mem[kind] = None if m is None or (kind in mem and mem[kind] is None) else (mem.get(kind) or 0.0) + float(m)
        f = row.get("flops")
        flops[kind] = None if f is None or (kind in flops and flops[kind] is None) else (flops.get(kind) or 0.0) + float(f)
    total_t = sum(time.values())
    if total_t <= 0:
        raise ProfileError("the operator profile has no running time")
    known_m = [v for v in mem.values() if v is not None]
    total_m = sum(known_m) if len(known_m) == len(mem) else None
    out = [OperatorShare(k, time[k] / total_t,
                         None if total_m is None or not total_m else (mem[k] or 0.0) / total_m, flops[k])
           for k in time]
    return sorted(out, key=lambda o: (-o.time_share, o.op))


def identify_kops(operators: Iterable[Mapping[str, Any]], threshold: float = 0.05,
                  memory_threshold: float | None = None) -> list[str]:
    """Operator kinds that are KOPs, most time-consuming first. ``memory_threshold`` defaults to
    ``threshold``; it applies only where memory shares are known."""
    mem_t = threshold if memory_threshold is None else memory_threshold
    for t in (threshold, mem_t):
        if not 0 <= t <= 1:
            raise ProfileError(f"threshold {t} outside [0, 1]")
    return [o.op for o in aggregate(operators)
            if o.time_share >= threshold and (o.memory_share is None or o.memory_share >= mem_t)]
