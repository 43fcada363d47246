"""A measured table by path or URI (the replay backend's, a submission's, the report's): fetched
(services.platform.uris) and read (services.domain.falcon_data)."""

from __future__ import annotations

import csv
from pathlib import Path

from services.domain.falcon_data import DataError, ModelTable, load_model_table
from services.platform.uris import UriError, fetch

MAX_TABLE_BYTES = 256 * 1024**2


def read_model_table(uri: str, cache_dir: str | Path = ".falcon/cache") -> ModelTable:
    """A measurement table by path or URI (file://, s3://, https://; see services.platform.uris):
    DataError (one line, no credentials) when it cannot be had or read."""
    try:
        path = fetch(uri, cache_dir, MAX_TABLE_BYTES, what="replay table")
    except UriError as exc:
        raise DataError(str(exc)) from None
    try:
        return load_model_table(path)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"replay table {uri}: {type(exc).__name__}: {exc}") from None
