"""Readers: a task's source (a local folder of split files, a bare name under ``AUXOPT_DATA``, or a
dataset on the Hugging Face hub) → split name → records (dicts), plus the folder's ``domain.txt``.

A local folder holds split files named ``train``, ``dev`` (or ``validation``/``valid``/``val``) and
``test`` with the extension ``.jsonl``, ``.json``, ``.csv`` or ``.tsv`` (the format of
``../shared/data``). A ``domain.txt`` beside them (one unlabelled passage a line) is read as the
task's domain text. A bare name (``"rte"``) is looked up in the folders listed in the ``AUXOPT_DATA``
environment variable (``os.pathsep``-separated). Anything else is treated as a dataset on the
Hugging Face hub (``"hf:nyu-mll/glue"`` forces that) and loaded with :func:`datasets.load_dataset`.
Turning records into a :class:`~auxopt.tasks.Task` is :mod:`auxopt.tasks.loading`'s job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auxopt.errors import AuxoptError

SPLIT_ALIASES = {
    "train": ("train",),
    "dev": ("dev", "validation", "valid", "val"),
    "test": ("test",),
}
EXTENSIONS = (".jsonl", ".json", ".csv", ".tsv")

Records = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Source:
    """What a reader found: split → records, where they came from, and the task's default name."""

    records: dict[str, list]
    origin: str  # Task.source: "memory", the folder, or "hf:<name>[/<config>]"
    default_name: str | None  # the folder's or dataset's name (None in memory)
    domain_text: list[str] | None = None  # the folder's domain.txt passages
    files: dict[str, Path] | None = field(default=None)  # split → the file it was read from (folders)


def data_dirs() -> list[Path]:
    """Folders searched for bare task names: the ``AUXOPT_DATA`` environment variable."""
    return [Path(p) for p in os.environ.get("AUXOPT_DATA", "").split(os.pathsep) if p]


def read_source(source: str | os.PathLike | Mapping[str, Records], config: str | None = None) -> Source:
    """The records of a task's ``source``: a mapping of split → records (in memory), a folder or a
    bare name under ``AUXOPT_DATA``, or a hub dataset (``config``: its configuration)."""
    if isinstance(source, Mapping):
        return Source({canonical_split(k): list(v) for k, v in source.items()}, "memory", None)
    text = os.fspath(source)
    path = resolve_local(text)
    if path is not None:
        files: dict[str, Path] = {}
        records, domain = read_folder(path, files)
        return Source(records, str(path), path.name, domain, files)
    hub_name = text[3:] if text.startswith("hf:") else text
    records = read_hub(hub_name, config, original=text)
    origin = f"hf:{hub_name}" + (f"/{config}" if config else "")
    return Source(records, origin, config or hub_name.rsplit("/", 1)[-1], None, {})


def canonical_split(name: str) -> str:
    """The canonical split name (train, dev, test) of a split file or hub split name."""
    for canonical, aliases in SPLIT_ALIASES.items():
        if name in aliases:
            return canonical
    raise AuxoptError(f"unknown split {name!r}; use train, dev (or validation), test")


def resolve_local(text: str) -> Path | None:
    """The task folder ``text`` names (a path, or a bare name under ``AUXOPT_DATA``), or None for the hub."""
    if text.startswith("hf:"):
        return None
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise AuxoptError(f"{text!r} is a file; give the folder that holds train/dev/test files")
    if "/" not in text and os.sep not in text:
        for root in data_dirs():
            if (root / text).is_dir():
                return root / text
    elif text.startswith((".", "/", "~")):
        raise AuxoptError(f"task folder {text!r} does not exist")
    return None


def read_folder(path: Path, files: dict[str, Path] | None = None) -> tuple[dict[str, list[dict]], list[str] | None]:
    """Split → records of a task folder, and its ``domain.txt`` passages; ``files`` (when given)
    receives split → the file read."""
    records: dict[str, list[dict]] = {}
    for canonical, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            found = [path / f"{alias}{ext}" for ext in EXTENSIONS if (path / f"{alias}{ext}").exists()]
            if found:
                records[canonical] = read_file(found[0])
                if files is not None:
                    files[canonical] = found[0]
                break
    if "train" not in records:
        raise AuxoptError(
            f"task folder {str(path)!r} has no train file (train.jsonl, train.json, train.csv or train.tsv)"
        )
    domain_file = path / "domain.txt"
    domain = None
    if domain_file.exists():
        domain = [line.strip() for line in domain_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return records, domain


def read_file(path: Path) -> list[dict]:
    """The records of one split file (.jsonl, .json, .csv or .tsv; CSV cells read as strings)."""
    try:
        if path.suffix in (".csv", ".tsv"):
            import pandas as pd

            frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
            return frame.to_dict("records")
        text = path.read_text(encoding="utf-8")
        stripped = text.lstrip()
        if path.suffix == ".json" and stripped.startswith("["):
            data = json.loads(text)
            if not isinstance(data, list):
                raise ValueError("expected a list of records")
            return data
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (ValueError, UnicodeDecodeError) as e:
        raise AuxoptError(f"cannot read {str(path)!r}: {e}") from None


def read_hub(name: str, config: str | None, original: str) -> dict[str, list[dict]]:
    """Split → records of a hub dataset (class labels as their names; unlabelled splits dropped)."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - a core dependency
        raise AuxoptError("loading from the hub needs the 'datasets' package") from None
    try:
        dataset = datasets.load_dataset(name, config)
    except Exception as e:  # datasets raises many types for "not found"/"offline"
        where = ", ".join(str(p) for p in data_dirs()) or "AUXOPT_DATA is not set"
        raise AuxoptError(
            f"unknown task {original!r}: it is not a folder, not a name under the data folders "
            f"({where}), and the Hugging Face hub could not load it ({type(e).__name__}: {str(e)[:200]})"
        ) from None
    records: dict[str, list[dict]] = {}
    for split_name, split in dataset.items():
        try:
            canonical = canonical_split(split_name)
        except AuxoptError:
            continue
        rows = split.to_list()
        feature = split.features.get("label")
        names = getattr(feature, "names", None)
        if names is not None:
            rows = [r for r in rows if r.get("label", -1) is not None and r.get("label", -1) >= 0]
            for r in rows:
                r["label"] = names[r["label"]]
        elif rows and all(r.get("label", -1) in (-1, None) for r in rows):
            rows = []  # unlabelled split without a ClassLabel (GLUE's STS-B test: -1.0 everywhere)
        if rows:  # unlabelled test splits (label -1 everywhere) are dropped and carved instead
            records[canonical] = rows
    return records
