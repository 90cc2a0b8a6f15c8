"""AANG's taxonomy of auxiliary objectives and the space it generates (Dery et al., ICLR 2023, §3).

An objective is a tuple of four stages, ``(data, transform, representation, output)``:

* **data** — ``"task"`` (the primary task's own train text), ``"domain"`` (in-domain unlabelled text:
  a ``domain.txt``, one passage a line), ``"out_of_domain"`` (other unlabelled text) or
  ``"task:<name>"`` (the text, and labels, of another labelled task of the run);
* **transform** — ``"none"``, ``"mask"`` (every selected token → [MASK]), ``"replace"`` (→ a random
  token) or ``"bert_op"`` (80 % [MASK], 10 % random, 10 % kept); tokens are selected with
  probability ``select_prob`` (0.15);
* **representation** — ``"bidirectional"``, ``"left_to_right"``, ``"right_to_left"`` or
  ``"random_factorised"`` (an XLNet-style random factorisation order), as attention masks;
* **output** — ``"denoise"`` (the original token at each selected position, through an LM head tied
  to the input embeddings), ``"next_token"`` (the next token in the representation's order: i+1 for
  left-to-right, i-1 for right-to-left, the next position of the factorisation order for
  random-factorised) or ``"labels"`` (the labels of a labelled data source, through its task head).

The space is the product of the chosen options minus the illegal tuples (:func:`why_illegal`):

1. a supervised output (``labels``) needs labelled data (``task`` or ``task:<name>``);
2. a supervised output needs the ``bidirectional`` representation (a one-directional or factorised
   attention pattern leaves the pooled sentence vector without its context);
3. ``(task, none, bidirectional, labels)`` is the primary loss itself, already trained: excluded;
4. ``next_token`` needs an order (``left_to_right``, ``right_to_left`` or ``random_factorised``):
   with bidirectional attention the next token is in plain view;
5. ``denoise`` needs a corrupting transform: with ``none`` every token is its own input.

Counts (tested in ``tests/test_objectives.py``): over the primary task's text alone with every
transform, representation and output there are 4·4·3 = 48 tuples and **27** legal objectives
(12 ``denoise`` + 12 ``next_token`` + 3 ``labels``); adding in-domain text gives **51** (the
unlabelled source adds 24); a further labelled task ``task:<name>`` adds 28 (its labels are also
legal with ``none``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auxopt.errors import AuxoptError

TRANSFORMS = ("none", "mask", "replace", "bert_op")
REPRESENTATIONS = ("bidirectional", "left_to_right", "right_to_left", "random_factorised")
OUTPUTS = ("denoise", "next_token", "labels")
UNLABELLED = ("domain", "out_of_domain")
STAGES = ("data", "transform", "representation", "output")
ORDERED = ("left_to_right", "right_to_left", "random_factorised")


@dataclass(frozen=True, order=True)
class AuxObjective:
    """One auxiliary objective: a legal tuple of the four stages. ``str()`` gives ``a|b|c|d``."""

    data: str
    transform: str
    representation: str
    output: str

    @classmethod
    def parse(cls, value: Any) -> AuxObjective:
        """An :class:`AuxObjective` from itself, a 4-tuple, ``"data|transform|rep|output"`` or a preset name."""
        if isinstance(value, AuxObjective):
            return value
        if isinstance(value, str) and value in PRESETS:
            return PRESETS[value]
        parts = value.split("|") if isinstance(value, str) else list(value) if isinstance(value, tuple | list) else None
        if parts is None or len(parts) != 4:
            raise AuxoptError(
                f"cannot read objective {value!r}: give 'data|transform|representation|output' "
                f"(e.g. 'task|bert_op|bidirectional|denoise') or a preset ({', '.join(PRESETS)})"
            )
        obj = cls(*(str(p).strip() for p in parts))
        obj.check_options()
        return obj

    def check_options(self) -> None:
        if not (self.data in ("task", *UNLABELLED) or (self.data.startswith("task:") and len(self.data) > 5)):
            raise AuxoptError(
                f"unknown data stage {self.data!r}; use 'task', 'domain', 'out_of_domain' or 'task:<name>'"
            )
        for value, options, stage in (
            (self.transform, TRANSFORMS, "transform"),
            (self.representation, REPRESENTATIONS, "representation"),
            (self.output, OUTPUTS, "output"),
        ):
            if value not in options:
                raise AuxoptError(f"unknown {stage} {value!r}; use one of {', '.join(options)}")

    @property
    def stages(self) -> tuple[str, str, str, str]:
        return (self.data, self.transform, self.representation, self.output)

    @property
    def labelled_task(self) -> str | None:
        """The task whose labels the data stage carries (None for unlabelled text, "" for the primary)."""
        if self.data == "task":
            return ""
        return self.data[5:] if self.data.startswith("task:") else None

    def __str__(self) -> str:
        return "|".join(self.stages)


def why_illegal(obj: AuxObjective) -> str | None:
    """The legality rule ``obj`` breaks (see the module docstring), or None when it is legal."""
    if obj.output == "labels":
        if obj.labelled_task is None:
            return f"a supervised output needs labelled data, and {obj.data!r} is unlabelled"
        if obj.representation != "bidirectional":
            return "a supervised output needs the bidirectional representation"
        if obj.data == "task" and obj.transform == "none":
            return "(task, none, bidirectional, labels) is the primary loss itself"
    if obj.output == "next_token" and obj.representation not in ORDERED:
        return "next-token prediction needs an order (left_to_right, right_to_left, random_factorised)"
    if obj.output == "denoise" and obj.transform == "none":
        return "denoising needs a corrupting transform (mask, replace or bert_op)"
    return None


#: The classic objectives as tuples of the space (AANG, Fig. 1): BERT/TAPT/DAPT-style MLM differ by
#: their data; GPT-style is a left-to-right language model; XLNet-style predicts tokens in a random
#: factorisation order.
PRESETS: dict[str, AuxObjective] = {
    "tapt": AuxObjective("task", "bert_op", "bidirectional", "denoise"),
    "dapt": AuxObjective("domain", "bert_op", "bidirectional", "denoise"),
    "bert": AuxObjective("out_of_domain", "bert_op", "bidirectional", "denoise"),
    "gpt": AuxObjective("task", "none", "left_to_right", "next_token"),
    "gpt_reverse": AuxObjective("task", "none", "right_to_left", "next_token"),
    "xlnet": AuxObjective("task", "none", "random_factorised", "next_token"),
}


def _texts_option(value: Any, what: str) -> Any:
    """Validate a text source: True (the primary's ``domain.txt``), a file path or a list of passages."""
    if value is None or value is True:
        return value
    if isinstance(value, str | Path):
        path = Path(value).expanduser()
        if not path.is_file():
            raise AuxoptError(f"the {what} text file {str(path)!r} does not exist; give a file with one passage a line")
        return str(path)
    if isinstance(value, Sequence) and value and all(isinstance(t, str) for t in value):
        return tuple(value)
    raise AuxoptError(
        f"{what} must be a file path, a non-empty list of passages or True (the task's domain.txt), "
        f"not {type(value).__name__}"
    )


def read_texts(value: Any, what: str) -> tuple[str, ...]:
    """The passages of a validated text source (a path is read here, one passage a line)."""
    if isinstance(value, tuple):
        return value
    path = Path(value)
    if not path.is_file():
        raise AuxoptError(f"the {what} text file {str(path)!r} does not exist; give a file with one passage a line")
    texts = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not texts:
        raise AuxoptError(f"the {what} text file {str(path)!r} is empty")
    return texts


class ObjectiveSpace:
    """The generated space: every legal objective over the chosen stage options.

    Args:
        data: data stages (default: ``"task"``, plus ``"domain"`` / ``"out_of_domain"`` when those
            texts are given).
        transforms: the transform stage's options (default: all).
        representations: the representation stage's options (default: all).
        outputs: the output stage's options (default: all).
        domain: in-domain text — a file path (one passage a line), a list of passages, or True for
            the primary task's own ``domain.txt`` (:attr:`Task.domain_text`, checked when training starts).
        out_of_domain: out-of-domain text (a path or a list of passages).
        select_prob: probability that a token is selected by a transform (and a next-token target).

    ``ObjectiveSpace()`` is the default space over the primary's own text (27 objectives);
    ``ObjectiveSpace.for_task(task)`` adds the task's ``domain.txt`` when it has one (51).
    Iterating yields the legal objectives in a fixed order; an empty space is an error.
    """

    def __init__(
        self,
        data: Sequence[str] | None = None,
        transforms: Sequence[str] = TRANSFORMS,
        representations: Sequence[str] = REPRESENTATIONS,
        outputs: Sequence[str] = OUTPUTS,
        *,
        domain: Any = None,
        out_of_domain: Any = None,
        select_prob: float = 0.15,
    ):
        self.domain = _texts_option(domain, "in-domain")
        self.out_of_domain = _texts_option(out_of_domain, "out-of-domain")
        if self.out_of_domain is True:
            raise AuxoptError("out_of_domain must be a file path or a list of passages, not True")
        if data is None:
            data = (
                ["task"]
                + (["domain"] if domain is not None else [])
                + (["out_of_domain"] if out_of_domain is not None else [])
            )
        self.options: dict[str, tuple[str, ...]] = {}
        for stage, given in zip(STAGES, (data, transforms, representations, outputs), strict=True):
            values = (given,) if isinstance(given, str) else tuple(given)
            if not values:
                raise AuxoptError(f"the {stage} stage has no options; give at least one")
            if len(set(values)) != len(values):
                raise AuxoptError(f"the {stage} stage repeats an option: {list(values)}")
            self.options[stage] = values
        for d in self.options["data"]:
            AuxObjective(d, "none", "bidirectional", "denoise").check_options()
            if d == "domain" and self.domain is None:
                raise AuxoptError("the data stage 'domain' needs in-domain text: pass domain=PATH, a list, or True")
            if d == "out_of_domain" and self.out_of_domain is None:
                raise AuxoptError("the data stage 'out_of_domain' needs out_of_domain=PATH or a list of passages")
        for stage, allowed in (("transform", TRANSFORMS), ("representation", REPRESENTATIONS), ("output", OUTPUTS)):
            bad = [v for v in self.options[stage] if v not in allowed]
            if bad:
                raise AuxoptError(f"unknown {stage} option(s) {bad}; use {', '.join(allowed)}")
        if not (isinstance(select_prob, int | float) and 0 < select_prob <= 1):
            raise AuxoptError(f"select_prob must be in (0, 1], not {select_prob!r}")
        self.select_prob = float(select_prob)
        self.objectives: tuple[AuxObjective, ...] = tuple(
            o
            for o in itertools.starmap(AuxObjective, itertools.product(*self.options.values()))
            if why_illegal(o) is None
        )
        if not self.objectives:
            raise AuxoptError(
                f"the objective space over {self.options} is empty after the legality rules; "
                "add options (e.g. the 'denoise' output with a 'mask' transform)"
            )
        self._index = {o: i for i, o in enumerate(self.objectives)}
        #: the task whose default space (:meth:`for_task`) lacks in-domain text because the task
        #: has no ``domain.txt`` (None otherwise): error messages say so
        self.missing_domain: str | None = None

    @classmethod
    def for_task(cls, task, **kwargs) -> ObjectiveSpace:
        """The default space for ``task``: its own text, plus its ``domain.txt`` when it has one."""
        missing = "domain" not in kwargs and "data" not in kwargs and not getattr(task, "domain_text", None)
        if "domain" not in kwargs and getattr(task, "domain_text", None):
            kwargs["domain"] = tuple(task.domain_text)
        space = cls(**kwargs)
        if missing:
            space.missing_domain = getattr(task, "name", None)
        return space

    def __iter__(self) -> Iterator[AuxObjective]:
        return iter(self.objectives)

    def __len__(self) -> int:
        return len(self.objectives)

    def __contains__(self, obj: Any) -> bool:
        return AuxObjective.parse(obj) in self._index

    def index(self, obj: Any) -> int:
        return self._index[AuxObjective.parse(obj)]

    @property
    def size_before_legality(self) -> int:
        n = 1
        for values in self.options.values():
            n *= len(values)
        return n

    def nearest(self, stages: Sequence[str]) -> AuxObjective:
        """The legal objective closest to a (maybe illegal) tuple, stages compared in the order data,
        output, representation, transform (lexicographically: keeping the data stage outweighs keeping
        all three others, keeping the output outweighs representation and transform together); among
        equals, the first in the space."""
        priority = (8, 1, 2, 4)  # data, transform, representation, output

        def score(o: AuxObjective) -> int:
            return sum(p for p, a, b in zip(priority, o.stages, stages, strict=True) if a == b)

        return max(self.objectives, key=score)  # max keeps the first of equal scores

    def describe(self) -> dict[str, Any]:
        return {
            "options": {k: list(v) for k, v in self.options.items()},
            "size": len(self),
            "size_before_legality": self.size_before_legality,
            "select_prob": self.select_prob,
            "domain": _describe_source(self.domain),
            "out_of_domain": _describe_source(self.out_of_domain),
        }


def _describe_source(value: Any) -> Any:
    if value is None or value is True or isinstance(value, str):
        return value
    return f"{len(value)} passages"
