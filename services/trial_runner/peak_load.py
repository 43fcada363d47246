"""The search for a served model's peak load within a latency SLO (pure: the measurement is a
function it is given).

Like a client stress-testing a deployment (Morphling §5, Triton Model Analyzer): raise the load
(concurrent requests in flight) geometrically until the p99 latency passes the SLO, then narrow
in between the last load that met it and the first that did not. The peak is the measured load
with the highest throughput whose p99 meets the SLO. Raising stops early once the server is
saturated: more requests in flight only queue, throughput no longer grows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

SATURATION_GAIN = 1.03     # a level adding less than 3% throughput over the best so far ...
SATURATION_LEVELS = 2      # ... twice in a row: saturated


@dataclass(frozen=True)
class LoadPoint:
    """One load level's measurement (perf_analyzer's figures; latencies in ms, client side)."""
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    p90_ms: float | None = None
    p95_ms: float | None = None
    queue_ms: float | None = None        # Triton's own split of a request's time (server side)
    compute_ms: float | None = None      # compute input + infer + output
    split_ms: dict[str, float] = field(default_factory=dict)

    def meets(self, slo_ms: float) -> bool:
        return self.p99_ms <= slo_ms

    def as_dict(self, slo_ms: float | None = None) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "split_ms"}
        if slo_ms is not None:
            d["meets_slo"] = self.meets(slo_ms)
        return d


@dataclass(frozen=True)
class PeakResult:
    peak: LoadPoint | None               # None: no load met the SLO (or nothing was measured)
    curve: tuple[LoadPoint, ...]         # every level measured, by concurrency
    reason: str | None                   # why there is no peak
    stop: str                            # why raising stopped: slo | saturated | max-load | failed
    error: str | None = None             # the LoadError that ended the search (stop 'failed')


class LoadError(RuntimeError):
    """A load level could not be measured (e.g. the server died): ends the search."""


def find_peak(measure: Callable[[int], LoadPoint], slo_ms: float, max_concurrency: int = 64,
              start: int = 1, max_levels: int = 12) -> PeakResult:
    """Raise the load from ``start`` by doubling until the p99 passes ``slo_ms`` (or saturation,
    ``max_concurrency``, ``max_levels`` measurements), then bisect between the last level that met
    the SLO and the first that failed. ``measure(c)`` measures concurrency ``c``; a
    :class:`LoadError` it raises stops the search (its message becomes the reason when no peak
    was found; a peak found before it stands)."""
    if slo_ms <= 0:
        raise ValueError(f"the p99 SLO must be positive, not {slo_ms}")
    if not 1 <= start <= max_concurrency:
        raise ValueError(f"start concurrency {start} must be between 1 and {max_concurrency}")
    seen: dict[int, LoadPoint] = {}

    def at(c: int) -> LoadPoint:
        if c not in seen:
            seen[c] = measure(c)
        return seen[c]

    def result(stop: str, reason: str | None = None, error: str | None = None) -> PeakResult:
        curve = tuple(seen[c] for c in sorted(seen))
        ok = [p for p in curve if p.meets(slo_ms)]
        peak = max(ok, key=lambda p: (p.rps, -p.concurrency)) if ok else None
        if peak is None and reason is None:
            first = curve[0] if curve else None
            reason = (f"no load meets the p99 SLO of {slo_ms:g} ms: at concurrency {first.concurrency} p99 is "
                      f"{first.p99_ms:.1f} ms" if first else "nothing was measured")
        return PeakResult(peak, curve, None if peak else reason, stop, error)

    c, lo, hi, flat, best = start, None, None, 0, 0.0
    try:
        while True:
            p = at(c)
            if not p.meets(slo_ms):
                hi = c
                break
            lo = c
            flat = flat + 1 if p.rps < best * SATURATION_GAIN else 0
            best = max(best, p.rps)
            if flat >= SATURATION_LEVELS:
                return result("saturated")
            if c >= max_concurrency or len(seen) >= max_levels:
                return result("max-load")
            c = min(2 * c, max_concurrency)
        if lo is None:
            return result("slo")
        while hi - lo > 1 and len(seen) < max_levels:
            mid = (lo + hi) // 2
            if at(mid).meets(slo_ms):
                lo = mid
            else:
                hi = mid
        return result("slo")
    except LoadError as exc:
        return result("failed", str(exc), str(exc))
