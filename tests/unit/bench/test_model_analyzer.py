"""bench.model_analyzer: reading Model Analyzer's raw output (log, checkpoint, configurations) into
configurations in measured order, and the count of configurations until within 2% of the best."""

import json

import pytest

from bench.model_analyzer import (config_knobs, main, profiling_order, read_raw, reached, replay_counts,
                                  served_table_values)


def test_reached_counts_measurements_until_the_best_so_far_is_within_the_tolerance():
    assert reached([100.0, 50.0, 197.0, 200.0]) == 3            # 197 >= .98 x 200
    assert reached([100.0, 50.0, 190.0, 200.0]) == 4
    assert reached([None, 200.0]) == 2                          # a configuration with no peak counts as measured
    assert reached([100.0, 150.0], best=200.0) is None          # never near another search's optimum
    assert reached([0.5, 0.99], best=1.0) == 2 and reached([]) is None


def test_profiling_order_and_knobs_come_from_what_model_analyzer_wrote():
    log = ("12:00:01 [Model Analyzer] Creating model config: resnet8_config_0\n"
           "12:00:02 [Model Analyzer] Profiling resnet8_config_0: concurrency=1\n"
           "12:00:03 [Model Analyzer] Profiling resnet8_config_0: concurrency=2\n"
           "12:00:09 [Model Analyzer] Profiling resnet8_config_1: client batch size=4, concurrency=8\n")
    assert profiling_order(log) == [("resnet8_config_0", 1), ("resnet8_config_0", 2), ("resnet8_config_1", 8)]
    pb = ('name: "resnet8_config_1"\nmax_batch_size: 16\ninstance_group {\n  count: 1\n  kind: KIND_CPU\n}\n'
          'dynamic_batching {\n  max_queue_delay_microseconds: "2000"\n}\n')
    assert config_knobs(pb) == (16, 2000, 1)
    assert config_knobs('max_batch_size: 4\ndynamic_batching {\n}\ninstance_group { count: 2 }') == (4, 0, 2)


def _measurement(name, conc, rps, p99_ms):
    return {"_model_variants_name": name, "_model_config_measurements": [{
        "_model_config_name": "resnet8", "_model_specific_pa_params": {"batch-size": 1, "concurrency-range": conc},
        "_non_gpu_data": [["perf_throughput", {"_value": rps, "_timestamp": 0}],
                          ["perf_latency_p99", {"_value": p99_ms, "_timestamp": 0}]]}]}


def test_read_raw_gives_configurations_in_measured_order_with_their_peak_within_the_slo(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "configs" / "resnet8_config_1.pbtxt").write_text("max_batch_size: 1\ndynamic_batching {\n}\n"
                                                                 "instance_group { count: 1 }")
    (tmp_path / "configs" / "resnet8_config_0.pbtxt").write_text(
        "max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 2000 }\ninstance_group { count: 1 }")
    (tmp_path / "model-analyzer.log").write_text(
        "Profiling resnet8_config_1: concurrency=1\nProfiling resnet8_config_1: concurrency=2\n"
        "Profiling resnet8_config_0: concurrency=1\nProfiling resnet8_config_0: concurrency=64\n")
    ckpt = {"ResultManager.results": {"_results": {"resnet8": {
        "resnet8_config_0": [{}, {"a": _measurement("resnet8_config_0", 1, 300.0, 5.0),
                                  "b": _measurement("resnet8_config_0", 64, 2000.0, 140.0)}],
        "resnet8_config_1": [{}, {"c": _measurement("resnet8_config_1", 1, 200.0, 4.0),
                                  "d": _measurement("resnet8_config_1", 2, 250.0, 9.0)}]}}}}
    (tmp_path / "checkpoints" / "0.ckpt").write_text(json.dumps(ckpt))
    got = read_raw(tmp_path)
    assert [c.name for c in got] == ["resnet8_config_1", "resnet8_config_0"]          # the log's order
    assert (got[0].max_batch_size, got[0].queue_delay_us, got[1].queue_delay_us) == (1, 0, 2000)
    assert got[0].peak(100)["rps"] == 250.0
    assert got[1].peak(100)["rps"] == 300.0                 # 2000/s at concurrency 64 broke the 100 ms p99


def test_served_table_values_and_replay_counts(tmp_path):
    table = tmp_path / "reg-resnet8.csv"
    table.write_text("cpus,batchsize,queue_delay_us,replicas,precision,graph_opt,rps\n"
                     "1,16,2000,1,fp32,all,1700\n1,16,2000,1,int8,all,500\n1,1,0,1,fp32,all,380\n")
    assert served_table_values(table, [(1, 0), (4, 0), (16, 2000)]) == [380.0, None, 1700.0]
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"trials": 3, "results": {"falcon": {"resnet8": [[0.5, 0.985, 1.0], [0.3, 0.4, 0.9]]}}}))
    assert replay_counts(js) == {"falcon": {"resnet8": [2, None]}}


def test_the_report_without_output_or_with_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["--results", str(tmp_path)]) == 2
    assert "no Model Analyzer output" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--replay", str(tmp_path / "missing.json")])
    assert "--replay: no file" in capsys.readouterr().err


def test_subset_targets_cut_the_served_table_to_model_analyzers_knobs(tmp_path):
    src = tmp_path / "src" / "models" / "targets"
    src.mkdir(parents=True)
    (tmp_path / "src" / "models" / "operators" / "resnet8").mkdir(parents=True)
    (tmp_path / "src" / "models" / "operators" / "resnet8" / "operators.csv").write_text("op\n")
    (src / "reg-resnet8.csv").write_text("cpus,batchsize,queue_delay_us,replicas,precision,graph_opt,rps\n"
                                         "1,16,2000,1,fp32,all,1700\n1,16,2000,1,int8,all,500\n"
                                         "1,1,0,1,fp32,basic,330\n1,1,0,1,fp32,all,380\n")
    assert main(["--table", str(src / "reg-resnet8.csv"), "--subset-targets", str(tmp_path / "out")]) == 0
    rows = (tmp_path / "out" / "models" / "targets" / "reg-resnet8.csv").read_text().splitlines()
    assert rows[1:] == ["1,16,2000,1,fp32,all,1700", "1,1,0,1,fp32,all,380"]
    assert (tmp_path / "out" / "models" / "operators" / "resnet8" / "operators.csv").exists()
