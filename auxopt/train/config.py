"""``TrainConfig`` (what to train) and ``TrainResult`` (what came out). Plain data: no Optuna."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from auxopt.errors import AuxoptError
from auxopt.tasks.task import Task
from auxopt.train.schedules import check_ratio

if TYPE_CHECKING:
    from auxopt.train.export import TrainedModel

PLUGIN_ALIASES = ("objectives", "decomposer")  # the older names of TrainConfig.plugin


@runtime_checkable
class StepPlugin(Protocol):
    """What ``TrainConfig.plugin`` holds: a maker of the run's step strategy.

    ``make_step(ctx)`` takes the run's :class:`~auxopt.train.step.TrainContext` and returns its
    :class:`~auxopt.train.step.StepStrategy` (it may attach extra
    modules to ``ctx.model``); ``describe()`` gives its settings for :meth:`TrainConfig.describe`.
    Optionally ``check(config)``, which :meth:`TrainConfig.validate` calls, and a class attribute
    ``config_key`` (``"objectives"`` for AANG, ``"decomposer"`` for ATTITTUD and Jacobian descent):
    the key under which ``describe()`` records it (``"plugin"`` when absent)."""

    def make_step(self, ctx: Any) -> Any: ...  # (TrainContext) -> StepStrategy, both in auxopt.train.step

    def describe(self) -> dict[str, Any]: ...


@dataclass
class TrainConfig:
    """One multi-task training run.

    Args:
        primary: the end task; its dev metric is what the run optimises and reports.
        auxiliaries: candidate auxiliary tasks; those with ratio 0 (or absent from ``ratios`` when
            ``ratios`` is given) are not trained on.
        ratios: task name → mixing ratio (the primary's defaults to 1; auxiliaries default to 1 when
            ``ratios`` is None). Whole numbers give AutoSeM's round-robin, others proportional sampling.
        schedule: ``"auto"``, ``"round_robin"``, ``"proportional"``, or ``"thompson"`` /
            :class:`~auxopt.train.schedules.OnlineThompson` (AutoSeM stage 1 inside the run: the
            result's ``extra["thompson"]`` holds the final posterior and its history).
        model: ``"tiny"``, ``"minilm"``, a checkpoint folder or a hub name.
        lr: peak learning rate of AdamW (default 1e-3 for ``"tiny"``, 5e-5 for pretrained models).
        warmup_ratio: linear warm-up over this fraction of ``max_steps``, then the ``lr_schedule``.
        lr_schedule: after warm-up, ``"linear"`` decay to 0 at ``max_steps`` or ``"constant"``.
        eval_every: evaluate the primary dev metric every this many steps (and at the last step).
        eval_batches: evaluate on at most this many dev batches (None: the whole dev split).
        patience: stop after this many evaluations without a dev improvement (None: never).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, …
        bf16: autocast to bfloat16 (``"auto"``: on CUDA devices that support it).
        compile: run the training forward (and its backward) through ``torch.compile``: ``True``
            (its default mode), or a mode name such as ``"reduce-overhead"`` (CUDA graphs) or
            ``"max-autotune-no-cudagraphs"``. Minibatch widths are then rounded up to a multiple
            of 16, so that few shapes are compiled. It removes per-step overhead where small
            steps are bound by it (a GPU); the first steps pay the compilation. Evaluation and
            the step plugins' own passes (AANG's objectives, ATTITTUD's basis) stay eager.
        plugin: the run's step plugin (:class:`StepPlugin`), or None for the plain schedule step.
        objectives: an alias of ``plugin`` for AANG's online objective weighting (``auxopt.objectives``).
        decomposer: an alias of ``plugin`` for ATTITTUD's gradient decomposition (``auxopt.grad``) or
            Jacobian descent.
        checkpoint: where and how often to checkpoint for mid-trial resume, or None.
        on_overlap: what :func:`~auxopt.train.train` does when the train split of a task it trains on
            shares examples with the primary's dev or test split (:func:`auxopt.tasks.check_overlap`):
            ``"warn"`` (a :class:`~auxopt.tasks.ContaminationWarning`), ``"error"`` or ``"ignore"``.
            The overlap is recorded in ``TrainResult.extra["contamination"]`` whatever this says.

    A run has at most one step plugin: an object with ``make_step(ctx)`` returning a
    :class:`~auxopt.train.step.StepStrategy` (the trainer imports neither package), and optionally
    ``check(config)``, which :meth:`validate` calls. ``objectives=`` and ``decomposer=`` set
    ``plugin`` (and ``plugin=`` sets the alias its ``config_key`` names, so code that reads
    ``config.objectives`` keeps working); setting two of the three to different plugins is an error.
    The loop reads only ``plugin``.

    Construction checks the fields one by one (a ratio of 0 or below for the primary, a negative one
    for an auxiliary, a ``max_length`` with no room beyond the special tokens are errors);
    :meth:`validate` checks what needs more than the fields.
    """

    primary: Task
    auxiliaries: Sequence[Task] = ()
    ratios: Mapping[str, float] | None = None
    schedule: Any = "auto"
    model: str = "tiny"
    tiny: Any = None
    max_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 256
    lr: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_schedule: str = "linear"
    max_grad_norm: float = 1.0
    dropout: float = 0.1
    max_steps: int = 1000
    eval_every: int = 100
    eval_batches: int | None = None
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    bf16: bool | str = "auto"
    compile: bool | str = False
    objectives: Any = None
    decomposer: Any = None
    plugin: StepPlugin | None = None
    checkpoint: Any = None
    on_overlap: str = "warn"

    def __post_init__(self) -> None:
        names = [self.primary.name, *(t.name for t in self.auxiliaries)]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise AuxoptError(f"task names must be unique; repeated: {sorted(dupes)}")
        if self.ratios is not None:
            if not isinstance(self.ratios, Mapping):
                raise AuxoptError(
                    f"ratios must be a dict of task name to mixing ratio (e.g. {{{self.primary.name!r}: 1}}), "
                    f"not {type(self.ratios).__name__} {self.ratios!r}"
                )
            unknown = set(self.ratios) - set(names)
            if unknown:
                raise AuxoptError(f"ratios name unknown task(s) {sorted(unknown)}; the tasks are {names}")
            for name, value in self.ratios.items():
                check_ratio(name, value, primary=name == self.primary.name)
        for key in ("max_length", "batch_size", "eval_batch_size", "max_steps", "eval_every"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise AuxoptError(f"{key} must be a positive integer, not {value!r}")
        from auxopt.models.tokenize import check_max_length

        for task in self.active_tasks().values():
            check_max_length(self.max_length, pair=task.train.pairs is not None, what=f"task {task.name!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise AuxoptError(f"lr must be a positive number, not {self.lr!r}")
        if self.lr_schedule not in ("linear", "constant"):
            raise AuxoptError(f"lr_schedule must be 'linear' or 'constant', not {self.lr_schedule!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise AuxoptError(f"warmup_ratio must be in [0, 1), not {self.warmup_ratio!r}")
        self._resolve_plugin()
        if self.checkpoint is not None:
            from auxopt.train.checkpoint import Checkpoint

            if not isinstance(self.checkpoint, Checkpoint):
                raise AuxoptError(
                    "checkpoint must be auxopt.train.checkpoint.Checkpoint(store, every=N) or None, "
                    f"not {type(self.checkpoint).__name__}"
                )
        from auxopt.tasks.overlap import validate_on_overlap

        validate_on_overlap(self.on_overlap)
        if not isinstance(self.compile, bool | str) or self.compile in ("", "none"):
            raise AuxoptError(
                f"compile must be True, False or a torch.compile mode ('default', 'reduce-overhead', "
                f"'max-autotune', 'max-autotune-no-cudagraphs'), not {self.compile!r}"
            )
        if self.patience is not None and self.patience < 1:
            raise AuxoptError(f"patience must be >= 1 or None, not {self.patience!r}")

    def validate(self) -> TrainConfig:
        """Check what a run would otherwise only find when it starts, without loading a model or
        training: the device, the task schedule over the active ratios, and each plugin's settings
        against the run's tasks (a plugin's ``check(config)``: AANG's objectives and their text,
        ATTITTUD's auxiliaries). :func:`~auxopt.train.train` calls it first;
        :meth:`~auxopt.StudySpec.preflight` calls it before anything is stored. Returns ``self``."""
        from auxopt.train.runtime import resolve_device
        from auxopt.train.schedules import make_schedule

        resolve_device(self.device)
        schedule = make_schedule(self.active_ratios(), self.schedule, seed=self.seed)
        if getattr(schedule, "plan", None) is not None:  # judged in rounds: at least one must fit
            schedule.plan.check_length(self.max_steps)
        check = getattr(self.plugin, "check", None)
        if callable(check):
            check(self)
        return self

    def _resolve_plugin(self) -> None:
        """Fold the ``objectives`` / ``decomposer`` aliases into ``plugin`` (one plugin per run)."""
        given = {k: getattr(self, k) for k in ("plugin", *PLUGIN_ALIASES) if getattr(self, k) is not None}
        distinct = {id(v) for v in given.values()}
        if len(distinct) > 1:
            if set(given) == set(PLUGIN_ALIASES):
                raise AuxoptError("objectives (AANG) and decomposer (ATTITTUD) cannot be combined in one run yet")
            raise AuxoptError(
                f"a run takes one step plugin, but {' and '.join(sorted(given))} are both set; set only one of them"
            )
        for key, plugin in given.items():
            if not callable(getattr(plugin, "make_step", None)):
                raise AuxoptError(f"{key} must be an auxopt plugin with make_step(ctx), not {type(plugin).__name__}")
        plugin = next(iter(given.values()), None)
        aliases = [k for k in PLUGIN_ALIASES if k in given]
        key = aliases[0] if aliases else getattr(plugin, "config_key", "plugin")
        self.plugin = plugin
        if key in PLUGIN_ALIASES:  # readers of config.objectives / config.decomposer, and replace()
            setattr(self, key, plugin)
        self._plugin_key = key  # where describe() records it: as before the single slot existed

    @property
    def tasks(self) -> list[Task]:
        return [self.primary, *self.auxiliaries]

    def active_tasks(self) -> dict[str, Task]:
        """Task name → task for the tasks actually trained on (ratio > 0), primary first."""
        ratios = self.active_ratios()
        return {t.name: t for t in self.tasks if t.name in ratios}

    def active_ratios(self) -> dict[str, float]:
        """Task name → ratio for the tasks actually trained on (ratio > 0), primary first."""
        ratios = dict(self.ratios or {})
        out = {self.primary.name: float(ratios.get(self.primary.name, 1.0))}
        for task in self.auxiliaries:
            default = 1.0 if self.ratios is None else 0.0
            out[task.name] = float(ratios.get(task.name, default))
        return {k: v for k, v in out.items() if v > 0}

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.model == "tiny" else 5e-5

    def describe(self) -> dict[str, Any]:
        """The run's settings in JSON-friendly form (tasks by name)."""
        skip = ("primary", "auxiliaries", "tiny", "schedule", "objectives", "decomposer", "plugin", "checkpoint")
        out = {k: v for k, v in asdict(self).items() if k not in skip}
        plugin = self.plugin
        if plugin is not None:
            out[self._plugin_key] = plugin.describe() if hasattr(plugin, "describe") else repr(plugin)
        out["schedule"] = (
            self.schedule
            if isinstance(self.schedule, str)
            else {"kind": type(self.schedule).__name__, **asdict(self.schedule)}
        )
        out.update(
            primary=self.primary.name,
            auxiliaries=[t.name for t in self.auxiliaries],
            ratios=self.active_ratios(),
            lr=self.learning_rate,
        )
        if self.tiny is not None:
            out["tiny"] = asdict(self.tiny)
        if not self.compile:  # recorded only when on: the settings of runs before the option stay equal
            del out["compile"]
        return out


@dataclass
class TrainResult:
    """The outcome of :func:`auxopt.train.train`.

    ``best_dev`` is the best primary dev metric seen at an evaluation, ``test_at_best`` the primary
    test metric of the model at that step (None without a test split); ``curve`` holds (step, dev).
    ``stopped`` says why training ended: ``"max_steps"``, ``"early_stopping"`` or ``"reporter"``.
    ``model`` is the trained model at the best dev step (:class:`~auxopt.train.export.TrainedModel`) when ``train`` was
    asked to keep it, else None.
    """

    metric: str
    best_dev: float
    best_step: int
    test_at_best: float | None
    curve: list[tuple[int, float]]
    steps: int
    examples: dict[str, int]
    wall_time: float
    stopped: str
    device: str
    extra: dict[str, Any] = field(default_factory=dict)
    model: TrainedModel | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The outcome as plain data (the model left out)."""
        return {f.name: deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "model"}

    def save_pretrained(self, folder, **card) -> Path:
        """Write the kept model as a folder ``transformers.pipeline`` loads, with a model card
        (:func:`auxopt.train.export.save_pretrained`; ``card`` goes there)."""
        from auxopt.train.export import save_pretrained

        return save_pretrained(self, folder, **card)
