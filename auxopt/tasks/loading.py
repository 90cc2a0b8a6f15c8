"""``load_task``: one entry point for tasks from the HF hub, local folders, or memory.

A local folder holds split files named ``train``, ``dev`` (or ``validation``/``valid``/``val``) and
``test`` with the extension ``.jsonl``, ``.json``, ``.csv`` or ``.tsv``; each record has ``text``,
optional ``text_pair`` and ``label`` (the format of ``../shared/data``). A ``domain.txt`` beside them
(one unlabelled passage a line) becomes :attr:`Task.domain_text`. A bare name (``"rte"``) is looked up
in the folders listed in the ``AUXOPT_DATA`` environment variable (``os.pathsep``-separated). Anything
else is treated as a dataset on the Hugging Face hub (``"hf:nyu-mll/glue"`` forces that) and loaded
with :func:`datasets.load_dataset`.

A missing dev or test split is carved from train with a fixed seed; :attr:`Task.carved` records how.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from auxopt.errors import AuxoptError
from auxopt.tasks.task import SPLITS, Split, Task

SPLIT_ALIASES = {
    "train": ("train",),
    "dev": ("dev", "validation", "valid", "val"),
    "test": ("test",),
}
EXTENSIONS = (".jsonl", ".json", ".csv", ".tsv")
TEXT_FIELDS = ("text", "sentence", "sentence1", "question1", "premise", "question", "content")
PAIR_FIELDS = ("text_pair", "sentence2", "question2", "hypothesis")
# Metrics that the literature reports for tasks found in ../shared/data (by folder name).
KNOWN_METRICS = {
    "cola": "mcc",
    "stsb": "pearson",
    "citation_intent": "macro_f1",
    "hyperpartisan": "macro_f1",
}

Records = Sequence[Mapping[str, Any]]


def data_dirs() -> list[Path]:
    """Folders searched for bare task names: the ``AUXOPT_DATA`` environment variable."""
    return [Path(p) for p in os.environ.get("AUXOPT_DATA", "").split(os.pathsep) if p]


def load_task(
    source: str | os.PathLike | Mapping[str, Records],
    *,
    name: str | None = None,
    kind: str | None = None,
    metric: str | None = None,
    pair: bool | None = None,
    head: str | None = None,
    labels: Sequence[str] | None = None,
    config: str | None = None,
    text_field: str | None = None,
    pair_field: str | None = None,
    label_field: str = "label",
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_train: int | None = None,
) -> Task:
    """Load a task.

    Args:
        source: a folder, a bare name found under ``AUXOPT_DATA``, a hub dataset name (``"hf:org/x"``),
            or a mapping from split name to records (dicts with ``text``, ``text_pair``, ``label``).
        name: the task's name (default: the folder's or dataset's name).
        kind: ``"classification"`` or ``"regression"``; inferred from the labels when omitted
            (float labels that are not all whole numbers mean regression).
        metric: default ``accuracy`` (classification) or ``pearson`` (regression), or the metric the
            literature uses for known tasks (CoLA: ``mcc``; citation_intent, hyperpartisan: ``macro_f1``).
        pair: require (``True``) or forbid (``False``) a second text per example.
        labels: the expected label set of a classification task, in class-id order; examples with any
            other label are dropped (and counted in :attr:`Task.carved`). Default: every label in train.
        config: the hub dataset's configuration (``load_task("hf:nyu-mll/glue", config="rte")``).
        text_field, pair_field, label_field: record fields (text fields are detected when omitted).
        dev_fraction, test_fraction, seed: how a missing dev/test split is carved from train.
        max_train: keep at most this many train examples (a seeded random subset), for small budgets.
    """
    files = None
    if isinstance(source, Mapping):
        records = {_canonical_split(k): list(v) for k, v in source.items()}
        origin = "memory"
        task_name = name
        if not task_name:
            raise AuxoptError("an in-memory task needs a name: load_task({...}, name='my_task')")
        domain = None
    else:
        text = os.fspath(source)
        path = _resolve_local(text)
        files: dict[str, Path] = {}
        if path is not None:
            records, domain = _read_folder(path, files)
            origin = str(path)
            task_name = name or path.name
        else:
            hub_name = text[3:] if text.startswith("hf:") else text
            records = _read_hub(hub_name, config, original=text)
            domain = None
            origin = f"hf:{hub_name}" + (f"/{config}" if config else "")
            task_name = name or (config or hub_name.rsplit("/", 1)[-1])
    return build_task(
        task_name,
        records,
        kind=kind,
        metric=metric,
        pair=pair,
        head=head,
        labels=labels,
        text_field=text_field,
        pair_field=pair_field,
        label_field=label_field,
        dev_fraction=dev_fraction,
        test_fraction=test_fraction,
        seed=seed,
        source=origin,
        domain_text=domain,
        max_train=max_train,
        files=files,
    )


def build_task(
    name: str,
    records: Mapping[str, Records],
    *,
    kind: str | None = None,
    metric: str | None = None,
    pair: bool | None = None,
    head: str | None = None,
    labels: Sequence[str] | None = None,
    text_field: str | None = None,
    pair_field: str | None = None,
    label_field: str = "label",
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    source: str = "memory",
    domain_text: Sequence[str] | None = None,
    max_train: int | None = None,
    files: Mapping[str, Path] | None = None,
) -> Task:
    """Turn split → records into a validated :class:`Task` (see :func:`load_task`); ``files``
    (split → the file it was read from) lets errors name the file and its lines."""
    expected = None if labels is None else tuple(str(x) for x in labels)
    unknown = set(records) - set(SPLITS)
    if unknown:
        raise AuxoptError(f"task {name!r}: unknown split(s) {sorted(unknown)}; use train, dev, test")
    if not records.get("train"):
        raise AuxoptError(f"task {name!r}: the train split is missing or empty")
    for split_name, recs in records.items():
        if len(recs) == 0:
            raise AuxoptError(f"task {name!r}: the {split_name} split is empty")
    sample = records["train"][0]
    if not isinstance(sample, Mapping):
        raise AuxoptError(
            f"task {name!r}: records must be dicts with 'text' and 'label', got {type(sample).__name__}"
        )
    text_field = text_field or _detect(sample, TEXT_FIELDS, name, "text")
    if pair_field is None:
        pair_field = next((f for f in PAIR_FIELDS if f in sample and f != text_field), None)
    has_pair = pair_field is not None and pair_field in sample
    if pair is True and not has_pair:
        raise AuxoptError(
            f"task {name!r} is a text-pair task but its examples have single texts "
            f"(no '{pair_field or 'text_pair'}' field); add the second text or load it with pair=False"
        )
    if pair is False:
        has_pair = False

    raw: dict[str, tuple[list[str], list[str] | None, list[Any]]] = {}
    for split_name, recs in records.items():
        texts, pairs, labels = [], [] if has_pair else None, []
        for i, rec in enumerate(recs):
            try:
                texts.append(_as_text(rec[text_field]))
                if has_pair:
                    pairs.append(_as_text(rec[pair_field]))
                labels.append(rec[label_field])
            except KeyError as e:
                raise AuxoptError(
                    f"task {name!r}: {split_name} example {i} has no {e.args[0]!r} field"
                    + (" (a text-pair task needs a second text in every example)" if e.args[0] == pair_field else "")
                ) from None
        raw[split_name] = (texts, pairs, labels)
        if expected is None or kind == "regression":  # with labels=[...] they are dropped instead
            _check_no_missing_labels(name, split_name, labels, label_field, (files or {}).get(split_name),
                                     drop_hint=kind != "regression")

    kind = kind or _infer_kind(raw["train"][2])
    if kind not in ("classification", "regression"):
        raise AuxoptError(f"task {name!r}: kind must be 'classification' or 'regression', not {kind!r}")
    if metric is None:
        metric = "pearson" if kind == "regression" else KNOWN_METRICS.get(name, "accuracy")
        if kind == "classification" and metric == "pearson":
            metric = "accuracy"

    carved: dict[str, str] = {}
    if kind == "classification":
        label_names = expected if expected is not None else _label_names(raw["train"][2])
        index = {lab: i for i, lab in enumerate(label_names)}
        splits = {}
        for split_name, (texts, pairs, labels_) in raw.items():
            if expected is not None:
                keep = [i for i, lab in enumerate(labels_) if str(lab) in index]
                if len(keep) < len(labels_):
                    carved[f"dropped_{split_name}"] = (
                        f"{len(labels_) - len(keep)} examples whose label is not one of {list(label_names)}"
                    )
                    texts = [texts[i] for i in keep]
                    pairs = None if pairs is None else [pairs[i] for i in keep]
                    labels_ = [labels_[i] for i in keep]
                if not keep:
                    raise AuxoptError(f"task {name!r}: no {split_name} example has one of the labels {list(label_names)}")
            unseen = sorted({str(lab) for lab in labels_} - set(index))
            if unseen:
                raise AuxoptError(
                    f"task {name!r}: the {split_name} split has label(s) {unseen[:5]} that train never "
                    f"has (train labels: {list(label_names[:10])}); fix the data, or pass "
                    "labels=[...] to keep only the expected labels"
                )
            ids = np.array([index[str(lab)] for lab in labels_], dtype=np.int64)
            splits[split_name] = Split(tuple(texts), ids, None if pairs is None else tuple(pairs))
    else:
        label_names = ()
        splits = {}
        for split_name, (texts, pairs, labels) in raw.items():
            try:
                values = np.array([float(lab) for lab in labels], dtype=np.float32)
            except (TypeError, ValueError):
                raise AuxoptError(
                    f"task {name!r}: a regression task needs numeric labels; {split_name} has non-numbers"
                ) from None
            if not np.all(np.isfinite(values)):
                raise AuxoptError(f"task {name!r}: {split_name} has labels that are NaN or infinite")
            splits[split_name] = Split(tuple(texts), values, None if pairs is None else tuple(pairs))

    train = splits["train"]
    n_original = len(train)  # both fractions are of the original train split (80/10/10 by default)
    rng = np.random.default_rng(seed)
    for split_name, fraction in (("dev", dev_fraction), ("test", test_fraction)):
        if split_name in splits:
            continue
        n = int(round(n_original * fraction))
        if not 0 < n < len(train):
            raise AuxoptError(
                f"task {name!r} has no {split_name} split and {fraction:.0%} of its {n_original} train "
                f"examples cannot be carved off; give a {split_name} split"
            )
        order = rng.permutation(len(train))
        splits[split_name] = train.subset(np.sort(order[:n]))
        train = train.subset(np.sort(order[n:]))
        carved[split_name] = f"{n} examples ({fraction:.0%}) carved from train with seed {seed}"
    if max_train is not None and max_train < len(train):
        keep = np.sort(np.random.default_rng(seed + 1).permutation(len(train))[:max_train])
        train = train.subset(keep)
        carved["train"] = f"random subset of {max_train} train examples with seed {seed + 1}"
    return Task(
        name=name,
        train=train,
        dev=splits["dev"],
        test=splits["test"],
        kind=kind,
        labels=tuple(label_names),
        metric=metric,
        head=head,
        source=source,
        carved=carved,
        domain_text=None if domain_text is None else tuple(domain_text),
    )


# ---------------------------------------------------------------------------- helpers


def _canonical_split(name: str) -> str:
    for canonical, aliases in SPLIT_ALIASES.items():
        if name in aliases:
            return canonical
    raise AuxoptError(f"unknown split {name!r}; use train, dev (or validation), test")


def _resolve_local(text: str) -> Path | None:
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


def _is_missing(label: Any) -> bool:
    """An empty label: None, a blank string, NaN (a float, or the text ``nan`` a CSV writes for it)."""
    if label is None:
        return True
    if isinstance(label, float):
        return math.isnan(label)
    if isinstance(label, str):
        return label.strip() == "" or label.strip().lower() == "nan"
    return False


def _check_no_missing_labels(name: str, split: str, labels: Sequence[Any], field: str, file: Path | None,
                             *, drop_hint: bool = True) -> None:
    """An :class:`AuxoptError` naming the file, the rows and the column of empty or NaN labels
    (else they would become a class of their own)."""
    missing = [i for i, lab in enumerate(labels) if _is_missing(lab)]
    if not missing:
        return
    if file is not None and file.suffix in (".csv", ".tsv"):  # line 1 is the header
        where, rows = f"{str(file)!r}, column {field!r}", "line(s) " + _numbers([i + 2 for i in missing])
    elif file is not None:
        where, rows = f"{str(file)!r}, field {field!r}", "record(s) " + _numbers([i + 1 for i in missing])
    else:
        where, rows = f"the {split} split, field {field!r}", "example(s) " + _numbers(missing)
    raise AuxoptError(
        f"task {name!r}: {where} has an empty or NaN label at {rows} ({len(missing)} of {len(labels)}); "
        "fill in those labels or remove the rows"
        + (" (or pass labels=[...] to keep only the expected labels)" if drop_hint else "")
    )


def _numbers(values: list[int], most: int = 8) -> str:
    shown = ", ".join(str(v) for v in values[:most])
    return shown + (f" and {len(values) - most} more" if len(values) > most else "")


def _read_folder(path: Path, files: dict[str, Path] | None = None) -> tuple[dict[str, list[dict]], list[str] | None]:
    """Split → records of a task folder, and its ``domain.txt`` passages; ``files`` (when given)
    receives split → the file read."""
    records: dict[str, list[dict]] = {}
    for canonical, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            found = [path / f"{alias}{ext}" for ext in EXTENSIONS if (path / f"{alias}{ext}").exists()]
            if found:
                records[canonical] = _read_file(found[0])
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


def _read_file(path: Path) -> list[dict]:
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


def _read_hub(name: str, config: str | None, original: str) -> dict[str, list[dict]]:
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
            canonical = _canonical_split(split_name)
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


def _detect(sample: Mapping[str, Any], candidates: Iterable[str], name: str, what: str) -> str:
    for field_name in candidates:
        if field_name in sample:
            return field_name
    raise AuxoptError(
        f"task {name!r}: no {what} field in the examples (have {sorted(sample)}); "
        f"name it with text_field=..."
    )


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _infer_kind(labels: Sequence[Any]) -> str:
    try:
        values = [float(lab) for lab in labels]
    except (TypeError, ValueError):
        return "classification"
    if all(isinstance(lab, bool) for lab in labels):
        return "classification"
    return "classification" if all(float(v).is_integer() for v in values) else "regression"


def _label_names(labels: Sequence[Any]) -> tuple[str, ...]:
    names = {str(lab) for lab in labels}
    try:
        return tuple(sorted(names, key=float))
    except ValueError:
        return tuple(sorted(names))
