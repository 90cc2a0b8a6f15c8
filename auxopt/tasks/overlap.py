"""Contamination check: do the texts a run trains on appear in the primary task's dev or test split?

SST was built from the same rottentomatoes snippets as MR and SUBJ, so a run that trains on ``mr``
and is scored on ``sst2`` partly measures memorisation. :func:`check_overlap` compares every train
split the run learns from — each auxiliary task's and the primary's own — with the primary's dev and
test splits, and reports, per pair, how many primary examples also appear in the source.

**What counts as the same example.** Each text is normalised by :func:`normalize_text`:

1. mojibake repaired: a non-ASCII text that is UTF-8 read as Latin-1 / cp1252 (``"clichÃ©"``) is
   decoded back (``"cliché"``);
2. Unicode NFKC, then ``str.casefold``;
3. only letters and digits kept (Unicode ``\\w`` without ``_``): every other character, spaces
   included, is dropped, so that tokenisation differences collapse (``"does n't"`` = ``"doesn't"``,
   ``"moore 's"`` = ``"moore's"``).

A text-pair example's key is its two normalised texts joined by ``"|"`` (a character no normalised
text holds). **One rule: examples are compared whole.** A pair example matches only a pair example
with both texts equal; it never matches a single-text example, even when one of its texts equals it.
Examples whose key is empty (no letter or digit at all) are never counted.

Keys are hashed (BLAKE2b, 8 bytes) into one ``uint64`` array per split, cached by the task's
:attr:`~auxopt.tasks.Task.fingerprint` and split name, so that checking again (every trial of a
study) costs array lookups only.

``on_overlap`` says what an overlap does: ``"warn"`` (a :class:`ContaminationWarning`), ``"error"``
(an :class:`~auxopt.errors.AuxoptError`) or ``"ignore"``; the report is returned in every case.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import warnings
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from auxopt.errors import AuxoptError
from auxopt.tasks.task import Split, Task

ON_OVERLAP = ("warn", "error", "ignore")
NORMALIZATION = "mojibake repaired, NFKC, casefold, letters and digits only; pairs joined by '|'"
PAIR_SEPARATOR = "|"
TARGET_SPLITS = ("dev", "test")
_DROP = re.compile(r"[\W_]+")
_CACHE_SIZE = 1024


class ContaminationWarning(UserWarning):
    """Texts of a train split that a run learns from also appear in the primary's dev or test split."""


# ---------------------------------------------------------------------------- normalisation


def _repair_mojibake(text: str) -> str:
    """UTF-8 bytes that were decoded as Latin-1 or cp1252 (``"naivetÃ©"``), decoded back; any other
    text unchanged (pure ASCII, or non-ASCII that is not such a round trip)."""
    if text.isascii():
        return text
    for codec in ("latin-1", "cp1252"):
        try:
            return text.encode(codec).decode("utf-8")
        except UnicodeError:
            continue
    return text


def normalize_text(text: str) -> str:
    """The comparison key of one text: mojibake repaired, NFKC, casefolded, letters and digits only.

    >>> normalize_text("It does n't work , Moore 's film !") == normalize_text("it doesn't work, moore's film")
    True
    """
    return _DROP.sub("", unicodedata.normalize("NFKC", _repair_mojibake(text)).casefold())


def example_keys(split: Split) -> list[str]:
    """The normalised key of every example of ``split`` (pairs: both texts joined by ``"|"``)."""
    if split.pairs is None:
        return [normalize_text(t) for t in split.texts]
    return [
        normalize_text(a) + PAIR_SEPARATOR + normalize_text(b) for a, b in zip(split.texts, split.pairs, strict=True)
    ]


def _hash_keys(keys: Sequence[str]) -> np.ndarray:
    """One ``uint64`` per key (BLAKE2b, 8 bytes); 0 marks an empty key (a hash of 0 becomes 1)."""
    digests = b"".join(hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest() for k in keys)
    hashes = np.frombuffer(digests, dtype="<u8").astype(np.uint64)
    hashes[hashes == 0] = 1
    empty = np.fromiter((not k or k == PAIR_SEPARATOR for k in keys), dtype=bool, count=len(keys))
    hashes[empty] = 0
    return hashes


# ---------------------------------------------------------------------------- the cache


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    size: int


_cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
_stats = {"hits": 0, "misses": 0}
_fingerprints: dict[int, tuple[weakref.ref, str]] = {}


def _fingerprint(task: Task) -> str:
    """``task.fingerprint`` (which hashes every text), remembered while ``task`` is alive."""
    entry = _fingerprints.get(id(task))
    if entry is not None and entry[0]() is task:
        return entry[1]
    key = id(task)
    fingerprint = task.fingerprint
    _fingerprints[key] = (weakref.ref(task, lambda _, key=key: _fingerprints.pop(key, None)), fingerprint)
    return fingerprint


def _cached(task: Task, split: str) -> tuple[np.ndarray, np.ndarray]:
    key = (_fingerprint(task), split)
    cached = _cache.get(key)
    if cached is not None:
        _stats["hits"] += 1
        return cached
    _stats["misses"] += 1
    hashes = _hash_keys(example_keys(task.split(split)))
    known = np.unique(hashes[hashes != 0])
    for array in (hashes, known):
        array.flags.writeable = False
    if len(_cache) >= _CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[key] = (hashes, known)
    return hashes, known


def split_hashes(task: Task, split: str) -> np.ndarray:
    """The hashed keys of ``task``'s ``split``, one per example in order (0: empty key); cached by
    the task's fingerprint and the split name. The array is read-only."""
    return _cached(task, split)[0]


def overlap_cache_info() -> CacheInfo:
    """Hits, misses (splits hashed) and entries of the per-split hash cache."""
    return CacheInfo(_stats["hits"], _stats["misses"], len(_cache))


def clear_overlap_cache() -> None:
    """Empty the per-split hash cache and reset its counters."""
    _cache.clear()
    _fingerprints.clear()
    _stats.update(hits=0, misses=0)


# ---------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Overlap:
    """How many examples of the primary's ``split`` also appear in ``source``'s ``source_split``."""

    primary: str
    split: str
    source: str
    source_split: str
    count: int
    size: int

    @property
    def fraction(self) -> float:
        return self.count / self.size if self.size else 0.0

    @property
    def own(self) -> bool:
        """The source is the primary's own train split."""
        return self.source == self.primary

    def describe(self) -> str:
        where = f"{self.source}'s own" if self.own else f"{self.source}'s"
        return (
            f"{self.primary}'s {self.split} split: {self.count} of {self.size} examples "
            f"({self.fraction:.1%}) also appear in {where} {self.source_split} split"
        )

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "source": self.source,
            "source_split": self.source_split,
            "count": self.count,
            "size": self.size,
            "fraction": round(self.fraction, 6),
        }


@dataclass(frozen=True)
class OverlapReport:
    """The outcome of :func:`check_overlap`: one :class:`Overlap` per (source train split, primary
    dev/test split), zeros included. ``str(report)`` gives one line per pair; :meth:`to_dict` is
    JSON-friendly (it is stored on studies as the user_attr ``contamination``)."""

    primary: str
    pairs: tuple[Overlap, ...]

    @property
    def overlaps(self) -> tuple[Overlap, ...]:
        """The pairs with at least one shared example."""
        return tuple(p for p in self.pairs if p.count)

    @property
    def contaminated(self) -> bool:
        return bool(self.overlaps)

    def message(self) -> str:
        """What overlaps and how to fix it, in one paragraph ("" when nothing overlaps)."""
        found = self.overlaps
        if not found:
            return ""
        sources = list(dict.fromkeys(p.source for p in found if not p.own))
        fixes = []
        if sources:
            fixes.append("drop " + " and ".join(sources) + " from the auxiliaries")
        if any(p.own for p in found):
            fixes.append(f"remove the duplicates from {self.primary}'s train split")
        return (
            "; ".join(p.describe() for p in found)
            + f". Scores on {self.primary} then partly measure memorised examples — "
            + ", or ".join(fixes)
            + ", or pass on_overlap='ignore'"
        )

    def enforce(self, on_overlap: str = "warn", *, stacklevel: int = 1) -> OverlapReport:
        """Warn (``"warn"``), raise :class:`~auxopt.errors.AuxoptError` (``"error"``) or do nothing
        (``"ignore"``) when anything overlaps; returns the report. ``stacklevel=1`` attributes the
        warning to the caller of this method (as in :func:`warnings.warn`, counted from there)."""
        validate_on_overlap(on_overlap)
        if self.contaminated and on_overlap == "error":
            raise AuxoptError(f"contamination: {self.message()}")
        if self.contaminated and on_overlap == "warn":
            warnings.warn(self.message(), ContaminationWarning, stacklevel=stacklevel + 1)
        return self

    def to_dict(self) -> dict:
        return {
            "primary": self.primary,
            "normalization": NORMALIZATION,
            "contaminated": self.contaminated,
            "pairs": [p.to_dict() for p in self.pairs],
        }

    def __str__(self) -> str:
        if not self.pairs:
            return f"{self.primary}: no dev or test split to check"
        return "\n".join(
            f"{p.primary} {p.split} ← {p.source}{' (own)' if p.own else ''} {p.source_split}: "
            f"{p.count} of {p.size} ({p.fraction:.1%})"
            for p in self.pairs
        )


def _count_known(hashes: np.ndarray, known: np.ndarray) -> int:
    """How many non-zero entries of ``hashes`` are in ``known`` (sorted, distinct, no 0)."""
    if not len(known) or not len(hashes):
        return 0
    at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
    return int(np.count_nonzero((known[at] == hashes) & (hashes != 0)))


def validate_on_overlap(value: object, where: str = "") -> str:
    """``value`` when it is one of ``"warn"``, ``"error"``, ``"ignore"``; an AuxoptError otherwise."""
    if value not in ON_OVERLAP:
        prefix = f"{where}: " if where else ""
        raise AuxoptError(f"{prefix}on_overlap must be 'warn', 'error' or 'ignore', not {value!r}")
    return value  # type: ignore[return-value]


def check_overlap(
    primary: Task,
    auxiliaries: Iterable[Task] = (),
    *,
    on_overlap: str = "warn",
) -> OverlapReport:
    """Compare the train split of every auxiliary task and of ``primary`` itself with ``primary``'s
    dev and test splits (normalised exact match, see the module docstring).

    Returns an :class:`OverlapReport`; when anything overlaps, ``on_overlap="warn"`` (the default)
    issues a :class:`ContaminationWarning` naming the tasks, the counts and the fractions,
    ``"error"`` raises :class:`~auxopt.errors.AuxoptError` with the same message, ``"ignore"`` is
    silent.
    """
    validate_on_overlap(on_overlap)
    targets = {s: split_hashes(primary, s) for s in TARGET_SPLITS if getattr(primary, s) is not None}
    pairs = []
    for source in (primary, *auxiliaries):
        known = _cached(source, "train")[1]  # the distinct non-empty keys of the source's train split
        for split, hashes in targets.items():
            count = _count_known(hashes, known)
            pairs.append(Overlap(primary.name, split, source.name, "train", count, len(hashes)))
    return OverlapReport(primary.name, tuple(pairs)).enforce(on_overlap, stacklevel=2)
