"""A trained primary model as a folder that ``transformers.pipeline`` loads, with its model card.

The folder holds ``config.json`` (:class:`~auxopt.models.modeling_auxopt.AuxoptConfig`, with an
``auto_map`` to the architecture), ``modeling_auxopt.py`` (the architecture, as remote code),
``model.safetensors`` (the encoder and the primary's head: auxiliary and objective heads are left
out), the tokenizer with ``model_max_length`` set to the length the model was trained at, and
``README.md`` (:mod:`auxopt.train.card`).

The folder is written beside its destination under a temporary name, loaded back and checked to give
the trained network's outputs on dev examples, and only then moved into place: an export that fails
leaves nothing behind, and ``force=True`` replaces an existing folder only once the new one is whole.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from auxopt.errors import AuxoptError
from auxopt.tasks.task import Task


@dataclass
class TrainedModel:
    """The primary task's model at the best dev step, as :func:`~auxopt.train.train` hands it back
    (``keep_model=True``): the multi-task network in eval mode (auxiliary and objective heads
    included), its tokenizer, the primary task, the length it was trained at, the run's settings
    (:meth:`~auxopt.train.TrainConfig.describe`) and its contamination check.
    :meth:`~auxopt.train.TrainResult.save_pretrained` writes it as a folder that
    ``transformers.pipeline`` loads."""

    model: Any
    tokenizer: Any
    task: Task
    max_length: int
    settings: dict[str, Any]
    contamination: dict[str, Any] | None = None  # the run's OverlapReport.to_dict()

    @property
    def head(self) -> str:
        return self.task.head_name


#: largest |logit difference| between the trained network and the folder loaded back
TOLERANCE = 1e-4
CHECK_EXAMPLES = 16


def to_pretrained(trained: TrainedModel):
    """``(model, tokenizer)``: the primary task's network as an
    :class:`~auxopt.models.modeling_auxopt.AuxoptForSequenceClassification` with the trained weights
    (on the CPU), and a copy of the tokenizer that truncates at the trained length."""
    from auxopt.models.modeling_auxopt import AuxoptConfig, AuxoptForSequenceClassification, register

    register()
    network, task = trained.model, trained.task
    encoder = network.encoder
    regression = task.kind == "regression"
    names = list(task.labels) if not regression else [task.name]
    config = AuxoptConfig(
        encoder_config=encoder.config.to_dict(),
        classifier_dropout=float(network.dropout.p),
        num_labels=task.num_labels,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        problem_type="regression" if regression else "single_label_classification",
    )
    AuxoptConfig.register_for_auto_class()
    AuxoptForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    model = AuxoptForSequenceClassification(config)
    weights = {k: v.detach().to("cpu", torch.float32) for k, v in encoder.state_dict().items()}
    weights = {k: v for k, v in weights.items() if not k.startswith("pooler.")}  # mean pooling instead
    model.encoder.load_state_dict(weights, strict=True)
    head = network.heads[trained.head]
    model.classifier.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in head.state_dict().items()})
    model.eval()
    tokenizer = copy.deepcopy(trained.tokenizer)
    tokenizer.model_max_length = trained.max_length
    tokenizer.init_kwargs["model_max_length"] = trained.max_length
    names = list(tokenizer.model_input_names)
    if getattr(encoder.config, "type_vocab_size", 0) > 1 and "token_type_ids" not in names:
        # training passed token types (the second text of a pair is segment 1): so must the pipeline
        names.insert(1, "token_type_ids")
        tokenizer.model_input_names = names
        tokenizer.init_kwargs["model_input_names"] = names
    return model, tokenizer


def check_target(folder: str | Path, force: bool = False) -> Path:
    """``folder`` as a path an export may write: absent, empty, or (with ``force``) to be replaced."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise AuxoptError(f"{folder} is a file, not a folder; give --out a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise AuxoptError(f"{folder} exists and is not empty; choose another --out, or pass --force to replace it")
    return folder


def save_pretrained(
    result: Any,
    folder: str | Path,
    *,
    force: bool = False,
    name: str | None = None,
    source: Mapping[str, Any] | None = None,
    verdict: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``result``'s model (``train(config, keep_model=True)``) to ``folder``; return the folder.

    Args:
        force: replace ``folder`` when it exists and is not empty (else an error).
        name: the model's name in its card (default: the folder's name).
        source: where the model came from, listed in the card (study, trial, storage, command).
        verdict: ``auxopt verify``'s verdict on the configuration, shown in the card.
    """
    from auxopt.train import card

    trained = getattr(result, "model", None)
    if trained is None:
        raise AuxoptError("this result has no model: train(config, keep_model=True) keeps it")
    folder = check_target(folder, force)
    folder.parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = to_pretrained(trained)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with _quiet_transformers():
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            text = card.render(result, name=name or folder.name, source=source, verdict=verdict)
            (staging / "README.md").write_text(text, encoding="utf-8")
            check_folder(staging, trained)
        _move_into_place(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


@contextlib.contextmanager
def _quiet_transformers():
    """No progress bars while the folder is written and read back (the export reports itself)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def check_folder(folder: Path, trained: TrainedModel, examples: int = CHECK_EXAMPLES) -> float:
    """Load ``folder`` back with transformers' Auto classes and compare its outputs on the first
    dev examples with the trained network's; an :class:`AuxoptError` past :data:`TOLERANCE`.
    Returns the largest difference."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from auxopt.models.tokenize import encode_split

    loaded = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dev = trained.task.dev
    n = min(examples, len(dev))
    texts = list(dev.texts[:n])
    pairs = list(dev.pairs[:n]) if dev.pairs is not None else None
    batch = tokenizer(texts, pairs, truncation=True, padding=True, return_tensors="pt")  # as the pipeline calls it
    network = trained.model
    device = next(network.parameters()).device
    reference = encode_split(trained.tokenizer, trained.task, "dev", trained.max_length).batch(torch.arange(n))
    keys = ["input_ids", *(["token_type_ids"] if getattr(loaded.encoder.config, "type_vocab_size", 0) > 1 else [])]
    if any(k not in batch or not torch.equal(reference[k], batch[k]) for k in keys):
        raise AuxoptError(f"the saved tokenizer in {folder} does not reproduce the training tokenisation ({keys})")
    was_training = network.training
    network.eval()
    with torch.no_grad():
        want = network(trained.head, **{k: v.to(device) for k, v in reference.items()}).float().cpu()
        got = loaded(**batch).logits.float()
    network.train(was_training)
    gap = float((want - got).abs().max())
    if not gap <= TOLERANCE:
        raise AuxoptError(f"the exported model's outputs differ from the trained model's by {gap:.2e}; not written")
    return gap


def _move_into_place(staging: Path, folder: Path) -> None:
    """Rename ``staging`` to ``folder``; an existing ``folder`` is removed only once the rename can
    happen (moved aside first, deleted after)."""
    aside = None
    if folder.exists():
        aside = folder.with_name(f".{folder.name}.replaced")
        shutil.rmtree(aside, ignore_errors=True)
        folder.rename(aside)
    try:
        staging.rename(folder)
    except BaseException:
        if aside is not None:
            aside.rename(folder)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
