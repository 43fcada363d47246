"""One search on a measured table under an objective, through the product's loop, and its report
(the Pareto front of p99 vs $ per million requests, the recommendation per objective, the monthly
cost at the load): what ``falcon report`` writes, without a stack.

    python -m bench.objective_report --model mobilenet-v2-tiny --objective usd-for-load --load 20000 \\
        --max-usd-per-million 0.0055 --out bench/results/objective-report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.domain.falcon_data import read_operator_profile
from services.domain.objectives import OBJECTIVES, Objective, ObjectiveError
from services.domain.spec import DEFAULT_KOP_THRESHOLD, Constraints, SearchSpec, StopRules
from services.knowledge import Knowledge, OfflineDataset
from services.trial_runner.backends import ReplayBackend
from tools.harness import profiled, run_search
from tools.report import write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a table models/targets/reg-MODEL.csv under --targets")
    p.add_argument("--targets", type=Path, default=Path("bench/live"))
    p.add_argument("--offline", type=Path, default=Path("bench/live-offline"))
    p.add_argument("--objective", choices=OBJECTIVES, default="rps-per-usd")
    p.add_argument("--load", type=float)
    p.add_argument("--max-usd-per-million", type=float)
    p.add_argument("--slo-p99-ms", type=float)
    p.add_argument("--strategy", default="falcon")
    p.add_argument("--trials", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    try:
        objective = Objective(a.objective, a.load)
    except ObjectiveError as exc:
        p.error(str(exc))
    path = a.targets / "models" / "targets" / f"reg-{a.model}.csv"
    backend = ReplayBackend()
    table = backend.table(str(path))
    knowledge = Knowledge.build(OfflineDataset.from_folder(a.offline), table.space)
    prof = a.targets / "models" / "operators" / a.model / "operators.csv"
    kops, ops = profiled(read_operator_profile(prof) if prof.exists() else [], DEFAULT_KOP_THRESHOLD)
    spec = SearchSpec(model={"name": a.model, "format": "falcon-profile", "uri": None},
                      backend={"kind": "replay", "table": str(path.resolve()), "trial_seconds": 900.0},
                      space=table.space, stop=StopRules(a.trials), strategy=a.strategy, seed=a.seed,
                      constraints=Constraints(a.slo_p99_ms, None, a.max_usd_per_million), objective=objective)
    sid = f"{a.model}-{objective.name}" + (f"-{objective.load_rps:g}" if objective.load_rps else "")
    state = run_search(sid, spec, kops, ops, backend, knowledge)
    s = write_report(state, a.out, knowledge)
    rec = s["recommended"]
    print(f"{sid}: {state.status} ({state.stop_reason}) after {len(state.trials)} trials; "
          + (f"recommended {rec['config']}: {rec['objective_text']}" if rec else "no recommendation"))
    print(f"wrote {s['files']['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
