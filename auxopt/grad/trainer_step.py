"""The trainer's step for :class:`~auxopt.grad.GradientDecomposer` (ATTITTUD): auxopt's trainer as
one client of :class:`~auxopt.grad.Attittud`.

Each step draws one primary minibatch and one auxiliary minibatch (the auxiliary named by the task
schedule, primary draws skipped; round-robin over the auxiliaries if the schedule never names one),
back-propagates each separately through :meth:`Attittud.backward <auxopt.grad.Attittud.backward>`,
refreshes the primary subspace on schedule from seeded reference batches of the primary's training
split, and keeps the records (:data:`auxopt.records.GRAD_PARTS`) and the checkpoint state. See
:mod:`auxopt.grad.spec` for the settings and the choices behind them.
"""

from __future__ import annotations

from typing import Any

import torch

from auxopt.grad.attittud import Attittud
from auxopt.grad.project import resolve_eta
from auxopt.grad.subspace import Groups
from auxopt.models.heads import select_parameters
from auxopt.models.losses import per_example_loss
from auxopt.records import GRAD_BASIS, GRAD_PARTS
from auxopt.tasks.batches import Batches

#: reference examples per group of one length in a basis refresh (see :meth:`DecomposerStep.refresh`)
REFERENCE_GROUP = 16


class _TrainerAttittud(Attittud):
    """:class:`Attittud` with the trainer plugin's names in its error messages."""

    _name = "GradientDecomposer"
    _fewer = "select fewer params (e.g. params='encoder.encoder')"


class DecomposerStep:
    """The step strategy of :class:`GradientDecomposer` (see the module docstring): auxopt's trainer
    as one client of :class:`~auxopt.grad.Attittud`. It supplies the task schedule's minibatches,
    the primary's reference batches and per-example loss, and keeps the records and checkpoints."""

    def __init__(self, ctx, spec: Any):  # spec: the GradientDecomposer that makes it
        self.ctx, self.spec = ctx, spec
        self.eta, self.basis_kind = resolve_eta(spec.eta)
        self.primary = ctx.primary.name
        self.auxiliaries = [n for n in ctx.tasks if n != self.primary]
        spec.check_tasks(ctx.primary, self.auxiliaries)
        chosen = select_parameters(ctx.model, spec.params)
        n_train = len(ctx.train_data[self.primary])
        seed = ctx.config.seed if spec.seed is None else spec.seed
        self.m = min(spec.m, n_train)
        #: the method itself: the subspace, its refreshes and the decomposed backward pass
        self.attittud = _TrainerAttittud(
            chosen,
            k=spec.k,
            every=spec.every,
            eta=spec.eta,
            eta_prim=spec.eta_prim,
            method=spec.method,
            m=self.m,
            memory_budget=spec.memory_budget,
            oversample=spec.oversample,
            power_iters=spec.power_iters,
            seed=seed * 7919 + 18,
        )
        self.names = self.attittud.names
        self.shared = list(self.attittud.params.values())
        self.dim = self.attittud.dim
        self.reference = Batches(n_train, self.m, seed * 7919 + 17)
        self.next_aux = 0
        self.log: dict[str, list] = {"steps": [], "pos": [], "neg": [], "perp": [], "prim": []}

    # the subspace's state lives in the core; these read it
    basis = property(lambda self: self.attittud.basis)
    singular_values = property(lambda self: self.attittud.singular_values)
    method = property(lambda self: self.attittud.method)
    refreshes = property(lambda self: self.attittud.refreshes)
    last_refresh = property(lambda self: self.attittud.last_refresh)
    basis_seconds = property(lambda self: self.attittud.basis_seconds)
    generator = property(lambda self: self.attittud.generator)

    # -- the primary subspace -------------------------------------------------------------
    def refresh(self, step: int) -> None:
        """Recompute V from a fresh reference batch of m primary examples (:meth:`Attittud.refresh`:
        dropout off and eager attention through :func:`basis_mode`, fp32, by ``self.method``)."""
        from torch.func import functional_call

        ctx, task, model = self.ctx, self.ctx.primary, self.ctx.model
        data = ctx.train_data[self.primary]
        index = self.reference.next()
        # the m examples by length, in groups of REFERENCE_GROUP each padded to its own longest: a batch
        # padded to the longest of all m makes every example pay for that length (the basis is the same)
        index = index[torch.argsort(data.lengths[index], stable=True)]
        groups = Groups(
            (
                {k: v.to(ctx.device) for k, v in data.batch(part).items()},
                ctx.train_labels[self.primary][part].to(ctx.device),
            )
            for part in index.split(REFERENCE_GROUP)
        )

        def losses(params, batch):
            batch_inputs, batch_labels = batch
            logits = functional_call(model, params, args=(task.head_name,), kwargs=batch_inputs)
            return per_example_loss(task, logits, batch_labels)

        self.attittud.refresh(losses, groups, module=model, step=step)

    # -- one step ------------------------------------------------------------------------
    def _auxiliary(self) -> str:
        for _ in range(4 * len(self.ctx.tasks)):
            name = self.ctx.schedule.next_task()
            if name != self.primary:
                return name
        name = self.auxiliaries[self.next_aux % len(self.auxiliaries)]
        self.next_aux += 1
        return name

    def backward(self, step: int) -> dict[str, int]:
        ctx = self.ctx
        if self.attittud.due(step):
            self.refresh(step)
        aux = self._auxiliary()
        counts: dict[str, int] = {}

        def loss_of(name: str):  # evaluated by Attittud.backward right before its backward pass
            def loss() -> torch.Tensor:
                value, counts[name] = ctx.loss(name, step)
                return value

            return loss

        logging = step == 1 or step % self.spec.log_every == 0
        norms = self.attittud.backward(loss_of(self.primary), loss_of(aux), norms=logging)
        if norms is not None:
            self.log["steps"].append(int(step))
            for key in ("pos", "neg", "perp"):
                self.log[key].append(round(norms[key][0], 6))
            self.log["prim"].append(round(norms["prim"], 6))
        return {self.primary: counts[self.primary], aux: counts[aux]}

    # -- records and checkpoints -----------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {
            GRAD_PARTS: {key: list(values) for key, values in self.log.items()},
            GRAD_BASIS: {
                "kind": self.basis_kind,
                "method": self.method,
                "dim": self.dim,
                "k": self.spec.k,
                "m": self.m,
                "refreshes": self.refreshes,
                "seconds": round(self.basis_seconds, 3),
                "singular_values": [round(s, 6) for s in self.singular_values],
            },
        }

    def state_dict(self) -> dict[str, Any]:
        core = self.attittud.state_dict()
        return {
            "basis": core["basis"],
            "singular_values": core["singular_values"],
            "last_refresh": core["last_refresh"],
            "refreshes": core["refreshes"],
            "basis_seconds": core["basis_seconds"],
            "next_aux": self.next_aux,
            "reference": self.reference.state_dict(),
            "generator": core["generator"],
            "log": {key: list(values) for key, values in self.log.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.attittud.load_state_dict(
            {
                key: state[key]
                for key in ("basis", "singular_values", "last_refresh", "refreshes", "basis_seconds", "generator")
            }
        )
        self.next_aux = int(state["next_aux"])
        self.reference.load_state_dict(state["reference"])
        self.log = {key: list(values) for key, values in state["log"].items()}
