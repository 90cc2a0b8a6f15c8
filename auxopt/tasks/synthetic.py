"""Synthetic benchmark tasks with known ground truth.

A hidden "language" of pseudo-words drives every task. Each word of a *signal* group carries a weight
``w(v) ~ N(0, 1)``; a *negator* word flips the sign of the word after it. The primary task labels a
sentence by the sign of its score ``s(x) = sum_t ±w(x_t)`` (negation applied), with a little label
noise and only a few hundred training examples, so that a small model learns it from scratch only
partly (it does not saturate: the noise caps accuracy at ``1 - noise``, and 500 examples do not pin
down 60 word weights and the negation rule).

Auxiliary tasks, each with thousands of examples, are built to be:

* **helpful** — they share the primary's structure: the same negation rule and weights
  ``w + 0.3·ε`` (own head; some binary, some a 3-way split of the score), so learning them teaches the
  encoder exactly the features the primary needs;
* **neutral** — their labels depend on a disjoint group of words with independent weights (own head);
* **harmful** — they label the *same* output as the primary (they share its head, like a second
  dataset that annotates the same labels under a contradicting guideline) with the sign of a rule in
  which half of the signal words have their weight reversed.

``make_synthetic_suite(...).ground_truth`` maps every auxiliary name to its role; selection methods are
scored against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from auxopt.tasks.task import Split, Task

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh")
_VOWELS = ("a", "e", "i", "o", "u")


@dataclass(frozen=True)
class SyntheticSuite:
    primary: Task
    auxiliaries: tuple[Task, ...]
    ground_truth: dict[str, str]  # auxiliary name -> "helpful" | "neutral" | "harmful"

    @property
    def tasks(self) -> tuple[Task, ...]:
        return (self.primary, *self.auxiliaries)

    def names(self, role: str) -> list[str]:
        return [name for name, r in self.ground_truth.items() if r == role]


class _Language:
    def __init__(self, rng: np.random.Generator, n_signal: int, n_other: int, n_filler: int):
        words: list[str] = []
        seen: set[str] = set()
        while len(words) < n_signal + 2 * n_other + n_filler + 2:
            w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.integers(2, 4)))
            if w not in seen:
                seen.add(w)
                words.append(w)
        self.negators = words[:2]
        rest = words[2:]
        self.signal = rest[:n_signal]
        self.other = rest[n_signal : n_signal + 2 * n_other]  # two groups for neutral tasks
        self.filler = rest[n_signal + 2 * n_other :]
        self.vocab = np.array(self.negators + rest)
        self.n_signal, self.n_other = n_signal, n_other

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` sentences as one flat array of word ids (0-1 negators, then signal, other, filler
        words) and the start offset of each sentence."""
        lengths = rng.integers(10, 21, size=n)
        total = int(lengths.sum())
        first = [0, 2, 2 + self.n_signal, 2 + self.n_signal + 2 * self.n_other, len(self.vocab)]
        group = rng.choice(4, size=total, p=[0.08, 0.37, 0.25, 0.30])
        low, high = np.array(first[:-1])[group], np.array(first[1:])[group]
        ids = low + (rng.random(total) * (high - low)).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return ids, starts

    def score(self, ids: np.ndarray, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Per sentence ``sum_t sign_t · w(x_t)``, where a negator flips the sign of the next word."""
        negator = ids < 2
        after_negator = np.zeros_like(negator)
        after_negator[1:] = negator[:-1]
        after_negator[starts] = False  # a negator does not reach into the next sentence
        contrib = np.where(negator, 0.0, np.where(after_negator, -1.0, 1.0) * weights[ids])
        return np.add.reduceat(contrib, starts)

    def texts(self, ids: np.ndarray, starts: np.ndarray) -> tuple[str, ...]:
        words = self.vocab[ids]
        return tuple(" ".join(words[a:b]) for a, b in zip(starts, [*starts[1:], len(ids)], strict=True))


def _split(lang, rng, n, weights, noise, classes) -> Split:
    ids, starts = lang.sample(rng, n)
    scores = lang.score(ids, starts, weights)
    if classes == 2:
        labels = (scores > 0).astype(np.int64)
    else:  # 3-way: low / middle / high by the weight scale's tertiles
        cut = 0.43 * np.sqrt(np.sum(weights**2) / max(1, np.count_nonzero(weights))) * 3
        labels = np.digitize(scores, [-cut, cut]).astype(np.int64)
    flip = rng.random(n) < noise
    labels[flip] = rng.integers(0, classes, size=int(flip.sum()))
    return Split(lang.texts(ids, starts), labels)


def _task(name, lang, rng, weights, sizes, noise, classes, recipe, head=None) -> Task:
    train, dev, test = (_split(lang, rng, n, weights, noise, classes) for n in sizes)
    labels = ("neg", "pos") if classes == 2 else ("low", "mid", "high")
    return Task(
        name=name,
        train=train,
        dev=dev,
        test=test,
        labels=labels,
        metric="accuracy",
        head=head,
        source="synthetic",
        loaded_with={"synthetic": recipe, "name": name},
    )


def make_synthetic_suite(
    *,
    n_helpful: int = 2,
    n_neutral: int = 2,
    n_harmful: int = 2,
    n_train: int = 500,
    n_aux_train: int = 3000,
    n_dev: int = 500,
    n_test: int = 1000,
    noise: float = 0.05,
    seed: int = 0,
) -> SyntheticSuite:
    """A primary task and auxiliaries of known role (see the module docstring).

    Task names are ``primary``, ``helpful_0``…, ``neutral_0``…, ``harmful_0``…; equal arguments give
    identical tasks.
    """
    recipe = dict(
        n_helpful=n_helpful,
        n_neutral=n_neutral,
        n_harmful=n_harmful,
        n_train=n_train,
        n_aux_train=n_aux_train,
        n_dev=n_dev,
        n_test=n_test,
        noise=noise,
        seed=seed,
    )  # what reload_task makes the suite again from
    rng = np.random.default_rng(seed)
    lang = _Language(rng, n_signal=60, n_other=30, n_filler=150)
    n_words = len(lang.vocab)
    sig = slice(2, 2 + lang.n_signal)
    w_primary = np.zeros(n_words)
    w_primary[sig] = rng.normal(size=lang.n_signal)
    primary = _task("primary", lang, rng, w_primary, (n_train, n_dev, n_test), noise, 2, recipe)

    aux_sizes = (n_aux_train, n_dev, n_dev)
    auxiliaries, truth = [], {}
    for i in range(n_helpful):
        w = w_primary.copy()
        w[sig] += 0.3 * rng.normal(size=lang.n_signal)
        name = f"helpful_{i}"
        auxiliaries.append(_task(name, lang, rng, w, aux_sizes, noise, 3 if i % 2 == 0 else 2, recipe))
        truth[name] = "helpful"
    for i in range(n_neutral):
        w = np.zeros(n_words)
        start = 2 + lang.n_signal + (i % 2) * lang.n_other
        w[start : start + lang.n_other] = rng.normal(size=lang.n_other)
        name = f"neutral_{i}"
        auxiliaries.append(_task(name, lang, rng, w, aux_sizes, noise, 2, recipe))
        truth[name] = "neutral"
    for i in range(n_harmful):
        w = w_primary.copy()
        flipped = rng.permutation(lang.n_signal)[: lang.n_signal // 2]
        w[2 + flipped] *= -1
        name = f"harmful_{i}"
        auxiliaries.append(_task(name, lang, rng, w, aux_sizes, noise, 2, recipe, head="primary"))
        truth[name] = "harmful"
    return SyntheticSuite(primary, tuple(auxiliaries), truth)
