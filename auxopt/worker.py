"""The trial loop every auxopt process runs, alone or as one of many workers on one study.

It is Optuna's ``study.optimize`` loop with three additions that resuming and scaling out need:

- Before each trial it fails trials whose worker died (heartbeat) and queues their retries, which
  ``study.ask()`` hands out first, with the same parameters.
- ``until=N`` makes the study hold exactly N trials however many workers share it: counting the
  trials and asking for a new one happen under a lock (:func:`auxopt.storage.ask_lock`), and a
  retry replaces the trial it retries instead of adding one. A worker with nothing left to start
  waits while other workers' trials run, in case one of them dies and needs a retry (RDB storages,
  which can tell; a journal storage cannot, so there it stops).
- Ctrl-C marks the running trial FAIL and queues its retry, so that running the command again
  continues it from its last checkpoint.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import TrialState

from auxopt.storage import RETRY_ATTR, RetryDeadTrials, ask_lock, fail_dead_trials, has_heartbeat

logger = logging.getLogger("auxopt")


def requested(trials: Sequence[optuna.trial.FrozenTrial]) -> int:
    """How many trials the study holds, counting a trial and its retries once."""
    return sum(RETRY_ATTR not in t.system_attrs for t in trials)


def _next_trial(study: optuna.Study, url: str, until: int | None) -> optuna.Trial | None | bool:
    """A trial to run; None when the study is done; False when it must wait for others."""
    with ask_lock(study._storage, url):
        fail_dead_trials(study)
        if until is not None:
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if not waiting and requested(trials) >= until:
                running = any(t.state == TrialState.RUNNING for t in trials)
                return False if running and has_heartbeat(study._storage) else None
        with warnings.catch_warnings():  # this loop runs the heartbeat itself
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = study.ask()
        if has_heartbeat(study._storage):  # beat at once: a trial that never beat looks dead
            study._storage.record_heartbeat(trial._trial_id)
        return trial


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    url: str,
    n_trials: int | None = None,
    until: int | None = None,
    callbacks: Sequence[Callable] = (),
    poll_s: float | None = None,
) -> int:
    """Run trials of ``study`` until this worker has run ``n_trials`` or the study holds ``until``
    (whichever comes first; at least one must be given). An exception in the objective fails the
    trial and ends the worker (like ``study.optimize(catch=())``); a pruned trial ends PRUNED.
    Returns the number of trials this worker finished."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    if n_trials is None and until is None:
        raise ValueError("give n_trials or until")
    storage = study._storage
    if poll_s is None:  # how often an idle worker looks again (the study may be done any moment)
        poll_s = 1.0
    done = 0
    while n_trials is None or done < n_trials:
        trial = _next_trial(study, url, until)
        if trial is None:
            break
        if trial is False:
            time.sleep(poll_s)
            continue
        state, value = TrialState.COMPLETE, None
        with get_heartbeat_thread(trial._trial_id, storage):
            try:
                value = objective(trial)
            except optuna.TrialPruned as e:
                state = TrialState.PRUNED
                logger.info("trial %d pruned: %s", trial.number, e)
            except KeyboardInterrupt:
                study.tell(trial, state=TrialState.FAIL)
                RetryDeadTrials()(study, storage.get_trial(trial._trial_id))
                raise
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
        if state == TrialState.PRUNED:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        else:
            frozen = study.tell(trial, value)
        if frozen.state == TrialState.COMPLETE:
            logger.info("trial %d finished with value %s and parameters %s", frozen.number, frozen.value, frozen.params)
        done += 1
        for callback in callbacks:
            callback(study, frozen)
    return done
