"""The closed-form pieces that make :class:`~auxopt.samplers.MixingRatioSampler`'s GP step fast, for
the model :func:`~auxopt.samplers._gp.fit_gp` builds (``SingleTaskGP``, Matérn-5/2 ARD, log-normal
priors on the lengthscales and the noise, standardised outcomes):

* :func:`fit_map`: the hyperparameters ``fit_gpytorch_mll`` looks for, the maximum of
  ``ExactMarginalLogLikelihood`` (exact log marginal likelihood plus log priors, over the number of
  points), found by L-BFGS-B over the logarithms of the lengthscales and the noise with the
  objective and its gradient in closed form (NumPy/LAPACK on the CPU, one Cholesky factorisation
  and one inverse an evaluation): at a hundred points about 40 times faster than
  ``fit_gpytorch_mll`` for the same optimum;
* :class:`ClosedFormPosterior`: the fitted model's exact posterior (the ``SingleTaskGP``'s, to
  rounding) from a Cholesky factor computed once, as a BoTorch ``Model``, without GPyTorch's lazy
  tensors; :meth:`~ClosedFormPosterior.believing` conditions it on pending points (the kriging
  believer);
* :class:`ClosedFormLogEI`: BoTorch's analytic ``LogExpectedImprovement`` on that posterior, its
  value and gradient computed in one step.

Each is checked against GPyTorch's and BoTorch's own in ``tests/test_mixing_sampler.py`` (the fit's
optimum, the posterior to 1e-10, log EI's value and gradient).
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize
import torch
from botorch.acquisition.analytic import LogExpectedImprovement, _log_ei_helper
from botorch.exceptions.errors import ModelFittingError
from botorch.models import SingleTaskGP
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import MaternKernel
from gpytorch.priors import LogNormalPrior
from linear_operator.operators import DenseLinearOperator
from threadpoolctl import ThreadpoolController

__all__ = ["ClosedFormLogEI", "ClosedFormPosterior", "fit_map"]

_SQRT5 = math.sqrt(5.0)


def fit_map(model: SingleTaskGP) -> None:
    """Set ``model``'s lengthscales, noise and constant mean to the maximiser of
    ``ExactMarginalLogLikelihood`` (log marginal likelihood + log priors, over ``n``), by L-BFGS-B
    from the model's initial values (the priors' modes) within the constraints' lower bounds and
    with scipy's default tolerances, as ``fit_gpytorch_mll`` would, but over the logarithms of the
    lengthscales and the noise (better conditioned: fewer iterations, the same optimum) and with the
    objective and its gradient in closed form, in NumPy on the CPU with one BLAS thread. Raises
    ``ValueError`` for a model it does not know (another kernel or prior) and a numerical error
    when the optimum is not finite."""
    kernel, noise_covar = model.covar_module, model.likelihood.noise_covar
    ls_prior = getattr(kernel, "lengthscale_prior", None)
    noise_prior = getattr(noise_covar, "noise_prior", None)
    if (
        not isinstance(kernel, MaternKernel)
        or kernel.nu != 2.5
        or not isinstance(ls_prior, LogNormalPrior)
        or not isinstance(noise_prior, LogNormalPrior)
        or kernel.raw_lengthscale_constraint.enforced
        or noise_covar.raw_noise_constraint.enforced
        or len(list(model.named_priors())) != 2
    ):
        raise ValueError("not the model fit_gp builds")
    x = model.train_inputs[0].detach().cpu().numpy()
    y = model.train_targets.detach().cpu().numpy()
    n, d = x.shape
    x = x - x.mean(0)  # centred (as GPyTorch's kernels): smaller terms in the squared distances
    x2 = x**2
    # the log-normal priors: log p(v) = -log v - (log v - mu)^2 / (2 s^2) - log(s sqrt(2 pi))
    mu = np.concatenate([np.broadcast_to(_numpy(ls_prior.loc), d), _numpy(noise_prior.loc).reshape(1)])
    s2_prior = np.concatenate([np.broadcast_to(_numpy(ls_prior.scale), d), _numpy(noise_prior.scale).reshape(1)]) ** 2
    prior_const = float(-(0.5 * np.log(2 * math.pi * s2_prior)).sum())
    ls_lb = float(kernel.raw_lengthscale_constraint.lower_bound)
    noise_lb = float(noise_covar.raw_noise_constraint.lower_bound)
    diag = np.diag_indices(n)
    log_2pi = math.log(2 * math.pi)

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        # theta = (log lengthscales, log noise, constant mean); s = sqrt(5) r, r the scaled distance
        log_v = theta[: d + 1]
        w = 5.0 * np.exp(-2.0 * log_v[:d])  # 5 / l_j^2
        noise = math.exp(log_v[d])
        z = x * np.sqrt(w)
        z2 = (z**2).sum(1)
        s2 = z @ z.T
        s2 *= -2.0
        s2 += z2[:, None]
        s2 += z2[None, :]
        np.maximum(s2, 0.0, out=s2)
        s2[diag] = 0.0
        s = np.sqrt(s2)
        e = np.exp(-s)
        a = 1.0 + s
        K = s2 / 3.0
        K += a
        K *= e  # (1 + s + s^2 / 3) exp(-s)
        K[diag] += noise
        L, info = scipy.linalg.lapack.dpotrf(K, lower=1, overwrite_a=1)
        if info:
            return math.inf, np.zeros_like(theta)
        log_det = 2.0 * np.log(L[diag]).sum()
        res = y - theta[d + 1]
        alpha, _ = scipy.linalg.lapack.dpotrs(L, res, lower=1)
        # K^-1: its lower triangle (the upper one stays 0: dpotrf cleared it)
        K_inv, _ = scipy.linalg.lapack.dpotri(L, lower=1, overwrite_c=1)
        ll = -0.5 * (res @ alpha + log_det + n * log_2pi)
        # d ll / dK = W / 2 with W = alpha alpha^T - K^-1, and dK / d(log l_j) = (1 + s) exp(-s) / 3
        # * w_j D_j with D_j = (x_j - x_j^T)^2: symmetric, 0 on the diagonal, so only W's
        # off-diagonal part counts. G is a symmetric matrix equal to 2 W (1 + s) exp(-s) off the
        # diagonal (K^-1 from its lower triangle), and sum(G * D_j) = 2 (x_j^2 . G 1 - x_j . G x_j)
        G = np.outer(alpha, alpha)
        G -= 2.0 * K_inv
        G *= a * e
        G += G.T.copy()
        g_ls = (x2.T @ G.sum(1) - (x * (G @ x)).sum(0)) * w / 6.0
        g_noise = 0.5 * (alpha @ alpha - np.trace(K_inv)) * noise
        g_mean = alpha.sum()
        # the log priors of the lengthscales and the noise, as functions of their logarithms
        lp = (-log_v - (log_v - mu) ** 2 / (2 * s2_prior)).sum() + prior_const
        g_lp = -1.0 - (log_v - mu) / s2_prior
        loss = -(ll + lp) / n
        grad = -np.concatenate([g_ls + g_lp[:d], [g_noise + g_lp[d], g_mean]]) / n
        return float(loss), grad

    theta0 = np.concatenate(
        [
            np.log(_numpy(kernel.lengthscale).reshape(-1)),
            np.log(_numpy(noise_covar.noise).reshape(-1)),
            _numpy(model.mean_module.constant).reshape(-1),
        ]
    )
    bounds = [(math.log(ls_lb), None)] * d + [(math.log(noise_lb), None), (None, None)]
    with _blas_threads().limit(limits=1, user_api="blas"):  # as torch in seeded_torch: one thread
        result = scipy.optimize.minimize(loss_and_grad, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    theta = result.x
    if not (np.all(np.isfinite(theta)) and np.isfinite(result.fun)):
        raise ModelFittingError(f"the marginal likelihood fit ended at {theta} ({result.message})")
    tkw = {"dtype": model.train_inputs[0].dtype, "device": model.train_inputs[0].device}
    with torch.no_grad():
        ls = torch.as_tensor(np.exp(theta[:d]), **tkw).clamp_min(ls_lb)
        kernel.lengthscale = ls.reshape(kernel.lengthscale.shape)
        noise_covar.noise = torch.as_tensor(np.exp(theta[d : d + 1]), **tkw).clamp_min(noise_lb)
        model.mean_module.constant = torch.as_tensor(theta[d + 1], **tkw)


@functools.cache
def _blas_threads() -> ThreadpoolController:
    """NumPy's and SciPy's BLAS thread pools (found once: a lookup takes a millisecond)."""
    return ThreadpoolController()


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _matern52(s2: torch.Tensor) -> torch.Tensor:
    """Matérn-5/2 correlation ``(1 + s + s²/3) exp(-s)`` of ``s = sqrt(5) r`` from ``s²`` (as GPyTorch,
    the root of a value clamped at 1e-30, so that the gradient at zero distance is zero, not NaN)."""
    s = s2.clamp_min(1e-30).sqrt()
    return (1 + s * (1 + s / 3)) * torch.exp(-s)


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distances between the rows of ``a`` ``(..., p, d)`` and ``b`` ``(..., r, d)``, by
    differences (exact at zero distance)."""
    return (a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1)


class ClosedFormPosterior(Model):
    """The posterior of a :func:`fit_gp` model, computed directly: ``f(x) | data`` is normal with
    mean ``m + k(x, X) K⁻¹ (y - m)`` and covariance ``k(x, x') - k(x, X) K⁻¹ k(X, x')`` (``K`` the
    kernel matrix plus the noise, its Cholesky factor computed once here), on the outcomes' scale
    (the ``Standardize`` transform undone). The same distribution as ``model.posterior`` to
    rounding, without GPyTorch's lazy tensors, so that an acquisition function costs a few small
    tensor operations an evaluation. The model's hyperparameters are read once: refit, rebuild."""

    def __init__(self, model: SingleTaskGP):
        super().__init__()
        with torch.no_grad():
            x = model.train_inputs[0].detach()
            tkw = {"dtype": x.dtype, "device": x.device}
            tf = model.outcome_transform
            y_mean, y_std = tf.means.detach().reshape(()), tf.stdvs.detach().reshape(())
            constant = model.mean_module.constant.detach().reshape(())
            noise = model.likelihood.noise.detach().reshape(())
            # inputs scaled by sqrt(5) / lengthscale: the kernel is then a function of squared distances
            self._scale = _SQRT5 / model.covar_module.lengthscale.detach().reshape(-1)
            self._y_std, self._unit_noise = y_std, noise
            self._mean_const = y_mean + y_std * constant
            self._prior_var = y_std.pow(2)
            self._noise = noise * self._prior_var
            self._condition(x * self._scale, model.train_targets.detach() - constant)
            #: the posterior mean at the training inputs (K - noise I) alpha', on the outcomes' scale
            self.train_mean = self._mean_const + (self._K - noise * torch.eye(len(x), **tkw)) @ self._alpha

    def _condition(self, Z: torch.Tensor, targets: torch.Tensor) -> None:
        """Factor the kernel matrix of the scaled inputs ``Z`` and solve for the standardised,
        centred ``targets``: on the outcomes' scale the mean is ``m' + k(x, X) alpha'`` and the
        covariance ``c² k(x, x') - vᵀv`` with ``v = L'^-1 k(X, x')``, ``L' = L / c`` (``c``: the
        Standardize transform's std)."""
        self._Z, self._targets = Z, targets
        self._K = _matern52(_sq_dist(Z, Z)) + self._unit_noise * torch.eye(len(Z), dtype=Z.dtype, device=Z.device)
        L = torch.linalg.cholesky(self._K)
        self._alpha = (self._y_std * torch.cholesky_solve(targets.unsqueeze(-1), L)).squeeze(-1)
        self._L = L / self._y_std

    def believing(self, X: torch.Tensor) -> ClosedFormPosterior:
        """The kriging believer (Ginsbourger et al., 2010): this posterior conditioned on
        observations at the pending points ``X`` ``(m, d)`` equal to its own mean there (with the
        learned noise). The mean is unchanged everywhere; the variance shrinks around the pending
        points, so that log EI there falls and the next candidate goes elsewhere. Its
        ``train_mean`` also holds the believed values, the incumbent's candidates."""
        with torch.no_grad():
            believed = self.posterior(X.unsqueeze(0)).mean.reshape(-1)
            out = copy.copy(self)
            centred = (believed - self._mean_const) / self._y_std
            out._condition(torch.cat([self._Z, X * self._scale]), torch.cat([self._targets, centred]))
            out.train_mean = torch.cat([self.train_mean, believed])
        return out

    @property
    def num_outputs(self) -> int:
        return 1

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    def _solve(self, k: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """``L'^-1 k`` (or ``K'^-1 k`` with ``transpose``) for every row ``k`` of ``k`` ``(..., n)``,
        in one triangular (Cholesky) solve."""
        n = self._Z.shape[0]
        rows = k.reshape(-1, n).T
        if transpose:
            out = torch.cholesky_solve(rows, self._L)
        else:
            out = torch.linalg.solve_triangular(self._L, rows, upper=False)
        return out.T.reshape(k.shape)

    def posterior(
        self,
        X: torch.Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | torch.Tensor = False,
        posterior_transform: Any = None,
        **kwargs: Any,
    ) -> GPyTorchPosterior:
        """The joint normal posterior of ``f`` at ``X`` ``(..., q, d)``, as a ``GPyTorchPosterior``
        with event shape ``(q, 1)``; ``observation_noise=True`` adds the learned noise."""
        z = X * self._scale
        k_xz = _matern52(_sq_dist(z, self._Z))  # (..., q, n)
        mean = self._mean_const + k_xz @ self._alpha
        v = self._solve(k_xz)
        covar = self._prior_var * _matern52(_sq_dist(z, z)) - v @ v.transpose(-1, -2)
        if observation_noise is True:
            covar = covar + self._noise * torch.eye(X.shape[-2], dtype=X.dtype, device=X.device)
        # a lazy covariance, factorised (with jitter if need be) only when samples are drawn
        posterior = GPyTorchPosterior(MultivariateNormal(mean, DenseLinearOperator(covar)))
        return posterior if posterior_transform is None else posterior_transform(posterior)


class ClosedFormLogEI(LogExpectedImprovement):
    """BoTorch's analytic ``LogExpectedImprovement`` (maximising) on a :class:`ClosedFormPosterior`,
    its value and gradient computed in one step (:class:`_LogEI`). The value is BoTorch's,
    ``_log_ei_helper(u) + log(sigma)`` with ``u = (mean - best_f) / sigma``; the acquisition
    optimiser evaluates it a few dozen times a suggestion, and BoTorch's class would build and walk
    an autograd graph of dozens of tiny operations each time (about 2.5 times slower at a hundred
    points)."""

    def __init__(self, model: ClosedFormPosterior, best_f: float | torch.Tensor):
        if not isinstance(model, ClosedFormPosterior):
            raise TypeError(f"ClosedFormLogEI needs a ClosedFormPosterior, not {type(model).__name__}")
        super().__init__(model=model, best_f=best_f, maximize=True)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Log expected improvement at ``X`` ``(b1 x ... x bk) x 1 x d`` (or ``1 x d``), one value
        per batch."""
        if X.dim() == 2:
            X = X.unsqueeze(0)
        if X.shape[-2] != 1:
            raise ValueError(f"ClosedFormLogEI takes one point a batch (q = 1), not X of shape {tuple(X.shape)}")
        return _LogEI.apply(X, self.model, self.best_f)


_MIN_VAR = 1e-12  # BoTorch's floor on the posterior variance in analytic acquisition functions


class _LogEI(torch.autograd.Function):
    """Log EI of a :class:`ClosedFormPosterior` at ``X`` ``(..., 1, d)``, with its gradient.

    With ``z = sqrt(5) x / l``, ``D_i = z - Z_i`` and ``s_i = |D_i|``, the kernel is ``k_i = (1 +
    s_i + s_i² / 3) exp(-s_i)`` and ``dk_i / dz = -(1 + s_i) exp(-s_i) D_i / 3``; the mean is
    ``m' + k . alpha'`` (``d mean / dk = alpha'``) and the variance ``c² - |L'^-1 k|²`` (``d var /
    dk = -2 K'^-1 k``). Log EI is ``log h(u) + log sigma`` with ``h(u) = phi(u) + u Phi(u)`` and
    ``h' = Phi``, so ``d logEI / d mean = r / sigma`` and ``d logEI / d var = (1 - u r) / (2
    sigma²)`` (0 where the variance is at BoTorch's floor), ``r = Phi(u) / h(u) = exp(log Phi(u) -
    log h(u))``."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, gp: ClosedFormPosterior, best_f: torch.Tensor) -> torch.Tensor:
        diff = (X * gp._scale).unsqueeze(-2) - gp._Z  # (..., 1, n, d)
        s = diff.pow(2).sum(-1).clamp_min(1e-30).sqrt()  # (..., 1, n)
        e = torch.exp(-s)
        k = (1 + s * (1 + s / 3)) * e
        mean = gp._mean_const + k @ gp._alpha  # (..., 1)
        var = gp._prior_var - gp._solve(k).pow(2).sum(-1)
        sigma = var.clamp_min(_MIN_VAR).sqrt()
        u = (mean - best_f) / sigma
        log_h = _log_ei_helper(u)
        ctx.gp = gp
        ctx.intermediates = (diff, s, e, k, var, sigma, u, log_h)
        return (log_h + sigma.log()).squeeze(-1)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        gp = ctx.gp
        diff, s, e, k, var, sigma, u, log_h = ctx.intermediates
        ratio = torch.exp(torch.special.log_ndtr(u) - log_h)  # Phi(u) / h(u)
        g = grad_out.unsqueeze(-1)
        g_mean = g * ratio / sigma
        g_var = torch.where(var > _MIN_VAR, g * (1 - u * ratio) / (2 * sigma.pow(2)), 0.0)
        g_k = g_mean.unsqueeze(-1) * gp._alpha - 2 * g_var.unsqueeze(-1) * gp._solve(k, transpose=True)
        g_z = ((g_k * (1 + s) * e / -3).unsqueeze(-1) * diff).sum(-2)
        return g_z * gp._scale, None, None
