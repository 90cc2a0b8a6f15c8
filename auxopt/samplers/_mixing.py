"""``MixingRatioSampler``: AutoSeM stage 2 (mixing ratios) as an Optuna sampler.

Stage 1 (:class:`~auxopt.samplers.ThompsonTaskSampler`) picks the auxiliary tasks; stage 2 searches
the ratios in which the primary and the chosen auxiliary tasks are mixed, a handful of numbers
(``trial.suggest_float("ratio_sst2", 0, 5)``, or integer ratios ``trial.suggest_int(...)`` as in
AutoSeM), by Gaussian-process Bayesian optimisation on BoTorch/GPyTorch.

This module is the Optuna side only: the search space, which point a trial gets (warm start, Sobol
startup, the GP step or its fallback) and the seeds. The pieces it puts together live apart:

* :mod:`auxopt.samplers._cube`: parameters ↔ unit cube (:class:`~auxopt.samplers.UnitCube`);
* :mod:`auxopt.samplers._observations`: which trials count as data (``mixing_observations``);
* :mod:`auxopt.samplers._gp`: the GP fit and the default candidates function (log expected
  improvement maximised on the cube; jointly with the RUNNING trials of other workers as pending
  points when there are some), swappable with ``candidates_func``.

Nothing lives only in the sampler: each suggestion is rebuilt from the trials in storage and every
random number it draws is keyed by ``(seed, trial number)``, so any worker, or a study resumed after a
crash, suggests the same point for the same trial.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import intersection_search_space
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from auxopt._optuna import trials_of
from auxopt.errors import AuxoptError
from auxopt.samplers._cube import MAX_LATTICE_VALUES, UnitCube
from auxopt.samplers._gp import (
    MAX_ENUMERATED_POINTS,
    MAX_LOCAL_SEARCH_VALUES,
    NUMERICAL_ERRORS,
    logei_candidates,
    seeded_torch,
)
from auxopt.samplers._observations import observations

if TYPE_CHECKING:
    from optuna.study import Study

__all__ = [
    "MAX_ENUMERATED_POINTS",
    "MAX_LATTICE_VALUES",
    "MAX_LOCAL_SEARCH_VALUES",
    "CandidatesFunc",
    "MixingRatioSampler",
]

_logger = logging.getLogger(__name__)

#: ``candidates_func(train_X, train_Y, pending_X, *, cube, seed) -> candidate``, see
#: :class:`MixingRatioSampler`.
CandidatesFunc = Callable[..., Any]


class MixingRatioSampler(BaseSampler):
    """Search mixing ratios (any float / int parameters) by GP Bayesian optimisation (AutoSeM stage 2).

    **Search space.** The relative search space is the intersection of the float and int
    distributions of the COMPLETE trials (single-valued ones left out); those parameters are
    proposed jointly. Categorical and conditional parameters, and every parameter of the trials
    before the first COMPLETE one, go to ``independent_sampler``.

    **Data.** COMPLETE trials count with their value; PRUNED trials with the last intermediate
    value they reported (the one at the largest step), or not at all if they reported none; FAIL
    trials are ignored, as are non-finite values and trials whose parameters are missing or outside
    the current bounds. Values are negated for a minimised study (the GP maximises).

    **Startup.** While fewer than ``n_startup_trials`` trials count as data (default
    ``min(10, 2 d + 1)`` for ``d`` searched parameters: with fewer points a GP over few ratios
    overfits its first fit and spends trials at the corners), points come from a
    scrambled Sobol sequence seeded by ``seed``: trial ``k`` gets point ``k`` of the sequence, so
    parallel workers and a resumed study walk the same low-discrepancy sequence (discrete parameters
    take every value equally often, see :meth:`UnitCube.sample`). With
    ``warm_start`` (stage 1's posterior means ``{param name: mean}``, e.g.
    ``{"ratio_sst2": 0.7, "ratio_trec": 0.4}``), the trial that is the study's first (every other
    trial FAIL or WAITING) instead gets, for each named parameter with bounds ``[low, high]``::

        x = low + (mean / max(all means)) * (high - low)

    on the parameter's value scale (also for ``log=True``), rounded to its step (nearest int for
    ints); ``x = low`` when every mean is 0. For ratios in ``[0, 5]`` that is ``{"ratio_sst2": 5.0,
    "ratio_trec": 2.857}``: proportional to the means, the largest at the top of its range. Named
    parameters that are not in the study are ignored; unnamed ones take the trial's Sobol point.

    **GP step.** ``SingleTaskGP`` (Matérn-5/2 ARD, float64, on ``device``) on the unit-cube inputs
    of :class:`UnitCube` and standardised outcomes, with the hyperparameters ``fit_gpytorch_mll``
    looks for (the maximum of the marginal likelihood times BoTorch's priors), found by L-BFGS-B
    with the gradient in closed form (:func:`~auxopt.samplers._gp.fit_gp`). The next point maximises
    log expected improvement over the best posterior mean at the observed points (a noise-aware
    incumbent): analytic ``LogExpectedImprovement`` (evaluated in closed form,
    :class:`~auxopt.samplers._closed_form.ClosedFormLogEI`). The RUNNING trials of other workers
    that already hold every parameter of the space are pending points, believed at the posterior
    mean there (the kriging believer: the variance around them shrinks), so that parallel workers
    spread out (a trial left RUNNING by a crashed worker stays pending until it is failed,
    e.g. by Optuna's heartbeat). Integer and stepped parameters are optimised on their
    lattice, not rounded afterwards: a fully discrete space with at most
    :data:`MAX_ENUMERATED_POINTS` lattice points is searched exhaustively (the acquisition is
    evaluated at every point, ``optimize_acqf_discrete``); otherwise
    ``optimize_acqf_mixed_alternating`` alternates continuous L-BFGS steps with discrete
    neighbourhood steps, starting from the rounded optimum of the continuous relaxation. (A discrete
    parameter with more than :data:`MAX_LOCAL_SEARCH_VALUES` values is relaxed to a continuous one
    and rounded to its lattice; one with more than :data:`MAX_LATTICE_VALUES` is treated as
    continuous and rounded to its step.) A continuous space uses ``optimize_acqf`` (``num_restarts``
    starts from the best of ``raw_samples`` random points, at most
    :data:`~auxopt.samplers._gp.ACQF_MAXITER` L-BFGS-B iterations each).

    **Candidates function.** The GP step above is the default ``candidates_func``,
    :func:`auxopt.samplers.logei_candidates`; like optuna-integration's ``BoTorchSampler``,
    another model or acquisition can take its place. The sampler calls::

        candidates_func(train_X, train_Y, pending_X, cube=cube, seed=seed)

    with ``train_X`` ``(n, d)`` the unit-cube points of the trials that count (float64 tensors on
    ``device``), ``train_Y`` ``(n, 1)`` their values to *maximise* (negated for a minimised study),
    ``pending_X`` ``(m, d)`` the running trials' points or ``None``, ``cube`` the
    :class:`UnitCube` of the search space (its :attr:`~UnitCube.discrete` lattice) and ``seed`` an
    integer keyed by ``(seed, trial number)`` for any quasi-MC sampler. It returns one point on the
    unit cube, a tensor or array of shape ``(d,)`` or ``(1, d)``, which the sampler decodes
    (discrete parameters to their nearest lattice value). It runs in the same setting as the
    default: torch on one CPU thread, its global RNG seeded from ``(seed, trial number)`` and
    restored afterwards. The startup, warm start and fallbacks stay the sampler's: a numerical error
    it raises, or a point that is not finite, gives the trial its Sobol point.

    **Fallbacks.** When every value that counts is the same (nothing to model), or fitting or
    optimising raises a numerical error (a non-PSD matrix, a fit that fails both the closed-form
    L-BFGS-B and then ``fit_gpytorch_mll``), the trial gets its Sobol point instead; the error is
    logged as a warning.

    **Determinism.** The Sobol sequence is seeded by ``seed`` alone; the GP fit is deterministic
    (its fallback's restarts, if it needs them, use torch's RNG), and the acquisition's quasi-MC
    base samples and its optimiser's starts use torch RNG seeded from ``(seed, trial number)`` (the
    global RNG is restored afterwards), and the GP step runs torch on one
    CPU thread (faster for these small matrices, and its sums do not depend on the process's thread
    count). Two samplers with the same seed on the same storage suggest the same point for the same
    trial. Steps of concurrent threads (``n_jobs > 1``) take turns.

    Args:
        n_startup_trials: trials that count as data before the GP takes over (>= 1; ``None``:
            ``min(10, 2 d + 1)`` for ``d`` parameters in the relative search space).
        warm_start: stage-1 posterior means per parameter name (finite, >= 0), see above; ``None``
            or an empty mapping for none.
        seed: seeds the Sobol sequence, the GP step and the default independent sampler.
        independent_sampler: samples everything outside the relative search space (default
            ``RandomSampler(seed=seed)``).
        device: ``"cpu"`` (default) or ``"cuda"`` / ``"cuda:N"`` for the GP.
        num_restarts: the acquisition optimiser's starts (modest, so that a suggestion stays fast).
        raw_samples: the random points the starts are chosen from.
        candidates_func: the function that proposes the next point from the data, see above
            (``None``: :func:`~auxopt.samplers.logei_candidates` with ``num_restarts`` and
            ``raw_samples``, which a custom function does not receive).
    """

    def __init__(
        self,
        *,
        n_startup_trials: int | None = None,
        warm_start: Mapping[str, float] | None = None,
        seed: int | None = None,
        independent_sampler: BaseSampler | None = None,
        device: str | torch.device = "cpu",
        num_restarts: int = 4,
        raw_samples: int = 128,
        candidates_func: CandidatesFunc | None = None,
    ):
        for name, value, minimum in (
            ("n_startup_trials", 1 if n_startup_trials is None else n_startup_trials, 1),
            ("num_restarts", num_restarts, 1),
            ("raw_samples", raw_samples, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise AuxoptError(f"{name} must be a whole number >= {minimum}, not {value!r}")
        if independent_sampler is not None and not isinstance(independent_sampler, BaseSampler):
            raise AuxoptError(f"independent_sampler must be an Optuna sampler, not {type(independent_sampler)}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise AuxoptError(f"seed must be a whole number >= 0 or None, not {seed!r}")
        self._n_startup_trials = None if n_startup_trials is None else int(n_startup_trials)
        self._warm_start = _check_warm_start(warm_start)
        self._device = _check_device(device)
        self._num_restarts = int(num_restarts)
        self._raw_samples = int(raw_samples)
        if candidates_func is not None and not callable(candidates_func):
            raise AuxoptError(
                "candidates_func must be a function (train_X, train_Y, pending_X, *, cube, seed) "
                f"-> point, not {candidates_func!r}"
            )
        self._candidates_func: CandidatesFunc = candidates_func or functools.partial(
            logei_candidates,
            num_restarts=self._num_restarts,
            raw_samples=self._raw_samples,
        )
        self._seed_given = seed is not None
        self._seed = int(seed) if seed is not None else _fresh_seed()
        self._independent_sampler = independent_sampler or optuna.samplers.RandomSampler(seed=seed)
        self._lock = threading.RLock()  # the GP step forks torch's global RNG: one at a time

    @property
    def warm_start(self) -> dict[str, float] | None:
        return None if self._warm_start is None else dict(self._warm_start)

    # -- BaseSampler ------------------------------------------------------------------------------
    def reseed_rng(self) -> None:
        """Reseed the independent sampler; the GP step and the Sobol sequence stay keyed by the
        seed when one was given (they already differ from trial to trial), else get a fresh one."""
        self._independent_sampler.reseed_rng()
        if not self._seed_given:
            self._seed = _fresh_seed()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        _check_single_objective(study)
        trials = trials_of(study, states=(TrialState.COMPLETE,))
        return {
            name: dist
            for name, dist in intersection_search_space(trials).items()
            if isinstance(dist, (FloatDistribution, IntDistribution)) and not dist.single()
        }

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Propose the float and int parameters of ``search_space`` jointly (see the class
        docstring); single-valued ones take their only value, and any other distribution (a
        categorical one) is drawn by the independent sampler."""
        if not search_space:
            return {}
        _check_single_objective(study)
        numeric: dict[str, BaseDistribution] = {}
        params: dict[str, Any] = {}
        for name, dist in search_space.items():
            if isinstance(dist, (FloatDistribution, IntDistribution)):
                if dist.single():
                    params[name] = int(dist.low) if isinstance(dist, IntDistribution) else dist.low
                else:
                    numeric[name] = dist
            else:
                params[name] = self._independent_sampler.sample_independent(study, trial, name, dist)
        if numeric:
            params.update(self._propose(study, trial, UnitCube(numeric)))
        return params

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _check_single_objective(study)
        if self._warm_start is not None and param_name in self._warm_start:
            if not isinstance(param_distribution, (FloatDistribution, IntDistribution)):
                raise AuxoptError(
                    f"warm_start names {param_name!r}, but it is suggested as "
                    f"{type(param_distribution).__name__}; warm-start only float or int ratios"
                )
            trials = trials_of(study)
            if _is_first(trials, trial):
                return self._warm_value(param_name, param_distribution)
        return self._independent_sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        _check_single_objective(study)
        self._independent_sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent_sampler.after_trial(study, trial, state, values)

    # -- internals --------------------------------------------------------------------------------
    def _propose(self, study: Study, trial: FrozenTrial, cube: UnitCube) -> dict[str, Any]:
        """The joint point for ``trial``: warm start, Sobol startup, or the GP step (or its
        Sobol fallback), in that order of precedence."""
        trials = trials_of(study)
        sobol = self._sobol_point(cube.dim, trial.number)
        if self._warm_start is not None and _is_first(trials, trial):
            params = cube.sample(sobol)
            for name in cube.names:
                if name in self._warm_start:
                    params[name] = self._warm_value(name, cube.distribution(name))
            return params
        minimize = study.direction == StudyDirection.MINIMIZE
        X, y = observations(trials, cube, minimize)
        startup = self._n_startup_trials
        if startup is None:
            startup = min(10, 2 * cube.dim + 1)
        if len(y) < startup:
            return cube.sample(sobol)
        if len(y) < 2 or np.ptp(y) == 0.0:
            _logger.info(
                "MixingRatioSampler: all %d values are equal, nothing to model; trial %d takes its Sobol point",
                len(y),
                trial.number,
            )
            return cube.sample(sobol)
        pending = [
            u
            for t in trials
            if t.state == TrialState.RUNNING and t.number != trial.number
            for u in [cube.encode(t.params)]
            if u is not None
        ]
        try:
            u = self._gp_candidate(cube, X, y, np.array(pending).reshape(-1, cube.dim), trial.number)
        except NUMERICAL_ERRORS as e:
            _logger.warning(
                "MixingRatioSampler: the GP step failed for trial %d (%s: %s); using its Sobol point instead",
                trial.number,
                type(e).__name__,
                e,
            )
            return cube.sample(sobol)
        return cube.decode(u)

    def _gp_candidate(
        self, cube: UnitCube, X: np.ndarray, y: np.ndarray, pending: np.ndarray, number: int
    ) -> np.ndarray:
        """The next point on the unit cube from the candidates function, given the data ``(X, y)``
        (to maximise) and the pending points, in a seeded single-threaded torch."""
        tkw: dict[str, Any] = {"dtype": torch.float64, "device": self._device}
        with self._lock, seeded_torch(self._trial_seed(number, "gp"), self._device):
            train_X = torch.as_tensor(X, **tkw)
            train_Y = torch.as_tensor(y, **tkw).unsqueeze(-1)
            pending_X = torch.as_tensor(pending, **tkw) if len(pending) else None
            candidate = self._candidates_func(
                train_X, train_Y, pending_X, cube=cube, seed=self._trial_seed(number, "qmc")
            )
        if isinstance(candidate, torch.Tensor):
            candidate = candidate.detach().to("cpu", torch.float64).numpy()
        u = np.asarray(candidate, dtype=np.float64).reshape(-1)
        if u.shape != (cube.dim,) or not np.all(np.isfinite(u)):
            raise FloatingPointError(f"the acquisition optimiser returned {u}")
        return u

    def _sobol_point(self, dim: int, number: int) -> np.ndarray:
        """Point ``number`` of the scrambled Sobol sequence seeded by the sampler's seed."""
        engine = torch.quasirandom.SobolEngine(dimension=dim, scramble=True, seed=self._trial_seed(-1, "sobol"))
        if number > 0:
            engine.fast_forward(number)
        return engine.draw(1, dtype=torch.float64).numpy().reshape(-1)

    def _warm_value(self, name: str, dist: FloatDistribution | IntDistribution) -> int | float:
        assert self._warm_start is not None
        top = max(self._warm_start.values())
        share = self._warm_start[name] / top if top > 0 else 0.0
        if dist.single():
            return int(dist.low) if isinstance(dist, IntDistribution) else dist.low
        return UnitCube({name: dist}).snap(name, dist.low + share * (dist.high - dist.low))

    def _trial_seed(self, number: int, purpose: str) -> int:
        key = zlib.crc32(purpose.encode("utf-8"))
        seq = np.random.SeedSequence([self._seed, int(number) + 1, key])
        return int(seq.generate_state(1, dtype=np.uint64)[0] % (2**63))


# -- helpers ----------------------------------------------------------------------------------------
def _is_first(trials: Sequence[FrozenTrial], trial: FrozenTrial) -> bool:
    """No other trial has run or is running (all others FAIL or WAITING)."""
    return all(t.number == trial.number or t.state in (TrialState.FAIL, TrialState.WAITING) for t in trials)


def _check_single_objective(study: Study) -> None:
    if len(study.directions) != 1:
        raise AuxoptError(
            f"MixingRatioSampler optimises one objective, but this study has "
            f"{len(study.directions)}; create the study with a single direction (combine the "
            "metrics into one value) or use a multi-objective sampler such as NSGAIISampler"
        )


def _check_warm_start(warm_start: Mapping[str, float] | None) -> dict[str, float] | None:
    if warm_start is None:
        return None
    if not isinstance(warm_start, Mapping):
        raise AuxoptError(
            "warm_start must map parameter names to stage-1 posterior means, e.g. "
            f'{{"ratio_sst2": 0.7}}, not {type(warm_start).__name__}'
        )
    if not warm_start:
        return None  # nothing to start from (e.g. stage 1 kept no task): no warm start
    out: dict[str, float] = {}
    for name, mean in warm_start.items():
        if not isinstance(name, str) or not name:
            raise AuxoptError(f"warm_start keys must be parameter names, not {name!r}")
        if (
            isinstance(mean, bool)
            or not isinstance(mean, (int, float, np.integer, np.floating))
            or not math.isfinite(float(mean))
            or mean < 0
        ):
            raise AuxoptError(f"warm_start[{name!r}] must be a finite number >= 0 (a posterior mean), not {mean!r}")
        out[name] = float(mean)
    return out


def _check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise AuxoptError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), not {device!r}") from e
    if dev.type not in ("cpu", "cuda"):
        raise AuxoptError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), not {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise AuxoptError(f"device={device!r} was asked for, but CUDA is not available here; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise AuxoptError(f"device={device!r}: there are only {torch.cuda.device_count()} CUDA devices")
    return dev


def _fresh_seed() -> int:
    return int(np.random.SeedSequence().entropy % (2**63))
