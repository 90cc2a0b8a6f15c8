"""The :class:`Task`: a named labelled dataset with train/dev/test splits, a kind and a metric."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from auxopt.errors import AuxoptError
from auxopt.tasks.metrics import get_metric

Kind = Literal["classification", "regression"]
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Split:
    """One split: texts, optional second texts (text-pair tasks) and labels.

    Classification labels are integer indices into :attr:`Task.labels`; regression labels are floats.
    """

    texts: tuple[str, ...]
    labels: np.ndarray
    pairs: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> Split:
        pairs = None if self.pairs is None else tuple(self.pairs[i] for i in index)
        return Split(tuple(self.texts[i] for i in index), self.labels[index], pairs)


@dataclass(frozen=True)
class Task:
    """A labelled task.

    Args:
        name: unique name; used for heads, ratios and parameters.
        train: the training split.
        dev: the dev split (model selection).
        test: the test split, or ``None``.
        kind: ``"classification"`` or ``"regression"``.
        labels: label names of a classification task (index = class id); empty for regression.
        metric: ``accuracy``, ``macro_f1``, ``mcc`` or ``pearson`` (all higher-is-better).
        head: tasks with the same ``head`` share one output head (default: each task its own).
        source: where the task came from, for the record.
        carved: splits that were carved from train, with how (``{"dev": "10% of train, seed 0"}``).
        domain_text: unlabelled in-domain passages (``domain.txt``) when the task has them.
        loaded_with: the :func:`~auxopt.tasks.load_task` call that built it (its source and the
            keywords that differ from the defaults), so that a stored study can load it again
            (:func:`~auxopt.tasks.reload_task`); None for tasks built in memory.
    """

    name: str
    train: Split
    dev: Split
    test: Split | None = None
    kind: Kind = "classification"
    labels: tuple[str, ...] = ()
    metric: str = "accuracy"
    head: str | None = None
    source: str = "memory"
    carved: dict[str, str] = field(default_factory=dict)
    domain_text: tuple[str, ...] | None = None
    loaded_with: dict | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise AuxoptError("a task needs a non-empty string name")
        if self.kind not in ("classification", "regression"):
            raise AuxoptError(f"task {self.name!r}: kind must be 'classification' or 'regression', not {self.kind!r}")
        get_metric(self.metric)
        if self.kind == "regression" and self.metric != "pearson":
            raise AuxoptError(f"task {self.name!r}: a regression task is scored with 'pearson'")
        if self.kind == "classification" and self.metric == "pearson":
            raise AuxoptError(f"task {self.name!r}: 'pearson' is for regression tasks")
        for split_name in SPLITS:
            split = getattr(self, split_name)
            if split is None:
                continue
            if len(split) == 0:
                raise AuxoptError(f"task {self.name!r}: the {split_name} split is empty")
            if len(split.labels) != len(split.texts):
                raise AuxoptError(
                    f"task {self.name!r}: the {split_name} split has {len(split.texts)} texts "
                    f"but {len(split.labels)} labels"
                )
            if (split.pairs is None) != (self.train.pairs is None):
                has = "text pairs" if self.train.pairs is not None else "single texts"
                raise AuxoptError(
                    f"task {self.name!r}: train has {has} but {split_name} does not; "
                    "give every split a 'text_pair' or none"
                )
            if self.kind == "classification":
                bad = split.labels[(split.labels < 0) | (split.labels >= len(self.labels))]
                if len(bad):
                    raise AuxoptError(
                        f"task {self.name!r}: {split_name} has label ids outside 0..{len(self.labels) - 1}"
                    )

    @property
    def is_pair(self) -> bool:
        return self.train.pairs is not None

    @property
    def num_labels(self) -> int:
        return len(self.labels) if self.kind == "classification" else 1

    @property
    def head_name(self) -> str:
        return self.head or self.name

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise AuxoptError(f"unknown split {name!r}; use one of {SPLITS}")
        split = getattr(self, name)
        if split is None:
            raise AuxoptError(f"task {self.name!r} has no {name} split")
        return split

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return get_metric(self.metric)(y_true, y_pred)

    def majority_baseline(self, split: str = "test") -> float:
        """Score of always predicting the most frequent train label (classification only)."""
        if self.kind != "classification":
            raise AuxoptError("the majority baseline is defined for classification tasks only")
        majority = np.bincount(self.train.labels, minlength=self.num_labels).argmax()
        y = self.split(split).labels
        return self.score(y, np.full_like(y, majority))

    @property
    def fingerprint(self) -> str:
        """A content hash: equal for tasks with equal texts and labels (used by caches)."""
        h = hashlib.sha1()
        h.update(f"{self.name}|{self.kind}|{self.labels}".encode())
        for split_name in SPLITS:
            split = getattr(self, split_name)
            if split is None:
                continue
            h.update(split_name.encode())
            for text in split.texts:
                h.update(text.encode())
                h.update(b"\0")
            for text in split.pairs or ():
                h.update(text.encode())
                h.update(b"\0")
            h.update(np.ascontiguousarray(split.labels).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """A JSON-friendly summary, stored on studies so that a result says what it was trained on."""
        sizes = {s: len(getattr(self, s)) for s in SPLITS if getattr(self, s) is not None}
        return {
            "name": self.name,
            "kind": self.kind,
            "pair": self.is_pair,
            "labels": list(self.labels),
            "metric": self.metric,
            "sizes": sizes,
            "source": self.source,
            "carved": dict(self.carved),
            "fingerprint": self.fingerprint,
            **({"loaded_with": dict(self.loaded_with)} if self.loaded_with is not None else {}),
        }

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(getattr(self, s))}" for s in SPLITS if getattr(self, s) is not None)
        return f"Task({self.name!r}, {self.kind}, {self.metric}, {sizes})"
