"""A peer gradient method from an existing library: Jacobian descent with ``torchjd``'s aggregators
(UPGrad, PCGrad, MGDA, …) as a step strategy, the baseline ATTITTUD is compared against.

Each step draws one primary minibatch and one minibatch of the next auxiliary task (the task
schedule, primary draws skipped), and ``torchjd.autojac.mtl_backward`` computes the Jacobian of the
two losses on the shared encoder; the aggregator turns its two rows into one update direction
(UPGrad: project each row onto the dual cone of all rows and average, Quinton & Layne 2024), which
``jac_to_grad`` leaves in ``param.grad``. Each head gets its own task's gradient.

    TrainConfig(primary, auxiliaries, decomposer=JacobianDescent("upgrad"))

Needs ``pip install auxopt[baselines]`` (``torchjd``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from auxopt.errors import AuxoptError
from auxopt.models.heads import select_parameters
from auxopt.models.losses import task_loss
from auxopt.models.precision import autocast
from auxopt.train.step import StatelessStep, TrainContext

AGGREGATORS = {"upgrad": "UPGrad", "pcgrad": "PCGrad", "mgda": "MGDA", "mean": "Mean", "cagrad": "CAGrad"}


@dataclass(frozen=True)
class JacobianDescent:
    """Plugin for :class:`~auxopt.train.TrainConfig` (its ``decomposer`` field).

    Args:
        aggregator: one of ``upgrad``, ``pcgrad``, ``mgda``, ``mean``, ``cagrad`` (torchjd's).
    """

    config_key: ClassVar[str] = "decomposer"  # where TrainConfig.describe() records it

    aggregator: str = "upgrad"

    def __post_init__(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise AuxoptError(f"unknown aggregator {self.aggregator!r}; choose one of {sorted(AGGREGATORS)}")

    def describe(self) -> dict[str, Any]:
        return {"kind": "JacobianDescent", "aggregator": self.aggregator}

    def make_step(self, ctx: TrainContext) -> JacobianDescentStep:
        return JacobianDescentStep(ctx, self)


class JacobianDescentStep(StatelessStep):
    def __init__(self, ctx: TrainContext, spec: JacobianDescent):
        try:
            import torchjd.aggregation as aggregation
        except ImportError:
            raise AuxoptError("JacobianDescent needs torchjd: pip install 'auxopt[baselines]'") from None
        self.ctx = ctx
        self.auxiliaries = [n for n in ctx.tasks if n != ctx.primary.name]
        if not self.auxiliaries:
            raise AuxoptError("JacobianDescent needs at least one auxiliary task with a positive ratio")
        name = AGGREGATORS[spec.aggregator]
        self.aggregator = getattr(aggregation, name)() if name != "CAGrad" else aggregation.CAGrad(c=0.5)
        self.shared = [p for _, p in select_parameters(ctx.model, "encoder", owner="JacobianDescent")]

    def _next_auxiliary(self) -> str:
        for _ in range(1000):
            name = self.ctx.schedule.next_task()
            if name != self.ctx.primary.name:
                return name
        return self.auxiliaries[0]

    def _features_and_loss(self, name: str, step: int):
        ctx, task = self.ctx, self.ctx.tasks[name]
        inputs, labels = ctx.batch(name)
        with autocast(ctx.device, ctx.bf16):
            features = ctx.model.pool(**inputs)
            logits = ctx.model.heads[task.head_name](ctx.model.dropout(features))
        loss = task_loss(task, logits, labels)
        ctx.check_finite(loss, f"task {name!r}", step)
        return features, loss, len(labels)

    def backward(self, step: int) -> dict[str, int]:
        from torchjd.autojac import jac_to_grad, mtl_backward

        aux = self._next_auxiliary()
        f_p, l_p, n_p = self._features_and_loss(self.ctx.primary.name, step)
        f_a, l_a, n_a = self._features_and_loss(aux, step)
        mtl_backward([l_p, l_a], features=[f_p, f_a], shared_params=self.shared)
        jac_to_grad(self.shared, self.aggregator)
        return {self.ctx.primary.name: n_p, aux: n_a}
