"""Labels as they come from files: empty or NaN ones found and named (with their file, column and
rows), a task's kind inferred from them, and their names in a stable order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from auxopt.errors import AuxoptError


def is_missing(label: Any) -> bool:
    """An empty label: None, a blank string, NaN (a float, or the text ``nan`` a CSV writes for it)."""
    if label is None:
        return True
    if isinstance(label, float):
        return math.isnan(label)
    if isinstance(label, str):
        return label.strip() == "" or label.strip().lower() == "nan"
    return False


def check_no_missing_labels(
    name: str, split: str, labels: Sequence[Any], field: str, file: Path | None, *, drop_hint: bool = True
) -> None:
    """An :class:`AuxoptError` naming the file, the rows and the column of empty or NaN labels
    (else they would become a class of their own)."""
    missing = [i for i, lab in enumerate(labels) if is_missing(lab)]
    if not missing:
        return
    if file is not None and file.suffix in (".csv", ".tsv"):  # line 1 is the header
        where, rows = f"{str(file)!r}, column {field!r}", "line(s) " + numbers([i + 2 for i in missing])
    elif file is not None:
        where, rows = f"{str(file)!r}, field {field!r}", "record(s) " + numbers([i + 1 for i in missing])
    else:
        where, rows = f"the {split} split, field {field!r}", "example(s) " + numbers(missing)
    raise AuxoptError(
        f"task {name!r}: {where} has an empty or NaN label at {rows} ({len(missing)} of {len(labels)}); "
        "fill in those labels or remove the rows"
        + (" (or pass labels=[...] to keep only the expected labels)" if drop_hint else "")
    )


def numbers(values: list[int], most: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def infer_kind(labels: Sequence[Any]) -> str:
    try:
        values = [float(lab) for lab in labels]
    except (TypeError, ValueError):
        return "classification"
    if all(isinstance(lab, bool) for lab in labels):
        return "classification"
    return "classification" if all(float(v).is_integer() for v in values) else "regression"


def sorted_label_names(labels: Sequence[Any]) -> tuple[str, ...]:
    names = {str(lab) for lab in labels}
    try:
        return tuple(sorted(names, key=float))
    except ValueError:
        return tuple(sorted(names))
