"""``falcon export``: a search's recommendation as deployable artefacts (tools/export, docs/export.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from tools.cli._shared import EXIT_FAILED, EXIT_OK, EXIT_USAGE, command, home, out, settings, slug
from tools.cli.search_cmds import load_search, number, positive, positive_int
from tools.export.artefacts import DEFAULT_HEADROOM, DEFAULT_MAX_REPLICAS, FORMATS
from tools.export.deploy import summary
from tools.export.files import build, write


def cmd_export(a: argparse.Namespace) -> int:
    loaded = asyncio.run(load_search(settings(), a.search_id))
    st = loaded.state
    if st is None:
        print(f"falcon export: no search {a.search_id!r} in Redis or in the event log", file=sys.stderr)
        return EXIT_FAILED
    e, model = build(st, a.format, home() / "cache", a.load, a.headroom, a.max_replicas,
                     a.storage_uri)          # ExportRefused (a ValueError): one line, exit 2, nothing written
    out_dir = Path(a.out or home() / "exports" / slug(a.search_id) / a.format)
    try:
        paths = write(e, model, out_dir)
    except OSError as exc:
        print(f"falcon export: cannot write the export into {out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    data: dict[str, Any] = {**summary(e), "search_id": a.search_id, "out": str(out_dir),
                            "written": [str(p) for p in paths]}
    text = f"exported {a.format} for search {a.search_id} to {out_dir}/\n" + "\n".join(
        f"  {p.relative_to(out_dir)}" for p in paths)
    if e.sizing is not None:
        text += f"\n{e.sizing.text()}"
    text += "".join(f"\n{n}" for n in e.notes)
    out(data, a.json, text)
    return EXIT_OK


def headroom(text: str) -> float:
    """argparse type: a fraction in [0, 1)."""
    x = number(text)
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1 (a fraction of the peak), not {text}")
    return x


def register(sub: Any) -> None:
    c = command(sub, "export", cmd_export, "export a search's recommendation as deployable artefacts: a Triton "
                "model repository entry, a KServe InferenceService, a Kubernetes Deployment + Service + HPA, or a "
                "compose file")
    c.add_argument("search_id")
    c.add_argument("--format", required=True, choices=FORMATS, help="what to export (docs/export.md)")
    c.add_argument("--load", type=positive, help="the load to carry, requests/s: sets the replicas (each run at "
                   "1 - headroom of the peak RPS the trial measured within the SLO) and the autoscaler's floor")
    c.add_argument("--headroom", type=headroom, default=DEFAULT_HEADROOM,
                   help=f"fraction of each replica's peak RPS kept free (default {DEFAULT_HEADROOM})")
    c.add_argument("--max-replicas", type=positive_int, default=DEFAULT_MAX_REPLICAS,
                   help=f"k8s/kserve: refuse a load needing more pods than this (default {DEFAULT_MAX_REPLICAS})")
    c.add_argument("--storage-uri", help="kserve: where the model repository is uploaded (default "
                   "pvc://falcon-models/<search id>)")
    c.add_argument("--out", help="folder to write into (default: $FALCON_HOME/exports/<search id>/<format>)")
