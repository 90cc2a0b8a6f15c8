"""ATTITTUD (Dery, Dauphin & Grangier, ICLR 2021) as a functional core for any training loop.

:class:`Attittud` holds the primary task's subspace over a list of shared parameters, refreshes it
from a per-example primary loss that the caller supplies, and leaves the decomposed update in the
parameters' ``.grad``. auxopt's own trainer (:class:`~auxopt.grad.GradientDecomposer`) calls it, so
a plain PyTorch loop runs the very same method::

    import torch.nn.functional as F
    from torch.func import functional_call
    from auxopt.grad import Attittud

    shared = dict(model.trunk.named_parameters(prefix="trunk"))         # what both tasks train
    attittud = Attittud(shared, k=5, every=10, eta=(1.0, 1.0, -1.0))    # (η⊥, η+, η−)

    def per_example_loss(params, batch):     # params: {name: tensor} of `shared`; one loss per example
        x, y = batch
        return F.cross_entropy(functional_call(model, params, (x, "primary")), y, reduction="none")

    for step in range(steps):
        if attittud.due():                   # step 1, then every `every` steps
            attittud.refresh(per_example_loss, (x_ref, y_ref), module=model)   # m primary examples
        loss_p = F.cross_entropy(model(x_p, "primary"), y_p)
        loss_a = F.cross_entropy(model(x_a, "aux"), y_a)
        optimizer.zero_grad()
        attittud.backward(loss_p, loss_a)    # shared .grad: g_prim + η⊥g⊥ + η+g+ + η−g−; others: the sum
        optimizer.step()

``examples/attittud_digits.py`` runs it on scikit-learn's digits.

**Refresh.** :meth:`Attittud.refresh` computes ``V`` (k × D, orthonormal rows, fp32), the top-k right
singular vectors of the m × D matrix of per-example primary gradients on the shared parameters
(:mod:`auxopt.grad.subspace`): ``method="per_example"`` forms that matrix with one ``vmap`` of
``grad`` and takes V exactly; ``"randomized"`` runs a randomised SVD from ``jvp``/``vjp`` products
and never forms it; ``"auto"`` takes ``per_example`` when its 4·m·D bytes fit in ``memory_budget``
(and falls back to ``randomized``, with a warning, when the loss cannot be vmapped). The loss
function is ``loss_fn(params, batch) -> (b,)``: a pure function of ``params`` (a dict of the shared
tensors, as ``torch.func.functional_call`` takes them) and of a batch (any pytree of tensors whose
leading dimension is the examples); the per-example method calls it on single examples (b = 1)
under ``vmap``. It runs under ``torch.no_grad()`` with autocast off, and, given ``module=``, under
:func:`~auxopt.grad.modes.basis_mode` (dropout off, eager attention): the randomised SVD multiplies by the same
Jacobian several times, which only means something if the function is deterministic, and fused
attention kernels have no forward-mode derivative.

**Backward.** :meth:`Attittud.backward` back-propagates the primary loss and each auxiliary loss
separately (tensors, or zero-argument callables evaluated just before their backward pass so that
only one graph is alive at a time) and then, on the shared parameters, replaces the sum of the
gradients by (Eq. 6 of the paper, :mod:`auxopt.grad.project`)::

    g = η_prim · g_prim + Σ_aux (η_⊥ g_⊥ + η_+ g_+ + η_- g_-)

Every other parameter reached by the losses gets the plain sum of their gradients, as
``(primary + Σ aux).backward()`` would give it (accumulated into its ``.grad`` as usual); the
shared parameters' ``.grad`` are *replaced*. Memory: the backward passes accumulate straight into
the rows of one (1 + n_aux) × D fp32 buffer (the shared fp32 parameters' ``.grad`` are views of
it), both coordinate vectors come from one pass over V and each direction is written in place by
one more; the shared ``.grad`` are left as views of that buffer (reused by the next call).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from auxopt.errors import AuxoptError, check_integer
from auxopt.grad.modes import basis_mode, vmap_safe_masks
from auxopt.grad.project import DEFAULT_ETA, part_norms, primary_grad_basis, recombine_, resolve_eta
from auxopt.grad.subspace import (
    METHODS,
    GiB,
    Groups,
    basis_bytes,
    format_bytes,
    group_losses,
    per_example_basis,
    randomized_basis,
)

#: a per-example primary loss: ``(params, batch) -> (b,)`` losses (see :meth:`Attittud.refresh`)
LossFn = Callable[[dict[str, torch.Tensor], Any], torch.Tensor]
#: a loss for :meth:`Attittud.backward`: a scalar tensor or a zero-argument callable returning one
Loss = torch.Tensor | Callable[[], torch.Tensor]


def _named(params: Any, label: str) -> dict[str, torch.Tensor]:
    """``params`` (a mapping or (name, tensor) pairs) as a dict, checked."""
    if isinstance(params, torch.Tensor):
        params = [params]
    try:
        items = list(params.items()) if isinstance(params, Mapping) else list(params)
    except TypeError:
        items = None
    if items is None or not all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], torch.Tensor)
        for item in items
    ):
        raise AuxoptError(
            f"{label}: params must be named tensors — a dict {{name: parameter}} or (name, parameter) "
            "pairs such as model.trunk.named_parameters(), with the names your per-example loss passes "
            f"to torch.func.functional_call; got {type(params).__name__}"
        )
    named = dict(items)
    if not named:
        raise AuxoptError(f"{label}: params is empty; pass the shared parameters to decompose on")
    if len(named) != len(items) or len({id(p) for p in named.values()}) != len(named):
        raise AuxoptError(f"{label}: params names a parameter twice; pass each shared parameter once")
    frozen = [n for n, p in named.items() if not p.requires_grad]
    if frozen:
        raise AuxoptError(f"{label}: params {frozen[:3]} do not require grad; leave frozen parameters out")
    return named


def _batch_size(batch: Any) -> int:
    from torch.utils._pytree import tree_leaves

    if isinstance(batch, Groups):
        return batch.size()

    for leaf in tree_leaves(batch):
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    raise AuxoptError("Attittud.refresh: the batch holds no tensor with a leading (examples) dimension")


class Attittud:
    """ATTITTUD over ``params``, the shared parameters (see the module docstring).

    Args:
        params: the shared parameters to decompose on: a dict ``{name: parameter}`` or ``(name,
            parameter)`` pairs, named as the per-example loss's ``functional_call`` expects them.
        k: rank of the primary subspace (k <= m, the examples of each reference batch).
        every: :meth:`due` asks for a refresh every this many steps (n in the paper; also at the
            first step).
        eta: ``(η_⊥, η_+, η_-)`` or a preset name (:data:`~auxopt.grad.ATTITTUD_PRESETS`; ``"pcgrad"`` uses the
            1-D basis along the step's primary gradient and needs no refresh). Default (1, 1, −1):
            keep ⊥ and +, flip the conflicting part.
        eta_prim: weight of the primary gradient in the update.
        method: ``"per_example"``, ``"randomized"`` or ``"auto"`` (how :meth:`refresh` computes V).
        m: the reference batch size, when known in advance: ``"auto"`` is then resolved and the
            per-example memory checked here rather than at the first refresh.
        memory_budget: most bytes the k × D fp32 basis may take, and the per-example method's m × D
            gradients (default 4 GiB).
        oversample: the randomised SVD's oversampling p (:func:`~auxopt.grad.randomized_basis`).
        power_iters: the randomised SVD's power iterations q.
        seed: seeds the randomised SVD's sketches (its own generator, checkpointed by
            :meth:`state_dict`); None draws them from torch's global generator.
        chunk_size: passed to ``torch.func.vmap`` (bounds the memory of a refresh).

    Attributes: ``basis`` (k × D fp32, None before the first refresh), ``singular_values``,
    ``method`` (resolved), ``names``, ``params`` (dict), ``dim`` (D), ``steps`` (backward calls),
    ``refreshes``, ``last_refresh`` (step of the last refresh), ``basis_seconds``.
    """

    _name = "Attittud"  # how error messages name the caller
    _fewer = "pass fewer parameters"

    def __init__(
        self,
        params: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
        *,
        k: int = 10,
        every: int = 10,
        eta: Any = DEFAULT_ETA,
        eta_prim: float = 1.0,
        method: str = "auto",
        m: int | None = None,
        memory_budget: float = 4 * GiB,
        oversample: int = 5,
        power_iters: int = 1,
        seed: int | None = None,
        chunk_size: int | None = None,
    ):
        label = self._name
        self.k = check_integer(label, "k", k, 1)
        self.every = check_integer(label, "every", every, 1)
        self.oversample = check_integer(label, "oversample", oversample, 0)
        self.power_iters = check_integer(label, "power_iters", power_iters, 0)
        self.eta, self.basis_kind = resolve_eta(eta)
        if isinstance(eta_prim, bool) or not isinstance(eta_prim, int | float) or not math.isfinite(eta_prim):
            raise AuxoptError(f"{label}: eta_prim must be a finite number, not {eta_prim!r}")
        self.eta_prim = float(eta_prim)
        if method not in METHODS:
            raise AuxoptError(f"{label}: method must be one of {', '.join(map(repr, METHODS))}, not {method!r}")
        if isinstance(memory_budget, bool) or not (isinstance(memory_budget, int | float) and memory_budget > 0):
            raise AuxoptError(f"{label}: memory_budget must be a positive number of bytes, not {memory_budget!r}")
        self.memory_budget, self.chunk_size = memory_budget, chunk_size
        self.params = _named(params, label)
        self.names = list(self.params)
        self.dim = sum(p.numel() for p in self.params.values())
        if self.basis_kind == "subspace" and basis_bytes(self.k, self.dim) > memory_budget:
            raise AuxoptError(
                f"{label}: the basis needs k × D = {self.k} × {self.dim:,} fp32 numbers = "
                f"{format_bytes(basis_bytes(self.k, self.dim))}, over memory_budget "
                f"{format_bytes(memory_budget)}; lower k, {self._fewer} or raise memory_budget"
            )
        self.requested_method = method
        self.method = method  # resolved by the first refresh, or here when m is given
        self._fallback = False  # "auto" after a vmap failure: randomized from then on
        if m is not None:
            check_integer(label, "m", m, 1)
            self.method = self._resolve(m)
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.basis: torch.Tensor | None = None
        self.singular_values: list[float] = []
        self.steps, self.refreshes, self.last_refresh, self.basis_seconds = 0, 0, 0, 0.0
        self._rows: torch.Tensor | None = None  # the (1 + n_aux) × D fp32 gradient buffer

    # -- the primary subspace --------------------------------------------------------------
    def _resolve(self, m: int) -> str:
        """The method for a reference batch of ``m`` examples (checks the per-example memory)."""
        jacobian = basis_bytes(m, self.dim)  # the per-example method's m × D fp32
        if self.requested_method == "auto":
            return "per_example" if jacobian <= self.memory_budget and not self._fallback else "randomized"
        if self.basis_kind == "subspace" and self.requested_method == "per_example" and jacobian > self.memory_budget:
            raise AuxoptError(
                f"{self._name}: method='per_example' holds the m × D = {m} × {self.dim:,} "
                f"per-example gradients = {format_bytes(jacobian)}, over memory_budget "
                f"{format_bytes(self.memory_budget)}; use method='randomized' (or 'auto'), lower m, "
                f"{self._fewer} or raise memory_budget"
            )
        return self.requested_method

    def due(self, step: int | None = None) -> bool:
        """Whether the subspace needs a refresh before step ``step`` (default: the next backward call,
        ``steps + 1``): no basis yet, or ``every`` steps since the last refresh. Never for
        ``eta="pcgrad"`` (its basis is the step's primary gradient)."""
        step = self.steps + 1 if step is None else step
        return self.basis_kind == "subspace" and (self.basis is None or step - self.last_refresh >= self.every)

    def refresh(
        self, loss_fn: LossFn, batch: Any, *, module: torch.nn.Module | None = None, step: int | None = None
    ) -> torch.Tensor | None:
        """Recompute V from the per-example primary losses of a reference ``batch`` (m examples).

        Args:
            loss_fn: ``(params, batch) -> (b,)`` per-example primary losses, a pure function of
                ``params`` (``{name: tensor}`` of the shared parameters, typically through
                ``torch.func.functional_call``); called on single examples (b = 1) under ``vmap``
                by the per-example method.
            batch: a pytree of tensors (tuple, dict, …) whose leading dimension is the m examples,
                or :class:`~auxopt.grad.subspace.Groups` of such batches (for instance the examples
                sorted by length and each group padded to its own longest: less padding computed).
            module: the model; when given, the computation runs under :func:`basis_mode` (dropout off,
                eager attention) and the model gets its modes back afterwards.
            step: the step this basis serves (default ``steps + 1``), for :meth:`due`.

        Returns V (k × D, fp32), also kept as ``self.basis``; None (nothing to do) for ``"pcgrad"``.
        """
        if self.basis_kind != "subspace":
            return None
        m = _batch_size(batch)
        if self.k > m:
            raise AuxoptError(
                f"{self._name}: k={self.k} but the reference batch has only {m} examples; m examples "
                "span at most m directions, so lower k or pass more examples"
            )
        method = self.method = self._resolve(m)
        start = time.perf_counter()
        first = next(iter(self.params.values()))
        with (
            basis_mode(module) if module is not None else contextlib.nullcontext(),
            torch.no_grad(),
            torch.autocast(first.device.type, enabled=False),
        ):
            if method == "per_example":
                try:
                    if "transformers" in sys.modules:  # only a transformers model needs (and pays for) it
                        vmap_safe_masks()
                    basis, s = per_example_basis(loss_fn, self.params, batch, self.k, chunk_size=self.chunk_size)
                except RuntimeError as error:  # the model does something vmap cannot batch
                    if "vmap" not in str(error):
                        raise
                    method = self._per_example_failed(error)
            if method == "randomized":
                basis, s = randomized_basis(
                    group_losses(loss_fn, batch),
                    self.params,
                    self.k,
                    oversample=self.oversample,
                    power_iters=self.power_iters,
                    generator=self.generator,
                    chunk_size=self.chunk_size,
                )
        self.basis = basis.float()
        self.singular_values = [float(x) for x in s]
        self.last_refresh = self.steps + 1 if step is None else int(step)
        self.refreshes += 1
        self.basis_seconds += time.perf_counter() - start
        return self.basis

    def _per_example_failed(self, error: RuntimeError) -> str:
        """``method="auto"`` falls back to the randomized method (from now on, with a warning); an
        explicit ``method="per_example"`` is an error."""
        if self.requested_method == "per_example":
            raise AuxoptError(
                f"{self._name}: method='per_example' cannot batch this model's per-example "
                f"gradients with torch.func.vmap ({str(error).splitlines()[0]}); use method='randomized'"
            ) from error
        warnings.warn(
            f"{self._name}: the per-example basis failed under torch.func.vmap ({str(error).splitlines()[0]}); "
            "using method='randomized' for this run",
            RuntimeWarning,
            stacklevel=3,
        )
        self._fallback, self.method = True, "randomized"
        return "randomized"

    # -- the decomposed backward pass ------------------------------------------------------------
    def _views(self, row: torch.Tensor) -> list[torch.Tensor]:
        """``row`` (D) split into tensors shaped like the shared parameters (views, no copy)."""
        out, start = [], 0
        for p in self.params.values():
            out.append(row[start : start + p.numel()].view_as(p))
            start += p.numel()
        return out

    def _bind(self, row: torch.Tensor) -> None:
        """Zero ``row`` and make it the shared fp32 parameters' ``.grad``, so that the next backward
        pass accumulates into it in place; others (not fp32) start from no gradient (see :meth:`_gather`)."""
        row.zero_()
        for p, view in zip(self.params.values(), self._views(row), strict=True):
            p.grad = view if p.dtype == torch.float32 else None

    def _gather(self, row: torch.Tensor) -> None:
        """Copy the gradients of the shared parameters that are not views of ``row`` into it (only
        parameters that are not fp32, or whose ``.grad`` something replaced)."""
        for p, view in zip(self.params.values(), self._views(row), strict=True):
            if p.grad is not None and p.grad.data_ptr() != view.data_ptr():
                view.copy_(p.grad)

    def backward(
        self,
        primary_loss: Loss,
        aux_losses: Loss | Sequence[Loss],
        *,
        eta: Any = None,
        eta_prim: float | None = None,
        norms: bool = False,
    ) -> dict[str, Any] | None:
        """Back-propagate ``primary_loss`` and each of ``aux_losses`` apart and leave
        ``η_prim·g_prim + Σ_aux (η_⊥ g_⊥ + η_+ g_+ + η_- g_-)`` in the shared parameters' ``.grad``
        (replacing what was there), the plain sum of all gradients in every other parameter's.

        Args:
            primary_loss: the primary minibatch's loss: a scalar tensor, or a zero-argument callable
                returning one (called right before its backward pass: one graph alive at a time).
            aux_losses: one auxiliary loss or a sequence of them (same kinds); each is decomposed on
                its own. Tensors that share a graph are fine (all but the last keep it for the next).
            eta: overrides the instance's η for this call.
            eta_prim: overrides the instance's primary weight for this call.
            norms: also return the parts' norms (one more pass over V per auxiliary loss).

        Returns None, or with ``norms=True`` ``{"prim": ‖g_prim‖, "pos": [‖g_+‖ per aux loss],
        "neg": […], "perp": […]}``. Needs a basis (:meth:`refresh`) unless the basis is ``"pcgrad"``'s.
        """
        eta_values, kind = (self.eta, self.basis_kind) if eta is None else resolve_eta(eta)
        alpha = self.eta_prim if eta_prim is None else float(eta_prim)
        aux = list(aux_losses) if isinstance(aux_losses, list | tuple) else [aux_losses]
        if not aux:
            raise AuxoptError(f"{self._name}: backward needs at least one auxiliary loss")
        if kind == "subspace" and self.basis is None:
            raise AuxoptError(
                f"{self._name}: no primary subspace yet; call refresh(per_example_loss, batch) first "
                "(due() says when: at the first step and every `every` steps)"
            )
        losses = [primary_loss, *aux]
        first = next(iter(self.params.values()))
        if self._rows is None or self._rows.shape[0] != len(losses):
            self._rows = torch.empty(len(losses), self.dim, dtype=torch.float32, device=first.device)
        rows = self._rows
        for i, loss in enumerate(losses):
            self._bind(rows[i])
            value = loss() if callable(loss) else loss
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise AuxoptError(f"{self._name}: backward needs scalar loss tensors, got {type(value).__name__}")
            retain = isinstance(loss, torch.Tensor) and any(isinstance(x, torch.Tensor) for x in losses[i + 1 :])
            value.backward(retain_graph=retain)
            self._gather(rows[i])
        record: dict[str, Any] | None = {"pos": [], "neg": [], "perp": []} if norms else None
        with torch.no_grad():
            g_prim = rows[0]
            basis = self.basis if kind == "subspace" else primary_grad_basis(g_prim)
            for i in range(1, len(losses)):
                pair = rows[0::i][:2]  # rows 0 (g_prim) and i (this g_aux): a view
                coords = None
                if record is not None:  # before recombine_ overwrites g_aux
                    coords = pair @ basis.T
                    for key, value in part_norms(pair[1], basis, coords[1], coords[0]).items():
                        record[key].append(value)
                recombine_(pair, basis, eta_values, coords)
            direction = rows[1]
            for i in range(2, len(losses)):
                direction.add_(rows[i])
            direction.add_(g_prim, alpha=alpha)
            for p, view in zip(self.params.values(), self._views(direction), strict=True):
                p.grad = view if p.dtype == torch.float32 else view.to(p.dtype)
            if record is not None:
                record["prim"] = float(torch.linalg.vector_norm(g_prim))
        self.steps += 1
        return record

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The basis (on the CPU), counters, the resolved method and the sketch generator's state."""
        return {
            "basis": None if self.basis is None else self.basis.detach().cpu().clone(),
            "singular_values": list(self.singular_values),
            "method": self.method,
            "fallback": self._fallback,
            "steps": self.steps,
            "last_refresh": self.last_refresh,
            "refreshes": self.refreshes,
            "basis_seconds": self.basis_seconds,
            "generator": None if self.generator is None else self.generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (keys other than ``basis`` may be missing)."""
        basis = state.get("basis")
        if basis is not None and tuple(basis.shape) != (self.k, self.dim):
            raise AuxoptError(
                f"checkpointed ATTITTUD basis has shape {tuple(basis.shape)}, but this run needs "
                f"({self.k}, {self.dim}); resume with the same k and params"
            )
        device = next(iter(self.params.values())).device
        self.basis = None if basis is None else basis.to(device, torch.float32)
        self.singular_values = list(state.get("singular_values", []))
        self.method = state.get("method", self.method)
        self._fallback = bool(state.get("fallback", self._fallback))
        self.steps = int(state.get("steps", self.steps))
        self.last_refresh = int(state.get("last_refresh", 0))
        self.refreshes = int(state.get("refreshes", 0))
        self.basis_seconds = float(state.get("basis_seconds", 0.0))
        if self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(k={self.k}, every={self.every}, eta={self.eta}, eta_prim={self.eta_prim}, "
            f"method={self.method!r}, D={self.dim:,}, refreshes={self.refreshes})"
        )


__all__ = ["Attittud"]
