"""A live trial applies knobs by their role (services/domain/roles.py), not by their name: a space
that calls its batch knob ``bs`` and its cores ``ncores`` (``roles: {batch: bs, cpus: ncores}``)
passes the searcher's check against the runners' adverts, and its trials carry the roles to the
runner, which applies ``bs`` as the batch and ``ncores`` as the cores."""

import json
from types import SimpleNamespace

import schemas
from schemas import Event
from services.domain.roles import DEFAULT_ROLES, KnobRoles
from services.domain.space import Space
from services.domain.spec import SearchSpec, StopRules
from services.platform.runners import RunnerAdvert
from services.searcher.preflight import Facts, spec_problems
from services.searcher.search import start_search
from services.trial_runner.backends import LiveBackend
from services.trial_runner.backends import live_backend

ROLES = {"batch": "bs", "cpus": "ncores", "replicas": "inst"}
SPACE = Space.from_dict({"knobs": {"ncores": [1, 2], "bs": [1, 8], "graph_opt": ["basic", "all"]}, "roles": ROLES})
RUNNER = RunnerAdvert("runner-0", ("live-cpu",), {"live": LiveBackend(gpus=[], max_cores=3).capabilities()},
                      {"live": ("rps", "p50_ms", "p99_ms", "stability_cv")})


def live_spec(space: Space = SPACE) -> SearchSpec:
    return SearchSpec(model={"name": "m", "format": "onnx", "uri": "/m.onnx"},
                      backend={"kind": "live", "mode": "closed-loop", "measure_s": 1.0, "trial_seconds": 5.0},
                      space=space, stop=StopRules(3), strategy="random")


def test_a_config_by_role_and_back():
    roles = KnobRoles.from_dict(ROLES)
    assert roles.by_role({"bs": 8, "ncores": 2, "graph_opt": "all"}) == {"batchsize": 8, "cpus": 2, "graph_opt": "all"}
    assert roles.default_name("bs") == "batchsize" and roles.default_name("graph_opt") == "graph_opt"
    assert roles.space_name("batchsize") == "bs" and roles.space_name("memory_gb") == "memory_gb"
    assert DEFAULT_ROLES.by_role({"batchsize": 8}) == {"batchsize": 8}


def test_the_searcher_checks_renamed_knobs_against_the_adverts_by_role():
    assert spec_problems(live_spec(), Facts(None, [RUNNER])) == []
    too_many = Space.from_dict({"knobs": {"ncores": [1, 9], "bs": [8]}, "roles": ROLES})
    problems = spec_problems(live_spec(too_many), Facts(None, [RUNNER]))
    assert len(problems) == 1 and problems[0].startswith("ncores value(s) 9 cannot be applied by any live runner")
    unroled = Space.from_dict({"knobs": {"ncores": [1], "bs": [8]}})      # the same names, no roles declared
    assert any(p.startswith("knob bs cannot be applied") for p in spec_problems(live_spec(unroled),
                                                                                 Facts(None, [RUNNER])))


def test_a_trial_request_carries_the_spaces_roles_and_only_when_they_differ():
    request = start_search("s1", live_spec(), [], []).request
    assert request.roles == ROLES
    wire = schemas.decode(schemas.encode(Event.new(request, "s1", "searcher")))
    assert wire.data["roles"] == ROLES and wire.payload.roles == ROLES
    plain = Space.from_dict({"knobs": {"cpus": [1], "batchsize": [8]}})
    default = start_search("s2", live_spec(plain), [], []).request
    assert default.roles is None and "roles" not in Event.new(default, "s2", "searcher").data


def test_the_live_backend_applies_the_renamed_knobs_by_role(tmp_path, monkeypatch):
    backend = LiveBackend(tmp_path, gpus=[], max_cores=3)
    roles = KnobRoles.from_dict(ROLES)
    assert backend.refusal({"ncores": 1, "bs": 8}, "closed-loop", roles) is None
    assert "knob 'ncores' cannot be applied" in backend.refusal({"ncores": 1, "bs": 8}, "closed-loop")
    assert "knob 'memory_gb' cannot be applied by the live backend's closed-loop trials (they apply ncores, bs, " \
           "graph_opt)" in backend.refusal({"ncores": 1, "memory_gb": 4}, "closed-loop", roles)
    # served trials read the replicas role too: two instances on one core is refused as such
    assert "replicas=2 on 1 core(s)" in backend.refusal({"ncores": 1, "bs": 8, "inst": 2}, "served", roles)

    model = tmp_path / "m.onnx"
    model.write_bytes(b"onnx")
    seen = {}

    def stress(args, **kw):              # the closed-loop stress test's request is what it applies
        seen.update(json.loads(args[-1]), threads=kw["env"]["OMP_NUM_THREADS"])
        out = {"status": "ok", "rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "cv": 0.01, "compile_s": 0.1,
               "compile_cached": False, "batches": 10, "measured_s": 1.0, "threads": 2, "providers": ["cpu"]}
        return SimpleNamespace(returncode=0, stdout=json.dumps(out) + "\n", stderr="")
    monkeypatch.setattr(live_backend.subprocess, "run", stress)
    request = start_search("s1", live_spec(), [], []).request
    request = type(request)(request.trial_id, 0, {"ncores": 2, "bs": 8, "graph_opt": "basic"},
                            {"name": "m", "format": "onnx", "uri": str(model)}, request.backend, 0.085,
                            "live-cpu", roles=request.roles)
    out = backend.run(request)
    assert out.status == "ok", out.reason
    assert (seen["batch"], seen["cores"], seen["graph_opt"], seen["threads"]) == (8, 2, "basic", "2")
    assert out.config == {"ncores": 2, "bs": 8, "graph_opt": "basic"}        # named as the space names them
    bad = type(request)(request.trial_id, 0, request.config, request.model, request.backend, 0.085, "live-cpu",
                        roles={"bach": "bs"})
    assert "unknown knob role" in backend.run(bad).reason

