"""MixingRatioSampler (AutoSeM stage 2): GP Bayesian optimisation of mixing ratios."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    RelativeSamplerTestCase,
    SingleOnlySamplerTestCase,
)
from optuna.trial import TrialState, create_trial

from auxopt.errors import AuxoptError
from auxopt.samplers import MixingRatioSampler, UnitCube
from auxopt.samplers._observations import observations as _observations

optuna.logging.set_verbosity(optuna.logging.WARNING)

# small acquisition searches keep the GP tests fast; the algorithm is the same
FAST = {"num_restarts": 2, "raw_samples": 32}
RATIOS = {f"ratio_{t}": FloatDistribution(0.0, 5.0) for t in ("sst2", "trec", "subj")}


def _fast(**kwargs) -> MixingRatioSampler:
    return MixingRatioSampler(**{**FAST, **kwargs})


# -- Optuna's conformance suite ------------------------------------------------------------------
class TestConformance(BasicSamplerTestCase, RelativeSamplerTestCase, SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return lambda: _fast(seed=0, n_startup_trials=3)


# -- the unit cube ------------------------------------------------------------------------------
def test_unit_cube_models_log_scale_and_lattices():
    cube = UnitCube(
        {
            "lr": FloatDistribution(1e-5, 1e-1, log=True),
            "ratio": FloatDistribution(0.0, 4.0),
            "k": IntDistribution(1, 100, log=True),
            "n": IntDistribution(3, 9, step=2),
            "h": FloatDistribution(-1.0, 1.0, step=0.5),
        }
    )
    assert cube.names == ("lr", "ratio", "k", "n", "h")
    u = cube.encode({"lr": 1e-3, "ratio": 1.0, "k": 10, "n": 5, "h": 0.5})
    np.testing.assert_allclose(u, [0.5, 0.25, 0.5, 1 / 3, 0.75])  # log10: -3 is halfway
    back = cube.decode(u)
    assert back == pytest.approx({"lr": 1e-3, "ratio": 1.0, "k": 10, "n": 5, "h": 0.5})
    assert type(back["k"]) is int and type(back["n"]) is int and type(back["lr"]) is float
    # the lattice of a log int is uneven on the cube: 1, 2, ..., 100 at log(k) / log(100)
    discrete = cube.discrete
    assert sorted(discrete) == [2, 3, 4]
    np.testing.assert_allclose(discrete[2], [math.log(k) / math.log(100) for k in range(1, 101)])
    np.testing.assert_allclose(discrete[3], [0, 1 / 3, 2 / 3, 1])
    assert cube.lattice_size() is None  # lr and ratio are continuous
    assert cube.encode({"lr": 1.0, "ratio": 1.0, "k": 10, "n": 5, "h": 0.5}) is None  # out of range
    assert cube.encode({"lr": 1e-3, "ratio": "a", "k": 10, "n": 5, "h": 0}) is None
    assert cube.encode({"ratio": 1.0}) is None

    # a uniform Sobol coordinate gives every int the same share, ends included
    ints = UnitCube({"n": IntDistribution(0, 3)})
    counts = Counter(ints.sample([u])["n"] for u in (np.arange(4000) + 0.5) / 4000)
    assert set(counts) == {0, 1, 2, 3} and max(counts.values()) - min(counts.values()) <= 2
    with pytest.raises(AuxoptError):
        UnitCube({"c": CategoricalDistribution(["a", "b"])})


# -- finding optima -----------------------------------------------------------------------------
OPTIMUM = np.array([1.3, 3.1, 2.2])


def _bowl_true(params) -> float:
    """A smooth 3-D function of the ratios with an interior maximum of 0 at ``OPTIMUM``."""
    return float(-np.sum((np.array([params[k] for k in RATIOS]) - OPTIMUM) ** 2))


def _bowl(params, number: int) -> float:
    """``_bowl_true`` plus noise keyed by the trial number."""
    return _bowl_true(params) + 0.05 * float(np.random.default_rng(10_000 + number).normal())


def _ratio_objective(trial):
    return _bowl({k: trial.suggest_float(k, d.low, d.high) for k, d in RATIOS.items()}, trial.number)


def test_beats_random_search_on_a_noisy_smooth_function():
    gp, rnd = [], []
    for seed in (0, 1, 2):
        for sampler, out in (
            (_fast(seed=seed), gp),
            (optuna.samplers.RandomSampler(seed=seed), rnd),
        ):
            study = optuna.create_study(direction="maximize", sampler=sampler)
            study.optimize(_ratio_objective, n_trials=18)
            out.append(_bowl_true(study.best_trial.params))  # noise-free
    assert np.mean(gp) > np.mean(rnd) + 0.3, (gp, rnd)
    assert min(gp) > -0.3, gp  # within about 0.5 of the optimum on every seed


@pytest.mark.parametrize(
    "space, scale",
    [
        # 11 x 11 lattice: the acquisition is evaluated on every point
        ({"a": IntDistribution(0, 10), "b": IntDistribution(0, 10)}, 1.0),
        # 31 values x a float: BoTorch's mixed alternating search (a relaxed, then on the lattice)
        ({"a": IntDistribution(0, 30), "b": FloatDistribution(0.0, 10.0)}, 3.0),
    ],
    ids=["lattice", "mixed"],
)
def test_integer_ratios_are_optimised_as_integers(space, scale):
    def true_value(a, b):
        return -(((a - 7) / scale) ** 2) - (b - 2) ** 2  # the optimum: a = 7, b = 2

    def objective(trial):
        a = trial.suggest_int("a", space["a"].low, space["a"].high)
        suggest = trial.suggest_int if isinstance(space["b"], IntDistribution) else trial.suggest_float
        b = suggest("b", space["b"].low, space["b"].high)
        return true_value(a, b) + 0.1 * np.random.default_rng(trial.number).normal()

    study = optuna.create_study(direction="maximize", sampler=_fast(seed=1))
    study.optimize(objective, n_trials=18)
    for t in study.trials:
        assert type(t.params["a"]) is int and space["a"]._contains(t.params["a"])
        assert space["b"]._contains(space["b"].to_internal_repr(t.params["b"]))
    after = [(t.params["a"], t.params["b"]) for t in study.trials[8:]]
    near = [true_value(a, b) >= -2 for a, b in after]  # ~7% of the space
    assert sum(near) >= len(after) / 2, after  # seeds 0-5 here: 7 to 10 of 10
    assert abs(study.best_params["a"] - 7) <= (0 if scale == 1 else 1)


def test_log_scale_parameters_are_searched_on_the_log_scale():
    def objective(trial):
        lr = trial.suggest_float("lr", 1e-6, 1e-1, log=True)
        k = trial.suggest_int("k", 1, 1000, log=True)
        return -((math.log10(lr) + 5) ** 2) - (math.log10(k) - 1) ** 2  # lr = 1e-5, k = 10

    study = optuna.create_study(direction="maximize", sampler=_fast(seed=0))
    study.optimize(objective, n_trials=16)
    lrs = np.array([t.params["lr"] for t in study.trials])
    ks = np.array([t.params["k"] for t in study.trials])
    assert np.all((1e-6 <= lrs) & (lrs <= 1e-1)) and np.all((1 <= ks) & (ks <= 1000))
    # a search uniform in lr would almost never go below 1e-3; this one homes in on 1e-5
    assert np.median(np.abs(np.log10(lrs[8:]) + 5)) < 0.7, lrs[8:]
    assert np.median(np.abs(np.log10(ks[8:]) - 1)) < 0.7, ks[8:]


def test_minimize_direction():
    study = optuna.create_study(direction="minimize", sampler=_fast(seed=3))
    study.optimize(lambda t: -_ratio_objective(t), n_trials=15)
    assert study.best_value < 1.0  # random search's median best after 15 trials is about 2.5
    last = np.array([[t.params[k] for k in RATIOS] for t in study.trials[-5:]])
    assert np.median(np.linalg.norm(last - OPTIMUM, axis=1)) < 1.5


# -- determinism, resume, parallel workers ------------------------------------------------------
def test_same_seed_same_suggestions():
    runs = []
    for _ in range(2):
        study = optuna.create_study(direction="maximize", sampler=_fast(seed=5, n_startup_trials=3))
        study.optimize(_ratio_objective, n_trials=7)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]
    other = optuna.create_study(direction="maximize", sampler=_fast(seed=6, n_startup_trials=3))
    other.optimize(_ratio_objective, n_trials=7)
    assert [t.params for t in other.trials] != runs[0]


def test_resumed_study_suggests_what_the_original_would(tmp_path):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    study = optuna.create_study(
        study_name="r", storage=url, direction="maximize", sampler=_fast(seed=7, n_startup_trials=3)
    )
    study.optimize(_ratio_objective, n_trials=5)
    shutil.copy(tmp_path / "run.db", tmp_path / "resumed.db")  # the state at the crash
    study.optimize(_ratio_objective, n_trials=2)  # the original keeps going
    original = [t.params for t in study.trials[5:]]

    resumed = optuna.load_study(
        study_name="r",
        storage=f"sqlite:///{tmp_path / 'resumed.db'}",
        sampler=_fast(seed=7, n_startup_trials=3),  # a new sampler, as in a new process
    )
    resumed.optimize(_ratio_objective, n_trials=2)
    assert [t.params for t in resumed.trials[5:]] == original


def _prefilled(n: int = 8, seed: int = 0, **kwargs):
    """A maximised study with ``n`` COMPLETE trials at random ratios."""
    study = optuna.create_study(direction="maximize", sampler=_fast(seed=seed, **kwargs))
    rng = np.random.default_rng(seed)
    for number in range(n):
        params = {k: float(rng.uniform(0, 5)) for k in RATIOS}
        value = _bowl(params, number)
        study.add_trial(create_trial(params=params, distributions=RATIOS, value=value))
    return study


def _ask(study):
    trial = study.ask()
    for k, d in RATIOS.items():
        trial.suggest_float(k, d.low, d.high)
    return trial


def test_running_trials_are_pending_points():
    # without a pending point, trial 9 gets x
    xs = []
    for _ in range(2):
        alone = _prefilled()
        alone.add_trial(create_trial(state=TrialState.FAIL))  # trial 8
        xs.append(_ask(alone).params)
    x = xs[0]
    assert xs[1] == x  # (deterministic)

    # with trial 8 RUNNING at x, trial 9 goes elsewhere
    busy = _prefilled()
    busy.enqueue_trial(x)
    running = _ask(busy)
    assert running.number == 8 and running.params == x
    nxt = _ask(busy)
    assert nxt.number == 9
    distance = np.linalg.norm([nxt.params[k] - x[k] for k in RATIOS])
    assert distance > 0.1, (nxt.params, x)


# -- awkward data -------------------------------------------------------------------------------
def test_constant_values_fall_back_to_sobol_points():
    study = optuna.create_study(sampler=_fast(seed=0, n_startup_trials=2))
    study.optimize(lambda t: 0.0 * _ratio_objective(t), n_trials=8)
    points = {tuple(t.params.values()) for t in study.trials}
    assert len(points) == 8  # Sobol points, all different
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_duplicate_points_and_values():
    study = _prefilled(n=3)
    same = {k: 2.5 for k in RATIOS}
    for value in [1.0, 1.2, 0.8, 1.0, 1.0, 1.1]:
        study.add_trial(create_trial(params=same, distributions=RATIOS, value=value))
    study.optimize(_ratio_objective, n_trials=2)
    only_duplicates = optuna.create_study(sampler=_fast(seed=0))
    for _ in range(6):
        only_duplicates.add_trial(create_trial(params=same, distributions=RATIOS, value=1.0))
    only_duplicates.optimize(_ratio_objective, n_trials=2)
    assert all(t.state == TrialState.COMPLETE for t in study.trials + only_duplicates.trials)


def test_failed_trials_are_ignored():
    sampler = _fast(seed=0)
    study = optuna.create_study(sampler=sampler)

    def failing(trial):
        _ratio_objective(trial)
        return float("nan")  # Optuna marks the trial FAIL

    study.optimize(failing, n_trials=7)
    assert all(t.state == TrialState.FAIL for t in study.trials)
    study.optimize(_ratio_objective, n_trials=7)
    assert all(t.state == TrialState.COMPLETE for t in study.trials[7:])
    cube = UnitCube(RATIOS)
    X, y = _observations(study.trials, cube, minimize=False)
    assert len(y) == 7  # the failed ones do not count


def test_pruned_trials_count_with_their_last_intermediate_value():
    study = optuna.create_study(direction="maximize", sampler=_fast(seed=0, n_startup_trials=3))
    params = {k: 1.0 for k in RATIOS}

    def pruned(values):
        return create_trial(
            params=params,
            distributions=RATIOS,
            state=TrialState.PRUNED,
            intermediate_values=dict(enumerate(values)),
        )

    study.add_trial(create_trial(params=params, distributions=RATIOS, value=0.5))
    study.add_trial(pruned([0.1, 0.3, 0.2]))  # counts as 0.2 (the value at its last step)
    study.add_trial(pruned([]))  # reported nothing: not counted
    study.add_trial(pruned([float("nan")]))  # not finite: not counted
    _, y = _observations(study.trials, UnitCube(RATIOS), minimize=False)
    assert y.tolist() == [0.5, 0.2]
    _, y = _observations(study.trials, UnitCube(RATIOS), minimize=True)
    assert y.tolist() == [-0.5, -0.2]

    def sometimes_pruned(trial):
        value = _ratio_objective(trial)
        trial.report(value - 1.0, step=0)
        if trial.number % 2:
            raise optuna.TrialPruned()
        return value

    study.optimize(sometimes_pruned, n_trials=6)
    assert Counter(t.state for t in study.trials[4:]) == {
        TrialState.COMPLETE: 3,
        TrialState.PRUNED: 3,
    }


def test_gp_failure_falls_back_with_a_warning(monkeypatch, caplog):
    from botorch.exceptions.errors import ModelFittingError
    from linear_operator.utils.errors import NotPSDError

    import auxopt.samplers._gp as gp

    def broken_map(model):
        raise ModelFittingError("the closed-form fit failed")

    def broken_fit(mll, **kwargs):
        raise NotPSDError("Matrix not positive definite after repeatedly adding jitter")

    # both fits fail, on demand: the closed-form one, then BoTorch's it falls back to
    monkeypatch.setattr(gp, "_fit_map", broken_map)
    monkeypatch.setattr(gp, "fit_gpytorch_mll", broken_fit)
    study = _prefilled()
    with caplog.at_level(logging.WARNING, logger="auxopt.samplers._mixing"):
        trial = _ask(study)
    assert "GP step failed" in caplog.text and "NotPSDError" in caplog.text
    assert all(RATIOS[k]._contains(v) for k, v in trial.params.items())


def test_a_failed_closed_form_fit_falls_back_to_fit_gpytorch_mll(monkeypatch):
    from botorch.exceptions.errors import ModelFittingError

    import auxopt.samplers._gp as gp

    calls = []
    fit_gpytorch_mll = gp.fit_gpytorch_mll

    def broken_map(model):
        raise ModelFittingError("the closed-form fit failed")

    def spy(mll, **kwargs):
        calls.append(mll)
        return fit_gpytorch_mll(mll, **kwargs)

    monkeypatch.setattr(gp, "_fit_map", broken_map)
    monkeypatch.setattr(gp, "fit_gpytorch_mll", spy)
    study = _prefilled()
    sobol = study.sampler._sobol_point(len(RATIOS), 8)
    trial = _ask(study)
    assert len(calls) == 1 and not calls[0].training  # fitted, in eval mode
    assert trial.params != UnitCube(RATIOS).sample(sobol)  # the GP's point, not the Sobol fallback


# -- the GP maths against BoTorch's ---------------------------------------------------------------
def _gp_data(n: int = 30, d: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    y = -((X - 0.3) ** 2).sum(-1) + 0.05 * rng.normal(size=n)
    return torch.tensor(X), torch.tensor(y).unsqueeze(-1)


def _mll(model):
    """GPyTorch's ``ExactMarginalLogLikelihood`` of ``model`` and its gradient (raw parameters)."""
    from gpytorch.mlls import ExactMarginalLogLikelihood

    mll = ExactMarginalLogLikelihood(model.likelihood, model).train()
    value = mll(model(*model.train_inputs), model.train_targets)
    params = [p for p in mll.parameters() if p.requires_grad]
    grads = torch.autograd.grad(value, params)
    mll.eval()
    return float(value), torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("n, d", [(12, 2), (40, 5)])
def test_fit_gp_finds_the_optimum_of_fit_gpytorch_mll(n, d):
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from auxopt.samplers._gp import fit_gp

    X, Y = _gp_data(n, d)
    ours = fit_gp(X, Y)
    assert not ours.training
    value, grad = _mll(ours)
    # a maximum of GPyTorch's own objective: no steeper than L-BFGS-B's tolerance in any direction
    # (lengthscales and noise are inside their bounds here)
    assert float(grad.abs().max()) < 1e-3, grad
    reference = fit_gp(X, Y)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        reference.train()
        fit_gpytorch_mll(ExactMarginalLogLikelihood(reference.likelihood, reference))
    assert value >= _mll(reference)[0] - 1e-6
    torch.testing.assert_close(ours.covar_module.lengthscale, reference.covar_module.lengthscale, rtol=2e-2, atol=0)


def test_closed_form_posterior_and_log_ei_are_botorchs():
    from botorch.acquisition.analytic import LogExpectedImprovement

    from auxopt.samplers._gp import ClosedFormLogEI, ClosedFormPosterior, fit_gp

    X, Y = _gp_data(25, 3, seed=1)
    model = fit_gp(X, Y)
    fast = ClosedFormPosterior(model)
    points = torch.cat([torch.rand(6, 4, 3, dtype=torch.float64), X[:8].reshape(2, 4, 3)])
    with torch.no_grad():
        theirs, ours = model.posterior(points), fast.posterior(points)
        torch.testing.assert_close(ours.mean, theirs.mean, rtol=0, atol=1e-10)
        torch.testing.assert_close(
            ours.distribution.covariance_matrix, theirs.distribution.covariance_matrix, rtol=0, atol=1e-10
        )
        torch.testing.assert_close(fast.train_mean, model.posterior(X).mean.squeeze(-1), rtol=0, atol=1e-10)
    best_f = fast.train_mean.max()
    x = torch.cat([torch.rand(20, 1, 3, dtype=torch.float64), X[:3].unsqueeze(1)]).requires_grad_(True)
    values, ref_values = ClosedFormLogEI(fast, best_f)(x), LogExpectedImprovement(model, best_f=best_f)(x)
    (grad,) = torch.autograd.grad(values.sum(), x)
    (ref_grad,) = torch.autograd.grad(ref_values.sum(), x)
    torch.testing.assert_close(values, ref_values, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="q = 1"):
        ClosedFormLogEI(fast, best_f)(torch.rand(2, 2, 3, dtype=torch.float64))


def test_pending_points_are_believed_at_the_posterior_mean_and_move_the_candidate(monkeypatch):
    import auxopt.samplers._gp as gp

    X, Y = _gp_data(20, 3, seed=2)
    cube = UnitCube({f"r{i}": FloatDistribution(0.0, 5.0) for i in range(3)})
    used = []
    optimize_acqf = gp.optimize_acqf

    def spy(acqf, **kwargs):
        used.append(acqf)
        return optimize_acqf(acqf, **kwargs)

    monkeypatch.setattr(gp, "optimize_acqf", spy)
    with gp.seeded_torch(0, torch.device("cpu")):
        alone = gp.logei_candidates(X, Y, None, cube=cube, seed=1, **FAST)
    with gp.seeded_torch(0, torch.device("cpu")):
        busy = gp.logei_candidates(X, Y, alone, cube=cube, seed=1, **FAST)  # a trial runs at `alone`
    free, believer = (acqf.model for acqf in used)
    assert all(isinstance(acqf, gp.ClosedFormLogEI) for acqf in used)
    # the believer: the same mean everywhere, the variance at the pending point near the noise's
    probe = torch.cat([alone, torch.rand(5, 3, dtype=torch.float64)]).unsqueeze(1)
    before, after = free.posterior(probe), believer.posterior(probe)
    torch.testing.assert_close(after.mean, before.mean, rtol=1e-7, atol=1e-9)
    assert float(after.variance[0]) < min(float(before.variance[0]), 2 * float(free._noise))
    assert (after.variance <= before.variance + 1e-12).all()
    assert float(used[1].best_f) == pytest.approx(max(float(used[0].best_f), float(before.mean[0])), abs=1e-12)
    for u in (alone, busy):
        assert u.shape == (1, 3) and torch.isfinite(u).all() and (u >= 0).all() and (u <= 1).all()
    assert float((busy - alone).norm()) > 0.02, (alone, busy)


def test_custom_candidates_func_is_called_and_its_candidate_is_suggested():
    calls = []

    def candidates(train_X, train_Y, pending_X, *, cube, seed):
        calls.append((train_X.shape, train_Y.shape, pending_X, cube.names, seed))
        return torch.full((1, cube.dim), 0.5, dtype=torch.float64)

    study = optuna.create_study(
        direction="maximize", sampler=_fast(seed=0, n_startup_trials=3, candidates_func=candidates)
    )
    study.optimize(_ratio_objective, n_trials=5)
    assert len(calls) == 2  # trials 3 and 4: after the 3 startup points
    (x_shape, y_shape, pending, names, seed), second = calls
    assert x_shape == (3, 3) and y_shape == (3, 1) and pending is None
    assert sorted(names) == sorted(RATIOS) and isinstance(seed, int) and second[0] == (4, 3)
    for t in study.trials[3:]:
        assert t.params == {k: 2.5 for k in RATIOS}  # the middle of [0, 5]: the candidate, decoded
    with pytest.raises(AuxoptError, match="candidates_func"):
        MixingRatioSampler(candidates_func="logEI")


def test_default_candidates_func_is_the_logei_search():
    from auxopt.samplers import logei_candidates

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return logei_candidates(*args, **kwargs)

    def run(candidates_func):
        study = optuna.create_study(
            direction="maximize",
            sampler=_fast(seed=2, n_startup_trials=3, candidates_func=candidates_func),
        )
        study.optimize(_ratio_objective, n_trials=5)
        return [t.params for t in study.trials]

    explicit = {k: FAST[k] for k in ("num_restarts", "raw_samples")}
    assert run(None) == run(lambda *a, **kw: spy(*a, **kw, **explicit))
    assert len(calls) == 2


# -- warm start ---------------------------------------------------------------------------------
def test_warm_start_first_point_is_proportional_to_stage_one_means():
    means = {"ratio_sst2": 0.7, "ratio_trec": 0.4, "ratio_subj": 0.35, "not_in_study": 0.1}
    study = optuna.create_study(sampler=_fast(seed=0, warm_start=means))

    def objective(trial):
        trial.suggest_float("ratio_sst2", 0.0, 5.0)
        trial.suggest_float("ratio_trec", 0.0, 5.0)
        trial.suggest_int("ratio_subj", 0, 10)  # integer ratio: 10 * 0.35 / 0.7 = 5
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)  # not named: sampled as usual
        return 0.0

    study.optimize(objective, n_trials=2)
    first = study.trials[0].params
    assert first["ratio_sst2"] == 5.0  # the largest mean at the top of the range
    assert first["ratio_trec"] == pytest.approx(5.0 * 0.4 / 0.7)
    assert first["ratio_subj"] == 5
    assert study.trials[1].params["ratio_sst2"] != 5.0  # then the Sobol points

    # through sample_relative (a search space known in advance), with a nonzero lower bound
    sampler = _fast(seed=0, warm_start={"a": 2.0, "b": 1.0})
    study = optuna.create_study(sampler=sampler)
    study.add_trial(create_trial(state=TrialState.FAIL))  # failed trials do not use it up
    space = {
        "a": FloatDistribution(1.0, 3.0),
        "b": FloatDistribution(1.0, 3.0),
        "c": RATIOS["ratio_sst2"],
    }
    frozen = study._storage.get_trial(study.ask()._trial_id)
    params = sampler.sample_relative(study, frozen, space)
    assert params["a"] == 3.0 and params["b"] == 2.0  # low + share * (high - low)
    assert 0.0 <= params["c"] <= 5.0  # not named: its Sobol coordinate


@pytest.mark.parametrize(
    "warm_start",
    [
        {"x": -0.1},
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": "0.5"},
        {"x": True},
        {"": 0.5},
        {1: 0.5},
        [("x", 0.5)],
    ],
)
def test_bad_warm_start(warm_start):
    with pytest.raises(AuxoptError, match="warm_start"):
        MixingRatioSampler(warm_start=warm_start)


def test_empty_warm_start_is_no_warm_start():
    assert MixingRatioSampler(warm_start={}).warm_start is None


def test_warm_start_on_a_categorical_parameter():
    study = optuna.create_study(sampler=MixingRatioSampler(warm_start={"task": 0.5}))
    with pytest.raises(AuxoptError, match="task"):
        study.optimize(lambda t: float(len(t.suggest_categorical("task", ["a", "b"]))), 1)


# -- bad input, other studies -------------------------------------------------------------------
def test_bad_input():
    for kwargs in (
        {"n_startup_trials": 0},
        {"n_startup_trials": 1.5},
        {"num_restarts": 0},
        {"seed": -1},
        {"independent_sampler": "random"},
        {"device": "tpu"},
        {"device": "not a device"},
    ):
        with pytest.raises(AuxoptError):
            MixingRatioSampler(**kwargs)
    if not torch.cuda.is_available():
        with pytest.raises(AuxoptError, match="CUDA is not available"):
            MixingRatioSampler(device="cuda")


def test_multi_objective_is_refused():
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=MixingRatioSampler())
    with pytest.raises(AuxoptError, match="one objective"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 0.0), n_trials=1)


def test_categorical_and_conditional_params_go_to_the_independent_sampler():
    class Recording(optuna.samplers.RandomSampler):
        def __init__(self):
            super().__init__(seed=0)
            self.names: list[tuple[int, str]] = []

        def sample_independent(self, study, trial, param_name, param_distribution):
            self.names.append((trial.number, param_name))
            return super().sample_independent(study, trial, param_name, param_distribution)

    independent = Recording()
    study = optuna.create_study(sampler=_fast(seed=0, independent_sampler=independent))

    def objective(trial):
        optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        value = _ratio_objective(trial)
        if optimizer == "sgd":
            value += trial.suggest_float("momentum", 0.0, 0.9)
        return value

    study.enqueue_trial({"optimizer": "adam"})  # so that momentum is conditional from trial 1
    study.enqueue_trial({"optimizer": "sgd"})
    study.optimize(objective, n_trials=8)
    by_trial = {n: {p for m, p in independent.names if m == n} for n in range(8)}
    assert by_trial[0] == set(RATIOS)  # before the first COMPLETE trial: all of them
    assert by_trial[1] == {"momentum"}  # (the optimizer of trials 0 and 1 was enqueued)
    for t in study.trials[2:]:
        expected = {"optimizer"} | ({"momentum"} if t.params["optimizer"] == "sgd" else set())
        assert by_trial[t.number] == expected


def test_import_stays_light():
    code = "import sys, auxopt.samplers; print(sorted(m for m in ('optuna', 'botorch', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device():
    sampler = _fast(seed=0, device="cuda")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_ratio_objective, n_trials=8)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_default_startup_is_2d_plus_1_sobol_points():
    """With two ratios the default startup is 5 Sobol points: the same trials as an explicit
    ``n_startup_trials=5``, and different from ``n_startup_trials=3`` once the GP starts."""

    def run(**kw):
        study = optuna.create_study(direction="maximize", sampler=_fast(seed=1, **kw))
        study.optimize(
            lambda t: -((t.suggest_float("a", 0, 5) - 2) ** 2) - (t.suggest_float("b", 0, 5) - 1) ** 2,
            n_trials=6,
        )
        return [t.params for t in study.trials]

    default = run()
    assert default == run(n_startup_trials=5)
    assert default[3:5] != run(n_startup_trials=3)[3:5]
