"""What a recommendation could be worth on a benchmark's own trials, were each tried configuration
known to within a given error."""

import json

import numpy as np
import pytest

from bench import noise_ceiling


def test_exact_knowledge_recommends_the_truly_best_tried_and_errors_cost_value(tmp_path, capsys):
    runs = [[0.5, 0.9, 0.7, 0.9], [0.95, 0.6, 0.97]]          # a re-measured configuration appears again
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"trials": 4, "results": {"falcon": {"gru": [[0.5, 0.5, 0.7, 0.9], [.95, .95, .95, .95]]}},
                               "tried_truth": {"falcon": {"gru": runs}}}))
    rng = np.random.default_rng(0)
    assert list(noise_ceiling.recommended(runs[0], 0.0, 4, rng)) == [0.5, 0.9, 0.9, 0.9]
    assert list(noise_ceiling.recommended(runs[1], 0.0, 4, rng)) == [0.95, 0.95, 0.97, 0.97]   # padded
    noisy = np.mean([noise_ceiling.recommended(runs[1], 0.1, 4, rng)[-1] for _ in range(300)])
    assert 0.95 < noisy < 0.97          # a 10% error often cannot tell 0.97 from 0.95
    assert noise_ceiling.main([str(out), "--errors", "0,0.1", "--draws", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    exact = next(line for line in lines if line.split()[:2] == ["falcon", "0.000"])
    assert exact.split()[2:] == ["0.725", "0.935"]        # @1 and @3: means over the two runs
    assert any(line.endswith("<- its recommendation") for line in lines)


def test_a_benchmark_without_the_truth_is_refused_with_the_reason(tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"trials": 4, "results": {}}))
    with pytest.raises(SystemExit) as e:
        noise_ceiling.main([str(out)])
    assert e.value.code == 2 and "has no tried_truth" in capsys.readouterr().err
