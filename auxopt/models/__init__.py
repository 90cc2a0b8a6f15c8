"""Shared encoders (any transformers checkpoint, MiniLM, a tiny BERT), heads and cached tokenisation."""

from auxopt.models.encoder import MINILM_HUB_NAME, LoadedEncoder, load_encoder, resolve_model_name
from auxopt.models.heads import MultiTaskModel
from auxopt.models.tiny import TinyBertSpec, train_wordpiece
from auxopt.models.tokenize import Encoded, encode_split

__all__ = [
    "MINILM_HUB_NAME",
    "Encoded",
    "LoadedEncoder",
    "MultiTaskModel",
    "TinyBertSpec",
    "encode_split",
    "load_encoder",
    "resolve_model_name",
    "train_wordpiece",
]
