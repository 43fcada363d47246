"""The search benchmark's command line: repeated target folders and scoring by the truth."""

import json
import shutil

from bench import perturb_tables, search
from services.domain.falcon_data import load_model_table
from tests.helpers import DATA, PROFILES, TARGETS


def targets(root, noise_seed):
    """A targets folder holding gru's table with 15% measurement noise (and its profile)."""
    src = root / "clean"
    if not src.exists():
        (src / "models" / "targets").mkdir(parents=True)
        shutil.copy(TARGETS / "reg-gru.csv", src / "models" / "targets")
        shutil.copytree(PROFILES / "gru", src / "models" / "operators" / "gru")
    out = root / f"noisy{noise_seed}"
    perturb_tables.main(["--targets", str(src), "--out", str(out), "--noise", "0.15", "--seed", str(noise_seed)])
    return src, out


def test_noisy_realisations_are_benchmarked_together_and_scored_by_what_the_user_gets(tmp_path, capsys):
    clean, a = targets(tmp_path, 0)
    _, b = targets(tmp_path, 1)
    out = tmp_path / "r.json"
    assert search.main(["--offline", str(DATA), "--targets", str(a), "--targets", str(b), "--truth", str(clean),
                        "--trials", "4", "--seeds", "1", "--strategies", "prior", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"]["prior"]
    assert sorted(res) == ["gru", "gru@noisy1"]
    # prior is deterministic: recompute its recommendation after each trial from the noisy table
    noisy, truth = load_model_table(b / "models" / "targets" / "reg-gru.csv"), load_model_table(TARGETS / "reg-gru.csv")
    measured = json.loads(out.read_text())
    assert search.main(["--offline", str(DATA), "--targets", str(b), "--trials", "4", "--seeds", "1",
                        "--strategies", "prior", "--json", str(out)]) == 0
    best_measured = json.loads(out.read_text())["results"]["prior"]["gru"][0]
    recommended = [k for k, v in noisy.rows.items() if v["value"] in best_measured]
    scored = measured["results"]["prior"]["gru@noisy1"][0]
    assert {truth.rows[k]["value"] for k in recommended} >= set(scored)
    assert scored != best_measured          # the luckiest measurement is not what the user gets
    # the ceiling of any recommendation rule on those trials: the truly best configuration tried so far
    tried = measured["tried_truth"]["prior"]["gru@noisy1"][0]
    assert len(tried) == 4 and all(max(tried[:k + 1]) >= v for k, v in enumerate(scored))
    keys = measured["tried_configs"]["prior"]["gru@noisy1"][0]
    assert [truth.rows[k]["value"] for k in keys] == tried          # each trial's configuration, by key
    text = capsys.readouterr().out
    assert "mean best" in text and "truly best configuration tried so far" in text


def test_an_objective_is_scored_as_a_fraction_of_each_tables_optimum(tmp_path, capsys):
    import pytest
    from tests.helpers import REPO
    live = REPO / "bench" / "live"
    root = tmp_path / "t"
    (root / "models" / "targets").mkdir(parents=True)
    shutil.copy(live / "models" / "targets" / "reg-gru.csv", root / "models" / "targets")
    out = tmp_path / "o.json"
    assert search.main(["--offline", str(REPO / "bench" / "live-offline"), "--targets", str(root), "--trials", "42",
                        "--seeds", "1", "--strategies", "random", "--objective", "usd-for-load", "--load", "3000",
                        "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    curve = res["results"]["random"]["gru"][0]
    assert res["optima"] == {"gru": pytest.approx(0.085)} and res["objective"]["name"] == "usd-for-load"
    assert all(0 < a <= b <= 1 for a, b in zip(curve, curve[1:])) and curve[-1] == 1.0     # the whole space
    assert "mean fraction of the optimum of $ per hour to carry 3,000 RPS" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        search.main(["--offline", str(DATA), "--targets", str(root), "--objective", "usd-for-load", "--json",
                     str(out)])
    assert e.value.code == 2 and "needs --load" in capsys.readouterr().err
