"""Checkpoints for resuming a training run mid-way. No Optuna here.

A :class:`Checkpoint` (``TrainConfig.checkpoint``) says how often to save and where: a
:class:`CheckpointStore`, which keeps the bytes of a few checkpoints and hands back candidates to
resume from, newest first. The trainer saves everything a run needs to continue exactly as if it
had never stopped: model, optimizer, learning-rate scheduler, RNG states (Python, NumPy, torch, CUDA),
task schedule and bandit state, minibatch streams, the step strategy's state (AANG weights,
ATTITTUD basis), and the loop's own bookkeeping (step, dev curve, best model so far).

Files are written with ``torch.save`` and read with ``torch.load(weights_only=True)``: only
tensors and plain containers are ever unpickled. NumPy arrays and scalars are stored as tagged
tensors/floats and turned back on load. A checkpoint that does not load (truncated, corrupt, from
another model) is skipped with a warning and the next older one is tried; when none loads the run
starts from step 0.

The Optuna side (an artifact-store-backed store, see :mod:`auxopt.storage`) fills
``TrainConfig.checkpoint`` from the trial; :class:`FolderCheckpointStore` keeps files in a folder
for use without Optuna.
"""

from __future__ import annotations

import io
import logging
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

logger = logging.getLogger("auxopt")

DEFAULT_EVERY = 100
FORMAT_VERSION = 1


@runtime_checkable
class CheckpointStore(Protocol):
    """Where checkpoint bytes live. ``save`` keeps one; ``candidates`` yields ``(step, reader)``
    newest first, where ``reader()`` returns the bytes (or raises when they are gone)."""

    def save(self, step: int, data: bytes) -> None: ...

    def candidates(self) -> Iterator[tuple[int, Any]]: ...


class Checkpoint:
    """Checkpoint a run every ``every`` optimisation steps into ``store`` and resume from the
    newest loadable checkpoint there. ``every=100`` (the default) redoes at most 99 steps after a
    crash. (Not a dataclass on purpose: ``dataclasses.asdict(config)`` must not deep-copy a store.)"""

    def __init__(self, store: CheckpointStore, every: int = DEFAULT_EVERY):
        from auxopt.errors import AuxoptError

        self.store, self.every = store, every

        if not isinstance(self.every, int) or self.every < 1:
            raise AuxoptError(f"checkpoint every must be a positive number of steps, not {self.every!r}")
        if not isinstance(self.store, CheckpointStore):
            raise AuxoptError(
                f"checkpoint store must have save(step, data) and candidates(), not {type(self.store).__name__}"
            )

    def __repr__(self) -> str:
        return f"Checkpoint(every={self.every}, store={type(self.store).__name__})"


class FolderCheckpointStore:
    """Checkpoints as ``step-<N>.pt`` files in a folder; keeps the newest ``keep``."""

    def __init__(self, folder: str | Path, keep: int = 2):
        self.folder, self.keep = Path(folder), keep

    def _files(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.folder.glob("step-*.pt"):
            m = re.fullmatch(r"step-(\d+)\.pt", path.name)
            if m:
                found.append((int(m.group(1)), path))
        return sorted(found, reverse=True)

    def save(self, step: int, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".step-{step}.pt.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.folder / f"step-{step}.pt")
        for _, old in self._files()[self.keep :]:
            old.unlink(missing_ok=True)

    def candidates(self) -> Iterator[tuple[int, Any]]:
        for step, path in self._files():
            yield step, path.read_bytes


# -- (de)serialisation --------------------------------------------------------------------------
def _encode(value: Any) -> Any:
    """Make ``value`` loadable with ``weights_only=True``: NumPy arrays become tagged tensors."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value)).clone()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_encode(v) for v in value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].numpy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    return value


def dumps(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(_encode({"version": FORMAT_VERSION, **state}), buffer)
    return buffer.getvalue()


def loads(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`dumps`; ``torch.load(weights_only=True)``: no arbitrary code runs."""
    state = _decode(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
        raise ValueError("not an auxopt checkpoint (or from another auxopt version)")
    return state


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_latest(store: CheckpointStore, restore) -> int | None:
    """Try the store's checkpoints newest first; ``restore(state)`` applies one (and may raise when
    it does not fit the run). Returns the step resumed from, or None (start from scratch). Every
    checkpoint skipped is named in a warning."""
    try:
        candidates = list(store.candidates())
    except Exception as e:  # a store that cannot even be listed must not kill the run
        logger.warning("auxopt: could not list checkpoints (%s: %s); training from step 0", type(e).__name__, e)
        return None
    skipped = []
    for step, reader in candidates:
        try:
            state = loads(reader())
            if int(state["step"]) != step:
                raise ValueError(f"it holds step {state['step']}")
            restore(state)
        except Exception as e:
            skipped.append(step)
            logger.warning(
                "auxopt: checkpoint at step %d does not load (%s: %s); trying an older one",
                step,
                type(e).__name__,
                str(e)[:200],
            )
            continue
        if skipped:
            logger.warning("auxopt: resumed from step %d after skipping unreadable checkpoint(s) %s", step, skipped)
        logger.info("auxopt: resuming %s from step %d", getattr(store, "label", "the run"), step)
        return step
    if skipped:
        logger.warning("auxopt: no checkpoint loads (tried steps %s); training from step 0", skipped)
    return None


class TrainState:
    """The resumable parts of one training run, captured into and applied from a checkpoint."""

    def __init__(self, *, model, optimizer, scheduler, schedule, batches, strategy):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.schedule, self.batches, self.strategy = schedule, batches, strategy

    def capture(self, step: int, loop: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "schedule": self.schedule.state_dict(),
            "batches": {name: b.state_dict() for name, b in self.batches.items()},
            "strategy": self.strategy.state_dict(),
            "rng": rng_state(),
            "loop": loop,
        }

    def apply(self, state: dict[str, Any]) -> None:
        """Load ``state`` into the run (raises when it does not fit: other tasks, other model)."""
        if set(state["batches"]) != set(self.batches):
            raise ValueError(f"it was saved for tasks {sorted(state['batches'])}, not {sorted(self.batches)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.schedule.load_state_dict(state["schedule"])
        for name, b in self.batches.items():
            b.load_state_dict(state["batches"][name])
        self.strategy.load_state_dict(state["strategy"])
        set_rng_state(state["rng"])

    def resume(self, store: CheckpointStore) -> dict[str, Any] | None:
        """Apply the newest loadable checkpoint in ``store``; return it (None: start from step 0,
        with the run exactly as it was before any failed attempt)."""
        applied: dict[str, Any] = {}

        def restore(state: dict[str, Any]) -> None:
            if not applied:  # first attempt: keep the fresh state in case nothing loads
                applied["fresh"] = loads(dumps(self.capture(0, {})))
            self.apply(state)
            applied["state"] = state

        step = load_latest(store, restore)
        if step is None:
            if "fresh" in applied:
                self.apply(applied["fresh"])
            return None
        return applied["state"]

    def save(self, store: CheckpointStore, step: int, loop: dict[str, Any]) -> bool:
        """Write a checkpoint; a failure to write is a warning, never the end of the run."""
        try:
            store.save(step, dumps(self.capture(step, loop)))
        except Exception as e:
            logger.warning("auxopt: could not save the checkpoint at step %d (%s: %s)", step, type(e).__name__, e)
            return False
        return True
