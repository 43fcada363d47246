"""The rules language of a space file (services/domain/space_rules.py) and candidate generation
over large ruled spaces (Space.sample / neighbours / allowed_size_estimate)."""

import itertools
import math

import numpy as np
import pytest

import schemas
from schemas import Event
from services.domain.pricing import PriceCatalogue
from services.platform.settings import Settings
from services.domain.space import MAX_SPACE_SIZE, Space, SpaceError, parse_rule
from tests.helpers import REPO, spec

KNOBS = {"gputype": ["M60", "K80", "T4", "V100"], "precision": ["fp32", "fp16", "int8"],
         "cpus": [1, 2, 4, 8], "replicas": [1, 2, 4], "gpumem": [0.8, 1.6, 3.2]}
BASE = Space.from_dict({"knobs": KNOBS})
CFG = {"gputype": "T4", "precision": "int8", "cpus": 2, "replicas": 2, "gpumem": 1.6}

RULES = [
    "not (precision == 'int8' and gputype in ['M60', 'K80'])",
    "replicas <= cpus",
    "gpumem * replicas <= 4",
    "1 < cpus <= 4",
    "gputype not in ('M60',) or precision == 'fp32'",
    "'T4' == gputype or cpus / replicas >= 2",
    "-gpumem > -3 and (cpus - replicas) * 2 != 6",
    "gputype != 'V100' or not cpus in [1, 8]",
    "cpus + replicas in [3, 6]",
    "4 >= cpus",
]


def ruled(*rules, knobs=KNOBS, **kw):
    return Space.from_dict({"knobs": knobs, "rules": list(rules)}, **kw)


@pytest.mark.parametrize("rule, change, allowed", [
    ("not (precision == 'int8' and gputype in ['M60', 'K80'])", {}, True),
    ("not (precision == 'int8' and gputype in ['M60', 'K80'])", {"gputype": "K80"}, False),
    ("not (precision == 'int8' and gputype in ['M60', 'K80'])", {"gputype": "K80", "precision": "fp16"}, True),
    ("replicas <= cpus", {"replicas": 4}, False),
    ("replicas <= cpus", {"replicas": 4, "cpus": 4}, True),
    ("gpumem * replicas <= 4", {"gpumem": 3.2}, False),
    ("1 < cpus <= 4", {"cpus": 1}, False),
    ("1 < cpus <= 4", {"cpus": 4.0}, True),
    ("cpus == 2", {"cpus": 2.0}, True),                   # numbers match as the space matches them
    ("gputype != 'T4' or gpumem >= 1.6", {"gpumem": 0.8}, False),
])
def test_valid_rules_allow_and_deny_the_right_configurations(rule, change, allowed):
    r = parse_rule(rule, BASE)
    assert r.allows({**CFG, **change}) is allowed
    assert ruled(rule).contains({**CFG, **change}) is allowed


def test_vectorised_equals_scalar_equals_python_on_random_configurations():
    rng = np.random.default_rng(7)
    rows = BASE._random_rows(rng, 300)
    configs = [BASE.config_at(int(i)) for i in BASE.indices_of(rows)]
    for text in RULES:
        rule = parse_rule(text, BASE)
        vector = rule.allows_indices(rows)
        scalar = [rule.allows(c) for c in configs]
        # Oracle only: Python itself on the test's own fixed strings (never on user text).
        python = [bool(eval(text, {"__builtins__": {}}, dict(c))) for c in configs]  # noqa: S307
        assert list(vector) == scalar == python, text
        assert 0 < sum(python) < len(python), f"{text} does not discriminate here"


def test_rule_naming_an_unknown_knob_is_refused_with_its_name_and_the_knobs():
    with pytest.raises(SpaceError, match=r"'threads' is not a knob \(knobs: gputype, precision, cpus"):
        ruled("threads <= cpus")


def test_syntax_error_quotes_the_rule():
    with pytest.raises(SpaceError, match=r"rule 'cpus <= = 2': syntax error"):
        ruled("cpus <= = 2")


@pytest.mark.parametrize("rule, match", [
    ("__import__('os').system('true') == 0", "function calls not allowed"),
    ("__import__('os') == 1", "function calls not allowed"),
    ("gputype.upper() == 'T4'", "function calls not allowed"),
    ("gputype.__class__ == 1", "attribute access not allowed"),
    ("gputype[0] == 'T'", "indexing not allowed"),
    ("(lambda: 1)() == 1", "function calls"),
    ("[c for c in 'ab'] == 1", "comprehensions not allowed"),
    ("(x := cpus) > 1", "assignments not allowed"),
    ("f'{cpus}' == '1'", "f-strings not allowed"),
    ("cpus ** 2 > 4", "operator Pow not allowed"),
    ("cpus // 2 > 1", "operator FloorDiv not allowed"),
    ("cpus is 2", "comparison Is not allowed"),
    ("cpus == True", "literal True not allowed"),
    ("cpus == None", "literal None not allowed"),
    ("(cpus if cpus else 1) > 1", "if-expressions not allowed"),
])
def test_anything_but_the_whitelist_is_refused(rule, match):
    with pytest.raises(SpaceError, match=match):
        parse_rule(rule, BASE)


@pytest.mark.parametrize("rule, match", [
    ("gputype == 'A100'", r"'A100' is not a value of gputype \(values: \['M60'"),
    ("cpus == 'four'", "'four' is not a value of cpus"),
    ("cpus in [1, 3]", "3 is not a value of cpus"),
    ("gputype < 'T4'", "< orders numbers; knob gputype is a string"),
    ("gputype + 1 > 2", "arithmetic needs numbers; knob gputype"),
    ("gputype == cpus", "not both numbers or both strings"),
    ("cpus", "is a value, not a condition"),
    ("cpus + 1", "is a value, not a condition"),
    ("1 < 2", "compares no knob"),
    ("cpus in 4", "needs a literal list"),
    ("cpus * 2 in ['a']", "its list holds strings"),
    ("(cpus > 1) + 1 > 1", "is a condition where a value is expected"),
    ("", "non-empty string"),
    ("cpus > 1" + " " * 10 + "or cpus < 1" * 60, "longer than 500"),
])
def test_mistakes_are_one_line_errors(rule, match):
    with pytest.raises(SpaceError, match=match) as err:
        parse_rule(rule, BASE)
    assert "\n" not in str(err.value)


def test_a_knob_mixing_numbers_and_strings_compares_only_by_value():
    knobs = {"threads": [1, 2, "auto"], "cpus": [1, 2]}
    assert ruled("threads != 'auto' or cpus == 2", knobs=knobs).allowed_size_estimate() == 5
    assert ruled("threads in [1, 'auto']", knobs=knobs).allowed_size_estimate() == 4
    with pytest.raises(SpaceError, match="mixes numbers and strings"):
        ruled("threads <= cpus", knobs=knobs)


def test_rules_that_exclude_everything_are_refused():
    with pytest.raises(SpaceError, match=r"exclude every configuration of the 432; 'cpus > 8' alone"):
        ruled("replicas <= cpus", "cpus > 8")
    with pytest.raises(SpaceError, match=r"exclude every configuration of the 432 \(together\)"):
        ruled("cpus > 2", "cpus < 2")
    huge = {f"k{i}": list(range(10)) for i in range(7)}     # 10^7: too large to scan, checked by sampling
    with pytest.raises(SpaceError, match="none of 4,096 drawn at random from 10,000,000 is allowed"):
        ruled("k0 + k1 + k2 + k3 + k4 + k5 + k6 > 62", knobs=huge, max_size=10**7)


def test_rules_round_trip_and_take_part_in_identity():
    s = ruled(*RULES[:3])
    assert Space.from_dict(s.to_dict()) == s and hash(Space.from_dict(s.to_dict())) == hash(s)
    assert s.to_dict()["rules"] == RULES[:3]
    assert s != BASE and s.fingerprint() != BASE.fingerprint()
    assert ruled(*RULES[:2]).fingerprint() != s.fingerprint()
    assert "rules" not in BASE.to_dict()          # rule-less spaces keep their old fingerprints
    assert {s: 1}[Space.from_dict(s.to_dict())] == 1
    with pytest.raises(SpaceError, match="parsed for other knobs"):
        Space(BASE.knobs[:-1], s.rules)
    with pytest.raises(SpaceError, match="list of strings"):
        Space.from_dict({"knobs": KNOBS, "rules": "cpus > 1"})
    with pytest.raises(SpaceError, match="more than the maximum of 64"):
        Space.from_dict({"knobs": KNOBS, "rules": ["cpus > 1"] * 65})


def test_sample_stays_inside_the_space_and_the_rules_and_is_deterministic():
    s = ruled(*RULES[:3])
    allowed = set(s.allowed_indices().tolist())
    a = s.sample(np.random.default_rng(1), 50)
    assert len(a) == len(set(a.tolist())) == 50
    assert set(a.tolist()) <= allowed
    assert all(s.contains(s.config_at(int(i))) for i in a)
    assert np.array_equal(a, s.sample(np.random.default_rng(1), 50))
    assert not np.array_equal(a, s.sample(np.random.default_rng(2), 50))
    everything = s.sample(np.random.default_rng(1), 10_000)       # more than allowed: all of them
    assert sorted(everything.tolist()) == sorted(allowed)
    assert len(s.sample(np.random.default_rng(1), 0)) == 0


def test_neighbours_are_one_move_away_and_inside_the_rules():
    s = ruled(*RULES[:3])
    ranks = {k.name: k.kind for k in s.knobs}
    for index in s.sample(np.random.default_rng(3), 40):
        got = s.neighbours(int(index))
        me = s.rows(np.array([index]))[0]
        expected = []
        for j in s.allowed_indices():
            other = s.rows(np.array([j]))[0]
            diff = np.flatnonzero(other != me)
            if len(diff) == 1:
                k = s.knobs[diff[0]]
                if ranks[k.name] == "categorical" or abs(int(other[diff[0]]) - int(me[diff[0]])) == 1:
                    expected.append(int(j))
        assert sorted(got.tolist()) == expected
    with pytest.raises(SpaceError, match="outside"):
        s.neighbours(s.size)


def test_a_million_configurations_sample_a_thousand_candidates():
    knobs = {f"k{i}": list(range(10)) for i in range(6)}
    s = ruled("k0 + k1 <= k2 + 4", "not (k3 == 0 and k4 in [1, 2, 3])", "k5 * 2 != k0", knobs=knobs)
    assert s.size == 10**6
    got = s.sample(np.random.default_rng(0), 1000)
    assert len(got) == len(set(got.tolist())) == 1000
    assert ((0 <= got) & (got < s.size)).all()
    assert s.allows_rows(s.rows(got)).all()
    for i in got[:50]:
        c = s.config_at(int(i))
        assert s.contains(c) and s.index(c) == i
        assert c["k0"] + c["k1"] <= c["k2"] + 4 and c["k5"] * 2 != c["k0"]
    assert all(s.allows(s.config_at(int(j))) for j in s.neighbours(int(got[0])))
    exact = len(s.allowed_indices(limit=10**6))
    assert abs(s.allowed_size_estimate() - exact) < 0.02 * exact


def test_a_space_above_the_maximum_is_refused_with_its_size():
    too_big = {"a": list(range(1001)), "b": list(range(1000))}
    with pytest.raises(SpaceError, match=r"1,001,000 configurations, more than the maximum of 1,000,000"):
        Space.from_dict({"knobs": too_big})
    assert MAX_SPACE_SIZE == Settings().max_space_size == 1_000_000
    assert Settings.from_env({"FALCON_MAX_SPACE_SIZE": "2000000"}).max_space_size == 2_000_000
    assert Space.from_dict({"knobs": too_big}, max_size=2_000_000).size == 1_001_000
    with pytest.raises(SpaceError, match="432 configurations, more than the maximum of 100"):
        Space.from_dict({"knobs": KNOBS}, max_size=100)


CLOUD = REPO / "deploy" / "config"


def test_cloud_space_loads_and_its_prices_cover_every_gpu():
    space = Space.from_file(CLOUD / "cloud-space.yaml")
    prices = PriceCatalogue.from_file(CLOUD / "cloud-prices.yaml")
    assert space.size == 277_200 and space.allowed_size_estimate() == 98_312
    gpus = set(space.knob("gputype").values)
    assert gpus - set(prices.instances) == {prices.no_gpu_value} == {"none"}
    assert prices.instances["A100"].gpus == prices.instances["H100"].gpus == 8
    for i in space.sample(np.random.default_rng(0), 500):
        c = space.config_at(int(i))
        assert c["gpumem"] <= prices.instances[c["gputype"]].gpu_mem_gb if c["gputype"] != "none" else \
            c["gpumem"] == 0
        assert math.isfinite(prices.hourly(c)) and prices.hourly(c) > 0
    assert not space.contains({"gputype": "T4", "precision": "fp8", "replicas": 1, "batchsize": 8, "cpus": 4,
                               "gpumem": 8, "gpupower": 100})
    assert space.contains({"gputype": "L4", "precision": "fp8", "replicas": 1, "batchsize": 8, "cpus": 4,
                           "gpumem": 8, "gpupower": 100})


def test_a_spec_with_the_cloud_space_and_prices_fits_the_wire_schema():
    s = spec(space=Space.from_file(CLOUD / "cloud-space.yaml"),
             prices=PriceCatalogue.from_file(CLOUD / "cloud-prices.yaml"))
    ev = Event("model-submitted", "s-1", {"spec": s.to_dict(), "operators": None}, "cli")
    back = schemas.decode(schemas.encode(ev))
    assert type(s).from_dict(back.data["spec"]) == s
    bad = s.to_dict()
    bad["space"]["rules"] = ["x" * 501]
    with pytest.raises(schemas.SchemaError, match="rules"):
        schemas.decode(schemas.encode(Event("model-submitted", "s-1", {"spec": bad, "operators": None}, "cli")))


def test_small_space_exhaustive_enumeration_matches_itertools():
    s = ruled("replicas <= cpus", "gpumem * replicas <= 4")
    brute = [i for i, c in enumerate(itertools.product(*KNOBS.values()))
             if c[3] <= c[2] and c[4] * c[3] <= 4]
    assert s.allowed_indices().tolist() == brute
    with pytest.raises(SpaceError, match="too many to enumerate"):
        s.allowed_indices(limit=10)
