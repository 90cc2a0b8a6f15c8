"""``AANG``: the trainer plugin (``TrainConfig(objectives=AANG(...))``); its step strategy is
:class:`~auxopt.objectives.aang_step.AANGStep`.

Two modes:

* **online weighting** (``learn=True``, AANG proper) — every step ``k`` objectives ``S`` are drawn
  uniformly from the ``n`` of the space and weighted by ``(n/k) w_t``, ``w`` the softmax of their
  factored + joint logits (:class:`~auxopt.objectives.weighting.OnlineWeights`), so an objective's
  expected weight is linear in ``w``; the step's loss is ``2λ L_prim + 2(1 − λ) Σ_{t∈S} (n/k) w_t L_t``
  (``λ = ½`` at the start gives the primary the weight it has alone). Every ``update_every`` steps
  each term is back-propagated on its own, its gradient on the shared encoder compared (cosine) with
  the gradient of a dev loss, and the weights updated. The dev loss is that of a small **dev head**
  — a linear (or, for regression, least-squares) head fitted by L-BFGS on the frozen pooled features
  of a fresh minibatch of the primary's **train** split (``dev_fit_size`` examples; when that is the
  run's batch size, the default, it is the step's own primary minibatch, whose features the primary
  term's forward pass gives for free), warm-started from the previous fit, on the CPU — and its
  gradient is taken on a separate **dev** minibatch (``dev_batch_size``), both in the model's
  training mode: as in the official code (``ModelWithAuxTasks.learn_dev_head`` fits on
  ``datasets['train']``, ``set_dev_head`` takes the gradient on ``datasets['dev']``), the head never
  sees the batch its gradient is taken on, and the dev gradient describes the encoder, not the
  training head. (The dev split drives the weights;
  report test scores.)
* **fixed objectives** (``learn=False``) — ``objectives`` with fixed ``weights`` every step, loss
  ``primary_weight · L_prim + Σ_t w_t L_t`` (what :meth:`AANG.suggest_fixed` returns for an Optuna
  search, and TAPT-style MLM).

Every objective trains its own output head (:mod:`auxopt.objectives.losses`).

**Final fine-tuning** (``finetune``, both modes): the last ``round(finetune · max_steps)`` steps of
the run train the primary task alone, starting from the best dev state so far with fresh optimiser
moments (the training loop does both at :attr:`AANGStep.finetune_start`), under the run's own
learning-rate schedule; dev evaluation and the best-step choice cover this phase too, so when it
does not beat the search phase on dev the search phase's best state is kept — as the official
``final_finetuning`` keeps the pre-fine-tune score.

The weights are recorded every ``log_every`` steps as ``summary()["aang_weights"]`` =
``{"steps", "objectives", "weights" (one row per record, one column per objective), "primary_weight"
(λ, or the fixed primary weight)}``, which the objective adapter stores as user_attr ``aang_weights``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from auxopt import records
from auxopt.errors import AuxoptError, check_integer
from auxopt.objectives.aang_step import AANGStep
from auxopt.objectives.taxonomy import STAGES, AuxObjective, ObjectiveSpace, why_illegal


@dataclass(frozen=True)
class AANG:
    """AANG's auxiliary objectives for :class:`~auxopt.train.TrainConfig` (its ``objectives`` field).
    Plain data: no Optuna in here (see :meth:`suggest` and :meth:`suggest_fixed`).

    Args:
        space: the :class:`ObjectiveSpace` (None: ``ObjectiveSpace.for_task(primary)`` — the primary's
            text, plus its ``domain.txt`` when it has one).
        k: objectives sampled per step (online weighting).
        learn: learn the weights online (AANG) or keep ``weights`` fixed.
        objectives: objectives to use (names ``data|transform|representation|output``, presets or
            :class:`AuxObjective`); default: every objective of the space.
        weights: fixed weights of ``objectives`` (``learn=False``; default 1 each).
        primary_weight: the primary loss's weight with fixed objectives.
        weight_lr: learning rate of the factor logits.
        joint_lr: learning rate of the joint logits (default: ``weight_lr``).
        primary_lr: learning rate of the primary/auxiliary split ψ.
        init_primary: λ at the start.
        update_every: update the weights every this many steps (other steps: one combined backward).
        dev_batch_size: dev examples the dev-loss gradient is taken on per weight update (default:
            the run's batch size).
        dev_fit_size: primary *train* examples the dev head is fitted on per weight update (default:
            ``dev_batch_size``; the official runs fit on 32 and take the gradient on 32).
        dev_head_steps: L-BFGS iterations of the dev-head fit.
        dev_head_l2: L2 penalty of the dev-head fit.
        log_every: record the weights every this many steps (and at step 1).
        align_embeddings: include the embedding tables in the gradients whose cosine is taken (by
            default only the transformer layers: the word-embedding gradient is a sparse record of
            which tokens a minibatch happened to contain, and drowns the alignment in noise).
        seed: seeds sampling and transforms (None: the run's seed).
        finetune: the share of ``max_steps`` at the end of the run spent fine-tuning on the primary
            task alone, from the best dev state (see the module docstring); 0 turns it off. Default
            0.1, as the official pipeline: it fine-tunes by default (``scripts/autoaux.py`` runs
            ``final_finetuning`` unless ``--no_final_finetuning``), from the best checkpoint with a
            fresh AdamW, for ``classf_ft_iters`` = 10 epochs (patience 3) after a search of at most
            ``-iters`` = 150 epochs (``hyperparam_search.py``; less when it stops early) — about a
            tenth of the training — at a learning rate (1e-6) far below the search's (1e-4); here
            the run's own schedule goes on, whose linear decay stays under a tenth of its peak over
            the last tenth of the run. A ``patience`` early stop during the search ends the run
            before the fine-tune phase.
    """

    config_key: ClassVar[str] = "objectives"  # where TrainConfig.describe() records it

    space: ObjectiveSpace | None = None
    k: int = 3
    learn: bool = True
    objectives: Sequence[Any] | None = None
    weights: Sequence[float] | None = None
    primary_weight: float = 1.0
    weight_lr: float = 0.5
    joint_lr: float | None = None
    primary_lr: float = 0.5
    init_primary: float = 0.5
    update_every: int = 1
    dev_batch_size: int | None = None
    dev_head_steps: int = 20
    dev_head_l2: float = 1e-3
    log_every: int = 10
    align_embeddings: bool = False
    seed: int | None = None
    dev_fit_size: int | None = None
    finetune: float = 0.1

    def __post_init__(self) -> None:
        for key in ("k", "update_every", "log_every", "dev_head_steps", "dev_batch_size", "dev_fit_size"):
            value = getattr(self, key)
            if value is None and key in ("dev_batch_size", "dev_fit_size"):
                continue
            check_integer("AANG", key, value, 1)
        if isinstance(self.finetune, bool) or not (isinstance(self.finetune, int | float) and 0 <= self.finetune < 1):
            raise AuxoptError(
                f"AANG: finetune must be a share of max_steps in [0, 1) (0: no final "
                f"fine-tuning), not {self.finetune!r}"
            )
        if self.space is not None and not isinstance(self.space, ObjectiveSpace):
            raise AuxoptError(f"AANG: space must be an ObjectiveSpace, not {type(self.space).__name__}")
        if self.objectives is not None:
            objs = tuple(AuxObjective.parse(o) for o in self.objectives)
            if not objs:
                raise AuxoptError("AANG: objectives is empty; give at least one or leave it None (the whole space)")
            for o in objs:
                reason = why_illegal(o)
                if reason:
                    raise AuxoptError(f"AANG: objective {str(o)!r} is illegal: {reason}")
            if len(set(objs)) != len(objs):
                raise AuxoptError("AANG: objectives repeats an objective; give each once")
            object.__setattr__(self, "objectives", objs)
        if self.weights is not None:
            if self.objectives is None or len(self.weights) != len(self.objectives):
                raise AuxoptError("AANG: weights needs objectives, one weight each")
            if not all(isinstance(w, int | float) and math.isfinite(w) and w >= 0 for w in self.weights):
                raise AuxoptError(f"AANG: weights must be finite numbers >= 0, not {list(self.weights)}")
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if not self.learn and self.objectives is None:
            raise AuxoptError("AANG: learn=False needs objectives (and their weights) to keep fixed")
        for key in ("weight_lr", "primary_lr", "primary_weight", "dev_head_l2"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise AuxoptError(f"AANG: {key} must be a finite number >= 0, not {value!r}")
        if not 0 < self.init_primary < 1:
            raise AuxoptError(f"AANG: init_primary must be in (0, 1), not {self.init_primary!r}")
        n = self.n_candidates()
        if self.learn and n is not None and self.k > n:
            raise AuxoptError(self._k_too_large(n, self.space if self.objectives is None else None))

    def _k_too_large(self, n: int, space: ObjectiveSpace | None) -> str:
        missing = getattr(space, "missing_domain", None)
        if missing is not None:
            return (
                f"AANG: k={self.k} objectives per step, but task {missing!r} has no domain text "
                f"(domain.txt beside its data), so its space only has {n} objectives; lower k to at "
                "most that, or add a domain.txt (or pass domain=PATH to the ObjectiveSpace)"
            )
        return f"AANG: k={self.k} is larger than the {n} objectives to sample from; lower k"

    def resolve(self, primary) -> tuple[ObjectiveSpace, list[AuxObjective]]:
        """The space (default ``ObjectiveSpace.for_task(primary)``) and the objectives a run on
        ``primary`` trains with; an :class:`AuxoptError` when ``k`` is larger than they are."""
        space = self.space or ObjectiveSpace.for_task(primary)
        objectives = list(self.objectives) if self.objectives is not None else list(space)
        if self.learn and self.k > len(objectives):
            raise AuxoptError(self._k_too_large(len(objectives), space if self.objectives is None else None))
        return space, objectives

    def check(self, config) -> None:
        """Everything a run with ``config`` would otherwise find when training starts (called by
        :meth:`TrainConfig.validate <auxopt.train.TrainConfig.validate>`): ``k`` against the space,
        and every objective's data (a ``task:<name>`` not in the run, a missing ``domain.txt`` or
        text file)."""
        from auxopt.objectives.losses import data_sources

        space, objectives = self.resolve(config.primary)
        data_sources(
            objectives, config.primary, config.active_tasks(), domain=space.domain, out_of_domain=space.out_of_domain
        )

    def n_candidates(self) -> int | None:
        if self.objectives is not None:
            return len(self.objectives)
        return None if self.space is None else len(self.space)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "AANG",
            "learn": self.learn,
            "k": self.k,
            "space": None if self.space is None else self.space.describe(),
            "objectives": None if self.objectives is None else [str(o) for o in self.objectives],
            "weights": None if self.weights is None else list(self.weights),
            "primary_weight": self.primary_weight,
            "weight_lr": self.weight_lr,
            "joint_lr": self.joint_lr,
            "primary_lr": self.primary_lr,
            "init_primary": self.init_primary,
            "update_every": self.update_every,
            "dev_batch_size": self.dev_batch_size,
            "dev_fit_size": self.dev_fit_size,
            "dev_fit_split": "train",
            "sampling": "uniform",
            "heads": "per_objective",
            "dev_head_steps": self.dev_head_steps,
            "dev_head_l2": self.dev_head_l2,
            "log_every": self.log_every,
            "align_embeddings": self.align_embeddings,
            "seed": self.seed,
            "finetune": self.finetune,
        }

    def make_step(self, ctx) -> AANGStep:
        return AANGStep(ctx, self)

    @classmethod
    def suggest(
        cls,
        trial,
        space: ObjectiveSpace | None = None,
        *,
        k: int | tuple[int, int] = (1, 4),
        weight_lr: float | tuple[float, float] = (0.05, 2.0),
        primary_lr: float | tuple[float, float] = (0.05, 2.0),
        prefix: str = "aang_",
        **fixed: Any,
    ) -> AANG:
        """Online AANG with its own hyperparameters suggested through an Optuna ``trial``: a tuple
        is a range (log scale for learning rates), a number is fixed."""

        def pick(name, value, log):
            if isinstance(value, tuple):
                lo, hi = value
                if isinstance(lo, int) and isinstance(hi, int) and not log:
                    if space is not None:
                        hi = min(hi, len(space))
                    return trial.suggest_int(prefix + name, lo, hi)
                return trial.suggest_float(prefix + name, lo, hi, log=log)
            return value

        return cls(
            space=space,
            k=pick("k", k, False),
            weight_lr=pick("weight_lr", weight_lr, True),
            primary_lr=pick("primary_lr", primary_lr, True),
            **fixed,
        )

    @classmethod
    def suggest_fixed(
        cls,
        trial,
        space: ObjectiveSpace,
        *,
        k: int = 2,
        weight: tuple[float, float] = (0.05, 1.0),
        prefix: str = "obj",
        **aang_kwargs: Any,
    ) -> AANG:
        """A fixed-weight AANG config (``learn=False``) over objectives of ``space`` suggested through
        an Optuna ``trial``.

        Each of ``k`` slots is one categorical per stage (``{prefix}{i}_data``, ``_transform``,
        ``_representation``, ``_output``) and a float weight (``{prefix}{i}_weight``), so any Optuna
        sampler searches the space. An illegal tuple is **mapped to the nearest legal one**
        (:meth:`ObjectiveSpace.nearest`) — never trained as is, never resampled, so the trial's
        parameters stay what the sampler chose; slots that land on the same objective add their
        weights. The chosen objectives are stored on the trial as user_attr ``aang_objectives``.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise AuxoptError(f"k must be an integer >= 1, not {k!r}")
        chosen: dict[AuxObjective, float] = {}
        record = []
        for i in range(k):
            stages = [trial.suggest_categorical(f"{prefix}{i}_{s}", list(space.options[s])) for s in STAGES]
            w = trial.suggest_float(f"{prefix}{i}_weight", *weight)
            obj = space.nearest(stages)
            chosen[obj] = chosen.get(obj, 0.0) + w
            record.append(
                {
                    "slot": i,
                    "objective": str(obj),
                    "weight": round(w, 6),
                    "suggested": "|".join(stages),
                    "mapped": obj.stages != tuple(stages),
                }
            )
        trial.set_user_attr(records.AANG_OBJECTIVES, record)
        return cls(space=space, objectives=list(chosen), weights=list(chosen.values()), learn=False, **aang_kwargs)
