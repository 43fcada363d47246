"""Triton Model Analyzer side by side: how many configurations does each search measure before it
reaches within 2% of the best?

    # measure (Model Analyzer launches tritonserver and perf_analyzer itself; minutes)
    flock /work/brief/heavy.lock nice python -m bench.model_analyzer --run
    # report from the raw output kept in bench/results/model-analyzer/<mode>/ (no measuring)
    python -m bench.model_analyzer [--replay bench/results/model-analyzer/replay-ma6.json ...]

Model Analyzer (PyPI ``triton-model-analyzer``, in a virtualenv of its own: ``--ma-venv``, default
``.venv-ma``) profiles the same model (resnet8's ONNX file, run by ONNX Runtime inside Triton's
Python backend: ``services/trial_runner/triton_model.py``, the model ``falcon export`` writes) on the same
Triton (PyTriton's bundled ``tritonserver`` 2.51.0, ``--triton-launch-mode local``), with the same
perf_analyzer (tritonclient 2.51.0), the server pinned to core 0 and perf_analyzer to core 1 (as
served trials are), requests of one sample with zero inputs, over its own knobs: max_batch_size
1, 4, 16 x dynamic batching max queue delay 0, 2000 us x 1 CPU instance (brute search: every
configuration, each with its own concurrency sweep, p99 <= 100 ms as a constraint). It reports,
per model configuration in the order it measured them, the best throughput whose p99 met the
constraint, and after how many configurations the best so far came within 2% of its own best.

The same figure for the project's searches (``--replay``: JSON written by ``bench.search`` on the
served table restricted to Model Analyzer's knobs, or on the whole served space) is trials until
the best so far is within 2% of the table's optimum, per seed. Model Analyzer's knobs cover only
batch x queue delay x instances; precision and graph_opt are the project's only.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".falcon" / "model-analyzer"              # scratch (git-ignored): repository, logs, outputs
RESULTS = REPO / "bench" / "results" / "model-analyzer"
MODEL = "resnet8"
TOLERANCE = 0.02
PORTS = (18211, 18212, 18213)                           # http, grpc, metrics of the server MA launches
SERVE_CORE, CLIENT_CORE = 0, 1
MA_VERSION = "1.44.0"
RUN_TIMEOUT_S = 900                                     # one Model Analyzer run, whatever it does
# knob values Model Analyzer searches (the fp32/graph_opt=all slice of deploy/config/live-served-space.yaml)
BATCHES = (1, 4, 16)
DELAYS_US = (0, 2000)


# --------------------------------------------------------------------- pure: figures

def reached(values: list[float | None], tolerance: float = TOLERANCE, best: float | None = None) -> int | None:
    """1-based count of measurements after which the best so far is within ``tolerance`` of
    ``best`` (default: the best of ``values``); None if never (or nothing measured)."""
    ok = [v for v in values if v is not None]
    target = best if best is not None else max(ok, default=None)
    if target is None or target <= 0:
        return None
    so_far = 0.0
    for i, v in enumerate(values, 1):
        so_far = max(so_far, v or 0.0)
        if so_far >= (1 - tolerance) * target:
            return i
    return None


@dataclass
class Measured:
    """One model configuration Model Analyzer measured: its knobs and its load levels."""
    name: str
    max_batch_size: int | None = None
    queue_delay_us: int | None = None
    instances: int | None = None
    levels: list[dict] = field(default_factory=list)     # {"concurrency", "rps", "p99_ms"} in measured order

    def peak(self, slo_ms: float) -> dict | None:
        ok = [lv for lv in self.levels if lv["p99_ms"] is not None and lv["p99_ms"] <= slo_ms]
        return max(ok, key=lambda lv: lv["rps"], default=None)

    def knobs(self) -> str:
        return f"batch {self.max_batch_size}, delay {self.queue_delay_us} us, {self.instances} inst"


def config_knobs(pbtxt: str) -> tuple[int | None, int | None, int | None]:
    """max_batch_size, max_queue_delay_microseconds (0 when dynamic batching has none), instance
    count, from a config.pbtxt Model Analyzer wrote."""
    def num(pattern: str) -> int | None:
        m = re.search(pattern, pbtxt)
        return int(m.group(1)) if m else None
    delay = num(r"max_queue_delay_microseconds:\s*\"?(\d+)")
    if delay is None and "dynamic_batching" in pbtxt:
        delay = 0
    return num(r"max_batch_size:\s*(\d+)"), delay, num(r"count:\s*(\d+)")


PROFILING = re.compile(r"Profiling (\S+): (?:client batch size=\d+, )?concurrency=(\d+)")


def profiling_order(log: str) -> list[tuple[str, int]]:
    """(model configuration, concurrency) in the order Model Analyzer's log says it profiled them."""
    return [(m.group(1), int(m.group(2))) for m in PROFILING.finditer(log)]


def record_value(records: list, tag: str) -> float | None:
    """A metric's value from a checkpoint's list of [tag, {"_value": v}] records."""
    for rec in records:
        if isinstance(rec, list) and len(rec) == 2 and rec[0] == tag:
            return float(rec[1].get("_value"))
    return None


def checkpoint_levels(ckpt: dict) -> dict[tuple[str, int], dict]:
    """(model configuration, concurrency) -> {"rps", "p99_ms"} from a Model Analyzer checkpoint."""
    out: dict[tuple[str, int], dict] = {}
    results = ckpt.get("ResultManager.results", {}).get("_results", {})
    for model_dict in results.values():
        for variant, pair in model_dict.items():
            for meas in pair[1].values():
                for mcm in meas.get("_model_config_measurements", []):
                    conc = (mcm.get("_model_specific_pa_params") or {}).get("concurrency-range")
                    data = mcm.get("_non_gpu_data", [])
                    if conc is None or not str(conc).isdigit():
                        continue
                    # (the measurement's _model_config_name is the model's name; the variant is the key)
                    out[(meas.get("_model_variants_name", variant), int(conc))] = {
                        "rps": record_value(data, "perf_throughput"),
                        "p99_ms": record_value(data, "perf_latency_p99")}
    return out


def read_raw(raw: Path) -> list[Measured]:
    """The model configurations of one Model Analyzer run, in the order it measured them."""
    order = profiling_order((raw / "model-analyzer.log").read_text(errors="replace"))
    ckpts = sorted((raw / "checkpoints").glob("*.ckpt"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    levels = checkpoint_levels(json.loads(ckpts[-1].read_text())) if ckpts else {}
    configs: dict[str, Measured] = {}
    for name, conc in order:
        m = configs.get(name)
        if m is None:
            pb = raw / "configs" / f"{name}.pbtxt"
            m = configs[name] = Measured(name, *config_knobs(pb.read_text()) if pb.exists() else (None,) * 3)
        lv = levels.get((name, conc))
        if lv is not None and lv["rps"] is not None and all(x["concurrency"] != conc for x in m.levels):
            m.levels.append({"concurrency": conc, **lv})
    return list(configs.values())


def served_table_values(table: Path, order: list[tuple[int, int]]) -> list[float | None]:
    """The served table's peak RPS (fp32, graph_opt all, 1 core, 1 replica) of configurations given
    as (batch, delay), in that order: Model Analyzer's order replayed on the project's truth."""
    rows = {(int(r["batchsize"]), int(r["queue_delay_us"])): float(r["rps"]) for r in csv.DictReader(table.open())
            if r["precision"] == "fp32" and r["graph_opt"] == "all" and r["cpus"] == "1" and r["replicas"] == "1"}
    return [rows.get(k) for k in order]


def replay_counts(path: Path, tolerance: float = TOLERANCE) -> dict[str, dict[str, list[int | None]]]:
    """Per strategy and table: trials until the best so far is within ``tolerance`` of the table's
    optimum (1.0: bench.search's curves are fractions of it), per seed, from bench.search's JSON."""
    d = json.loads(path.read_text())
    return {s: {model: [reached(curve, tolerance, best=1.0) for curve in runs] for model, runs in per.items()}
            for s, per in d["results"].items()}


# --------------------------------------------------------------------- I/O shell: running it

def ma_config(work: Path, out: Path, serving, mode: str, max_concurrency: int) -> str:
    site = next(iter(sorted((serving.venv / "lib").glob("python3*/site-packages"))))
    libs = ":".join([str(site / "nvidia_pytriton.libs"), *serving.libdirs])
    search = {"brute": f"""run_config_search_mode: brute
run_config_search_max_concurrency: {max_concurrency}
profile_models:
  {MODEL}:
    cpu_only: true
    model_config_parameters:
      max_batch_size: [{', '.join(map(str, BATCHES))}]
      dynamic_batching:
        max_queue_delay_microseconds: [{', '.join(map(str, DELAYS_US))}]
      instance_group:
        - kind: KIND_CPU
          count: [1]
""", "quick": f"""run_config_search_mode: quick
run_config_search_max_concurrency: {max_concurrency}
run_config_search_min_model_batch_size: {min(BATCHES)}
run_config_search_max_model_batch_size: {max(BATCHES)}
run_config_search_min_instance_count: 1
run_config_search_max_instance_count: 1
profile_models:
  {MODEL}:
    cpu_only: true
"""}[mode]
    http, grpc, metrics = PORTS
    return f"""# written by bench/model_analyzer.py
model_repository: {work / 'repo'}
output_model_repository_path: {out / 'output_repo'}
override_output_model_repository: true
export_path: {out / 'export'}
checkpoint_directory: {out / 'checkpoints'}
triton_launch_mode: local
triton_server_path: {work / 'tritonserver.sh'}
triton_output_path: {out / 'tritonserver.log'}
perf_analyzer_path: {work / 'perf_analyzer.sh'}
perf_output: true
perf_output_path: {out / 'perf_analyzer.log'}
triton_http_endpoint: localhost:{http}
triton_grpc_endpoint: localhost:{grpc}
triton_metrics_url: http://localhost:{metrics}/metrics
client_protocol: http
triton_server_flags:
  backend_directory: {work / 'backends'}
triton_server_environment:
  LD_LIBRARY_PATH: {libs}
  PATH: {serving.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin
perf_analyzer_flags:
  input-data: zero
objectives:
  - perf_throughput
constraints:
  perf_latency_p99:
    max: 100
{search}"""


def prepare(work: Path, serving, onnx: Path | None) -> None:
    """The model repository (resnet8 on the Python backend running ONNX Runtime), a backend
    directory with the Python backend and its 3.11 stub (PyTriton keeps the stub apart), and the
    pinned tritonserver/perf_analyzer wrappers Model Analyzer launches."""
    site = next(iter(sorted((serving.venv / "lib").glob("python3*/site-packages"))))
    pyt = site / "pytriton" / "tritonserver"
    be = work / "backends" / "python"
    be.mkdir(parents=True, exist_ok=True)
    for f in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy(pyt / "backends" / "python" / f, be / f)
    shutil.copy(pyt / "python_backend_stubs" / "3.11" / "triton_python_backend_stub", be / "triton_python_backend_stub")
    model = work / "repo" / MODEL
    (model / "1").mkdir(parents=True, exist_ok=True)
    if onnx is None:
        onnx = work / f"{MODEL}.onnx"
        if not onnx.exists():
            from tools.zoo import export_onnx
            export_onnx(MODEL, onnx)
    shutil.copy(onnx, model / "1" / "model.onnx")
    shutil.copy(REPO / "services" / "trial_runner" / "triton_model.py", model / "1" / "model.py")
    (model / "config.pbtxt").write_text(f"""name: "{MODEL}"
backend: "python"
max_batch_size: {max(BATCHES)}
input [ {{ name: "input0" data_type: TYPE_FP32 dims: [ 3, 32, 32 ] }} ]
output [ {{ name: "output" data_type: TYPE_FP32 dims: [ 10 ] }} ]
dynamic_batching {{ }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value {{ string_value: "1" }} }}
parameters {{ key: "inter_op_thread_count" value {{ string_value: "1" }} }}
parameters {{ key: "graph_opt" value {{ string_value: "all" }} }}
""")
    for name, binary, core in (("tritonserver.sh", serving.tritonserver, SERVE_CORE),
                               ("perf_analyzer.sh", serving.perf_analyzer, CLIENT_CORE)):
        w = work / name
        w.write_text(f"#!/bin/sh\nexec taskset -c {core} {binary} \"$@\"\n")
        w.chmod(0o755)


def run(work: Path, results: Path, ma_venv: Path, mode: str, max_concurrency: int, onnx: Path | None) -> int:
    from services.trial_runner.serving_env import ServingEnv, ServingStackMissing
    ma = ma_venv / "bin" / "model-analyzer"
    if not ma.exists():
        print(f"error: no Model Analyzer at {ma}: python3.11 -m venv {ma_venv} && "
              f"{ma_venv}/bin/pip install triton-model-analyzer=={MA_VERSION} 'tritonclient[all]==2.51.0'",
              file=sys.stderr)
        return 2
    try:
        serving = ServingEnv.find()
    except ServingStackMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prepare(work, serving, onnx)
    out = work / "out" / mode
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cfg = out / f"{mode}.yaml"
    cfg.write_text(ma_config(work, out, serving, mode, max_concurrency))
    env = serving.env()
    env.pop("PYTHONPATH", None)
    with open(out / "model-analyzer.log", "w") as log:
        # its own process group: whatever it leaves (tritonserver, stubs) is killed with it
        p = subprocess.Popen([str(ma), "profile", "-f", str(cfg)], cwd=out, env=env, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = p.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            rc = 124
            print(f"Model Analyzer ({mode}) ran past {RUN_TIMEOUT_S} s: stopped", file=log)
        finally:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
    keep(out, results / mode)
    return rc


def keep(out: Path, raw: Path) -> None:
    """The raw output worth keeping: logs, checkpoint, exported tables, each configuration tried."""
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    for f in ("model-analyzer.log", "tritonserver.log", "perf_analyzer.log"):
        if (out / f).exists():
            shutil.copy(out / f, raw / f)
    for y in out.glob("*.yaml"):
        shutil.copy(y, raw / y.name)
    if (out / "checkpoints").exists():
        shutil.copytree(out / "checkpoints", raw / "checkpoints")
    if (out / "export").exists():
        for f in (out / "export").rglob("*.csv"):
            shutil.copy(f, raw / f.name)
    (raw / "configs").mkdir()
    for pb in (out / "output_repo").glob("*/config.pbtxt"):
        shutil.copy(pb, raw / "configs" / f"{pb.parent.name}.pbtxt")


def subset_targets(table: Path, out: Path) -> Path:
    """A bench.search targets folder holding the served table cut to Model Analyzer's knobs (fp32,
    graph_opt all, 1 core, 1 replica: batch x queue delay), with the model's operator profile."""
    rows = list(csv.DictReader(table.open()))
    keep_rows = [r for r in rows if r["precision"] == "fp32" and r["graph_opt"] == "all"
                 and r["cpus"] == "1" and r["replicas"] == "1"]
    if not keep_rows:
        raise ValueError(f"{table} has no fp32 / graph_opt all rows")
    dest = out / "models" / "targets" / table.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep_rows)
    ops = table.parents[1] / "operators" / table.stem.removeprefix("reg-")
    if ops.exists():
        shutil.copytree(ops, out / "models" / "operators" / ops.name, dirs_exist_ok=True)
    return dest


# --------------------------------------------------------------------- report

def report(raw: Path, table: Path | None, replays: list[Path], slo_ms: float) -> str:
    configs = read_raw(raw)
    lines = [f"Model Analyzer ({raw.name} search): {len(configs)} model configurations measured, "
             f"{sum(len(c.levels) for c in configs)} perf_analyzer measurements (config x concurrency); "
             f"peak throughput with p99 <= {slo_ms:g} ms, in the order measured:"]
    peaks = []
    for i, c in enumerate(configs, 1):
        pk = c.peak(slo_ms)
        peaks.append(pk["rps"] if pk else None)
        curve = " ".join(f"c{lv['concurrency']}:{lv['rps']:.0f}/{lv['p99_ms']:.1f}ms" for lv in c.levels)
        lines.append(f"  {i}. {c.name:<22} {c.knobs():<34} peak "
                     + (f"{pk['rps']:7.1f}/s at concurrency {pk['concurrency']} (p99 {pk['p99_ms']:.1f} ms)"
                        if pk else "none within the SLO") + f"   [{curve}]")
    n = reached(peaks)
    best = max((p for p in peaks if p), default=None)
    lines.append(f"Model Analyzer reached within {TOLERANCE:.0%} of its best ({best or 0:.1f}/s) after "
                 f"{n if n else 'never'} of {len(configs)} configurations (in its own measurements).")
    if configs and configs[0].name.endswith("_config_default"):
        # the first one is the repository's own configuration: whatever the user wrote there
        m = reached(peaks[1:], best=best)
        lines.append(f"  without the repository's own configuration (measured first, {configs[0].knobs()}): after "
                     f"{m if m else 'never'} of {len(configs) - 1}.")
    if table is not None and table.exists():
        order = [(c.max_batch_size, c.queue_delay_us) for c in configs if c.instances in (1, None)]
        vals = served_table_values(table, order)
        known = [v for v in vals if v is not None]
        allrows = served_table_values(table, [(b, d) for b in BATCHES for d in DELAYS_US])
        top = max((v for v in allrows if v is not None), default=None)
        lines.append(f"Its order replayed on the served table {table.relative_to(REPO) if table.is_relative_to(REPO) else table} "
                     f"(fp32, graph_opt all; {len(known)} of its configurations in the table, optimum "
                     f"{top or 0:.0f}/s): within {TOLERANCE:.0%} after {reached(vals, best=top) or 'never'}"
                     + (f" ({reached(vals[1:], best=top) or 'never'} without the repository's own configuration)."
                        if configs and configs[0].name.endswith("_config_default") else "."))
    for path in replays:
        counts = replay_counts(path)
        d = json.loads(path.read_text())
        for s, per in counts.items():
            for model, ns in per.items():
                got = [x for x in ns if x is not None]
                lines.append(f"bench.search {path.name}: {s:<7} {model}: trials to within {TOLERANCE:.0%} of the "
                             f"table's optimum per seed {['never' if x is None else x for x in ns]} "
                             f"(mean {sum(got) / len(got):.1f} over the {len(got)} of {len(ns)} seeds that did; "
                             f"{d['trials']} trials)" if got else
                             f"bench.search {path.name}: {s:<7} {model}: never within {TOLERANCE:.0%} in {d['trials']} trials "
                             f"({len(ns)} seeds)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="store_true", help="run Model Analyzer now (minutes; take the heavy lock)")
    p.add_argument("--mode", choices=("brute", "quick", "both"), default="brute",
                   help="Model Analyzer's search: brute (batch x delay, every configuration), quick (its hill climb "
                        "over max_batch_size 1..16, delay 0), both")
    p.add_argument("--max-concurrency", type=int, default=64)
    p.add_argument("--ma-venv", type=Path, default=REPO / ".venv-ma")
    p.add_argument("--onnx", type=Path, help="resnet8's ONNX file (default: exported from the zoo)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--table", type=Path, default=REPO / "bench/live-served/models/targets/reg-resnet8.csv",
                   help="the served table to replay Model Analyzer's order on")
    p.add_argument("--replay", type=Path, action="append", default=[], help="bench.search JSON (repeatable)")
    p.add_argument("--slo-p99-ms", type=float, default=100.0)
    p.add_argument("--subset-targets", type=Path, metavar="DIR",
                   help="write the served table cut to Model Analyzer's knobs as a bench.search targets folder, and stop")
    a = p.parse_args(argv)
    if a.subset_targets is not None:
        if not a.table.is_file():
            p.error(f"--table: no file {a.table}")
        print(f"wrote {subset_targets(a.table, a.subset_targets)}")
        return 0
    if a.max_concurrency < 1:
        p.error(f"--max-concurrency must be at least 1, not {a.max_concurrency}")
    if a.onnx is not None and not a.onnx.is_file():
        p.error(f"--onnx: no file {a.onnx}")
    for r in a.replay:
        if not r.is_file():
            p.error(f"--replay: no file {r}")
    modes = ["brute", "quick"] if a.mode == "both" else [a.mode]
    if a.run:
        for mode in modes:
            rc = run(WORK, a.results, a.ma_venv, mode, a.max_concurrency, a.onnx)
            if rc != 0:
                print(f"Model Analyzer ({mode}) exited with {rc}; its log: {a.results / mode / 'model-analyzer.log'}",
                      file=sys.stderr)
    for i, mode in enumerate(modes):
        raw = a.results / mode
        if not (raw / "model-analyzer.log").exists():
            print(f"error: no Model Analyzer output in {raw} (run with --run)", file=sys.stderr)
            return 2
        text = report(raw, a.table, a.replay if i == len(modes) - 1 else [], a.slo_p99_ms)
        print(text)
        (a.results / f"{mode}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
