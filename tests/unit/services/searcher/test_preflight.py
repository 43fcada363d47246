"""What is checked before the first trial: one sentence per problem, naming what is wrong and
what would be right, from the spec alone or with the facts the caller read (table, runners)."""

from dataclasses import replace

from services.domain.falcon_data import load_model_table
from services.domain.objectives import Objective
from services.searcher.preflight import Facts, spec_problems
from services.platform.runners import RunnerAdvert
from services.domain.space import Space
from services.domain.spec import Constraints, SearchSpec, StopRules
from tests.helpers import REPO, TARGETS, spec

GRU = load_model_table(TARGETS / "reg-gru.csv")
LIVE_SPACE = Space.from_file(REPO / "deploy" / "config" / "live-cpu-space.yaml")
RUNNER = RunnerAdvert("runner-0", ("replay", "live-cpu"),
                      {"replay": {"any": "every configuration of the requested table"},
                       "live": {"cpus": [1, 2], "batchsize": "any positive integer",
                                "graph_opt": ["disabled", "basic", "extended", "all"], "gputype": ["none"]}},
                      {"live": ("rps", "p50_ms", "p99_ms", "stability_cv")})


def paper(**knobs):
    base = {"batchsize": [8, 16], "cpus": [1, 2], "gpumem": [1.2], "gpupower": [100], "gputype": ["T4", "V100"]}
    base.update(knobs)
    return Space.from_dict({"knobs": {k: v for k, v in base.items() if v is not None}})


def live(space=LIVE_SPACE, **kw):
    return SearchSpec(model={"name": "m", "format": "onnx", "uri": "/m.onnx"},
                      backend={"kind": "live", "measure_s": kw.pop("measure_s", 3.0), "trial_seconds": 7.0},
                      space=space, stop=StopRules(5), **kw)


def test_a_sound_replay_spec_has_no_problem():
    assert spec_problems(spec("gru"), Facts(GRU, [RUNNER])) == []


def test_a_misnamed_knob_is_named_with_the_tables_knobs():
    problems = spec_problems(replace(spec("gru"), space=paper(cpus=None, cpu=[1, 2])), Facts(GRU))
    assert "knob(s) cpu of the space are not in replay table gru (its knobs: batchsize, cpus, gpumem, gpupower, " \
           "gputype)" in problems
    assert any("lacks knob(s) cpus" in p for p in problems)


def test_values_the_table_never_measured_and_unpriced_gpus():
    problems = spec_problems(replace(spec("gru"), space=paper(gputype=["T4", "V1OO"], batchsize=[8, 12])), Facts(GRU))
    assert "no price for gputype value(s) ['V1OO'] (the price catalogue has ['K80', 'M60', 'T4', 'V100'])" in problems
    assert any(p.startswith("gputype value(s) V1OO are not in replay table gru") for p in problems)
    assert any(p.startswith("batchsize value(s) 12 are not in replay table gru") for p in problems)


def test_a_constraint_the_table_cannot_measure_is_refused():
    problems = spec_problems(replace(spec("gru"), constraints=Constraints(slo_p99_ms=50)), Facts(GRU))
    assert problems == ["--slo-p99-ms: replay table gru has no p99_ms column, so no trial could be shown to meet "
                        "it (the table does not measure p99 latency)"]
    assert any("--min-rps" in p for p in spec_problems(replace(spec("gru"), constraints=Constraints(min_rps=5)),
                                                       Facts(GRU)))


def test_numbers_that_cannot_be_right():
    assert "measure_s must be a positive number of seconds, not -2" in spec_problems(live(measure_s=-2))
    assert any("budget" in p for p in spec_problems(spec("gru", budget_usd=-1.0)))
    assert any("max_trials" in p for p in spec_problems(spec("gru", max_trials=0)))


def test_a_live_space_against_what_runners_advertise():
    bad = Space.from_dict({"knobs": {"cpus": [1, 2, 4], "batchsize": [1, 8], "graph_opt": ["al", "all"],
                                     "threads": [1]}})
    problems = spec_problems(live(bad, constraints=Constraints(slo_p99_ms=20)), Facts(None, [RUNNER]))
    assert "cpus value(s) 4 cannot be applied by any live runner (allowed: 1, 2)" in problems
    assert "graph_opt value(s) al cannot be applied by any live runner (allowed: disabled, basic, extended, all)" \
        in problems
    assert any(p.startswith("knob threads cannot be applied by any live runner") for p in problems)
    assert not any("slo" in p for p in problems)            # live runners measure p99
    gpu = Space.from_dict({"knobs": {"cpus": [1], "gputype": ["none", "T4"]}})
    problems = spec_problems(live(gpu), Facts(None, [RUNNER]))
    assert any(p.startswith("gputype=T4: no runner serves trial class live-t4") for p in problems)


def test_what_cannot_be_known_is_not_refused():
    assert spec_problems(live(), Facts(None, [])) == []            # no runner advertises now: not a refusal
    assert spec_problems(live(), Facts(None, None)) == []
    no_p99 = replace(RUNNER, measures={"live": ("rps",)})
    assert any("no live runner measures p99 latency" in p
               for p in spec_problems(live(constraints=Constraints(slo_p99_ms=5)), Facts(None, [no_p99])))


# -- objectives: refused before the first trial when nothing could measure them -------------------
LIVE_TABLE = load_model_table(REPO / "bench" / "live" / "models" / "targets" / "reg-gru.csv")
GPU_RUNNER = RunnerAdvert("gpu-0", ("live-t4",),
                          {"live": {"cpus": [1, 2], "batchsize": "any positive integer",
                                    "graph_opt": ["disabled", "basic", "extended", "all"], "gputype": ["none", "T4"],
                                    "gpumem": "any size within the GPU's memory"}},
                          {"live": ("rps", "p50_ms", "p99_ms", "stability_cv", "energy_j_per_request",
                                    "mean_power_w")})


def test_an_objective_a_replay_table_cannot_measure_is_refused_in_one_line():
    s = replace(spec("gru"), objective=Objective("usd-for-load", 500))
    assert spec_problems(s, Facts(GRU)) == [
        "--objective usd-for-load: replay table gru has no rps column, so no trial could be ranked by it (the "
        "table does not measure RPS)"]
    assert any("no p99_ms column" in p for p in spec_problems(replace(spec("gru"), objective=Objective("p99")),
                                                              Facts(GRU)))
    live_table = replace(spec("gru"), space=LIVE_TABLE.space, prices=spec("gru").prices)
    assert spec_problems(replace(live_table, objective=Objective("usd-for-load", 500)), Facts(LIVE_TABLE)) == []
    assert spec_problems(replace(live_table, objective=Objective("p99")), Facts(LIVE_TABLE)) == []
    energy = spec_problems(replace(live_table, objective=Objective("energy-per-request")), Facts(LIVE_TABLE))
    assert energy == ["--objective energy-per-request: replay table gru has no energy_j_per_request column, so no "
                      "trial could be ranked by it (the table does not measure energy per request)"]


def test_energy_on_a_class_that_cannot_measure_it_is_refused_at_submission():
    cpu_only = spec_problems(live(objective=Objective("energy-per-request")))        # no adverts needed
    assert len(cpu_only) == 1 and cpu_only[0].startswith(
        "--objective energy-per-request: trial class live-cpu cannot measure energy")
    gpus = Space.from_dict({"knobs": {"cpus": [1, 2], "batchsize": [1, 8], "gputype": ["T4"], "gpumem": [4]}})
    assert spec_problems(live(gpus, objective=Objective("energy-per-request")), Facts(None, [GPU_RUNNER])) == []
    no_nvml = replace(GPU_RUNNER, measures={"live": ("rps", "p50_ms", "p99_ms", "stability_cv")})
    problems = spec_problems(live(gpus, objective=Objective("energy-per-request")), Facts(None, [no_nvml]))
    assert problems == ["--objective energy-per-request: no runner of trial class live-t4 measures energy (a GPU "
                        "runner measures it with NVML: install the gpu extra, nvidia-ml-py)"]


def test_a_cost_ceiling_needs_rps_and_a_positive_number():
    assert any(p.startswith("--max-usd-per-million: replay table gru has no rps column")
               for p in spec_problems(replace(spec("gru"), constraints=Constraints(max_usd_per_million=0.01)),
                                      Facts(GRU)))
    assert "the cost ceiling must be a positive number of $ per million requests, not -1" in spec_problems(
        replace(spec("gru"), constraints=Constraints(max_usd_per_million=-1)))


def test_a_live_runner_advertises_per_mode_what_its_trials_apply():
    """Served trials keep a core for the load generator; closed-loop trials may use it: the
    search's backend mode picks which advertised values the space is checked against."""
    served_runner = replace(RUNNER, capabilities={"live": {
        "cpus": [1], "batchsize": "any positive integer", "graph_opt": ["basic", "all"], "gputype": ["none"],
        "modes": {"closed-loop": {"cpus": [1, 2], "batchsize": "any positive integer",
                                  "graph_opt": ["disabled", "basic", "extended", "all"], "gputype": ["none"]}}}})
    served = replace(live(), backend={"kind": "live", "mode": "served", "trial_seconds": 45.0})
    closed = replace(live(), backend={"kind": "live", "mode": "closed-loop", "measure_s": 1.0, "trial_seconds": 5.0})
    assert any(p.startswith("cpus value(s) 2 cannot be applied by any live runner")
               for p in spec_problems(served, Facts(None, [served_runner])))
    assert not any("cpus" in p for p in spec_problems(closed, Facts(None, [served_runner])))
