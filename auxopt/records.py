"""The names of the records auxopt keeps on trials and studies (Optuna user_attrs and system attrs).

The trainer, the objective adapter, the samplers, the pipelines, the plots, the dashboard and the
CLI share these records through storage; this module names each key once, with its shape, so that a
writer and its readers cannot drift apart. Writers and readers import the constant, never the string.
"""

from __future__ import annotations

# -- a training run's outcome (auxopt.objective.record_result) ------------------------------------
METRIC = "metric"  # the primary task's metric name, e.g. "accuracy"
DEV_METRIC = "dev_metric"  # the best primary dev metric (the trial's value)
TEST_METRIC = "test_metric"  # the primary test metric at the best dev step
BEST_STEP = "best_step"
STEPS = "steps"  # optimiser steps this trial trained (0 for a reused outcome)
CURVE = "curve"  # [[step, dev metric], ...]
EXAMPLES = "examples"  # {task: examples trained}
WALL_TIME_S = "wall_time_s"
STOPPED = "stopped"  # "max_steps", "early_stopping" or "reporter"
DEVICE = "device"
CONFIG = "config"  # TrainConfig.describe(): the run's settings, the key of finished twins
CONTAMINATION = "contamination"  # overlap between auxiliary text and the primary's dev/test

# -- where an outcome came from ---------------------------------------------------------------------
REUSED_FROM = "reused_from"  # number of the finished trial with the same settings
REUSED_STUDY = "reused_study"  # the study that trial is in, when not the trial's own (reuse_from)
REUSED_COST = "reused_cost"  # {"steps", "wall_time_s"}: what the run taken from that study cost there
RETRY_OF = "retry_of"  # number of the trial this one retries (its worker died)
RESUMED_FROM_STEP = "resumed_from_step"  # the checkpoint step a retry resumed from (0: none)
CHECKPOINT_STEP = "checkpoint_step"  # the step of the trial's newest checkpoint (auxopt.storage)

# -- plugins' records (a TrainResult's extra, stored as they are) ---------------------------------
GRAD_PARTS = "grad_parts"  # ATTITTUD: {"steps", "prim", "pos", "neg", "perp"}: norms per logged step
GRAD_BASIS = "grad_basis"  # ATTITTUD: the basis kind, method, dimension, k, m and refresh costs of the run
AANG_WEIGHTS = "aang_weights"  # AANG: {"steps", "objectives", "weights", "primary_weight"} per logged step
AANG_TOP = "aang_top"  # AANG: [[objective, final weight], ...], largest first
AANG_OBJECTIVES = "aang_objectives"  # AANG: the generated objectives of the trial's space

# -- AutoSeM stage 1 (online Thompson run, or ThompsonTaskSampler) --------------------------------
THOMPSON = "thompson"  # TrainResult.extra key of an online run, split into the user_attrs below
THOMPSON_POSTERIOR = "thompson_posterior"  # {task: [alpha, beta]}
THOMPSON_MEANS = "thompson_means"  # {task: posterior mean}
THOMPSON_PULLS = "thompson_pulls"  # {task: pulls}
THOMPSON_EVIDENCE = "thompson_evidence"  # {task: reward evidence AutoSeM selects on}
THOMPSON_HISTORY = "thompson_history"  # [[step, task, reward, dev], ...]
THOMPSON_POSTERIOR_MEAN = "thompson_posterior_mean"  # ThompsonTaskSampler: {task: mean} after the trial

# -- on a study ------------------------------------------------------------------------------------
PRIMARY = "primary"  # the primary task's name
SELECTED_TASKS = "selected_tasks"  # AutoSeM: the tasks stage 1 kept
UTILITIES = "utilities"  # AutoSeM: {task: posterior mean of its stage-1 evidence, a / (a + b)}
RATIOS = "ratios"  # AutoSeM stage 2: the trial's mixing ratios
PROTECTED = "protected"  # True on a queued point a pruner must let finish (auxopt.pruners.ProtectedPruner)
VERDICT = "verdict"  # auxopt verify: {"of": {"study", "trial"}, "study", "metric", "seed_list", "seeds",
#   "runs": {arm: {seed: {"dev", "test"}}}, "dev", "test" (PairedDifference dicts), "search_dev", "summary"}

# -- trial system attrs ------------------------------------------------------------------------------
WORKER = "auxopt:worker"  # the process that runs the trial (auxopt.storage.worker_identity)
RETRY_HISTORY = "retry_history"  # written by Optuna's RetryFailedTrialCallback
