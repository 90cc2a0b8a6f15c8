"""ATTITTUD's settings: the η presets, and :class:`GradientDecomposer`, the trainer plugin's spec
(Dery, Dauphin & Grangier, ICLR 2021) with its Optuna ``suggest``.

Plain data, no torch: the step it makes is :class:`~auxopt.grad.trainer_step.DecomposerStep`.

The method itself (the subspace, its refreshes, the decomposed backward pass) is
:class:`auxopt.grad.Attittud`, which any training loop can call; this plugin is auxopt's trainer
as one client of it, adding the task schedule, the reference batches and the records.

    TrainConfig(primary, auxiliaries, decomposer=GradientDecomposer())   # the official settings:
    # k=10, m=64, every=10, eta=(1.0, 1.0, -1.0), params=("encoder", "!*word_embeddings*")

The defaults are those of the ATTITTUD authors' run command (ldery/ATTITTUD, README, ChexPert,
"Ours"): ``-num-pca-basis 10`` (k), ``-pca-nsamples 64`` (m), ``-pca-every 10`` (every) and
``-proj_lambda "(1.0, 1.0, -1.0)"`` ((η_⊥, η_+, η_-), the order of ``algorithms/algos.py``'s
``GradWeights(eta_tilde, eta_pos, eta_neg)``; preset ``"flip_conflicts"``). Two differences remain:
that code takes the signs of the primary's coordinates from the gradient of a separate sample of
``-lowrank-nsamples 32`` primary examples, auxopt from the step's primary minibatch; and it spans
the subspace with k random vjp directions and a QR (a range finder), auxopt with the top-k singular
vectors.

Each step draws one primary minibatch and one auxiliary minibatch (the auxiliary named by the task
schedule, primary draws skipped; round-robin over the auxiliaries if the schedule never names one),
back-propagates each separately, and on the chosen shared parameters replaces the sum of the two
gradients by (Eq. 6 of the paper)::

    g = η_prim · g_prim + η_⊥ g_⊥ + η_+ g_+ + η_- g_-        (parts of g_aux, auxopt.grad.project)

Head parameters keep their own task's gradient; shared parameters outside the selection get the
plain sum ``g_prim + g_aux`` (what a plain step on the same two minibatches would give, whatever η
and η_prim are).

**Which parameters.** By default every encoder parameter except the word-embedding matrix
(``params=("encoder", "!*word_embeddings*")``; ``"!"`` removes names from the selection). That
matrix is about half of a small encoder (11.7 M of MiniLM-L6's 22.7 M) and its gradient is sparse
(only the rows of the batch's tokens are non-zero), so a basis over it spends most of its k × D
numbers and every D-sized pass on rows two minibatches rarely share. It is left undecomposed,
like the parameters outside the official code's ``-pca-layers`` (whose ``main.py`` in fact fills
that list with every layer of its ResNet, which has no such matrix), and gets the plain sum.
``params="encoder"`` puts it back in. The primary subspace ``V`` (k × D) is refreshed every ``every`` steps
from ``m`` primary training examples (:mod:`auxopt.grad.subspace`), by one of two methods:

* ``method="per_example"`` — exact: the m × D per-example gradient matrix J from one ``vmap`` of
  ``grad`` over the m examples, then the top-k right singular vectors of J from its m × m Gram
  matrix. About one forward and backward pass of the m examples; holds m × D fp32 for a moment.
* ``method="randomized"`` — randomised SVD from ``torch.func`` jvp/vjp products, never forming J:
  ``2 (power_iters + 1)`` batched passes of ``k + oversample`` directions over the m examples;
  memory ``2 (k + oversample) × D`` fp32, whatever m.
* ``method="auto"`` (default) — ``per_example`` when J (4·m·D bytes) fits in ``memory_budget``, else
  ``randomized``.

Choices worth knowing:

* **Dropout** is switched off (``model.eval()``) while the basis is computed: the randomised SVD
  multiplies by the same Jacobian several times (sketch, power iterations, projection), which only
  means something if the function is deterministic, and the subspace should describe the primary
  loss, not one dropout mask (either method). The training minibatches keep dropout as usual.
* **Attention** runs the eager (matmul + softmax) implementation while the basis is computed:
  PyTorch has no forward-mode derivative for the fused SDPA kernels that ``jvp`` needs (both methods
  use it, so that they describe the same function).
* **vmap** (per_example): transformers 5 decides whether to drop an attention mask by testing its
  values, which ``vmap`` cannot do; :func:`vmap_safe_masks` wraps that test (process-wide, once) to
  keep the mask where it cannot decide. A model whose forward still cannot be vmapped makes
  ``"auto"`` fall back to ``randomized`` for the run, with a warning (``"per_example"`` raises).
* **Precision**: the basis is computed without autocast, in the parameters' dtype (fp32); the
  projections and the recombination run in fp32 even when training under bf16 autocast.
* **Per step** (:meth:`Attittud.backward`), the two backward passes accumulate straight into the
  rows of one 2 × D fp32 buffer (the selected parameters' ``.grad`` are views of it), both
  coordinate vectors come from one pass over V and the direction is written in place by one more,
  and the parameters' ``.grad`` are left as views of that row: no D-sized copies beyond the two
  passes over V (a third on logging steps).
* **Memory**: the basis holds ``k × D`` fp32 numbers (4·k·D bytes; D = the selected parameters'
  size: 11.0 M for MiniLM-L6 by default, 22.7 M with its 11.7 M word embeddings, so k = 10 → 0.44
  or 0.9 GB), and the step two D-sized fp32 gradient rows; a refresh needs for a moment about
  ``2 (k + oversample) × D`` more (randomized) or ``m × D`` more (per_example; 64 × 11.0 M → 2.8 GB
  for MiniLM-L6 by default, 5.8 GB with the word embeddings). A basis larger than ``memory_budget``
  bytes is refused before training starts, and so is ``method="per_example"`` when its m × D
  Jacobian is; ``"auto"`` falls back to ``randomized`` then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from auxopt.errors import AuxoptError, check_integer
from auxopt.grad.project import DEFAULT_ETA, resolve_eta
from auxopt.grad.subspace import METHODS, GiB

if TYPE_CHECKING:
    from auxopt.grad.trainer_step import DecomposerStep

#: the default selection: every encoder parameter but the (sparse-gradient) word-embedding matrix
DEFAULT_PARAMS: tuple[str, ...] = ("encoder", "!*word_embeddings*")


@dataclass(frozen=True)
class GradientDecomposer:
    """ATTITTUD's gradient decomposition, a plugin for :class:`~auxopt.train.TrainConfig`
    (its ``decomposer`` field). Plain data: no Optuna in here (see :meth:`suggest`).

    Args:
        k: rank of the primary subspace (1 <= k <= m); official 10 (``-num-pca-basis``).
        m: primary examples in the reference batch the subspace is computed from; official 64
            (``-pca-nsamples``).
        every: recompute the subspace every this many steps (n in the paper); official 10
            (``-pca-every``).
        eta: ``(η_⊥, η_+, η_-)`` or a preset: ``"flip_conflicts"`` (1,1,−1, the official run's and
            the default), ``"multitask"`` (1,1,1), ``"drop_conflicts"`` (1,1,0), ``"helpful_only"``
            (0,1,0), ``"pcgrad"`` (1-D basis along g_prim, (1,1,0)).
        eta_prim: weight of the primary gradient added to the recombined auxiliary gradient.
        params: name pattern(s) (exact name, dotted prefix or ``fnmatch`` glob, over
            ``model.named_parameters()``) of the shared parameters to decompose on; a pattern
            starting with ``"!"`` removes the names it matches. Default: the encoder without its
            word-embedding matrix, ``("encoder", "!*word_embeddings*")``; ``"encoder"`` takes it
            too. Head parameters are never selected; unselected shared ones get ``g_prim + g_aux``.
        memory_budget: most bytes the k × D fp32 basis may take (default 4 GiB); also the most the
            per-example method's m × D fp32 Jacobian may take.
        method: how the basis is computed: ``"per_example"`` (exact, from the m × D per-example
            gradient matrix), ``"randomized"`` (randomised SVD, never forming it) or ``"auto"``
            (``per_example`` when 4·m·D bytes fit in ``memory_budget``, else ``randomized``).
        oversample: the randomised SVD's oversampling p (:func:`~auxopt.grad.randomized_basis`;
            the randomized method only).
        power_iters: the randomised SVD's power iterations q (the randomized method only).
        log_every: record the parts' norms every this many steps (and at step 1).
        seed: seeds the reference batches and sketches (None: the run's seed).
    """

    config_key: ClassVar[str] = "decomposer"  # where TrainConfig.describe() records it

    k: int = 10
    m: int = 64
    every: int = 10
    eta: Any = DEFAULT_ETA
    eta_prim: float = 1.0
    params: Any = DEFAULT_PARAMS
    memory_budget: float = 4 * GiB
    method: str = "auto"
    oversample: int = 5
    power_iters: int = 1
    log_every: int = 10
    seed: int | None = None

    def __post_init__(self) -> None:
        for key, low in (("k", 1), ("m", 1), ("every", 1), ("log_every", 1), ("oversample", 0), ("power_iters", 0)):
            check_integer("GradientDecomposer", key, getattr(self, key), low)
        if self.k > self.m:
            raise AuxoptError(
                f"GradientDecomposer: k={self.k} exceeds m={self.m}; m examples span at most m "
                "directions, so lower k or raise m"
            )
        eta, _ = resolve_eta(self.eta)
        if not isinstance(self.eta, str):
            object.__setattr__(self, "eta", eta)
        if not isinstance(self.eta_prim, int | float) or not math.isfinite(self.eta_prim):
            raise AuxoptError(f"GradientDecomposer: eta_prim must be a finite number, not {self.eta_prim!r}")
        if isinstance(self.params, str):
            patterns = (self.params,)
        else:
            try:
                patterns = tuple(self.params)
            except TypeError:
                raise AuxoptError(f"GradientDecomposer: params must be name pattern(s), not {self.params!r}") from None
        if not patterns or not all(isinstance(p, str) and p.lstrip("!") for p in patterns):
            raise AuxoptError(f"GradientDecomposer: params must be non-empty name pattern(s), not {self.params!r}")
        if all(p.startswith("!") for p in patterns):
            raise AuxoptError(
                f"GradientDecomposer: params {self.params!r} only exclude ('!'); name what to select first, "
                "e.g. ('encoder', '!*word_embeddings*')"
            )
        object.__setattr__(self, "params", self.params if isinstance(self.params, str) else patterns)
        if not (isinstance(self.memory_budget, int | float) and self.memory_budget > 0):
            raise AuxoptError(
                f"GradientDecomposer: memory_budget must be a positive number of bytes, not {self.memory_budget!r}"
            )
        if self.method not in METHODS:
            raise AuxoptError(
                f"GradientDecomposer: method must be one of {', '.join(map(repr, METHODS))}, not {self.method!r}"
            )

    @property
    def basis_kind(self) -> str:
        return resolve_eta(self.eta)[1]

    def describe(self) -> dict[str, Any]:
        eta, kind = resolve_eta(self.eta)
        return {
            "kind": "GradientDecomposer",
            "k": self.k,
            "m": self.m,
            "every": self.every,
            "eta": list(eta),
            "preset": self.eta if isinstance(self.eta, str) else None,
            "basis": kind,
            "eta_prim": self.eta_prim,
            "params": self.params if isinstance(self.params, str) else list(self.params),
            "memory_budget": self.memory_budget,
            "method": self.method,
            "oversample": self.oversample,
            "power_iters": self.power_iters,
            "log_every": self.log_every,
            "seed": self.seed,
        }

    def make_step(self, ctx) -> DecomposerStep:
        from auxopt.grad.trainer_step import DecomposerStep

        return DecomposerStep(ctx, self)

    def check_tasks(self, primary, auxiliaries: list[str]) -> None:
        """An :class:`AuxoptError` when a run cannot decompose: no auxiliary task with a positive
        ratio (``auxiliaries``), or a primary with fewer training examples than the subspace's rank."""
        if not auxiliaries:
            raise AuxoptError(
                "GradientDecomposer needs at least one auxiliary task with a positive ratio; "
                "add auxiliaries to the TrainConfig (or drop the decomposer)"
            )
        n_train = len(primary.train)
        if self.basis_kind == "subspace" and n_train < self.k:
            raise AuxoptError(
                f"GradientDecomposer: k={self.k} but the primary task has only {n_train} training examples; lower k"
            )

    def check(self, config) -> None:
        """The checks of :meth:`check_tasks` on ``config``'s tasks, before training (called by
        :meth:`TrainConfig.validate <auxopt.train.TrainConfig.validate>`)."""
        self.check_tasks(config.primary, [n for n in config.active_ratios() if n != config.primary.name])

    @classmethod
    def suggest(
        cls,
        trial,
        *,
        k: int | tuple[int, int] = 10,
        m: int | tuple[int, int] = 64,
        every: int | tuple[int, int] = 10,
        eta: tuple[float, float] | str | tuple[float, float, float] = (0.0, 1.0),
        eta_prim: float | tuple[float, float] = 1.0,
        prefix: str = "attittud_",
        **fixed: Any,
    ) -> GradientDecomposer:
        """A decomposer with settings suggested through an Optuna ``trial``.

        Each of ``k``, ``m``, ``every`` and ``eta_prim`` is either fixed (a number) or searched over a
        ``(low, high)`` range (integers on a log scale; k is capped at m). ``eta`` is a preset name or
        three fixed numbers (fixed), or a ``(low, high)`` range each of η_⊥, η_+, η_- is searched in.
        Parameter names start with ``prefix``; ``fixed`` passes other fields (``params``, …).
        """

        def integer(name: str, value, high_cap: int | None = None) -> int:
            if isinstance(value, tuple):
                low, high = value
                high = min(high, high_cap) if high_cap is not None else high
                return trial.suggest_int(prefix + name, low, max(low, high), log=low > 0 and high > low)
            return value

        m_value = integer("m", m)
        k_value = integer("k", k, high_cap=m_value)
        every_value = integer("every", every)
        if isinstance(eta, tuple) and len(eta) == 2:
            low, high = eta
            eta_value: Any = tuple(
                trial.suggest_float(prefix + f"eta_{part}", low, high) for part in ("perp", "pos", "neg")
            )
        else:
            eta_value = eta
        if isinstance(eta_prim, tuple):
            eta_prim_value = trial.suggest_float(prefix + "eta_prim", *eta_prim)
        else:
            eta_prim_value = eta_prim
        return cls(k=k_value, m=m_value, every=every_value, eta=eta_value, eta_prim=eta_prim_value, **fixed)
