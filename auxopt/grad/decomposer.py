"""``GradientDecomposer``: ATTITTUD (Dery, Dauphin & Grangier, ICLR 2021) as a trainer step strategy.

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

    g = η_prim · g_prim + η_⊥ g_⊥ + η_+ g_+ + η_- g_-        (parts of g_aux, auxopt.grad.decompose)

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
* **Per step**, the two backward passes accumulate straight into the rows of one 2 × D fp32 buffer
  (the selected parameters' ``.grad`` are views of it), both coordinate vectors come from one pass
  over V and the direction is written in place by one more, and the parameters' ``.grad`` are left
  as views of that row: no D-sized copies beyond the two passes over V (a third on logging steps).
* **Memory**: the basis holds ``k × D`` fp32 numbers (4·k·D bytes; D = the selected parameters'
  size: 11.0 M for MiniLM-L6 by default, 22.7 M with its 11.7 M word embeddings, so k = 10 → 0.44
  or 0.9 GB), and the step two D-sized fp32 gradient rows; a refresh needs for a moment about
  ``2 (k + oversample) × D`` more (randomized) or ``m × D`` more (per_example; 64 × 11.0 M → 2.8 GB
  for MiniLM-L6 by default, 5.8 GB with the word embeddings). A basis larger than ``memory_budget``
  bytes is refused before training starts, and so is ``method="per_example"`` when its m × D
  Jacobian is; ``"auto"`` falls back to ``randomized`` then.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from auxopt.errors import AuxoptError
from auxopt.grad.decompose import (
    DEFAULT_ETA,
    part_norms,
    primary_grad_basis,
    recombine_,
    resolve_eta,
)
from auxopt.grad.subspace import basis_bytes, format_bytes, per_example_basis, randomized_basis

GiB = 2**30
METHODS = ("auto", "per_example", "randomized")
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
        oversample, power_iters: randomised SVD's p and q (:func:`~auxopt.grad.randomized_basis`;
            the randomized method only).
        log_every: record the parts' norms every this many steps (and at step 1).
        seed: seeds the reference batches and sketches (None: the run's seed).
    """

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
        for key in ("k", "m", "every", "log_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AuxoptError(f"GradientDecomposer: {key} must be an integer >= 1, not {value!r}")
        for key in ("oversample", "power_iters"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise AuxoptError(f"GradientDecomposer: {key} must be an integer >= 0, not {value!r}")
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
            raise AuxoptError(f"GradientDecomposer: memory_budget must be a positive number of bytes, not {self.memory_budget!r}")
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
            "kind": "GradientDecomposer", "k": self.k, "m": self.m, "every": self.every,
            "eta": list(eta), "preset": self.eta if isinstance(self.eta, str) else None, "basis": kind,
            "eta_prim": self.eta_prim, "params": self.params if isinstance(self.params, str) else list(self.params),
            "memory_budget": self.memory_budget, "method": self.method, "oversample": self.oversample,
            "power_iters": self.power_iters, "log_every": self.log_every, "seed": self.seed,
        }

    def make_step(self, ctx) -> DecomposerStep:
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
                f"GradientDecomposer: k={self.k} but the primary task has only {n_train} training "
                "examples; lower k"
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
            eta_value: Any = tuple(trial.suggest_float(prefix + f"eta_{part}", low, high) for part in ("perp", "pos", "neg"))
        else:
            eta_value = eta
        if isinstance(eta_prim, tuple):
            eta_prim_value = trial.suggest_float(prefix + "eta_prim", *eta_prim)
        else:
            eta_prim_value = eta_prim
        return cls(k=k_value, m=m_value, every=every_value, eta=eta_value, eta_prim=eta_prim_value, **fixed)


def select_parameters(model: torch.nn.Module, patterns) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable non-head parameters whose names match any pattern (exact name, a dotted
    prefix such as ``"encoder"`` or ``"encoder.encoder.layer.5"``, or an ``fnmatch`` glob) and no
    ``"!"`` pattern (the same rules: ``"!*word_embeddings*"`` drops the word-embedding matrix)."""
    patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]

    def matches(name: str, pats) -> bool:
        return any(name == pat or name.startswith(pat.rstrip(".") + ".") or fnmatch.fnmatchcase(name, pat) for pat in pats)

    chosen = [(n, p) for n, p in named if matches(n, include) and not matches(n, exclude)]
    if not chosen:
        examples = ", ".join(n for n, _ in named[:3])
        raise AuxoptError(
            f"GradientDecomposer: params {patterns!r} match no shared parameter; give a name prefix or "
            f"glob such as 'encoder' or 'encoder.encoder.layer.*' (names look like: {examples}, …)"
        )
    return chosen


def per_example_loss(task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy (classification) or squared error (regression), in fp32."""
    logits = logits.float()
    if task.kind == "classification":
        return F.cross_entropy(logits, labels, reduction="none")
    return (logits.squeeze(-1) - labels) ** 2


@contextlib.contextmanager
def eager_attention(module: torch.nn.Module):
    """Run a transformers model with eager attention inside (SDPA kernels have no forward-mode AD)."""
    config = getattr(module, "config", None)
    old = getattr(config, "_attn_implementation", None)
    if config is None or old in (None, "eager"):
        yield
        return
    config._attn_implementation = "eager"
    try:
        yield
    finally:
        config._attn_implementation = old


_MASK_CHECKS = ("_ignore_bidirectional_mask_sdpa", "_ignore_causal_mask_sdpa")


def vmap_safe_masks() -> None:
    """Let transformers build attention masks under ``torch.func.vmap`` (the per-example method).

    transformers 5 drops a 2-D padding mask that masks nothing by testing ``padding_mask.all()`` (in
    ``masking_utils``), a data-dependent branch that vmap cannot take. This wraps those tests, once per
    process, so that where one raises the mask is built instead — the same attention, with an explicit
    all-visible mask; everywhere else they answer as before. Versions without the tests are left alone.
    """
    try:
        from transformers import masking_utils
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    for name in _MASK_CHECKS:
        check = getattr(masking_utils, name, None)
        if check is None or getattr(check, "_auxopt_vmap_safe", False):
            continue

        def safe(*args, _check=check, **kwargs) -> bool:
            try:
                return _check(*args, **kwargs)
            except RuntimeError:  # undecidable under vmap: keep (materialise) the mask
                return False

        safe._auxopt_vmap_safe = True
        setattr(masking_utils, name, functools.wraps(check)(safe))


class DecomposerStep:
    """The step strategy of :class:`GradientDecomposer` (see the module docstring)."""

    def __init__(self, ctx, spec: GradientDecomposer):
        from auxopt.train.step import Batches

        self.ctx, self.spec = ctx, spec
        self.eta, self.basis_kind = resolve_eta(spec.eta)
        self.primary = ctx.primary.name
        self.auxiliaries = [n for n in ctx.tasks if n != self.primary]
        spec.check_tasks(ctx.primary, self.auxiliaries)
        chosen = select_parameters(ctx.model, spec.params)
        self.names = [n for n, _ in chosen]
        self.shared = [p for _, p in chosen]
        self.dim = sum(p.numel() for p in self.shared)
        if self.basis_kind == "subspace" and basis_bytes(spec.k, self.dim) > spec.memory_budget:
            raise AuxoptError(
                f"GradientDecomposer: the basis needs k × D = {spec.k} × {self.dim:,} fp32 numbers = "
                f"{format_bytes(basis_bytes(spec.k, self.dim))}, over memory_budget "
                f"{format_bytes(spec.memory_budget)}; lower k, select fewer params "
                "(e.g. params='encoder.encoder') or raise memory_budget"
            )
        n_train = len(ctx.train_data[self.primary])
        seed = ctx.config.seed if spec.seed is None else spec.seed
        self.m = min(spec.m, n_train)
        jacobian_bytes = basis_bytes(self.m, self.dim)  # the per-example method's m × D fp32
        if spec.method == "auto":
            self.method = "per_example" if jacobian_bytes <= spec.memory_budget else "randomized"
        else:
            self.method = spec.method
        if self.basis_kind == "subspace" and self.method == "per_example" and jacobian_bytes > spec.memory_budget:
            raise AuxoptError(
                f"GradientDecomposer: method='per_example' holds the m × D = {self.m} × {self.dim:,} "
                f"per-example gradients = {format_bytes(jacobian_bytes)}, over memory_budget "
                f"{format_bytes(spec.memory_budget)}; use method='randomized' (or 'auto'), lower m, "
                "select fewer params or raise memory_budget"
            )
        self.reference = Batches(n_train, self.m, seed * 7919 + 17)
        self.generator = torch.Generator().manual_seed(seed * 7919 + 18)
        self.basis: torch.Tensor | None = None
        self.singular_values: list[float] = []
        self.last_refresh, self.refreshes, self.basis_seconds, self.next_aux = 0, 0, 0.0, 0
        self.log: dict[str, list] = {"steps": [], "pos": [], "neg": [], "perp": [], "prim": []}
        #: the step's two gradients on the selected parameters, fp32: row 0 g_prim, row 1 g_aux (then
        #: the update direction, which the parameters' .grad are left as views of)
        self.pair: torch.Tensor | None = None

    # -- the primary subspace -------------------------------------------------------------
    def refresh(self, step: int) -> None:
        """Recompute V from a fresh reference batch of m primary examples (dropout off, fp32), by
        ``self.method`` (``"per_example"`` or ``"randomized"``; ``"auto"`` is resolved in ``__init__``)."""
        from torch.func import functional_call

        ctx, task = self.ctx, self.ctx.primary
        start = time.perf_counter()
        index = self.reference.next()
        inputs = {k: v.to(ctx.device) for k, v in ctx.train_data[self.primary].batch(index).items()}
        labels = ctx.train_labels[self.primary][index].to(ctx.device)
        model = ctx.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), eager_attention(model.encoder), torch.autocast(ctx.device.type, enabled=False):

                def losses(params, batch):
                    batch_inputs, batch_labels = batch
                    logits = functional_call(model, params, args=(task.head_name,), kwargs=batch_inputs)
                    return per_example_loss(task, logits, batch_labels)

                params = dict(zip(self.names, self.shared, strict=True))
                if self.method == "per_example":
                    try:
                        vmap_safe_masks()
                        basis, s = per_example_basis(losses, params, (inputs, labels), self.spec.k)
                    except RuntimeError as error:  # the model does something vmap cannot batch
                        if "vmap" not in str(error):
                            raise
                        self._per_example_failed(error)
                if self.method == "randomized":
                    basis, s = randomized_basis(
                        lambda p: losses(p, (inputs, labels)), params, self.spec.k,
                        oversample=self.spec.oversample, power_iters=self.spec.power_iters,
                        generator=self.generator,
                    )
        finally:
            model.train(was_training)
        self.basis = basis.float()
        self.singular_values = [float(x) for x in s]
        self.last_refresh, self.refreshes = step, self.refreshes + 1
        self.basis_seconds += time.perf_counter() - start

    def _per_example_failed(self, error: RuntimeError) -> None:
        """``method="auto"`` falls back to the randomized method (for the rest of the run, with a
        warning); an explicit ``method="per_example"`` is an error."""
        if self.spec.method == "per_example":
            raise AuxoptError(
                "GradientDecomposer: method='per_example' cannot batch this model's per-example "
                f"gradients with torch.func.vmap ({str(error).splitlines()[0]}); use method='randomized'"
            ) from error
        warnings.warn(
            f"GradientDecomposer: the per-example basis failed under torch.func.vmap ({str(error).splitlines()[0]}); "
            "using method='randomized' for this run",
            RuntimeWarning, stacklevel=3,
        )
        self.method = "randomized"

    # -- one step ------------------------------------------------------------------------
    def _auxiliary(self) -> str:
        for _ in range(4 * len(self.ctx.tasks)):
            name = self.ctx.schedule.next_task()
            if name != self.primary:
                return name
        name = self.auxiliaries[self.next_aux % len(self.auxiliaries)]
        self.next_aux += 1
        return name

    def _views(self, row: torch.Tensor) -> list[torch.Tensor]:
        """``row`` (D) split into tensors shaped like the selected parameters (views, no copy)."""
        out, start = [], 0
        for p in self.shared:
            out.append(row[start : start + p.numel()].view_as(p))
            start += p.numel()
        return out

    def _bind(self, row: torch.Tensor) -> None:
        """Zero ``row`` and make it the selected fp32 parameters' ``.grad``, so that the next backward
        pass accumulates into it in place; others (not fp32) start from no gradient (see :meth:`_gather`)."""
        row.zero_()
        for p, view in zip(self.shared, self._views(row), strict=True):
            p.grad = view if p.dtype == torch.float32 else None

    def _gather(self, row: torch.Tensor) -> None:
        """Copy the gradients of the selected parameters that are not views of ``row`` into it
        (only parameters that are not fp32, or whose ``.grad`` something replaced)."""
        for p, view in zip(self.shared, self._views(row), strict=True):
            if p.grad is not None and p.grad.data_ptr() != view.data_ptr():
                view.copy_(p.grad)

    def backward(self, step: int) -> dict[str, int]:
        ctx = self.ctx
        if self.basis_kind == "subspace" and (self.basis is None or step - self.last_refresh >= self.spec.every):
            self.refresh(step)
        aux = self._auxiliary()
        if self.pair is None:
            self.pair = torch.empty(2, self.dim, dtype=torch.float32, device=self.shared[0].device)
        pair = self.pair
        self._bind(pair[0])
        loss_p, n_p = ctx.loss(self.primary, step)
        loss_p.backward()
        self._gather(pair[0])
        self._bind(pair[1])
        loss_a, n_a = ctx.loss(aux, step)
        loss_a.backward()
        self._gather(pair[1])
        with torch.no_grad():
            g_prim = pair[0]
            basis = self.basis if self.basis_kind == "subspace" else primary_grad_basis(g_prim)
            logging = step == 1 or step % self.spec.log_every == 0
            coords = None
            if logging:  # before recombine_ overwrites g_aux (pair[1])
                coords = pair @ basis.T
                norms = part_norms(pair[1], basis, coords[1], coords[0])
            recombine_(pair, basis, self.eta, coords)
            pair[1].add_(g_prim, alpha=self.spec.eta_prim)
            for p, view in zip(self.shared, self._views(pair[1]), strict=True):
                p.grad = view if p.dtype == torch.float32 else view.to(p.dtype)
            if logging:
                self.log["steps"].append(int(step))
                for key in ("pos", "neg", "perp"):
                    self.log[key].append(round(norms[key], 6))
                self.log["prim"].append(round(float(torch.linalg.vector_norm(g_prim)), 6))
        return {self.primary: n_p, aux: n_a}

    # -- records and checkpoints -----------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {
            "grad_parts": {key: list(values) for key, values in self.log.items()},
            "grad_basis": {
                "kind": self.basis_kind, "method": self.method, "dim": self.dim, "k": self.spec.k, "m": self.m,
                "refreshes": self.refreshes, "seconds": round(self.basis_seconds, 3),
                "singular_values": [round(s, 6) for s in self.singular_values],
            },
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "basis": None if self.basis is None else self.basis.detach().cpu().clone(),
            "singular_values": list(self.singular_values),
            "last_refresh": self.last_refresh,
            "refreshes": self.refreshes,
            "basis_seconds": self.basis_seconds,
            "next_aux": self.next_aux,
            "reference": self.reference.state_dict(),
            "generator": self.generator.get_state(),
            "log": {key: list(values) for key, values in self.log.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        basis = state.get("basis")
        if basis is not None and tuple(basis.shape) != (self.spec.k, self.dim):
            raise AuxoptError(
                f"checkpointed ATTITTUD basis has shape {tuple(basis.shape)}, but this run needs "
                f"({self.spec.k}, {self.dim}); resume with the same k and params"
            )
        self.basis = None if basis is None else basis.to(self.ctx.device, torch.float32)
        self.singular_values = list(state["singular_values"])
        self.last_refresh, self.refreshes = int(state["last_refresh"]), int(state["refreshes"])
        self.basis_seconds, self.next_aux = float(state["basis_seconds"]), int(state["next_aux"])
        self.reference.load_state_dict(state["reference"])
        self.generator.set_state(state["generator"])
        self.log = {key: list(values) for key, values in state["log"].items()}
