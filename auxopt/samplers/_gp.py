"""The GP maths behind :class:`~auxopt.samplers.MixingRatioSampler`, on BoTorch/GPyTorch.

* :func:`fit_gp`: the surrogate, ``SingleTaskGP`` with a Matérn-5/2 ARD kernel (BoTorch's
  dimension-scaled log-normal lengthscale prior) and a learned homoscedastic noise (log-normal
  prior) on standardised outcomes, in float64, at the hyperparameters ``fit_gpytorch_mll`` looks
  for (the maximum of ``ExactMarginalLogLikelihood``), found in closed form by
  :func:`auxopt.samplers._closed_form.fit_map`; should that fail, ``fit_gpytorch_mll`` itself fits
  the model;
* :func:`logei_candidates`: the sampler's default candidates function: fit the GP, then maximise
  log expected improvement over a noise-aware incumbent (the best posterior mean at the observed
  points, not the best noisy observation) on :class:`~auxopt.samplers._closed_form.ClosedFormPosterior`:
  analytic (:class:`~auxopt.samplers._closed_form.ClosedFormLogEI`), on the posterior conditioned
  on the running trials' points at its own mean there when some are pending (the kriging
  believer); continuously (``optimize_acqf``, at most :data:`ACQF_MAXITER` L-BFGS-B
  iterations a start) or on the lattice of the integer and stepped parameters (exhaustively when
  it is small);
* :func:`seeded_torch`: the torch setting every candidates function runs in (one CPU thread, a
  forked and seeded global RNG, numerical warnings silenced), so that a suggestion is reproducible.

Tensors in, tensors out: the Optuna side (which trials count, startup, fallbacks) is the sampler's.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from botorch.exceptions.errors import BotorchError, ModelFittingError
from botorch.exceptions.warnings import BotorchWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from botorch.optim import optimize_acqf, optimize_acqf_discrete
from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
from gpytorch.mlls import ExactMarginalLogLikelihood

from auxopt.samplers._closed_form import ClosedFormLogEI, ClosedFormPosterior
from auxopt.samplers._closed_form import fit_map as _fit_map
from auxopt.samplers._cube import UnitCube

__all__ = [
    "ACQF_MAXITER",
    "MAX_ENUMERATED_POINTS",
    "MAX_LOCAL_SEARCH_VALUES",
    "NUMERICAL_ERRORS",
    "ClosedFormLogEI",
    "ClosedFormPosterior",
    "fit_gp",
    "logei_candidates",
    "seeded_torch",
]

#: What the GP step may raise on awkward data (a non-PSD matrix, a failed fit, NaNs); the sampler
#: then gives the trial its Sobol point. (linear_operator's NotPSDError and NanError are RuntimeErrors.)
NUMERICAL_ERRORS = (BotorchError, ModelFittingError, RuntimeError, FloatingPointError)

#: When every parameter is discrete and the lattice has at most this many points, the acquisition
#: function is evaluated on all of them (an exact discrete search).
MAX_ENUMERATED_POINTS = 2048
#: In a mixed or larger space, a discrete parameter with at most this many values is searched by
#: BoTorch's discrete neighbourhood steps; one with more is relaxed to a continuous one and rounded
#: to the lattice (BoTorch's ``max_discrete_values``).
MAX_LOCAL_SEARCH_VALUES = 100

#: L-BFGS-B iterations of each start of the continuous acquisition search (``optimize_acqf``'s
#: ``maxiter``; BoTorch's default is 2000, its mixed optimiser caps its continuous steps at 8). From
#: the best of ``raw_samples`` random points, log EI over a handful of ratios is at its maximum to
#: within a few thousandths (of log EI) after ten (measured on 72 GPs in 3 to 8 dimensions: mean
#: shortfall 2e-4), and the iterations after those are a third of a suggestion's time.
ACQF_MAXITER = 10


def fit_gp(train_X: torch.Tensor, train_Y: torch.Tensor) -> SingleTaskGP:
    """The sampler's surrogate: ``SingleTaskGP`` (Matérn-5/2 ARD with BoTorch's dimension-scaled
    prior, standardised outcomes) on unit-cube inputs ``(n, d)`` and outcomes ``(n, 1)``, with the
    hyperparameters that maximise the marginal likelihood times the priors (see the module
    docstring), returned in eval mode. Also used by :mod:`auxopt.plots` to draw the landscape the
    sampler sees."""
    model = SingleTaskGP(
        train_X,
        train_Y,
        covar_module=get_covar_module_with_dim_scaled_prior(ard_num_dims=train_X.shape[-1], use_rbf_kernel=False),
        outcome_transform=Standardize(m=1),
    )
    try:
        _fit_map(model)
    except (ValueError, *NUMERICAL_ERRORS):
        # BoTorch's own fit, with its retries from prior samples; what it raises goes to the caller
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model.eval()


def logei_candidates(
    train_X: torch.Tensor,
    train_Y: torch.Tensor,
    pending_X: torch.Tensor | None,
    *,
    cube: UnitCube,
    seed: int,
    num_restarts: int = 4,
    raw_samples: int = 128,
    maxiter: int = ACQF_MAXITER,
) -> torch.Tensor:
    """The next point: fit :func:`fit_gp` to ``(train_X, train_Y)`` and maximise log expected
    improvement over the best posterior mean at ``train_X`` (a noise-aware incumbent) on the unit
    cube: analytic log EI in closed form (:class:`ClosedFormLogEI`) on
    :class:`ClosedFormPosterior`. Points being evaluated elsewhere (``pending_X``) are believed at
    the posterior mean there (the kriging believer, :meth:`ClosedFormPosterior.believing`): the
    variance around them shrinks, so the candidate avoids their neighbourhoods, and their believed
    values join the incumbent's candidates. (Optuna's GPSampler and BoTorch use quasi-MC
    ``qLogEI`` with pending points instead; at a hundred trials it made a suggestion about three
    times slower, ``benchmarks/speed/mixing_latency.py``.)

    Args:
        train_X: ``(n, d)`` unit-cube points (float64, on the GP's device).
        train_Y: ``(n, 1)`` their values, to be maximised.
        pending_X: ``(m, d)`` points being evaluated elsewhere (``X_pending``), or ``None``.
        cube: the search space; its lattice decides the search: a fully discrete space with at most
            :data:`MAX_ENUMERATED_POINTS` points is searched exhaustively
            (``optimize_acqf_discrete``), one with discrete parameters by
            ``optimize_acqf_mixed_alternating`` (parameters with more than
            :data:`MAX_LOCAL_SEARCH_VALUES` values relaxed and rounded), a continuous one by
            ``optimize_acqf``.
        seed: the suggestion's seed (this function draws its random starts from torch's global
            RNG, which :func:`seeded_torch` seeds with it; a custom function may use it directly).
        num_restarts, raw_samples: the acquisition optimiser's starts and the random points they
            are chosen from.
        maxiter: L-BFGS-B iterations of each start of the continuous search (see
            :data:`ACQF_MAXITER`).

    Returns:
        the candidate, ``(1, d)`` on the unit cube.
    """
    tkw = {"dtype": train_X.dtype, "device": train_X.device}
    posterior_model = ClosedFormPosterior(fit_gp(train_X, train_Y))
    if pending_X is not None and len(pending_X) > 0:
        posterior_model = posterior_model.believing(pending_X)
    acqf = ClosedFormLogEI(posterior_model, best_f=posterior_model.train_mean.max())
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
            num_restarts=num_restarts,
            raw_samples=raw_samples,
            options={"max_discrete_values": MAX_LOCAL_SEARCH_VALUES},
        )
    else:
        candidate, _ = optimize_acqf(
            acqf,
            bounds=bounds,
            q=1,
            num_restarts=num_restarts,
            raw_samples=raw_samples,
            options={"maxiter": maxiter},
        )
    return candidate


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with torch's global RNG forked (restored afterwards) and seeded with ``seed``,
    on one CPU thread, with BoTorch's and GPyTorch's numerical warnings silenced.

    One thread: for matrices of a few hundred rows it is faster than several (much faster when
    other processes share the cores), and the sums come out the same whatever
    ``torch.get_num_threads()`` the process has, so a suggestion does not depend on it."""
    rng_devices = [device] if device.type == "cuda" else []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=rng_devices), warnings.catch_warnings():
            warnings.simplefilter("ignore", BotorchWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", module=r"(gpytorch|linear_operator)\b")
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)
