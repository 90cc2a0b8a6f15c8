"""A ``transformers.Trainer`` that trains one model on a primary and auxiliary datasets mixed by ratios.

:class:`MultiTaskTrainer` is a :class:`transformers.Trainer` subclass; everything a ``Trainer``
takes (``TrainingArguments``, ``model_init``, callbacks, ``compute_metrics``, …) it takes too, plus:

* ``train_datasets`` — ``{task name: dataset}``: the primary's and each auxiliary's training set.
  Each example becomes ``{**example, "task_ids": i}`` (``i``: the task's index in
  ``model.task_names`` when the model has that attribute, else in ``train_datasets``).
* ``ratios`` — ``{task name: ratio}`` (the primary defaults to 1, auxiliaries to 1): every training
  batch comes from one task, drawn by auxopt's own task schedules
  (:func:`auxopt.train.schedules.make_schedule`: round-robin for whole numbers, else proportional
  sampling); a ratio of 0 leaves a task out. ``trainer.task_batches`` counts the batches per task.
* ``attittud`` — :class:`AttittudArgs` (or a dict of its fields): each step then takes one primary
  and one auxiliary batch and :meth:`MultiTaskTrainer.training_step` leaves ATTITTUD's decomposed
  update (:class:`auxopt.grad.Attittud`) in the parameters' ``.grad``.
* the primary's dev metric (``primary_task``'s :attr:`~auxopt.tasks.Task.metric`, ``eval_accuracy``
  for the synthetic tasks) is the objective of :meth:`MultiTaskTrainer.hyperparameter_search`
  (maximised), which also understands ``ratio_<task>`` and ``attittud_<field>`` parameters in
  ``hp_space``; and ``trainer.train(trial=optuna_trial)`` outside a search reports it to that trial
  at every evaluation (pruning when the trial says so).

The model: any module whose ``forward`` takes the batch (with ``labels`` and ``task_ids``) and
returns the loss, as ``Trainer`` expects; or a ``task_loss`` function ``(model, inputs, task_name)
-> loss`` for models that do not. :class:`MultiTaskModelForTrainer` is auxopt's own shared encoder
with a head per task (:class:`auxopt.models.MultiTaskModel`) with that ``forward``;
:meth:`MultiTaskTrainer.from_tasks` builds it, the tokenised datasets and the metric from
:class:`~auxopt.tasks.Task` objects::

    from transformers import TrainingArguments
    from auxopt import make_synthetic_suite
    from auxopt.integrations.transformers import AttittudArgs, MultiTaskTrainer
    from auxopt.samplers import MixingRatioSampler

    suite = make_synthetic_suite()
    args = TrainingArguments("out", max_steps=300, per_device_train_batch_size=32, eval_strategy="steps",
                             eval_steps=100, learning_rate=1e-3, report_to="none", save_strategy="no")
    trainer = MultiTaskTrainer.from_tasks(suite.tasks, args, model="tiny",
                                          ratios={"primary": 1, "helpful_0": 2, "neutral_0": 0.5},
                                          attittud=AttittudArgs(k=8, every=10, eta=(1, 1, -1)))
    trainer.train()
    best = trainer.hyperparameter_search(
        hp_space=lambda t: {"ratio_helpful_0": t.suggest_float("ratio_helpful_0", 0, 4)},
        n_trials=10, sampler=MixingRatioSampler(seed=0))

The package, one module per job (lower ones never import higher ones):

* :mod:`~auxopt.integrations.transformers.model` — :class:`MultiTaskModelForTrainer`, :func:`load_multitask_model`.
* :mod:`~auxopt.integrations.transformers.data` — :class:`TaskDataset`, :class:`TaggedDataset`,
  :class:`MultiTaskCollator`, :class:`MixingBatchSampler`, :func:`task_metrics`.
* :mod:`~auxopt.integrations.transformers.trainer` — :class:`MultiTaskTrainer`;
* :mod:`~auxopt.integrations.transformers.attittud` — :class:`AttittudArgs` and the trainer's ATTITTUD step.
"""

from auxopt.integrations.transformers.data import (
    MixingBatchSampler,
    MultiTaskCollator,
    TaggedDataset,
    TaskDataset,
    task_metrics,
)
from auxopt.integrations.transformers.model import MultiTaskModelForTrainer, load_multitask_model
from auxopt.integrations.transformers.trainer import AttittudArgs, MultiTaskTrainer

__all__ = [
    "AttittudArgs",
    "MixingBatchSampler",
    "MultiTaskCollator",
    "MultiTaskModelForTrainer",
    "MultiTaskTrainer",
    "TaggedDataset",
    "TaskDataset",
    "load_multitask_model",
    "task_metrics",
]
