"""The trainer: :class:`MultiTaskTrainer`, a ``transformers.Trainer`` over a primary and auxiliary datasets
mixed by ratios, optionally with ATTITTUD's decomposed update (:class:`AttittudArgs`); see
:mod:`auxopt.integrations.transformers` for the whole picture."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from transformers import Trainer, TrainerCallback

from auxopt.errors import AuxoptError
from auxopt.grad.attittud import Attittud
from auxopt.integrations.transformers.attittud import AttittudArgs, AttittudSteps, attittud_args, with_changes
from auxopt.integrations.transformers.data import MixingBatchSampler, MultiTaskCollator, TaskDataset, _tag, task_metrics
from auxopt.integrations.transformers.model import load_multitask_model
from auxopt.tasks.task import Task
from auxopt.train.schedules import check_ratio

__all__ = ["AttittudArgs", "MultiTaskTrainer"]


class _ReportPrimary(TrainerCallback):
    """Records the primary's metric at each evaluation and, outside ``hyperparameter_search`` (which
    reports itself), reports it to the Optuna trial given to ``trainer.train(trial=...)``."""

    def __init__(self, trainer: MultiTaskTrainer):
        self.trainer = trainer

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        trainer = self.trainer
        value = (metrics or {}).get(trainer.primary_metric)
        if value is None:
            return
        value = float(value)
        trainer.primary_history.append((int(state.global_step), value))
        trial = getattr(trainer, "_trial", None)
        if trainer.hp_search_backend is not None or trial is None or not hasattr(trial, "report"):
            return
        import optuna

        if isinstance(trial, optuna.trial.Trial):
            trial.report(value, int(state.global_step))
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {state.global_step} ({trainer.primary_metric}={value:.4f})")


# -- the trainer ------------------------------------------------------------------------------
class MultiTaskTrainer(AttittudSteps, Trainer):
    """A ``transformers.Trainer`` over several datasets mixed by ratios (see :mod:`auxopt.integrations.transformers`).

    Args (besides ``Trainer``'s own, all keyword):
        train_datasets: ``{task name: dataset of example dicts}``, the primary's among them.
        primary: the primary task's name (default: ``primary_task.name``, else the first dataset).
        ratios: ``{task name: mixing ratio}``; missing tasks get 1 (the primary always > 0).
        schedule: ``"auto"`` (round-robin for whole-number ratios, else proportional), ``"round_robin"``
            or ``"proportional"``.
        attittud: :class:`AttittudArgs`, a dict of its fields, ``True`` (defaults) or None (plain sum).
        per_example_loss: ATTITTUD's primary loss per example, ``(model, params, batch) -> (b,)``,
            a pure function of ``params`` (``torch.func.functional_call``); default: the model's
            ``forward(**batch, task=primary, reduction="none")["loss"]``, as
            :class:`MultiTaskModelForTrainer` has it.
        task_loss: ``(model, inputs, task_name) -> loss`` (or ``(loss, outputs)``) for models whose
            ``forward`` does not take ``task_ids`` and return the loss; default: ``model(**inputs)``.
        primary_task: the primary :class:`~auxopt.tasks.Task`: gives the default ``compute_metrics``
            and the metric (``eval_<task.metric>``).
        metric: the metric key that is the objective (default ``eval_<primary_task.metric>``, else
            ``eval_loss``); ``greater_is_better`` (default: True unless the key is a loss).
        eval_dataset: the primary's dev set (its examples get the primary's ``task_ids``), or
            ``{task name: dataset}``.

    Attributes: ``task_names``, ``ratios``, ``task_batches`` (Counter of minibatches per task over
    the last ``train()``), ``attittud`` (the :class:`~auxopt.grad.Attittud` of the last run),
    ``grad_parts`` (the parts' norms every ``log_every`` steps), ``primary_history`` ([(step, metric)]).
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args=None,
        *,
        train_datasets: Mapping[str, Dataset],
        primary: str | None = None,
        ratios: Mapping[str, float] | None = None,
        schedule: str = "auto",
        attittud: AttittudArgs | Mapping[str, Any] | bool | None = None,
        per_example_loss: Callable[[nn.Module, dict, Any], torch.Tensor] | None = None,
        task_loss: Callable[[nn.Module, dict, str], Any] | None = None,
        primary_task: Task | None = None,
        metric: str | None = None,
        greater_is_better: bool | None = None,
        eval_dataset=None,
        data_collator=None,
        compute_metrics=None,
        callbacks=None,
        **kwargs,
    ):
        if not isinstance(train_datasets, Mapping) or not train_datasets:
            raise AuxoptError(
                "MultiTaskTrainer needs train_datasets: a dict {task name: dataset}, the primary's among them"
            )
        self.primary = primary or (primary_task.name if primary_task is not None else next(iter(train_datasets)))
        if self.primary not in train_datasets:
            raise AuxoptError(
                f"the primary task {self.primary!r} has no training dataset; the datasets are {list(train_datasets)}"
            )
        self.train_datasets = dict(train_datasets)
        self.schedule_kind = schedule
        self.attittud_args = attittud_args(attittud)
        self.per_example_loss, self.task_loss = per_example_loss, task_loss
        self.primary_task = primary_task
        if compute_metrics is None and primary_task is not None:
            compute_metrics = task_metrics(primary_task)
        if data_collator is None:
            processing = kwargs.get("processing_class")
            data_collator = MultiTaskCollator(getattr(processing, "pad_token_id", None) or 0)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            compute_metrics=compute_metrics,
            eval_dataset=eval_dataset,  # tagged with the task ids below, once the model is there
            callbacks=callbacks,
            **kwargs,
        )
        names = list(getattr(self.model, "task_names", None) or self.train_datasets)
        missing = [n for n in self.train_datasets if n not in names]
        if missing:
            raise AuxoptError(
                f"train_datasets name task(s) {missing} that the model has no head for; its tasks are {names}"
            )
        self.task_names = names
        self.base_ratios = self._check_ratios(ratios)
        self.ratios = dict(self.base_ratios)
        self.train_dataset = ConcatDataset([_tag(d, names.index(n)) for n, d in self.train_datasets.items()])
        if eval_dataset is not None:
            if isinstance(eval_dataset, Mapping):
                self.eval_dataset = {n: _tag(d, names.index(n)) for n, d in eval_dataset.items()}
            else:
                self.eval_dataset = _tag(eval_dataset, names.index(self.primary))
        if metric is None:
            metric = f"eval_{primary_task.metric}" if primary_task is not None else "eval_loss"
            if isinstance(eval_dataset, Mapping) and self.primary in eval_dataset:
                metric = metric.replace("eval_", f"eval_{self.primary}_", 1)
        self.primary_metric = metric if metric.startswith("eval_") else f"eval_{metric}"
        self.greater_is_better = (
            ("loss" not in self.primary_metric) if greater_is_better is None else bool(greater_is_better)
        )
        self.task_batches: Counter[str] = Counter()
        self.grad_parts: dict[str, list] = {"steps": [], "prim": [], "pos": [], "neg": [], "perp": []}
        self.primary_history: list[tuple[int, float]] = []
        self.attittud: Attittud | None = None
        self._attittud_model: nn.Module | None = None
        self._base_attittud = self.attittud_args
        self.batch_sampler: MixingBatchSampler | None = None
        self.add_callback(_ReportPrimary(self))

    @classmethod
    def from_tasks(
        cls,
        tasks: Sequence[Task] | Any,
        args=None,
        *,
        model: str = "tiny",
        primary: str | None = None,
        max_length: int = 128,
        dropout: float = 0.1,
        tiny=None,
        model_seed: int = 0,
        **kwargs,
    ) -> MultiTaskTrainer:
        """A trainer for :class:`~auxopt.tasks.Task` objects (or a :class:`~auxopt.tasks.SyntheticSuite`):
        a fresh :class:`MultiTaskModelForTrainer` on encoder ``model`` from ``model_init`` (so
        ``hyperparameter_search`` works), every task's train split, the primary's dev split as
        ``eval_dataset`` and its metric. ``primary``: default the first task (a suite's primary).
        Other keywords go to :class:`MultiTaskTrainer` (``ratios``, ``attittud``, ``callbacks``, …)."""
        tasks = list(tasks.tasks) if hasattr(tasks, "primary") and hasattr(tasks, "tasks") else list(tasks)
        if not tasks:
            raise AuxoptError("MultiTaskTrainer.from_tasks needs at least the primary task")
        primary = primary or tasks[0].name
        by_name = {t.name: t for t in tasks}
        if primary not in by_name:
            raise AuxoptError(f"primary {primary!r} is not among the tasks {list(by_name)}")
        ordered = [by_name[primary], *(t for t in tasks if t.name != primary)]
        # the tokenizer (cached); model_init builds each trial's model afresh
        _, tokenizer = load_multitask_model(ordered, model, seed=model_seed, dropout=dropout, tiny=tiny)

        def model_init(trial=None):
            return load_multitask_model(ordered, model, seed=model_seed, dropout=dropout, tiny=tiny)[0]

        train = {t.name: TaskDataset(t, "train", tokenizer, max_length, i) for i, t in enumerate(ordered)}
        kwargs.setdefault("eval_dataset", TaskDataset(ordered[0], "dev", tokenizer, max_length, 0))
        kwargs.setdefault("processing_class", tokenizer)
        trainer = cls(
            model_init=model_init,
            args=args,
            train_datasets=train,
            primary=primary,
            primary_task=ordered[0],
            data_collator=kwargs.pop("data_collator", MultiTaskCollator(tokenizer.pad_token_id or 0)),
            **kwargs,
        )
        return trainer

    # -- mixing ------------------------------------------------------------------------------
    def _check_ratios(self, ratios: Mapping[str, float] | None) -> dict[str, float]:
        ratios = dict(ratios or {})
        unknown = set(ratios) - set(self.train_datasets)
        if unknown:
            raise AuxoptError(
                f"ratios name task(s) {sorted(unknown)} without a training dataset; "
                f"the tasks are {list(self.train_datasets)}"
            )
        out = {}
        for name in self.train_datasets:
            out[name] = check_ratio(name, ratios.get(name, 1.0), primary=name == self.primary)
        return out

    def make_batch_sampler(self) -> MixingBatchSampler:
        """The sampler of the next ``train()``: the current ratios, the trainer's batch size and seed."""
        sizes = {n: len(d) for n, d in self.train_datasets.items()}
        return MixingBatchSampler(
            sizes,
            self.ratios,
            self._train_batch_size,
            primary=self.primary,
            kind=self.schedule_kind,
            seed=self.args.seed,
            paired=self.attittud_args is not None,
        )

    def get_train_dataloader(self) -> DataLoader:
        """Batches from one task each (or a primary + an auxiliary one, with ATTITTUD), by the ratios."""
        self.batch_sampler = self.make_batch_sampler()
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.batch_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available(),  # no pinning without CUDA
        )
        return self.accelerator.prepare(loader)

    def train(self, *args, **kwargs):
        self.task_batches = Counter()
        self.grad_parts = {"steps": [], "prim": [], "pos": [], "neg": [], "perp": []}
        self.primary_history = []
        self.attittud = None
        return super().train(*args, **kwargs)

    # -- the objective ------------------------------------------------------------------------
    def primary_objective(self, metrics: Mapping[str, float]) -> float:
        """The primary's metric in an ``evaluate()`` result (the default ``compute_objective``)."""
        if self.primary_metric not in metrics:
            raise AuxoptError(
                f"the evaluation gave no {self.primary_metric!r} (it gave {sorted(metrics)}); pass "
                "primary_task=, metric= or a compute_metrics that returns it"
            )
        return float(metrics[self.primary_metric])

    def hyperparameter_search(
        self,
        hp_space=None,
        compute_objective=None,
        n_trials: int = 20,
        direction=None,
        backend="optuna",
        hp_name=None,
        **kwargs,
    ):
        """``Trainer.hyperparameter_search`` with the primary's metric as the objective (``direction``
        from ``greater_is_better``) and mixing ratios in the space: ``hp_space(trial)`` may return
        ``ratio_<task>`` (or ``ratios``: a dict) and ``attittud_<field>`` entries beside
        ``TrainingArguments`` fields. ``kwargs`` go to ``optuna.create_study`` (``sampler=``,
        ``storage=``, ``study_name=``, ``pruner=``…), so auxopt's samplers plug in as they are."""
        space = hp_space or (lambda trial: {})

        def wrapped(trial):
            params = dict(space(trial))
            ratios = dict(self.base_ratios)
            ratios.update(params.pop("ratios", None) or {})
            for key in list(params):
                if key.startswith("ratio_") and key[len("ratio_") :] in self.train_datasets:
                    ratios[key[len("ratio_") :]] = params.pop(key)
            self.ratios = self._check_ratios(ratios)
            changes = {k[len("attittud_") :]: params.pop(k) for k in list(params) if k.startswith("attittud_")}
            if changes:
                if self._base_attittud is None:
                    raise AuxoptError(
                        f"hp_space sets {sorted('attittud_' + k for k in changes)} but the trainer has no attittud="
                    )
                self.attittud_args = with_changes(self._base_attittud, changes)
            return params

        self._base_attittud = self.attittud_args
        try:
            return super().hyperparameter_search(
                hp_space=wrapped,
                compute_objective=compute_objective or self.primary_objective,
                n_trials=n_trials,
                direction=direction or ("maximize" if self.greater_is_better else "minimize"),
                backend=backend,
                hp_name=hp_name,
                **kwargs,
            )
        finally:
            self.ratios, self.attittud_args = dict(self.base_ratios), self._base_attittud

    # -- one step ----------------------------------------------------------------------------
    def _groups(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor | None]:
        """Task name → the rows of ``inputs`` from that task (None: all rows), in batch order."""
        ids = inputs.get("task_ids")
        if ids is None:
            return {self.primary: None}
        ids = torch.as_tensor(ids).view(-1)
        first = int(ids[0])
        if bool((ids == first).all()):
            return {self.task_names[first]: None}
        order = list(dict.fromkeys(ids.tolist()))
        return {self.task_names[i]: (ids == i).nonzero().view(-1) for i in order}

    @staticmethod
    def _rows(inputs: Mapping[str, Any], rows: torch.Tensor | None) -> dict[str, Any]:
        if rows is None:
            return dict(inputs)
        out = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                value = value[rows.to(value.device)]
            out[key] = value
        if (
            "attention_mask" in out
            and isinstance(out["attention_mask"], torch.Tensor)
            and out["attention_mask"].dim() == 2
        ):
            width = int(out["attention_mask"].sum(1).max())  # trim the other task's padding
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                if isinstance(out.get(key), torch.Tensor) and out[key].dim() == 2:
                    out[key] = out[key][:, :width]
        return out

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.task_loss is None:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        groups = self._groups(inputs)
        total, outputs, n = 0.0, None, None
        for name, rows in groups.items():
            result = self.task_loss(model, self._rows(inputs, rows), name)
            loss, outputs = result if isinstance(result, tuple) else (result, None)
            if rows is None:
                total = loss
            else:
                n = n or sum(len(r) for r in groups.values())
                total = total + loss * (len(rows) / n)
        return (total, outputs) if return_outputs else total

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        """``Trainer.training_step`` (one task's batch); with ``attittud=`` the batch holds a primary
        and an auxiliary minibatch, and the decomposed update lands in ``.grad``:
        ``η_prim·g_prim + η⊥g⊥ + η+g+ + η−g−`` on the shared parameters, the plain sum elsewhere."""
        groups = self._groups(inputs)
        self.task_batches.update(groups.keys())
        if self.attittud_args is None:
            return super().training_step(model, inputs, num_items_in_batch)
        return self._attittud_step(model, inputs, groups)
