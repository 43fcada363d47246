"""An older version's data in the newest shape: readers accept every version in
``SUPPORTED_VERSIONS`` and see one payload type (``Event.payload`` upcasts before converting).

trial-completed, search-completed and search-failed v1 -> v2: a trial row's ``value`` (always
RPS/$, in a unit that depended on the backend) is ``rps_per_usd``, with its unit stated in
``rps_per_usd_unit``. A v1 row did not state it, so it is inferred here from the backend kind,
the one place that still has to: search-completed v1 carries ``backend_kind``; a lone
trial-completed v1 (or search-failed v1) does not, and its unit stays None until a reader that
knows the search's backend fills it in (:func:`stated`: the searcher when it records the trial,
the audit from the search's submission).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from schemas import SUPPORTED_VERSIONS
from schemas.events import TrialResult
from services.domain.figures import RPS_PER_USD, stated_unit


def upcast(event_type: str, version: int, data: Mapping[str, Any],
           backend_kind: str | None = None) -> Mapping[str, Any]:
    """``data`` of ``event_type`` version ``version`` in the newest version's shape (itself when
    it is the newest). ``backend_kind``: the search's backend, where the caller knows it and the
    data does not say."""
    if version >= SUPPORTED_VERSIONS[event_type][-1]:
        return data
    if event_type == "trial-completed":
        return trial_row_v2(data, backend_kind)
    if event_type == "search-completed":
        kind = data.get("backend_kind") or backend_kind
        out = dict(data)
        for key in ("trials", "runners_up"):
            if key in out:
                out[key] = [trial_row_v2(t, kind) for t in out[key]]
        out["best"] = trial_row_v2(out["best"], kind)
        return out
    if event_type == "search-failed":
        return {**data, "trials": [trial_row_v2(t, backend_kind) for t in data.get("trials", ())]} \
            if "trials" in data else data
    return data


def trial_row_v2(row: Mapping[str, Any], backend_kind: str | None) -> dict[str, Any]:
    """A v1 trial row (also a trial stored in an older search state) as a v2 row: ``value`` ->
    ``rps_per_usd``, its unit the one a backend of ``backend_kind`` measures in (None when the
    kind is unknown, or there is no figure). A v2 row is returned as it is."""
    if "value" not in row:
        return dict(row)
    out = {k: v for k, v in row.items() if k != "value"}
    out[RPS_PER_USD] = row["value"]
    out["rps_per_usd_unit"] = stated_unit(backend_kind) if row["value"] is not None and backend_kind else None
    return out


def stated(result: TrialResult, backend_kind: str | None) -> TrialResult:
    """``result`` with its RPS/$ unit stated: a v1 result's unknown unit is the one a backend of
    ``backend_kind`` (the search's) measures in; a result that states it is returned as it is."""
    if result.rps_per_usd is None or result.rps_per_usd_unit is not None or not backend_kind:
        return result
    return replace(result, rps_per_usd_unit=stated_unit(backend_kind))


__all__ = ["stated", "trial_row_v2", "upcast"]
