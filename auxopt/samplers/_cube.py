"""The map between mixing ratios (float and int parameters) and the unit cube the GP works on.

:class:`UnitCube` sends parameter ``i`` of a search space to coordinate ``i`` of ``[0, 1]^d`` (on the
log scale for ``log=True``) and back, and lists the lattice of the integer and stepped parameters.
Optuna distributions in, numpy arrays out: no GP and no sampler logic here.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from auxopt.errors import AuxoptError

__all__ = ["MAX_LATTICE_VALUES", "UnitCube"]

#: A discrete parameter with more values than this is searched as a continuous one and rounded.
MAX_LATTICE_VALUES = 10_000


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
                raise AuxoptError(f"UnitCube needs float or int distributions with low < high; {name!r} is {dist}")
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

    def snap(self, name: str, x: float) -> int | float:
        """``x`` as a value of parameter ``name``: clipped to its bounds, rounded to its step (an
        ``int`` for int parameters)."""
        return self._dim(name).snap(x)

    def value_at(self, name: str, u: float) -> float:
        """The value of parameter ``name`` at coordinate ``u`` (on its modelled scale, neither
        clipped nor rounded to its step): the inverse of :meth:`encode` along one axis."""
        d = self._dim(name)
        return d.g_inv(d.g_low + float(u) * (d.g_high - d.g_low))

    def _dim(self, name: str) -> _Dim:
        for d in self._dims:
            if d.name == name:
                return d
        raise KeyError(name)

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
