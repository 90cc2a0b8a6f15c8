"""The trial loop every auxopt process runs, alone or as one of many workers on one study.

It is Optuna's ``study.optimize`` loop with three additions that resuming and scaling out need:

- Before each trial it fails trials whose worker died and queues their retries, which
  ``study.ask()`` hands out first, with the same parameters: at once when that worker was a process
  of this machine (each trial records its worker: :data:`auxopt.records.WORKER`), after the
  heartbeat grace for other machines' workers (announced while it waits).
- With ``propose`` (what :class:`~auxopt.StudySpec` gives, :class:`auxopt.propose.Distinct`), a new
  trial's parameters are drawn under the lock and must name settings that no trial of the study
  holds yet, so that a rerun, a resume or another worker does not repeat a configuration.
- ``until=N`` makes the study hold exactly N trials however many workers share it: counting the
  trials and asking for a new one happen under a lock (:func:`auxopt.storage.ask_lock`), and a
  retry replaces the trial it retries instead of adding one. A worker with nothing left to start
  waits while other workers' trials run, in case one of them dies and needs a retry (RDB storages,
  which can tell; a journal storage cannot, so there it stops).
- Ctrl-C marks the running trial FAIL and queues its retry, so that running the command again
  continues it from its last checkpoint (and says so).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import TrialState

from auxopt import _optuna, records
from auxopt.errors import AuxoptError
from auxopt.progress import fmt_params, fmt_value
from auxopt.storage import (
    CHECKPOINT_STEP,
    RetryDeadTrials,
    ask_lock,
    fail_dead_trials,
    has_heartbeat,
    heartbeat_settings,
    worker_identity,
)

logger = logging.getLogger("auxopt")


def requested(trials: Sequence[optuna.trial.FrozenTrial]) -> int:
    """How many trials the study holds, counting a trial and its retries once."""
    return sum(records.RETRY_HISTORY not in t.system_attrs for t in trials)


def _next_trial(
    study: optuna.Study, url: str, until: int | None, propose: Callable[[optuna.Study], dict | None] | None = None
) -> optuna.Trial | None | bool:
    """A trial to run; None when the study is done; False when it must wait for others."""
    storage = _optuna.storage_of(study)
    with ask_lock(storage, url):
        fail_dead_trials(study)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if until is not None and not waiting and requested(trials) >= until:
            running = any(t.state == TrialState.RUNNING for t in trials)
            return False if running and has_heartbeat(storage) else None
        me = worker_identity()
        if not waiting:  # retries (WAITING) keep their parameters
            # queue the new trial with its worker named, then take it: a worker killed at any
            # instant leaves no RUNNING trial that names no worker (it would look alive forever)
            system: dict = {records.WORKER: me}
            params = propose(study) if propose is not None else None
            if params is not None:
                system[_optuna.FIXED_PARAMS] = params
            study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs=system))
        with warnings.catch_warnings():  # this loop runs the heartbeat itself
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = study.ask()
        if _system_attr(study, trial, records.WORKER) != me:  # a retry names the dead worker until now
            storage.set_trial_system_attr(_optuna.trial_id(trial), records.WORKER, me)
        if has_heartbeat(storage):  # beat at once: a trial that never beat looks dead
            storage.record_heartbeat(_optuna.trial_id(trial))
        return trial


def _system_attr(study: optuna.Study, trial: optuna.Trial, key: str):
    return _optuna.storage_of(study).get_trial_system_attrs(_optuna.trial_id(trial)).get(key)


def _announce_wait(study: optuna.Study, told: set[int]) -> None:
    """Say once per trial why this worker waits: other workers' trials still run, and one that
    died is only known after the heartbeat grace."""
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number not in told]
    if not running:
        return
    told.update(t.number for t in running)
    where = ", ".join(f"{t.number} ({_where(t.system_attrs.get(records.WORKER))})" for t in running)
    logger.info(
        "auxopt: waiting for trial(s) %s to finish: if a worker died, its trial is retried "
        "%d s after its last heartbeat",
        where,
        heartbeat_settings()[1],
    )


def _where(identity) -> str:
    if not isinstance(identity, dict):
        return "worker unknown"
    machine = str(identity.get("machine", "?")).split("/")[0]
    return f"process {identity.get('pid')} on {machine}"


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    url: str,
    n_trials: int | None = None,
    until: int | None = None,
    callbacks: Sequence[Callable] = (),
    poll_s: float | None = None,
    propose: Callable[[optuna.Study], dict | None] | None = None,
) -> int:
    """Run trials of ``study`` until this worker has run ``n_trials`` or the study holds ``until``
    (whichever comes first; at least one must be given). An exception in the objective fails the
    trial and ends the worker (like ``study.optimize(catch=())``); a pruned trial ends PRUNED.
    ``propose(study)`` draws the parameters of each new trial (None: the study's sampler does, as
    in ``study.optimize``). Returns the number of trials this worker finished."""
    if n_trials is None and until is None:
        raise ValueError("give n_trials or until")
    storage = _optuna.storage_of(study)
    if poll_s is None:  # how often an idle worker looks again (the study may be done any moment)
        poll_s = 1.0
    done, told = 0, set()
    while n_trials is None or done < n_trials:
        trial = _next_trial(study, url, until, propose)
        if trial is None:
            break
        if trial is False:
            _announce_wait(study, told)
            time.sleep(poll_s)
            continue
        state, value = TrialState.COMPLETE, None
        with _optuna.heartbeat_thread(_optuna.trial_id(trial), storage):
            try:
                value = objective(trial)
            except optuna.TrialPruned as e:
                state = TrialState.PRUNED
                logger.info("trial %d pruned: %s", trial.number, e)
            except KeyboardInterrupt:
                study.tell(trial, state=TrialState.FAIL)
                frozen = storage.get_trial(_optuna.trial_id(trial))
                RetryDeadTrials(quiet=True)(study, frozen)
                step = frozen.user_attrs.get(CHECKPOINT_STEP)
                logger.warning(
                    "auxopt: trial %d interrupted%s; running the same command again resumes it%s",
                    trial.number,
                    "" if step is None else f" after step {step}",
                    "" if step is None else f" from step {step}",
                )
                raise
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
        if state == TrialState.PRUNED:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        else:
            frozen = study.tell(trial, value)
        if frozen.state == TrialState.COMPLETE:
            logger.info(
                "trial %d finished with value %s and parameters %s",
                frozen.number,
                fmt_value(frozen.value),
                fmt_params(frozen.params),
            )
        done += 1
        for callback in callbacks:
            callback(study, frozen)
    return done


# -- placing worker processes on GPUs ----------------------------------------------------------------
#: worker processes per GPU with ``--workers auto``. Measured (benchmarks/speed/gpu_packing.py, one H200,
#: MiniLM at batch 32 × 128): 1, 2, 4 and 8 workers made 60, 67, 111 and 164 training steps/s in all,
#: still rising at 8; a small model's step is bound by per-step overhead, so trials sharing a GPU fill it.
WORKERS_PER_GPU = 8


def parse_workers(text: str) -> int | str:
    """``--workers``: a number >= 1, or ``auto``."""
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        raise AuxoptError(f"--workers takes a number of worker processes or 'auto', not {text!r}") from None
    if n < 1:
        raise AuxoptError(f"--workers must be at least 1, not {n}")
    return n


def resolve_workers(
    workers: int | str, gpus: Sequence[int] | None = None, visible: int | None = None, cores: int | None = None
) -> int:
    """How many worker processes ``workers`` means: a number is itself; ``"auto"`` is
    :data:`WORKERS_PER_GPU` on each GPU used (``gpus``, default every ``visible`` one), at most one
    per CPU core, and 1 on a machine without a GPU (one worker uses all the cores)."""
    if workers != "auto":
        return int(workers)
    if visible is None:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    n_gpus = len(gpus) if gpus is not None else visible
    if n_gpus == 0:
        return 1
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(WORKERS_PER_GPU * n_gpus, cores))


def parse_gpus(text: str | None) -> list[int] | None:
    """``--gpus 0,2`` → ``[0, 2]``; None or ``""`` → None (every visible GPU)."""
    if text is None or not str(text).strip():
        return None
    try:
        gpus = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise AuxoptError(f"--gpus takes GPU numbers separated by commas, such as 0,2; not {text!r}") from None
    if len(set(gpus)) != len(gpus) or any(g < 0 for g in gpus):
        raise AuxoptError(f"--gpus lists each GPU once, by its number from 0; not {text!r}")
    return gpus


def worker_devices(workers: int, gpus: Sequence[int] | None = None, visible: int | None = None) -> list[str | None]:
    """The device of each of ``workers`` worker processes: the GPUs ``gpus`` (default: every one of
    the ``visible`` GPUs, ``torch.cuda.device_count()``) dealt out in turn, so that several workers
    share a GPU when there are more workers than GPUs; None for every worker (the run's own choice:
    the CPU) when there is no GPU."""
    if visible is None:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus is None:
        gpus = list(range(visible))
    missing = [g for g in gpus if g >= visible]
    if missing:
        seen = f"GPUs 0 to {visible - 1}" if visible else "no GPU"
        raise AuxoptError(f"--gpus names GPU {missing[0]}, but this machine shows {seen} (CUDA_VISIBLE_DEVICES)")
    if not gpus:
        return [None] * workers
    return [f"cuda:{gpus[i % len(gpus)]}" for i in range(workers)]


def placement(devices: Sequence[str | None]) -> str:
    """``cuda:0 ×2, cuda:1 ×2`` (or ``the CPU``) for the summary line."""
    counts: dict[str, int] = {}
    for device in devices:
        counts[device or "cpu"] = counts.get(device or "cpu", 0) + 1
    if set(counts) == {"cpu"}:
        return "on the CPU"
    return "on " + ", ".join(f"{d} ×{n}" if n > 1 else d for d, n in counts.items())
