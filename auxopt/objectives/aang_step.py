"""AANG's step strategy in auxopt's trainer (what :meth:`AANG.make_step <auxopt.objectives.AANG.make_step>`
returns): the weighted objective losses of each step, the dev head and its gradient, the online
weight updates, the final fine-tuning phase and the weights' record. The modes and the maths are
described in :mod:`auxopt.objectives.aang`."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from auxopt import records
from auxopt.models.heads import select_parameters
from auxopt.models.losses import task_loss
from auxopt.models.precision import autocast
from auxopt.objectives.losses import ObjectiveLosses
from auxopt.objectives.taxonomy import STAGES, AuxObjective
from auxopt.objectives.weighting import OnlineWeights, _flat
from auxopt.tasks.batches import Batches


class AANGStep:
    """The step strategy of :class:`AANG` (see the module docstring)."""

    def __init__(self, ctx, spec: Any):  # spec: the AANG that makes it
        self.ctx, self.spec = ctx, spec
        seed = ctx.config.seed if spec.seed is None else spec.seed
        space, self.objectives = spec.resolve(ctx.primary)
        self.space = space
        self.losses = ObjectiveLosses(
            ctx,
            self.objectives,
            select_prob=space.select_prob,
            domain=space.domain,
            out_of_domain=space.out_of_domain,
            seed=seed + 1,
        )
        self.generator = torch.Generator().manual_seed(seed + 2)
        self.params = [p for p in ctx.model.parameters() if p.requires_grad]
        patterns = ("encoder",) if spec.align_embeddings else ("encoder", "!*embeddings*")
        self.shared = [p for _, p in select_parameters(ctx.model, patterns, owner="AANG")]
        shared_ids = {id(p) for p in self.shared}
        self.is_shared = [id(p) in shared_ids for p in self.params]
        self.online = None
        if spec.learn:
            options = {s: sorted({o.stages[i] for o in self.objectives}) for i, s in enumerate(STAGES)}
            self.online = OnlineWeights(
                self.objectives,
                options,
                lr=spec.weight_lr,
                joint_lr=spec.weight_lr if spec.joint_lr is None else spec.joint_lr,
                primary_lr=spec.primary_lr,
                init_primary=spec.init_primary,
            )
            primary = ctx.primary
            hidden = ctx.model.encoder.config.hidden_size
            outputs = primary.num_labels
            self.dev_w = torch.zeros(hidden, outputs)  # on the CPU, where it is fitted
            self.dev_b = torch.zeros(outputs)
            self.dev_labels = torch.as_tensor(
                primary.dev.labels, dtype=torch.long if primary.kind == "classification" else torch.float32
            )
            dev_size = spec.dev_batch_size or ctx.config.batch_size
            self.dev_batches = Batches(len(ctx.dev_data), dev_size, seed + 3)
            # the dev head is fitted on the primary's train split, never on the dev batch of the gradient
            fit_size = spec.dev_fit_size or dev_size
            self.fit_batches = Batches(len(ctx.train_data[primary.name]), fit_size, seed + 4)
            #: fit the dev head on the step's own primary minibatch (it is a fresh train minibatch of
            #: the fit's size): one forward pass a step fewer than a minibatch of its own
            self.reuse_primary = fit_size == ctx.config.batch_size
        max_steps = ctx.config.max_steps
        n_finetune = min(round(spec.finetune * max_steps), max_steps - 1)
        #: the first step of the final primary-only phase (None: none); the loop restores the best
        #: dev state and clears the optimiser's moments before it
        self.finetune_start: int | None = max_steps - n_finetune + 1 if n_finetune > 0 else None
        self.record: dict[str, list] = {
            "steps": [],
            "objectives": [str(o) for o in self.objectives],
            "weights": [],
            "primary_weight": [],
        }
        self.cosines: list[list[float]] = []
        self.last_weighted = 0  #: the last step trained with the objectives (before any fine-tuning)

    # -- weights --------------------------------------------------------------------------------
    def current_weights(self) -> tuple[list[float], float]:
        if self.online is None:
            return list(self.spec.weights or [1.0] * len(self.objectives)), float(self.spec.primary_weight)
        return self.online.weights().tolist(), self.online.primary_share()

    def _log(self, step: int) -> None:
        weights, primary = self.current_weights()
        self.record["steps"].append(int(step))
        self.record["weights"].append([round(w, 6) for w in weights])
        self.record["primary_weight"].append(round(primary, 6))

    def _terms(self) -> tuple[list[tuple[AuxObjective | None, float]], torch.Tensor | None]:
        """The step's (objective or None for the primary, loss weight) terms and the sampled indices."""
        if self.online is None:
            weights = self.spec.weights or [1.0] * len(self.objectives)
            return [(None, self.spec.primary_weight), *zip(self.objectives, weights, strict=True)], None
        sampled = self.online.sample(self.spec.k, self.generator)
        primary, weights = self.online.loss_weights(sampled)
        terms = [(None, primary)] + [(self.objectives[int(i)], w) for i, w in zip(sampled, weights, strict=True)]
        return terms, sampled

    def _loss(self, obj: AuxObjective | None, step: int) -> tuple[torch.Tensor, int]:
        if obj is None:
            return self.ctx.loss(self.ctx.primary.name, step)
        loss, n = self.losses.loss(obj)
        self.ctx.check_finite(loss, f"objective {str(obj)!r}", step)
        return loss, n

    # -- dev gradient -----------------------------------------------------------------------------
    def _dev_loss(self, features: torch.Tensor, labels: torch.Tensor, w, b) -> torch.Tensor:
        out = features @ w + b
        if self.ctx.primary.kind == "classification":
            return F.cross_entropy(out, labels)
        return F.mse_loss(out.squeeze(-1), labels)

    def fit_dev_head(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fit the dev head (L-BFGS, warm-started) on frozen pooled ``features``. The fit runs on the
        CPU whatever the device: it is a few hundred numbers, and L-BFGS's line search reads values
        back every iteration, which would make a GPU wait each time."""
        frozen, labels = features.detach().float().cpu(), labels.cpu()
        w = self.dev_w.clone().requires_grad_(True)
        b = self.dev_b.clone().requires_grad_(True)
        with torch.enable_grad():
            opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=self.spec.dev_head_steps, line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                loss = self._dev_loss(frozen, labels, w, b) + self.spec.dev_head_l2 * (w * w).sum()
                loss.backward()
                return loss

            opt.step(closure)
        self.dev_w, self.dev_b = w.detach(), b.detach()

    def dev_gradient(self, features: torch.Tensor | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The gradient on the shared encoder of the dev loss of a freshly fitted dev head: the head
        is fitted on a primary *train* minibatch (its pooled ``features`` and ``labels`` when given:
        the step's own primary minibatch, whose forward pass the step has made anyway; else a
        minibatch of :attr:`fit_batches`), the gradient taken on a *dev* minibatch, both in the
        model's current (training) mode."""
        ctx = self.ctx
        name = ctx.primary.name
        if features is None:
            index = self.fit_batches.next()
            fit_inputs = {k: v.to(ctx.device) for k, v in ctx.train_data[name].batch(index).items()}
            with torch.no_grad(), autocast(ctx.device, ctx.bf16):
                features = ctx.model.pool(**fit_inputs)
            labels = ctx.train_labels[name][index]
        self.fit_dev_head(features, labels)
        index = self.dev_batches.next()
        inputs = {k: v.to(ctx.device) for k, v in ctx.dev_data.batch(index).items()}
        labels = self.dev_labels[index].to(ctx.device)
        with autocast(ctx.device, ctx.bf16):
            features = ctx.model.pool(**inputs)
        w, b = self.dev_w.to(ctx.device), self.dev_b.to(ctx.device)
        loss = self._dev_loss(features.float(), labels, w, b)
        grads = torch.autograd.grad(loss, self.shared, allow_unused=True)
        return _flat(grads, self.shared)

    def _primary_with_features(self, step: int) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        """The primary term of the step: (loss, size, pooled features, labels) of its minibatch."""
        ctx = self.ctx
        task = ctx.primary
        inputs, labels = ctx.batch(task.name)
        with autocast(ctx.device, ctx.bf16):
            features = ctx.model.pool(**inputs)
            logits = ctx.model.heads[task.head_name](ctx.model.dropout(features))
        loss = task_loss(task, logits, labels)
        ctx.check_finite(loss, f"task {task.name!r}", step)
        return loss, len(labels), features, labels

    # -- the step ---------------------------------------------------------------------------------
    def in_finetune(self, step: int) -> bool:
        return self.finetune_start is not None and step >= self.finetune_start

    def backward(self, step: int) -> dict[str, int]:
        if self.in_finetune(step):  # the final fine-tuning: the primary task alone
            loss, n = self.ctx.loss(self.ctx.primary.name, step)
            loss.backward()
            return {self.ctx.primary.name: n}
        if step == 1 or step % self.spec.log_every == 0:
            self._log(step)
        self.last_weighted = step
        terms, sampled = self._terms()
        used: dict[str, int] = {}
        update = self.online is not None and (step - 1) % self.spec.update_every == 0
        if not update:
            total = 0.0
            for obj, weight in terms:
                loss, n = self._loss(obj, step)
                total = total + weight * loss
                key = self.ctx.primary.name if obj is None else str(obj)
                used[key] = used.get(key, 0) + n
            total.backward()
            return used
        primary = self.ctx.primary.name
        if self.reuse_primary:  # the dev head is fitted on the features of the step's primary minibatch
            primary_loss, n, features, labels = self._primary_with_features(step)
            used[primary] = n
            dev = self.dev_gradient(features, labels)
        else:
            primary_loss, dev = None, self.dev_gradient()

        def term(obj: AuxObjective | None):  # evaluated by OnlineWeights.backward just before its own backward
            def loss() -> torch.Tensor:
                if obj is None and primary_loss is not None:
                    return primary_loss
                value, n = self._loss(obj, step)
                key = primary if obj is None else str(obj)
                used[key] = used.get(key, 0) + n
                return value

            return loss

        # the same backward pass and weight update as AANG in a loop of your own (OnlineWeights.backward)
        primary_cosine, aux_cosines = self.online.backward(
            sampled, term(None), [term(obj) for obj, _ in terms[1:]], dev, shared=self.shared, params=self.params
        )
        cosines = [primary_cosine, *aux_cosines]
        if step == 1 or step % self.spec.log_every == 0:
            self.cosines.append(
                [
                    int(step),
                    round(cosines[0], 5),
                    *[[str(self.objectives[int(i)]), round(c, 5)] for i, c in zip(sampled, cosines[1:], strict=True)],
                ]
            )
        return used

    def summary(self) -> dict[str, Any]:
        weights, primary = self.current_weights()
        top = sorted(zip(self.record["objectives"], weights, strict=True), key=lambda t: -t[1])[:5]
        record = self.record
        end = self.last_weighted + 1  # a row holds the weights a step starts with: these, the final ones
        if self.online is not None and record["steps"] and record["steps"][-1] < end:
            record = {
                **record,
                "steps": [*record["steps"], end],
                "weights": [*record["weights"], [round(w, 6) for w in weights]],
                "primary_weight": [*record["primary_weight"], round(primary, 6)],
            }
        out: dict[str, Any] = {records.AANG_WEIGHTS: record, records.AANG_TOP: [[n, round(w, 6)] for n, w in top]}
        if self.cosines:
            out["aang_cosines"] = self.cosines
        if self.finetune_start is not None:
            out["aang_finetune"] = {
                "start": self.finetune_start,
                "steps": self.ctx.config.max_steps - self.finetune_start + 1,
            }
        return out

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "losses": self.losses.state_dict(),
            "generator": self.generator.get_state(),
            "record": copy.deepcopy(self.record),
            "cosines": copy.deepcopy(self.cosines),
            "last_weighted": self.last_weighted,
        }
        if self.online is not None:
            state.update(
                online=self.online.state_dict(),
                dev_w=self.dev_w.cpu().clone(),
                dev_b=self.dev_b.cpu().clone(),
                dev_batches=self.dev_batches.state_dict(),
                fit_batches=self.fit_batches.state_dict(),
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses.load_state_dict(state["losses"])
        self.generator.set_state(state["generator"])
        self.record = copy.deepcopy(state["record"])
        self.cosines = copy.deepcopy(state["cosines"])
        self.last_weighted = state.get("last_weighted", 0)
        if self.online is not None:
            self.online.load_state_dict(state["online"])
            self.dev_w = state["dev_w"].cpu()
            self.dev_b = state["dev_b"].cpu()
            self.dev_batches.load_state_dict(state["dev_batches"])
            if "fit_batches" in state:
                self.fit_batches.load_state_dict(state["fit_batches"])
