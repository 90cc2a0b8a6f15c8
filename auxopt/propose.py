"""``Distinct``: new trials whose settings no trial of the study holds yet.

Every process builds its sampler afresh from the study file, so a seeded sampler in a second
process (a rerun, a resume, another worker) would draw the first process's trials again. The worker
loop therefore asks :class:`Distinct` for each new trial's parameters, under the study's lock
(:func:`auxopt.storage.storage_lock`), and enqueues them:

1. the trials of the study are copied into a scratch in-memory study, and the sampler draws a trial
   there, exactly as it would on the study itself (same history, same trial number);
2. the search space turns the draw into run settings (``TrainConfig.describe()``); when a trial of
   the study — finished, running or queued — already holds those settings, the draw is discarded
   and the sampler draws again (a new seed each time), then, when it keeps proposing what has run
   (a GP sure of its optimum, a small categorical space), a seeded random draw;
3. only when every draw repeats (the space seems exhausted) is a repeat allowed; the trial then
   takes the finished twin's outcome without training (:func:`auxopt.objective.finished_twin`).

Settings, not parameters, are compared: two parameters that mean the same run (AutoSeM's "off"
ratios) are one configuration, and a space whose seed varies per trial never repeats.

The default sampler is TPE seeded per trial, from ``(seed, trial number, attempt)``: a study run
on one worker is reproducible, and the trial numbers that processes take under the lock differ,
so no two draw the same. A sampler the study file gives draws first, as it is; when its draw
repeats, the seeded random draws follow at once (reseeding a user's sampler would make the study
irreproducible).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from auxopt import _optuna, records

logger = logging.getLogger("auxopt")

#: draws from the default sampler (a given one: 1), then seeded random draws, before a repeat is allowed
SAMPLER_ATTEMPTS, RANDOM_ATTEMPTS = 4, 32


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs warnings only (no "A new study created in memory" for scratch studies)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def derived_seed(*keys: int) -> int:
    """A 32-bit seed from integers (NumPy's ``SeedSequence``: distinct keys, unrelated streams)."""
    return int(np.random.SeedSequence([k & 0xFFFFFFFF for k in keys]).generate_state(1)[0])


def settings_key(settings: Any) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


class Distinct:
    """``Distinct(settings_of, seed)(study)`` → parameters for the study's next trial (see the
    module docstring).

    Args:
        settings_of: a trial → its run settings (JSON-able); it runs the search space on the trial.
            When it raises, the draw is used as it is: the real trial then fails the same way.
        seed: the study's seed, for the default sampler and the random draws.
        sampler: ``None`` = TPE seeded per trial; else the study's own sampler (``study.sampler``).
    """

    def __init__(
        self,
        settings_of: Callable[[optuna.Trial], Any],
        seed: int = 0,
        *,
        sampler: optuna.samplers.BaseSampler | None = None,
    ):
        self.settings_of, self.seed, self.sampler = settings_of, seed, sampler
        self._keys: dict[tuple[int, int], str | None] = {}  # (study id, trial number) → settings key

    def _key_of(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str | None:
        cache = (_optuna.study_id(study), trial.number)
        if cache not in self._keys:
            if records.CONFIG in trial.user_attrs:
                key = settings_key(trial.user_attrs[records.CONFIG])
            else:  # asked but not started yet, or run before settings were recorded
                # the proposed parameters: a trial that has suggested only some of them yet would
                # give no settings, and another worker would draw the same ones
                params = _optuna.proposed_params(trial)
                try:
                    key = settings_key(self.settings_of(optuna.trial.FixedTrial(params, trial.number)))
                except Exception:
                    key = None
            if trial.state != TrialState.RUNNING or records.CONFIG in trial.user_attrs:
                self._keys[cache] = key  # params and settings of a started trial never change
            return key
        return self._keys[cache]

    def __call__(self, study: optuna.Study) -> dict[str, Any] | None:
        trials = study.get_trials(deepcopy=False)
        taken = {self._key_of(study, t) for t in trials}
        with quiet_optuna():
            scratch = optuna.create_study(directions=study.directions)
            scratch.add_trials(trials)
            return self._draw(scratch, taken, len(trials))

    def _draw(self, scratch: optuna.Study, taken: set[str | None], number: int) -> dict[str, Any] | None:
        params = None
        attempts = (SAMPLER_ATTEMPTS if self.sampler is None else 1) + RANDOM_ATTEMPTS
        for attempt in range(attempts):
            scratch.sampler = self._sampler(number, attempt)
            trial = scratch.ask()
            try:
                key = settings_key(self.settings_of(trial))
            except Exception:  # an invalid draw: the real trial records the failure
                return dict(trial.params)
            scratch.tell(trial, state=TrialState.FAIL)  # the next draw must not see it as pending
            params = dict(trial.params)
            if key not in taken:
                if attempt:
                    logger.info(
                        "auxopt: trial %d: the sampler's draw repeated a trial's settings; drew again (%d draws)",
                        number,
                        attempt + 1,
                    )
                return params
        logger.warning(
            "auxopt: trial %d repeats the settings of an earlier trial: %d draws found "
            "nothing new (the search space seems exhausted); it takes that trial's outcome",
            number,
            attempts,
        )
        return params

    def _sampler(self, number: int, attempt: int) -> optuna.samplers.BaseSampler:
        seed = derived_seed(self.seed, number, attempt)
        if attempt >= (SAMPLER_ATTEMPTS if self.sampler is None else 1):
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed) if self.sampler is None else self.sampler
