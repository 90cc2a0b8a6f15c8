"""``auxopt export``: the chosen configuration of a search as a model folder.

A study keeps each trial's scores and settings, not its weights (100 MiniLM trials would be 9 GB),
so the export **trains the trial again** from its stored settings — training is deterministic given
its settings and seed — and checks that the run reproduces the dev score the study stored before it
writes anything: exactly on the CPU; on a GPU, whose kernels are not bit-reproducible, it says how
far the scores moved. The folder is written by :meth:`auxopt.train.TrainResult.save_pretrained`
(a transformers model with its card), with ``auxopt verify``'s verdict in the card when the study
has one for this configuration.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auxopt import records
from auxopt.errors import AuxoptError
from auxopt.outcome.chosen import Chosen
from auxopt.storage import mask_url
from auxopt.train import TrainResult, train
from auxopt.train.export import check_target

logger = logging.getLogger("auxopt")
#: how far a retrained CPU run's dev score may move from the stored one (equal settings: not at all)
CPU_TOLERANCE = 1e-9


@dataclass
class Exported:
    """Where the model went, the run that made it, and how closely it reproduced the trial."""

    folder: Path
    result: TrainResult
    stored_dev: float
    stored_test: float | None
    exact: bool  # both runs on the CPU, where the scores must match exactly

    @property
    def gap(self) -> float:
        return abs(self.result.best_dev - self.stored_dev)


def export(
    chosen: Chosen,
    out: str | Path,
    *,
    force: bool = False,
    progress: Any = None,
    command: str | None = None,
) -> Exported:
    """Train ``chosen`` again, check it reproduces the stored dev score, write the folder ``out``.

    Args:
        force: replace ``out`` when it exists and is not empty.
        progress: an :class:`auxopt.progress.Progress` to show the run's step bar (or lines).
        command: the command that asked for it, for the model card.
    """
    folder = check_target(out, force)  # before the minutes of training, not after
    run = progress.wrap_train(train) if progress is not None else train
    result = run(chosen.config, None, keep_model=True)
    stored_device = str(chosen.trial.user_attrs.get(records.DEVICE, "cpu"))
    exact = stored_device.startswith("cpu") and result.device.startswith("cpu")
    done = Exported(folder, result, chosen.dev, chosen.test, exact)
    if exact and done.gap > CPU_TOLERANCE:
        raise AuxoptError(
            f"training {chosen.describe()} again gave dev {result.best_dev:.6f} where the study stored "
            f"{chosen.dev:.6f}: the data, the code or the library versions changed since it ran; nothing was written"
        )
    if not exact and done.gap > 0:
        logger.warning(
            "auxopt: trained again on %s (the trial ran on %s): dev %.4f where the study stored %.4f",
            result.device,
            stored_device,
            result.best_dev,
            chosen.dev,
        )
    source = {
        "study": chosen.study.study_name,
        "trial": chosen.trial.number,
        "storage": mask_url(chosen.url),
        "search": chosen.name,
        **({"command": command} if command else {}),
    }
    result.save_pretrained(folder, force=force, name=folder.name, source=source, verdict=verdict_for(chosen))
    return done


def verdict_for(chosen: Chosen) -> dict | None:
    """``auxopt verify``'s verdict stored on the chosen trial's study, if it verified this trial."""
    verdict = chosen.study.user_attrs.get(records.VERDICT)
    if not isinstance(verdict, dict):
        return None
    of = verdict.get("of", {})
    if of.get("study") != chosen.study.study_name or of.get("trial") != chosen.trial.number:
        return None
    return verdict
