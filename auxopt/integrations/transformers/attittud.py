"""ATTITTUD in :class:`~auxopt.integrations.transformers.MultiTaskTrainer`: its settings
(:class:`AttittudArgs`, and the ``attittud_<field>`` parameters of ``hp_space``) and the trainer's
ATTITTUD step (:class:`AttittudSteps`, a mixin: the basis over a reference batch of the primary,
refreshed every ``every`` steps, and the decomposed update of each step)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from auxopt.errors import AuxoptError
from auxopt.grad.attittud import Attittud
from auxopt.grad.project import DEFAULT_ETA, resolve_eta
from auxopt.grad.subspace import GiB
from auxopt.models.heads import select_parameters
from auxopt.tasks.batches import Batches

__all__ = ["AttittudArgs", "AttittudSteps"]


# -- ATTITTUD settings ------------------------------------------------------------------------
@dataclass(frozen=True)
class AttittudArgs:
    """ATTITTUD in :class:`MultiTaskTrainer` (the fields of :class:`auxopt.grad.Attittud`, plus where
    the shared parameters are and how big the reference batch is).

    Args:
        params: the shared parameters, by name prefix or glob (``"encoder"``; ``"!*word_embeddings*"``
            drops a match), as :class:`~auxopt.grad.GradientDecomposer` selects them; heads never.
        k: the basis rank, as in :class:`~auxopt.grad.Attittud`.
        every: steps between refreshes, as in :class:`~auxopt.grad.Attittud`.
        eta: (η⊥, η+, η−) or a preset name, as in :class:`~auxopt.grad.Attittud`.
        eta_prim: the primary gradient's weight, as in :class:`~auxopt.grad.Attittud`.
        method: how the basis is computed, as in :class:`~auxopt.grad.Attittud`.
        memory_budget: the largest basis and Jacobian allowed, as in :class:`~auxopt.grad.Attittud`.
        seed: seeds the randomised SVD's sketches, as in :class:`~auxopt.grad.Attittud`.
        m: primary examples per reference batch (a refresh every ``every`` steps); at most the
            primary's train size.
        log_every: record the parts' norms (``trainer.grad_parts``) every this many steps.

    ``hp_space`` may set ``attittud_k``, ``attittud_every``, ``attittud_m``, ``attittud_eta_prim`` and
    ``attittud_eta_perp`` / ``attittud_eta_pos`` / ``attittud_eta_neg`` (each replaces one η).
    """

    params: str | tuple[str, ...] = "encoder"
    k: int = 8
    every: int = 10
    eta: Any = DEFAULT_ETA
    eta_prim: float = 1.0
    method: str = "auto"
    m: int = 32
    memory_budget: float = 4 * GiB
    seed: int | None = None
    log_every: int = 10


_ETA_KEYS = ("eta_perp", "eta_pos", "eta_neg")


def attittud_args(value: Any) -> AttittudArgs | None:
    if value is None or value is False:
        return None
    if value is True:
        return AttittudArgs()
    if isinstance(value, AttittudArgs):
        return value
    if isinstance(value, Mapping):
        known = {f.name for f in fields(AttittudArgs)}
        unknown = set(value) - known
        if unknown:
            raise AuxoptError(f"attittud: unknown setting(s) {sorted(unknown)}; the settings are {sorted(known)}")
        return AttittudArgs(**value)
    raise AuxoptError(
        f"attittud must be AttittudArgs(...), a dict of its fields, True or None, not {type(value).__name__}"
    )


def with_changes(spec: AttittudArgs, changes: Mapping[str, Any]) -> AttittudArgs:
    eta = spec.eta
    updates = {}
    for key, value in changes.items():
        if key in _ETA_KEYS:
            if isinstance(eta, str):
                eta = resolve_eta(eta)[0]
            eta = list(eta)
            eta[_ETA_KEYS.index(key)] = float(value)
            eta = tuple(eta)
        elif key in {f.name for f in fields(AttittudArgs)}:
            updates[key] = value
        else:
            raise AuxoptError(f"hp_space sets attittud_{key}, which is no ATTITTUD setting")
    return replace(spec, eta=eta, **updates)


class AttittudSteps:
    """The ATTITTUD step of :class:`~auxopt.integrations.transformers.MultiTaskTrainer` (a mixin of
    it: it reads the trainer's arguments, datasets, collator and accelerator)."""

    def _attittud_for(self, model: nn.Module) -> Attittud:
        spec = self.attittud_args
        if self.attittud is not None and self._attittud_model is model:
            return self.attittud
        args = self.args
        problems = []
        if args.gradient_accumulation_steps != 1:
            problems.append(
                f"gradient_accumulation_steps={args.gradient_accumulation_steps} "
                "(use 1: ATTITTUD replaces .grad each step)"
            )
        if args.fp16:
            problems.append("fp16=True (its loss scaling; use bf16=True or fp32)")
        if args.world_size > 1 or args.n_gpu > 1:
            problems.append("more than one device (ATTITTUD here is single-device)")
        if problems:
            raise AuxoptError("MultiTaskTrainer with attittud= cannot run with " + "; ".join(problems))
        shared = select_parameters(model, spec.params)
        n_primary = len(self.train_datasets[self.primary])
        m = min(spec.m, n_primary)
        seed = args.seed if spec.seed is None else spec.seed
        self.attittud = Attittud(
            shared,
            k=spec.k,
            every=spec.every,
            eta=spec.eta,
            eta_prim=spec.eta_prim,
            method=spec.method,
            m=m,
            memory_budget=spec.memory_budget,
            seed=seed * 7919 + 18,
        )
        self._attittud_model = model
        self._reference = Batches(n_primary, m, seed * 7919 + 17)
        return self.attittud

    def _reference_batch(self) -> dict[str, Any]:
        data = self.train_datasets[self.primary]
        batch = self.data_collator([data[int(i)] for i in self._reference.next()])
        batch = self._prepare_inputs(batch)
        batch.pop("task_ids", None)
        return dict(batch)

    def _reference_loss(self, model: nn.Module):
        from torch.func import functional_call

        if self.per_example_loss is not None:
            user = self.per_example_loss
            return lambda params, batch: user(model, params, batch)
        primary = self.primary

        def losses(params, batch):
            out = functional_call(model, params, args=(), kwargs={**batch, "task": primary, "reduction": "none"})
            return out["loss"] if isinstance(out, Mapping) else out[0]

        return losses

    def _attittud_step(self, model: nn.Module, inputs: dict[str, Any], groups: dict) -> torch.Tensor:
        """The ATTITTUD branch of ``training_step``: the batch's primary and auxiliary minibatches,
        their decomposed update left in ``.grad``."""
        if self.primary not in groups or len(groups) < 2:
            raise AuxoptError(
                f"ATTITTUD needs a primary and an auxiliary minibatch in each batch; this one holds {list(groups)} "
                "(MultiTaskTrainer's own train dataloader pairs them)"
            )
        model.train()
        if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        unwrapped = self.accelerator.unwrap_model(model)
        attittud = self._attittud_for(unwrapped)
        step = self.state.global_step + 1
        if attittud.due():
            attittud.refresh(self._reference_loss(unwrapped), self._reference_batch(), module=unwrapped)
        values: dict[str, torch.Tensor] = {}

        def loss_of(name: str):
            def loss() -> torch.Tensor:  # built right before its own backward pass
                with self.compute_loss_context_manager():
                    value = self.compute_loss(model, self._rows(inputs, groups[name]))
                values[name] = value.detach()
                return value

            return loss

        aux = [n for n in groups if n != self.primary]
        log = step == 1 or step % self.attittud_args.log_every == 0
        norms = attittud.backward(loss_of(self.primary), [loss_of(n) for n in aux], norms=log)
        if norms is not None:
            self.grad_parts["steps"].append(step)
            self.grad_parts["prim"].append(round(norms["prim"], 6))
            for key in ("pos", "neg", "perp"):
                self.grad_parts[key].append([round(v, 6) for v in norms[key]])
        return sum(values.values()).detach()
