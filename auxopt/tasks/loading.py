"""``load_task``: one entry point for tasks from the HF hub, local folders, or memory, and
``build_task``: split → records → a validated :class:`~auxopt.tasks.Task`.

Reading the sources (folders of ``.jsonl``/``.json``/``.csv``/``.tsv`` split files, bare names under
``AUXOPT_DATA``, hub datasets) is :mod:`auxopt.tasks.readers`'s job; here the records become a task:
text, pair and label columns, the kind and metric, label ids, and the splits. A missing dev or test
split is carved from train with a fixed seed; :attr:`Task.carved` records how.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from auxopt.errors import AuxoptError
from auxopt.tasks.labels import check_no_missing_labels, infer_kind, sorted_label_names
from auxopt.tasks.readers import Records, data_dirs, read_source
from auxopt.tasks.task import SPLITS, Split, Task

TEXT_FIELDS = ("text", "sentence", "sentence1", "question1", "premise", "question", "content")
PAIR_FIELDS = ("text_pair", "sentence2", "question2", "hypothesis")
# Metrics that the literature reports for tasks found in ../shared/data (by folder name).
KNOWN_METRICS = {
    "cola": "mcc",
    "stsb": "pearson",
    "citation_intent": "macro_f1",
    "hyperpartisan": "macro_f1",
}

__all__ = ["KNOWN_METRICS", "TaskOptions", "build_task", "data_dirs", "load_task", "reload_task"]


@dataclass(frozen=True)
class TaskOptions:
    """How records become a task: :func:`load_task`'s and :func:`build_task`'s keywords (see
    :func:`load_task`), gathered to pass along as one."""

    kind: str | None = None
    metric: str | None = None
    pair: bool | None = None
    head: str | None = None
    labels: Sequence[str] | None = None
    text_field: str | None = None
    pair_field: str | None = None
    label_field: str = "label"
    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    max_train: int | None = None

    @classmethod
    def of(cls, keywords: Mapping[str, Any]) -> TaskOptions:
        """The options among a function's keywords (``TaskOptions.of(locals())``)."""
        return cls(**{f.name: keywords[f.name] for f in fields(cls)})

    @property
    def expected_labels(self) -> tuple[str, ...] | None:
        return None if self.labels is None else tuple(str(x) for x in self.labels)


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
        text_field: the record field of the text (detected when omitted).
        pair_field: the record field of a text pair's second text (detected when omitted).
        label_field: the record field of the label.
        dev_fraction: the share of train carved out as dev when the task has no dev split.
        test_fraction: the share of train carved out as test when the task has no test split.
        seed: seeds that carving.
        max_train: keep at most this many train examples (a seeded random subset), for small budgets.
    """
    options = TaskOptions.of(locals())
    found = read_source(source, config)
    task_name = name or found.default_name
    if found.default_name is None and not task_name:
        raise AuxoptError("an in-memory task needs a name: load_task({...}, name='my_task')")
    loaded_with = None
    if isinstance(source, str | os.PathLike):
        given = {f.name: getattr(options, f.name) for f in fields(TaskOptions)}
        defaults = {f.name: f.default for f in fields(TaskOptions)}
        loaded_with = {
            "source": str(Path(source).resolve()) if Path(source).exists() else str(source),
            "name": task_name,
            **({"config": config} if config is not None else {}),
            **{k: (list(v) if isinstance(v, tuple | list) else v) for k, v in given.items() if v != defaults[k]},
        }
    return _build(
        task_name,
        found.records,
        options,
        source=found.origin,
        domain_text=found.domain_text,
        files=found.files,
        loaded_with=loaded_with,
    )


def reload_task(description: Mapping[str, Any]) -> Task:
    """The task a study stored (:meth:`Task.describe`), loaded again the way it was first loaded;
    an :class:`AuxoptError` when it cannot be (built in memory, data gone) or when its data changed
    since (another fingerprint)."""
    name = description.get("name", "?")
    how = description.get("loaded_with")
    if not how:
        raise AuxoptError(
            f"task {name!r} was not loaded from a folder or the hub (source {description.get('source', 'memory')!r}), "
            "so it cannot be loaded again from the storage alone; give the study file (STUDY.py) instead"
        )
    how = dict(how)
    source = how.pop("source", "synthetic")
    try:
        if "synthetic" in how:  # a task of auxopt's synthetic benchmark: made again from its recipe
            from auxopt.tasks.synthetic import make_synthetic_suite

            suite = make_synthetic_suite(**how["synthetic"])
            task = next(t for t in (suite.primary, *suite.auxiliaries) if t.name == how["name"])
        else:
            task = load_task(source, **how)
    except AuxoptError as e:
        raise AuxoptError(f"cannot load task {name!r} again from {source!r}: {e}") from None
    if description.get("fingerprint") and task.fingerprint != description["fingerprint"]:
        raise AuxoptError(
            f"task {name!r} loaded from {source!r} is not the data the study ran on (its fingerprint is "
            f"{task.fingerprint}, the study's {description['fingerprint']}); restore that data or give the study file"
        )
    return task


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
    options = TaskOptions.of(locals())
    return _build(name, records, options, source=source, domain_text=domain_text, files=files)


# ---------------------------------------------------------------------------- records → task

#: split → (texts, second texts or None, raw labels)
Columns = dict[str, tuple[list[str], list[str] | None, list[Any]]]


def _build(
    name: str,
    records: Mapping[str, Records],
    options: TaskOptions,
    *,
    source: str,
    domain_text: Sequence[str] | None,
    files: Mapping[str, Path] | None,
    loaded_with: dict | None = None,
) -> Task:
    """:func:`build_task` with its options gathered: check the splits, read the columns, label them
    by kind, carve the missing splits."""
    _check_splits(name, records)
    text_field, pair_field, has_pair = _fields(name, records["train"][0], options)
    raw = _columns(name, records, text_field, pair_field, has_pair, options, files)
    kind = options.kind or infer_kind(raw["train"][2])
    if kind not in ("classification", "regression"):
        raise AuxoptError(f"task {name!r}: kind must be 'classification' or 'regression', not {kind!r}")
    metric = options.metric
    if metric is None:
        metric = "pearson" if kind == "regression" else KNOWN_METRICS.get(name, "accuracy")
        if kind == "classification" and metric == "pearson":
            metric = "accuracy"
    carved: dict[str, str] = {}
    if kind == "classification":
        label_names, splits = _classification_splits(name, raw, options.expected_labels, carved)
    else:
        label_names, splits = (), _regression_splits(name, raw)
    train = _carve(name, splits, options, carved)
    return Task(
        name=name,
        train=train,
        dev=splits["dev"],
        test=splits["test"],
        kind=kind,
        labels=tuple(label_names),
        metric=metric,
        head=options.head,
        source=source,
        carved=carved,
        domain_text=None if domain_text is None else tuple(domain_text),
        loaded_with=loaded_with,
    )


def _check_splits(name: str, records: Mapping[str, Records]) -> None:
    """Known, non-empty splits with a train split of dict records."""
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
        raise AuxoptError(f"task {name!r}: records must be dicts with 'text' and 'label', got {type(sample).__name__}")


def _fields(name: str, sample: Mapping[str, Any], options: TaskOptions) -> tuple[str, str | None, bool]:
    """The text field, the pair field and whether the task has second texts (given or detected)."""
    text_field = options.text_field or _detect(sample, TEXT_FIELDS, name, "text")
    pair_field = options.pair_field
    if pair_field is None:
        pair_field = next((f for f in PAIR_FIELDS if f in sample and f != text_field), None)
    has_pair = pair_field is not None and pair_field in sample
    if options.pair is True and not has_pair:
        raise AuxoptError(
            f"task {name!r} is a text-pair task but its examples have single texts "
            f"(no '{pair_field or 'text_pair'}' field); add the second text or load it with pair=False"
        )
    if options.pair is False:
        has_pair = False
    return text_field, pair_field, has_pair


def _columns(
    name: str,
    records: Mapping[str, Records],
    text_field: str,
    pair_field: str | None,
    has_pair: bool,
    options: TaskOptions,
    files: Mapping[str, Path] | None,
) -> Columns:
    """Split → (texts, second texts, raw labels), with empty labels refused (unless they are to be
    dropped by ``labels=[...]``)."""
    label_field = options.label_field
    raw: Columns = {}
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
        if options.labels is None or options.kind == "regression":  # with labels=[...] they are dropped instead
            check_no_missing_labels(
                name,
                split_name,
                labels,
                label_field,
                (files or {}).get(split_name),
                drop_hint=options.kind != "regression",
            )
    return raw


def _classification_splits(
    name: str, raw: Columns, expected: tuple[str, ...] | None, carved: dict[str, str]
) -> tuple[tuple[str, ...], dict[str, Split]]:
    """The label names (class-id order) and the splits with label ids; with ``expected`` labels,
    examples with others are dropped (and recorded in ``carved``)."""
    label_names = expected if expected is not None else sorted_label_names(raw["train"][2])
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
    return label_names, splits


def _regression_splits(name: str, raw: Columns) -> dict[str, Split]:
    """The splits with float32 labels (numeric and finite)."""
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
    return splits


def _carve(name: str, splits: dict[str, Split], options: TaskOptions, carved: dict[str, str]) -> Split:
    """Carve the missing dev/test splits from train (into ``splits``), cut train to ``max_train``,
    record both in ``carved``; returns what is left of train."""
    seed = options.seed
    train = splits["train"]
    n_original = len(train)  # both fractions are of the original train split (80/10/10 by default)
    rng = np.random.default_rng(seed)
    for split_name, fraction in (("dev", options.dev_fraction), ("test", options.test_fraction)):
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
    max_train = options.max_train
    if max_train is not None and max_train < len(train):
        keep = np.sort(np.random.default_rng(seed + 1).permutation(len(train))[:max_train])
        train = train.subset(keep)
        carved["train"] = f"random subset of {max_train} train examples with seed {seed + 1}"
    return train


# ---------------------------------------------------------------------------- helpers


def _detect(sample: Mapping[str, Any], candidates: Iterable[str], name: str, what: str) -> str:
    for field_name in candidates:
        if field_name in sample:
            return field_name
    raise AuxoptError(
        f"task {name!r}: no {what} field in the examples (have {sorted(sample)}); name it with text_field=..."
    )


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)
