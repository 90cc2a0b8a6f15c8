"""``MixingRatioSampler``: AutoSeM stage 2 (mixing ratios) as an Optuna sampler.

Stage 1 (:class:`~auxopt.samplers.ThompsonTaskSampler`) picks the auxiliary tasks; stage 2 searches
the ratios in which the primary and the chosen auxiliary tasks are mixed, a handful of numbers
(``trial.suggest_float("ratio_sst2", 0, 5)``, or integer ratios ``trial.suggest_int(...)`` as in
AutoSeM), by Gaussian-process Bayesian optimisation on BoTorch/GPyTorch:

* inputs: every float and int parameter mapped onto ``[0, 1]`` by its distribution's bounds (on the
  log scale for ``log=True``), see :class:`UnitCube`; outcomes standardised;
* model: ``SingleTaskGP`` with a Matérn-5/2 ARD kernel (BoTorch's dimension-scaled log-normal
  lengthscale prior) and a learned homoscedastic noise, fitted in float64 by maximising the marginal
  likelihood (``fit_gpytorch_mll``);
* acquisition: ``qLogNoisyExpectedImprovement`` (noise-aware: the incumbent is the model's, not the
  best noisy observation), with the RUNNING trials of other workers as pending points;
* search: ``optimize_acqf`` for continuous spaces; integer and stepped parameters are searched on
  their lattice (exhaustively when it is small), see :class:`MixingRatioSampler`.

Nothing lives only in the sampler: each suggestion is rebuilt from the trials in storage and every
random number it draws is keyed by ``(seed, trial number)``, so any worker, or a study resumed after a
crash, suggests the same point for the same trial.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.exceptions.errors import BotorchError, ModelFittingError
from botorch.exceptions.warnings import BotorchWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from botorch.optim import optimize_acqf, optimize_acqf_discrete
from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
from botorch.sampling import SobolQMCNormalSampler
from gpytorch.mlls import ExactMarginalLogLikelihood
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import intersection_search_space
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from auxopt.errors import AuxoptError

if TYPE_CHECKING:
    from optuna.study import Study

__all__ = ["MixingRatioSampler", "UnitCube"]

_logger = logging.getLogger(__name__)

#: What the GP step may raise on awkward data (a non-PSD matrix, a failed fit, NaNs); the trial then
#: takes its Sobol point. (linear_operator's NotPSDError and NanError are RuntimeErrors.)
_NUMERICAL_ERRORS = (BotorchError, ModelFittingError, RuntimeError, FloatingPointError)

#: When every parameter is discrete and the lattice has at most this many points, the acquisition
#: function is evaluated on all of them (an exact discrete search).
MAX_ENUMERATED_POINTS = 2048
#: In a mixed or larger space, a discrete parameter with at most this many values is searched by
#: BoTorch's discrete neighbourhood steps; one with more is relaxed to a continuous one and rounded
#: to the lattice (BoTorch's ``max_discrete_values``).
MAX_LOCAL_SEARCH_VALUES = 100
#: A discrete parameter with more values than this is searched as a continuous one and rounded.
MAX_LATTICE_VALUES = 10_000


def fit_gp(train_X: torch.Tensor, train_Y: torch.Tensor) -> SingleTaskGP:
    """The sampler's surrogate: ``SingleTaskGP`` (Matérn-5/2 ARD with BoTorch's dimension-scaled
    prior, standardised outcomes) on unit-cube inputs ``(n, d)`` and outcomes ``(n, 1)``, fitted by
    marginal likelihood. Also used by :mod:`auxopt.plots` to draw the landscape the sampler sees."""
    model = SingleTaskGP(
        train_X,
        train_Y,
        covar_module=get_covar_module_with_dim_scaled_prior(
            ard_num_dims=train_X.shape[-1], use_rbf_kernel=False
        ),
        outcome_transform=Standardize(m=1),
    )
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


# -- the search space on the unit cube ------------------------------------------------------------
@dataclass(frozen=True)
class _Dim:
    name: str
    distribution: FloatDistribution | IntDistribution
    g_low: float  # the bounds on the modelled scale (log for log=True)
    g_high: float
    grid: tuple[int | float, ...] | None  # the allowed values of a discrete parameter, ascending
    grid_u: tuple[float, ...] | None  # the same on the unit interval

    @property
    def log(self) -> bool:
        return bool(self.distribution.log)

    @property
    def is_int(self) -> bool:
        return isinstance(self.distribution, IntDistribution)

    @property
    def step(self) -> float | None:
        return self.distribution.step

    def g(self, x: float) -> float:
        return math.log(x) if self.log else float(x)

    def g_inv(self, z: float) -> float:
        return math.exp(z) if self.log else z

    def to_unit(self, x: float) -> float:
        return (self.g(x) - self.g_low) / (self.g_high - self.g_low)

    def snap(self, x: float) -> int | float:
        """``x`` as a value of the parameter: clipped to the bounds, rounded to the step."""
        d = self.distribution
        x = min(max(float(x), d.low), d.high)
        if self.step is not None:
            k = round((x - d.low) / self.step)
            x = min(max(d.low + k * self.step, d.low), d.high)
        return int(round(x)) if self.is_int else float(x)


class UnitCube:
    """The map between a numerical search space and the unit cube ``[0, 1]^d`` the GP works on.

    Parameter ``i`` (in the search space's order) is coordinate ``i``:
    ``u = (g(x) - g(low)) / (g(high) - g(low))`` with ``g = log`` for ``log=True`` distributions and
    the identity otherwise, so the GP models ``log x`` for log-scale parameters. Integer and stepped
    float parameters are *discrete*: their allowed values ``low, low + step, ..., high`` map to a
    lattice of points in ``[0, 1]`` (uneven for ``log=True`` ints), listed in :attr:`discrete`.

    Args:
        search_space: float and int distributions with ``low < high``.
    """

    def __init__(self, search_space: Mapping[str, BaseDistribution]):
        dims = []
        for name, dist in search_space.items():
            if not isinstance(dist, (FloatDistribution, IntDistribution)) or dist.single():
                raise AuxoptError(
                    f"UnitCube needs float or int distributions with low < high; {name!r} is {dist}"
                )
            g_low = math.log(dist.low) if dist.log else float(dist.low)
            g_high = math.log(dist.high) if dist.log else float(dist.high)
            step = dist.step  # always set for ints; None for continuous floats
            grid: tuple[int | float, ...] | None = None
            grid_u: tuple[float, ...] | None = None
            if step is not None:
                n = int(round((dist.high - dist.low) / step)) + 1
                if n <= MAX_LATTICE_VALUES:
                    if isinstance(dist, IntDistribution):
                        grid = tuple(range(int(dist.low), int(dist.high) + 1, int(step)))
                    else:
                        grid = tuple(min(dist.low + k * step, dist.high) for k in range(n))
                    z = [math.log(v) if dist.log else float(v) for v in grid]
                    inner = [(v - g_low) / (g_high - g_low) for v in z[1:-1]]
                    grid_u = (0.0, *inner, 1.0)  # exact ends, as BoTorch's checks want
            dims.append(_Dim(name, dist, g_low, g_high, grid, grid_u))
        self._dims = tuple(dims)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self._dims)

    def distribution(self, name: str) -> FloatDistribution | IntDistribution:
        return next(d.distribution for d in self._dims if d.name == name)

    @property
    def dim(self) -> int:
        return len(self._dims)

    @property
    def discrete(self) -> dict[int, list[float]]:
        """``{coordinate: [allowed values on the unit interval]}`` for the discrete parameters with
        at most :data:`MAX_LATTICE_VALUES` values (larger ones are searched continuously)."""
        return {i: list(d.grid_u) for i, d in enumerate(self._dims) if d.grid_u is not None}

    def lattice_size(self) -> int | None:
        """The number of points of the full lattice, or ``None`` if a parameter is continuous."""
        if any(d.grid_u is None for d in self._dims):
            return None
        return math.prod(len(d.grid_u) for d in self._dims)  # type: ignore[arg-type]

    def lattice(self) -> np.ndarray:
        """Every point of the lattice, ``(lattice_size(), d)``; only for fully discrete spaces."""
        grids = [d.grid_u for d in self._dims]
        if any(g is None for g in grids):
            raise ValueError("lattice() needs every parameter to be discrete")
        return np.array(list(itertools.product(*grids)), dtype=np.float64).reshape(-1, self.dim)

    def encode(self, params: Mapping[str, Any]) -> np.ndarray | None:
        """The point of ``params`` on the unit cube, or ``None`` if a parameter is missing, not a
        number, or outside its current bounds (a trial from before the range changed)."""
        u = np.empty(self.dim)
        for i, d in enumerate(self._dims):
            x = params.get(d.name)
            if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
                return None
            x = float(x)
            if not (d.distribution.low <= x <= d.distribution.high):
                return None
            u[i] = d.to_unit(x)
        return u

    def decode(self, u: Sequence[float] | np.ndarray) -> dict[str, int | float]:
        """The parameters at ``u``: discrete parameters take the lattice value nearest to ``u`` (on
        the modelled scale); ints come back as ``int``, floats as ``float``, all within bounds."""
        out: dict[str, int | float] = {}
        for d, ui in zip(self._dims, np.asarray(u, dtype=np.float64), strict=True):
            ui = min(max(float(ui), 0.0), 1.0)
            if d.grid_u is not None:
                k = int(np.argmin(np.abs(np.asarray(d.grid_u) - ui)))
                out[d.name] = d.snap(d.grid[k])  # type: ignore[index]
            else:
                out[d.name] = d.snap(d.g_inv(d.g_low + ui * (d.g_high - d.g_low)))
        return out

    def sample(self, u: Sequence[float] | np.ndarray) -> dict[str, int | float]:
        """The parameters for a uniform point ``u`` (a Sobol point): like :meth:`decode`, but a
        discrete parameter's range is widened by half a step at each end before rounding, so that
        its end values are as likely as the inner ones (uniform over ints, log-uniform for log ints)."""
        out: dict[str, int | float] = {}
        for d, ui in zip(self._dims, np.asarray(u, dtype=np.float64), strict=True):
            ui = min(max(float(ui), 0.0), 1.0)
            if d.step is None:
                out[d.name] = d.snap(d.g_inv(d.g_low + ui * (d.g_high - d.g_low)))
                continue
            lo, hi = d.distribution.low - d.step / 2, d.distribution.high + d.step / 2
            lo = max(lo, d.distribution.low / 2) if d.log else lo  # stays > 0 for logs
            z_lo, z_hi = d.g(lo), d.g(hi)
            out[d.name] = d.snap(d.g_inv(z_lo + ui * (z_hi - z_lo)))
        return out


# -- the sampler ----------------------------------------------------------------------------------
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
    of :class:`UnitCube` and standardised outcomes, fitted with ``fit_gpytorch_mll``; the next point
    maximises ``qLogNoisyExpectedImprovement`` (``mc_samples`` quasi-MC samples), with the RUNNING
    trials of other workers that already hold every parameter of the space as ``X_pending`` so that
    parallel workers spread out (a trial left RUNNING by a crashed worker stays pending until it is
    failed, e.g. by Optuna's heartbeat). Integer and stepped parameters are optimised on their
    lattice, not rounded afterwards: a fully discrete space with at most
    :data:`MAX_ENUMERATED_POINTS` lattice points is searched exhaustively (the acquisition is
    evaluated at every point, ``optimize_acqf_discrete``); otherwise
    ``optimize_acqf_mixed_alternating`` alternates continuous L-BFGS steps with discrete
    neighbourhood steps, starting from the rounded optimum of the continuous relaxation. (A discrete
    parameter with more than :data:`MAX_LOCAL_SEARCH_VALUES` values is relaxed to a continuous one
    and rounded to its lattice; one with more than :data:`MAX_LATTICE_VALUES` is treated as
    continuous and rounded to its step.) A continuous space uses ``optimize_acqf``.

    **Fallbacks.** When every value that counts is the same (nothing to model), or fitting or
    optimising raises a numerical error (a non-PSD matrix, a failed fit), the trial gets its Sobol
    point instead; the error is logged as a warning.

    **Determinism.** The Sobol sequence is seeded by ``seed`` alone; the GP fit's restarts, the
    acquisition's quasi-MC base samples and its optimiser's starts use torch RNG seeded from
    ``(seed, trial number)`` (the global RNG is restored afterwards), and the GP step runs torch on one
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
        num_restarts, raw_samples: the acquisition optimiser's starts and the random points they
            are chosen from (modest, so that a suggestion stays fast).
        mc_samples: quasi-MC samples of the acquisition function.
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
        mc_samples: int = 128,
    ):
        for name, value, minimum in (
            ("n_startup_trials", 1 if n_startup_trials is None else n_startup_trials, 1),
            ("num_restarts", num_restarts, 1),
            ("raw_samples", raw_samples, 1),
            ("mc_samples", mc_samples, 1),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < minimum
            ):
                raise AuxoptError(f"{name} must be a whole number >= {minimum}, not {value!r}")
        if independent_sampler is not None and not isinstance(independent_sampler, BaseSampler):
            raise AuxoptError(
                f"independent_sampler must be an Optuna sampler, not {type(independent_sampler)}"
            )
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
        ):
            raise AuxoptError(f"seed must be a whole number >= 0 or None, not {seed!r}")
        self._n_startup_trials = None if n_startup_trials is None else int(n_startup_trials)
        self._warm_start = _check_warm_start(warm_start)
        self._device = _check_device(device)
        self._num_restarts = int(num_restarts)
        self._raw_samples = int(raw_samples)
        self._mc_samples = int(mc_samples)
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

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        _check_single_objective(study)
        trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
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
                params[name] = self._independent_sampler.sample_independent(
                    study, trial, name, dist
                )
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
            trials = study._get_trials(deepcopy=False, use_cache=True)
            if _is_first(trials, trial):
                return self._warm_value(param_name, param_distribution)
        return self._independent_sampler.sample_independent(
            study, trial, param_name, param_distribution
        )

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
        trials = study._get_trials(deepcopy=False, use_cache=True)
        sobol = self._sobol_point(cube.dim, trial.number)
        if self._warm_start is not None and _is_first(trials, trial):
            params = cube.sample(sobol)
            for name in cube.names:
                if name in self._warm_start:
                    params[name] = self._warm_value(name, cube.distribution(name))
            return params
        minimize = study.direction == StudyDirection.MINIMIZE
        X, y = _observations(trials, cube, minimize)
        startup = self._n_startup_trials
        if startup is None:
            startup = min(10, 2 * cube.dim + 1)
        if len(y) < startup:
            return cube.sample(sobol)
        if len(y) < 2 or np.ptp(y) == 0.0:
            _logger.info(
                "MixingRatioSampler: all %d values are equal, nothing to model; trial %d takes "
                "its Sobol point",
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
            u = self._gp_candidate(
                cube, X, y, np.array(pending).reshape(-1, cube.dim), trial.number
            )
        except _NUMERICAL_ERRORS as e:
            _logger.warning(
                "MixingRatioSampler: the GP step failed for trial %d (%s: %s); using its Sobol "
                "point instead",
                trial.number,
                type(e).__name__,
                e,
            )
            return cube.sample(sobol)
        return cube.decode(u)

    def _gp_candidate(
        self, cube: UnitCube, X: np.ndarray, y: np.ndarray, pending: np.ndarray, number: int
    ) -> np.ndarray:
        """Fit the GP to ``(X, y)`` (unit cube, to maximise) and maximise qLogNEI: the next point."""
        device = self._device
        tkw: dict[str, Any] = {"dtype": torch.float64, "device": device}
        rng_devices = [device] if device.type == "cuda" else []
        with (
            self._lock,
            _single_thread(),
            torch.random.fork_rng(devices=rng_devices),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", BotorchWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", module=r"(gpytorch|linear_operator)\b")
            torch.manual_seed(self._trial_seed(number, "gp"))
            train_X = torch.as_tensor(X, **tkw)
            train_Y = torch.as_tensor(y, **tkw).unsqueeze(-1)
            model = fit_gp(train_X, train_Y)
            acqf = qLogNoisyExpectedImprovement(
                model,
                X_baseline=train_X,
                sampler=SobolQMCNormalSampler(
                    torch.Size([self._mc_samples]), seed=self._trial_seed(number, "qmc")
                ),
                X_pending=torch.as_tensor(pending, **tkw) if len(pending) else None,
            )
            bounds = torch.stack([torch.zeros(cube.dim, **tkw), torch.ones(cube.dim, **tkw)])
            size = cube.lattice_size()
            if size is not None and size <= MAX_ENUMERATED_POINTS:
                choices = torch.as_tensor(cube.lattice(), **tkw)
                candidate, _ = optimize_acqf_discrete(acqf, q=1, choices=choices)
            elif cube.discrete:
                candidate, _ = optimize_acqf_mixed_alternating(
                    acqf,
                    bounds=bounds,
                    discrete_dims=cube.discrete,
                    q=1,
                    num_restarts=self._num_restarts,
                    raw_samples=self._raw_samples,
                    options={"max_discrete_values": MAX_LOCAL_SEARCH_VALUES},
                )
            else:
                candidate, _ = optimize_acqf(
                    acqf,
                    bounds=bounds,
                    q=1,
                    num_restarts=self._num_restarts,
                    raw_samples=self._raw_samples,
                )
        u = candidate.detach().to("cpu", torch.float64).numpy().reshape(-1)
        if u.shape != (cube.dim,) or not np.all(np.isfinite(u)):
            raise FloatingPointError(f"the acquisition optimiser returned {u}")
        return u

    def _sobol_point(self, dim: int, number: int) -> np.ndarray:
        """Point ``number`` of the scrambled Sobol sequence seeded by the sampler's seed."""
        engine = torch.quasirandom.SobolEngine(
            dimension=dim, scramble=True, seed=self._trial_seed(-1, "sobol")
        )
        if number > 0:
            engine.fast_forward(number)
        return engine.draw(1, dtype=torch.float64).numpy().reshape(-1)

    def _warm_value(self, name: str, dist: FloatDistribution | IntDistribution) -> int | float:
        assert self._warm_start is not None
        top = max(self._warm_start.values())
        share = self._warm_start[name] / top if top > 0 else 0.0
        if dist.single():
            return int(dist.low) if isinstance(dist, IntDistribution) else dist.low
        return UnitCube({name: dist})._dims[0].snap(dist.low + share * (dist.high - dist.low))

    def _trial_seed(self, number: int, purpose: str) -> int:
        key = zlib.crc32(purpose.encode("utf-8"))
        seq = np.random.SeedSequence([self._seed, int(number) + 1, key])
        return int(seq.generate_state(1, dtype=np.uint64)[0] % (2**63))


# -- helpers ----------------------------------------------------------------------------------------
def _observations(
    trials: Sequence[FrozenTrial], cube: UnitCube, minimize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: the unit-cube points and values (negated when minimising) that count as data."""
    xs, ys = [], []
    for t in trials:
        if t.state == TrialState.COMPLETE and t.values is not None:
            value = t.values[0]
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        else:
            continue
        if value is None or not math.isfinite(value):
            continue
        u = cube.encode(t.params)
        if u is None:
            continue
        xs.append(u)
        ys.append(-float(value) if minimize else float(value))
    return np.array(xs, dtype=np.float64).reshape(-1, cube.dim), np.array(ys, dtype=np.float64)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on one CPU thread: for matrices of a few hundred rows it is faster than several
    (much faster when other processes share the cores), and the sums come out the same whatever
    ``torch.get_num_threads()`` the process has, so a suggestion does not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _is_first(trials: Sequence[FrozenTrial], trial: FrozenTrial) -> bool:
    """No other trial has run or is running (all others FAIL or WAITING)."""
    return all(
        t.number == trial.number or t.state in (TrialState.FAIL, TrialState.WAITING) for t in trials
    )


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
            raise AuxoptError(
                f"warm_start[{name!r}] must be a finite number >= 0 (a posterior mean), not {mean!r}"
            )
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
            raise AuxoptError(
                f"device={device!r} was asked for, but CUDA is not available here; use device='cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise AuxoptError(
                f"device={device!r}: there are only {torch.cuda.device_count()} CUDA devices"
            )
    return dev


def _fresh_seed() -> int:
    return int(np.random.SeedSequence().entropy % (2**63))
