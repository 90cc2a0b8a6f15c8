"""AutoSeM's Beta-Bernoulli multi-armed bandit with decay (numpy only: no Optuna, no torch).

This module sits below both of its users: the Optuna sampler
:class:`~auxopt.samplers.ThompsonTaskSampler` (one pull per trial) and the training loop's online
schedule :class:`~auxopt.train.schedules.ThompsonSchedule` (one pull per training interval), so the
training loop does not depend on the samplers.

The arms are auxiliary tasks (Guo, Pasunuru & Bansal, NAACL 2019, §3.1). Each arm ``k`` has a Beta
posterior over its probability of helping the primary task,

    θ_k ~ Beta(α_k, β_k),    starting at the prior  (α_k, β_k) = (α0, β0).

Choosing (Thompson sampling): draw one θ_k per arm and pull ``argmax_k θ_k`` (ties broken at random).

Updating after a pull of arm ``a`` with reward ``r ∈ {0, 1}``: first *every* arm decays toward the
prior, so that old evidence fades (AutoSeM's non-stationary variant),

    α_k ← (1 − γ) α_k + γ α0,    β_k ← (1 − γ) β_k + γ β0        for every arm k,

then the pulled arm counts the outcome,

    α_a ← α_a + r,    β_a ← β_a + (1 − r).

γ = 0 is plain Beta-Bernoulli counting.

Decay drives the *sampling policy* only (it keeps exploring an arm whose recent pulls went badly).
Beside the decayed posterior the bandit keeps the undecayed tally of each arm, ``wins_k`` and
``pulls_k``, and a task's **utility** is the posterior mean of that evidence,

    u_k = (α0 + wins_k) / (α0 + β0 + pulls_k),

which is what task selection reads (:func:`select_tasks`): with γ = 0.3 the decayed posterior keeps
about 1/γ ≈ 3 pulls of evidence, so selecting on it would select on the last pull or two.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from auxopt.errors import AuxoptError

__all__ = ["BetaBernoulliBandit", "check_bandit_parameters", "check_reward", "select_tasks"]


def check_bandit_parameters(alpha0: float, beta0: float, gamma: float) -> tuple[float, float, float]:
    """Validate the prior and the decay; return them as floats (AuxoptError on bad input)."""
    for name, value in (("alpha0", alpha0), ("beta0", beta0)):
        if not _is_real(value) or not np.isfinite(value) or value <= 0:
            raise AuxoptError(
                f"the Beta prior's {name} must be a finite number > 0, not {value!r} (AutoSeM uses alpha0 = beta0 = 1)"
            )
    if not _is_real(gamma) or not 0 <= gamma < 1:
        raise AuxoptError(f"the decay gamma must be in [0, 1), not {gamma!r} (0 disables decay; AutoSeM uses 0.3)")
    return float(alpha0), float(beta0), float(gamma)


def check_reward(reward: Any, source: str = "the reward") -> int:
    """Return a Bernoulli reward as 0 or 1; anything but 0/1/False/True raises AuxoptError."""
    if isinstance(reward, (bool, np.bool_)):
        return int(bool(reward))
    if _is_real(reward) and reward in (0, 1):
        return int(reward)
    raise AuxoptError(
        f"{source} must be 0 or 1 (or a bool), not {reward!r}; a Beta-Bernoulli bandit only learns from success/failure"
    )


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


class BetaBernoulliBandit:
    """A Beta-Bernoulli Thompson-sampling bandit whose posteriors decay toward the prior.

    Args:
        arms: the arm names (any hashable values, e.g. task names); more can be added later with
            :meth:`add_arm` — an arm added late starts at the prior, which is exactly where it would
            be had it been there all along (decay keeps an unpulled arm at the prior).
        alpha0: the Beta prior's α, > 0 (default 1: Beta(1, 1), uniform).
        beta0: the Beta prior's β, > 0 (default 1).
        gamma: the decay toward the prior applied to every arm at every pull, in [0, 1)
            (default 0.3 as in AutoSeM; 0 disables decay).

    See the module docstring for the update equations.
    """

    def __init__(
        self,
        arms: Iterable[Hashable] = (),
        alpha0: float = 1.0,
        beta0: float = 1.0,
        gamma: float = 0.3,
    ):
        self.alpha0, self.beta0, self.gamma = check_bandit_parameters(alpha0, beta0, gamma)
        self._arms: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._alpha = np.zeros(0, dtype=np.float64)
        self._beta = np.zeros(0, dtype=np.float64)
        self._pulls = np.zeros(0, dtype=np.int64)
        self._wins = np.zeros(0, dtype=np.int64)
        for arm in arms:
            self.add_arm(arm)

    # -- arms ---------------------------------------------------------------------------------
    @property
    def arms(self) -> tuple[Hashable, ...]:
        return tuple(self._arms)

    def __contains__(self, arm: object) -> bool:
        return arm in self._index

    def __len__(self) -> int:
        return len(self._arms)

    def add_arm(self, arm: Hashable) -> None:
        """Add an arm at the prior (no-op when it exists)."""
        if arm in self._index:
            return
        self._index[arm] = len(self._arms)
        self._arms.append(arm)
        self._alpha = np.append(self._alpha, self.alpha0)
        self._beta = np.append(self._beta, self.beta0)
        self._pulls = np.append(self._pulls, 0)
        self._wins = np.append(self._wins, 0)

    def _idx(self, arm: Hashable) -> int:
        try:
            return self._index[arm]
        except KeyError:
            raise AuxoptError(
                f"unknown bandit arm {arm!r}; the arms are {self._arms!r} (add it with add_arm)"
            ) from None

    # -- learning -----------------------------------------------------------------------------
    def update(self, arm: Hashable, reward: Any) -> None:
        """Record a pull of ``arm`` with reward ``r ∈ {0, 1}``.

        Every arm decays first, ``α_k ← (1 − γ) α_k + γ α0`` and ``β_k ← (1 − γ) β_k + γ β0``
        (computed as ``α0 + (1 − γ)(α_k − α0)``, the same quantity, which keeps an unpulled arm
        exactly at the prior in floating point), then ``α_arm += r`` and ``β_arm += 1 − r``.
        """
        r = check_reward(reward)
        i = self._idx(arm)
        if self.gamma:
            keep = 1.0 - self.gamma
            self._alpha = self.alpha0 + keep * (self._alpha - self.alpha0)
            self._beta = self.beta0 + keep * (self._beta - self.beta0)
        self._alpha[i] += r
        self._beta[i] += 1 - r
        self._pulls[i] += 1
        self._wins[i] += r

    def choose(
        self,
        rng: np.random.Generator | np.random.RandomState | int | None = None,
        *,
        arms: Sequence[Hashable] | None = None,
        pending: Mapping[Hashable, int] | None = None,
    ) -> Hashable:
        """Thompson sampling: draw ``θ_k ~ Beta(α_k, β_k)`` for every arm, return ``argmax_k θ_k``.

        Args:
            rng: a numpy ``Generator``/``RandomState`` or a seed.
            arms: choose among these arms only (default: all); unknown ones are added at the prior.
            pending: ``{arm: n}`` pulls whose outcome is not known yet (other workers' running
                trials). Each counts as a *fantasised failure* for this draw only,
                ``β_arm += n`` without decay, so that parallel workers spread over the arms.
        """
        if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
            rng = np.random.default_rng(rng)
        candidates = list(self._arms if arms is None else arms)
        if not candidates:
            raise AuxoptError("the bandit has no arms to choose from; give it at least one task")
        for arm in candidates:
            self.add_arm(arm)
        idx = np.array([self._index[a] for a in candidates], dtype=np.int64)
        alpha = self._alpha[idx]
        beta = self._beta[idx].copy()
        if pending:
            for j, arm in enumerate(candidates):
                beta[j] += max(0, int(pending.get(arm, 0)))
        theta = rng.beta(alpha, beta)
        best = np.flatnonzero(theta == theta.max())
        j = int(best[0]) if len(best) == 1 else int(rng.choice(best))
        return candidates[j]

    # -- reading ------------------------------------------------------------------------------
    def posterior(self) -> dict[Hashable, tuple[float, float]]:
        """``{arm: (α, β)}``."""
        return {a: (float(self._alpha[i]), float(self._beta[i])) for i, a in enumerate(self._arms)}

    def means(self) -> dict[Hashable, float]:
        """``{arm: α / (α + β)}``, the posterior mean utility of each arm."""
        return {a: float(self._alpha[i] / (self._alpha[i] + self._beta[i])) for i, a in enumerate(self._arms)}

    def pulls(self) -> dict[Hashable, int]:
        """``{arm: number of recorded pulls}``."""
        return {a: int(self._pulls[i]) for i, a in enumerate(self._arms)}

    def tally(self) -> dict[Hashable, tuple[int, int]]:
        """``{arm: (wins, pulls)}``, the undecayed evidence."""
        return {a: (int(self._wins[i]), int(self._pulls[i])) for i, a in enumerate(self._arms)}

    def evidence(self) -> dict[Hashable, tuple[float, float]]:
        """``{arm: (α0 + wins, β0 + losses)}``: the Beta posterior of the undecayed tally, the input
        of :func:`select_tasks`."""
        return {
            a: (self.alpha0 + int(self._wins[i]), self.beta0 + int(self._pulls[i] - self._wins[i]))
            for i, a in enumerate(self._arms)
        }

    def utilities(self) -> dict[Hashable, float]:
        """``{arm: (α0 + wins) / (α0 + β0 + pulls)}``, the undecayed posterior mean."""
        return {a: al / (al + be) for a, (al, be) in self.evidence().items()}

    # -- checkpointing ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the bandit (plain lists and floats)."""
        return {
            "arms": list(self._arms),
            "alpha": self._alpha.tolist(),
            "beta": self._beta.tolist(),
            "pulls": self._pulls.tolist(),
            "wins": self._wins.tolist(),
            "alpha0": self.alpha0,
            "beta0": self.beta0,
            "gamma": self.gamma,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            arms = list(state["arms"])
            alpha = np.asarray(state["alpha"], dtype=np.float64)
            beta = np.asarray(state["beta"], dtype=np.float64)
            pulls = np.asarray(state["pulls"], dtype=np.int64)
            wins = np.asarray(state.get("wins", [0] * len(pulls)), dtype=np.int64)
            prior = (state["alpha0"], state["beta0"], state["gamma"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AuxoptError(f"not a bandit state_dict ({exc}); save one with state_dict()") from None
        if not len(arms) == len(alpha) == len(beta) == len(pulls) == len(wins) or len(set(arms)) != len(arms):
            raise AuxoptError("corrupt bandit state_dict: arms, alpha, beta and pulls do not match")
        self.alpha0, self.beta0, self.gamma = check_bandit_parameters(*prior)
        self._arms = arms
        self._index = {a: i for i, a in enumerate(arms)}
        self._alpha, self._beta, self._pulls, self._wins = alpha.copy(), beta.copy(), pulls.copy(), wins.copy()

    def copy(self) -> BetaBernoulliBandit:
        other = BetaBernoulliBandit((), self.alpha0, self.beta0, self.gamma)
        other._arms = list(self._arms)
        other._index = dict(self._index)
        other._alpha, other._beta = self._alpha.copy(), self._beta.copy()
        other._pulls, other._wins = self._pulls.copy(), self._wins.copy()
        return other

    def __repr__(self) -> str:
        inner = ", ".join(f"{a!r}: Beta({al:.3g}, {be:.3g})" for a, (al, be) in self.posterior().items())
        return f"BetaBernoulliBandit({{{inner}}}, gamma={self.gamma})"


def select_tasks(
    posterior: Mapping[Hashable, tuple[float, float]],
    threshold: float = 0.5,
    top_k: int | None = None,
    *,
    none_arm: Hashable = "none",
    baseline: Hashable | None = None,
) -> list[Hashable]:
    """AutoSeM's task selection: the tasks whose posterior mean ``α / (α + β)`` is above a bar.

    The bar is ``threshold`` or, with ``baseline``, one the data provides: ``baseline="median"``
    the median mean of the candidate tasks, any other value the mean of that arm (the primary-only
    arm, e.g. ``"none"`` or the primary task's own arm in the online schedule). A fixed 0.5 cannot
    separate helpful from neutral tasks when the reward rides the training trend (every arm wins
    more often than not while the model improves); the primary's own arm has the same trend.

    Strictly above: an arm the bandit knows nothing about sits at the prior mean, and "no
    evidence" is not a reason to keep a task. Pass the undecayed evidence
    (:meth:`BetaBernoulliBandit.evidence`), not the decayed posterior: that one remembers only the
    last few pulls.

    Sorted by posterior mean, highest first (ties keep the posterior's order), at most ``top_k`` of
    them. ``none_arm`` and the ``baseline`` arm are never selected.
    """
    if not _is_real(threshold) or not 0 <= threshold <= 1:
        raise AuxoptError(f"threshold must be a probability in [0, 1], not {threshold!r}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 0):
        raise AuxoptError(f"top_k must be a whole number ≥ 0 or None, not {top_k!r}")
    means: dict[Hashable, float] = {}
    for task, ab in posterior.items():
        try:
            alpha, beta = (float(x) for x in ab)
        except (TypeError, ValueError):
            raise AuxoptError(f"posterior[{task!r}] must be an (alpha, beta) pair, not {ab!r}") from None
        if not (alpha > 0 and beta > 0):
            raise AuxoptError(f"posterior[{task!r}] = {ab!r} is not a Beta posterior (both > 0)")
        means[task] = alpha / (alpha + beta)
    candidates = {t: m for t, m in means.items() if t not in (none_arm, baseline)}
    if baseline is None:
        bar = float(threshold)
    elif baseline == "median":
        bar = float(np.median(list(candidates.values()))) if candidates else 1.0
    elif baseline in means:
        bar = means[baseline]
    else:
        raise AuxoptError(
            f"baseline {baseline!r} is not an arm of the posterior ({list(means)!r}); "
            "name the primary-only arm, 'median', or None for the fixed threshold"
        )
    scored = sorted(((m, t) for t, m in candidates.items() if m > bar), key=lambda mt: -mt[0])
    tasks = [task for _, task in scored]
    return tasks if top_k is None else tasks[: int(top_k)]
