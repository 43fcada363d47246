import numpy as np
import pytest

from schemas.events import TrialResult
from services.domain.space import PAPER_SPACE, Space
from services.searcher.search import SearchState, record_trial, start_search
from services.searcher.strategies import SearchContext, make_strategy
from services.searcher.strategies.falcon import Falcon
from services.searcher.strategies.gp import expected_improvement, fit_gp
from tests.helpers import knowledge, spec

OPS = ({"op": "conv2d", "time_share": 0.8}, {"op": "relu", "time_share": 0.2})


def ctx(seed=0, k="paper"):
    return SearchContext(PAPER_SPACE, seed, ("conv2d", "relu"), OPS, knowledge() if k == "paper" else k)


def test_surrogate_moves_towards_the_expert_that_predicts_the_trials():
    F = np.array([[0.0, 1.0, 0.5, 0.2], [1.0, 0.0, 0.5, 0.9]])
    prior = np.array([0.5, 0.5])
    assert np.allclose(Falcon.surrogate(F, prior, np.array([], int), np.array([]))[0], prior @ F)
    m = Falcon.surrogate(F, prior, np.array([0, 1]), np.array([1.0, 0.0]))[0]     # expert 2 was right
    assert m[3] > 0.8 and m[0] > m[1]


def test_first_trial_is_the_offline_prior_best_and_no_configuration_repeats():
    s = make_strategy("falcon", ctx())
    f = Falcon(ctx())
    F, prior = f.experts()
    first = s.ask()
    assert PAPER_SPACE.index(first) == int(np.argmax(prior @ F))
    seen = set()
    rng = np.random.default_rng(0)
    c = first
    for _ in range(8):
        key = PAPER_SPACE.key(c)
        assert key not in seen
        seen.add(key)
        s.tell(c, float(rng.random()))
        c = s.ask()


def every_column(obs):
    from services.searcher.strategies.falcon import Columns
    return Columns.everything(np.ones(PAPER_SPACE.size, dtype=bool), obs)


def test_ucb_exploits_a_good_region_and_leaves_it_when_trials_there_are_bad():
    f = Falcon(ctx())
    k = knowledge()
    tree = k.tree("conv2d")
    mu = np.full(PAPER_SPACE.size, 0.5)
    good, bad = tree.children
    # trials in the good child went well: the selected region stays inside it
    obs = observed_at(good.members[:3], [0.9, 0.95, 0.9])
    region = np.flatnonzero(f.select_region(mu, every_column(obs), obs))
    assert np.isin(region, good.members).all()
    # many poor trials there: MCTS goes to the other side
    obs = observed_at(good.members[:12], np.zeros(12))
    region = np.flatnonzero(f.select_region(mu, every_column(obs), obs))
    assert not np.isin(region, good.members).all()


def test_region_membership_restricts_the_candidates():
    f = Falcon(ctx())
    k = knowledge()
    mu = k.kop_prior(ctx().kop_shares())
    obs = observed_at([], [])
    region = np.flatnonzero(f.select_region(mu, every_column(obs), obs))
    leaf = next(n for n in k.tree("conv2d").walk() if n.is_leaf and np.array_equal(n.members, region))
    assert leaf.value >= k.tree("conv2d").value      # the best-valued path leads to a good leaf


def test_expected_improvement():
    mu, sd = np.array([0.5, 0.9, 0.9, 1.2]), np.array([0.1, 0.0, 0.2, 0.0])
    ei = expected_improvement(mu, sd, best=1.0)
    assert ei[0] < 1e-6 and ei[1] < 1e-9 and ei[2] > ei[0]
    assert abs(ei[3] - 0.2) < 1e-6          # certain improvement of 0.2


def test_without_knowledge_it_falls_back_to_plain_bo():
    tiny = Space.from_dict({"knobs": {"a": [1, 2, 3, 4], "b": ["x", "y"]}})
    s = make_strategy("falcon", SearchContext(tiny, 3, ("never-seen-op",), ({"op": "never-seen-op", "time_share": 1},)))
    tried = []
    for _ in range(8):
        c = s.ask()
        tried.append(tiny.key(c))
        s.tell(c, c["a"] / 4 + (c["b"] == "y"))
    assert len(set(tried)) == 8 and s.ask() is None


def test_restart_from_stored_state_decides_the_same():
    k = knowledge()
    sp = spec("mobilenet-v2", max_trials=6, strategy="falcon", seed=4)
    d = start_search("s1", sp, ["conv2d", "relu"], list(OPS), k)
    for v in (0.9, 0.7):
        r = d.request
        d = record_trial(d.state, TrialResult(r.trial_id, r.index, r.config, "ok", v, 0.1, 900.0), k)
    restored = SearchState.from_dict(d.state.to_dict())
    r = d.request
    nxt = TrialResult(r.trial_id, r.index, r.config, "ok", 0.95, 0.1, 900.0)
    assert record_trial(restored, nxt, k).request == record_trial(d.state, nxt, k).request


def test_prior_without_knowledge_fails_the_search_clearly():
    d = start_search("s1", spec(strategy="prior"), ["conv2d"], [])
    assert d.state.status == "failed" and "needs offline knowledge" in d.state.stop_reason


def test_search_stops_when_falcon_says_further_trials_are_unlikely_to_help():
    """A flat landscape: once the model has seen enough, no configuration promises improvement."""
    import services.searcher.strategies.falcon as falcon_mod
    tiny = Space.from_dict({"knobs": {"a": [1, 2, 3, 4, 5, 6], "b": [1, 2, 3, 4, 5, 6]}})
    s = make_strategy("falcon", SearchContext(tiny, 0))
    for _ in range(falcon_mod.CONVERGED_PATIENCE + falcon_mod.CONVERGED_MIN_TRIALS + 4):
        c = s.ask()
        if s.converged:
            break
        s.tell(c, 1.0)
    assert s.converged and len(s.history) >= falcon_mod.CONVERGED_PATIENCE + 1


def test_a_noisy_measurement_moves_the_surrogate_less_than_a_precise_one():
    F = np.array([[1.0, 0.2, 0.9], [0.6, 0.2, 0.1]])
    prior = np.array([0.5, 0.5])
    idx, y = np.array([0]), np.array([0.6])                 # expert 2 predicted this trial, expert 1 did not
    precise = Falcon.surrogate(F, prior, idx, y, np.array([0.0]))[0]
    noisy = Falcon.surrogate(F, prior, idx, y, np.array([0.3]))[0]
    consensus = (prior @ F)[2]
    # configuration 2 is where the experts disagree: a precise trial follows expert 2 there,
    # a noisy one (30% spread) leaves the estimate nearer the offline consensus
    assert precise[2] < noisy[2] < consensus
    assert np.allclose(Falcon.surrogate(F, prior, idx, y)[0], precise)     # no reported noise = precise


def test_gp_treats_a_noisy_observation_as_less_certain():
    X, y = np.array([[0.0], [0.5], [1.0]]), np.array([0.0, 0.3, 0.1])
    exact = fit_gp(X, y).predict(X, return_std=True)[1]
    noisy = fit_gp(X, y, noise=np.array([0.0, 0.3, 0.0])).predict(X, return_std=True)[1]
    assert noisy[1] > exact[1] + 0.01


def test_the_runners_measured_spread_reaches_the_strategy():
    k = knowledge()
    sp = spec("mobilenet-v2", max_trials=4, strategy="falcon", seed=1)
    d = start_search("s1", sp, ["conv2d", "relu"], list(OPS), k)
    r = d.request
    d = record_trial(d.state, TrialResult(r.trial_id, r.index, r.config, "ok", 0.5, 0.1, 900.0, stability_cv=0.2), k)
    stored = SearchState.from_dict(d.state.to_dict())
    assert stored.trials[0].stability_cv == 0.2
    s = make_strategy("falcon", ctx(seed=1))
    s.tell(r.config, 0.5, stability_cv=0.2)
    s.tell(PAPER_SPACE.config_at(0), 0.4, stability_cv=float("nan"))     # a runner that could not tell: unknown
    assert s.stability_cv == [0.2, None]


def observed(values, cvs=None):
    return observed_at(np.arange(len(values)), values, cvs)


def observed_at(indices, values, cvs=None):
    from services.searcher.strategies.base import Observed
    values = np.asarray(values, dtype=float)
    return Observed(np.asarray(indices, dtype=int), values,
                    np.zeros(len(values)) if cvs is None else np.asarray(cvs, float))


def test_belief_is_the_surrogate_until_bo_starts_then_a_gp_adds_uncertainty():
    from services.searcher.strategies.falcon import MIN_BO_TRIALS
    f = Falcon(ctx())
    experts = f.experts()
    obs = observed([0.6] * (MIN_BO_TRIALS - 1))
    early = f.belief(experts, obs, every_column(obs))
    assert not early.bo and (early.sd == 0).all()
    obs = observed([0.6, 0.7, 0.8])
    late = f.belief(experts, obs, every_column(obs))
    assert late.bo and late.sd.max() > 0 and late.sd[:3].max() < late.sd.max()    # tried ones are the surest


def test_candidates_are_the_untried_members_of_the_selected_region():
    from services.searcher.strategies.falcon import Columns
    f = Falcon(ctx())
    untried = np.ones(PAPER_SPACE.size, dtype=bool)
    untried[:5] = False
    mu = knowledge().kop_prior(ctx().kop_shares())
    cols = Columns.everything(untried, observed([]))
    cand = f.candidates(mu, observed([]), cols)
    assert cand.any() and not cand[:5].any() and cand.sum() < untried.sum()
    assert Falcon(ctx(), use_trees=False).candidates(mu, observed([]), cols).sum() == untried.sum()


def test_acquisition_is_for_the_next_noisy_measurement():
    from services.searcher.strategies.falcon import Belief, next_measurement_ei
    belief = Belief(np.array([1.0, 0.9]), np.array([0.0, 0.2]), bo=True)
    exact = next_measurement_ei(belief, observed([1.0]))
    noisy = next_measurement_ei(belief, observed([1.0], [0.3]))
    assert exact[0] == pytest.approx(0.0, abs=1e-9) and exact[1] > 0        # a sure thing at the best gains nothing
    assert noisy[0] > 0                  # but a measurement as noisy as the runner's may come out higher


def test_stop_rule_needs_patience_and_a_model_that_promises_little():
    from services.searcher.strategies.falcon import CONVERGED_PATIENCE, has_converged
    flat = np.array([1.0] + [0.5] * CONVERGED_PATIENCE)
    assert has_converged(flat, best_ei=1e-6)
    assert not has_converged(flat, best_ei=0.1)                     # the model still sees gains
    assert not has_converged(flat[:-1], best_ei=1e-6)               # not patient enough yet
    assert not has_converged(np.append(flat, 1.1), best_ei=1e-6)    # it just improved
