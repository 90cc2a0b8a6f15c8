"""A tiny randomly initialised BERT and a WordPiece tokenizer trained here, on the task's own text.

For fast tests and the quickstart: no download, a second to build, and a few milliseconds a step on a
CPU. The tokenizer is trained with the ``tokenizers`` library on the given corpus (deterministic for
equal corpora) and wrapped as a transformers ``PreTrainedTokenizerFast``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class TinyBertSpec:
    """Size of the tiny encoder (``model="tiny"``); the defaults fit a CPU test in seconds."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 2000
    max_position_embeddings: int = 512

    def bert_config(self, vocab_size: int):
        from transformers import BertConfig

        return BertConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            pad_token_id=0,
        )


def train_wordpiece(corpus: Iterable[str], vocab_size: int = 2000):
    """Train a lowercasing BERT WordPiece tokenizer on ``corpus`` (cached by corpus content)."""
    texts = tuple(corpus)
    digest = hashlib.sha1("\0".join(texts).encode()).hexdigest()
    return _train_wordpiece(digest, vocab_size, texts)


@lru_cache(maxsize=8)
def _train_wordpiece(digest: str, vocab_size: int, texts: tuple[str, ...]):
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    def fresh(model):
        tok = Tokenizer(model)
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        return tok

    tok = fresh(models.WordPiece(unk_token="[UNK]"))
    # The trainer numbers the "##x" pieces in hash-map order and breaks ties between equally frequent
    # merges by those numbers, so equal corpora gave different vocabularies from run to run
    # (huggingface/tokenizers#1794). Registering every "##x" first, in sorted order, fixes their ids.
    chars: set[str] = set()
    for text in texts:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)):
            chars.update(word[1:])
    pieces = [f"##{c}" for c in sorted(chars)]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *pieces], show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # The pieces are ordinary vocabulary, not special tokens: rebuild the tokenizer from the vocabulary.
    tok = fresh(models.WordPiece(tok.get_vocab(with_added_tokens=False), unk_token="[UNK]"))
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )
    fast.name_or_path = f"tiny-wordpiece-{digest[:12]}"
    return fast
