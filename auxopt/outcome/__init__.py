"""What a search comes to: the chosen configuration as a model folder, and the verdict on it.

* :func:`export` — train the chosen configuration again, check it reproduces its stored dev score,
  and write a folder that ``transformers.pipeline("text-classification", model=FOLDER)`` loads, with
  a model card (``auxopt export``);
* :func:`verify` — the chosen configuration against the primary task alone on fresh paired seeds:
  the paired difference with its 95 % interval, stored on the study (``auxopt verify``).

Both take a :class:`~auxopt.StudySpec`, an :class:`~auxopt.pipelines.AutoSeM` pipeline, or a storage
URL with a study name (:func:`~auxopt.outcome.chosen.chosen`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auxopt.outcome.chosen import Chosen, chosen
from auxopt.outcome.export import Exported
from auxopt.outcome.verify import DEFAULT_SEEDS, VerifyStudy, report

__all__ = ["DEFAULT_SEEDS", "Chosen", "Exported", "VerifyStudy", "chosen", "export", "report", "verify"]


def export(
    search: Any = None,
    out: str | Path = "",
    *,
    storage: str | None = None,
    study: str | None = None,
    trial: int | None = None,
    force: bool = False,
    progress: Any = None,
    command: str | None = None,
) -> Exported:
    """Write the search's best trial (or trial ``trial``) as a model folder ``out``
    (:func:`auxopt.outcome.export.export`)."""
    from auxopt.outcome.export import export as _export

    if not out:
        from auxopt.errors import AuxoptError

        raise AuxoptError("say where the model goes: export(search, out='FOLDER') or --out FOLDER")
    picked = search if isinstance(search, Chosen) else chosen(search, storage=storage, study=study, trial=trial)
    return _export(picked, out, force=force, progress=progress, command=command)


def verify(
    search: Any = None,
    *,
    storage: str | None = None,
    study: str | None = None,
    seeds: int = DEFAULT_SEEDS,
    progress: Any = None,
    workers: Any = None,
) -> dict:
    """The verdict on the search's chosen configuration (:func:`auxopt.outcome.verify.verify`)."""
    from auxopt.outcome.verify import verify as _verify

    picked = search if isinstance(search, Chosen) else chosen(search, storage=storage, study=study)
    return _verify(picked, seeds, progress=progress, workers=workers)
