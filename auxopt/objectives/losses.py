"""An auxiliary objective → loss: the data stage's minibatch, the transform, the representation mask and the output.

:class:`ObjectiveLosses` holds the data sources of a run (the primary's train text, labelled tasks,
in-domain / out-of-domain passages tokenised once with the run's tokenizer) and computes the loss of
any legal :class:`~auxopt.objectives.AuxObjective` on one minibatch:

**Every objective has its own output head** (as in the official code, ``ModelWithAuxTasks.setup_heads``:
one head per search-space tuple), in ``model.aang_heads`` (an ``nn.ModuleDict`` keyed by
:func:`head_key`), made when :class:`ObjectiveLosses` is built — before the run's optimiser, which so
trains them with the model — and reused if the model already has them:

* ``denoise`` — cross-entropy of the objective's :class:`TiedLMHead` at the transform's selected
  positions against the original tokens (MiniLM ships no MLM head, so each head's transform and
  bias start fresh; only the decoder, tied to the input embeddings, is shared);
* ``next_token`` — cross-entropy of the objective's tied LM head against the next token in the
  representation's order, at a random ``select_prob`` share of the positions that have one (an
  unbiased estimate of the loss over all positions, at the cost of a masked LM's). For the
  random-factorised order the hidden state of position ``i`` gets the *target* position's
  embedding added (a one-stream stand-in for XLNet's query stream, which tells the model where the
  predicted token sits);
* ``labels`` — the data's task loss through the objective's own fresh linear head (on the pooled,
  dropped-out features of the transformed input, like the task heads), not the task's own head.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from auxopt.errors import AuxoptError
from auxopt.models.losses import task_loss
from auxopt.models.precision import autocast
from auxopt.models.tokenize import Encoded, tokenizer_key
from auxopt.objectives.masks import (
    additive_mask,
    apply_transform,
    factorisation_order,
    next_token_targets,
    representation_mask,
    select_tokens,
)
from auxopt.objectives.taxonomy import AuxObjective, read_texts
from auxopt.tasks.batches import Batches

_TEXT_CACHE: OrderedDict[tuple, Encoded] = OrderedDict()


class TiedLMHead(nn.Module):
    """BERT's LM prediction head (dense → GELU → LayerNorm → decoder), with the decoder weight tied
    to the encoder's input word embeddings: ``logits = LN(gelu(W h + b)) E^T + c``."""

    def __init__(self, embeddings: nn.Embedding, hidden_size: int, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(embeddings.num_embeddings))
        self._embeddings = (embeddings,)  # a tuple: not registered again as a submodule

    @property
    def decoder_weight(self) -> torch.Tensor:
        return self._embeddings[0].weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.norm(F.gelu(self.dense(hidden)))
        return F.linear(x, self.decoder_weight, self.bias)


def head_key(obj: AuxObjective) -> str:
    """The name of ``obj``'s head in ``model.aang_heads`` (module names may not contain ".")."""
    return str(obj).replace(".", "_")


def encode_texts(tokenizer, texts: tuple[str, ...], max_length: int) -> Encoded:
    """Tokenise unlabelled passages once per (tokenizer, texts, max length)."""
    digest = hashlib.sha1("\0".join(texts).encode()).hexdigest()
    key = (tokenizer_key(tokenizer), digest, max_length)
    hit = _TEXT_CACHE.get(key)
    if hit is not None:
        _TEXT_CACHE.move_to_end(key)
        return hit
    out = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding="longest",
        return_tensors="pt",
        return_token_type_ids=True,
    )
    mask = out["attention_mask"]
    encoded = Encoded(out["input_ids"], mask, out["token_type_ids"], mask.sum(dim=1))
    _TEXT_CACHE[key] = encoded
    if len(_TEXT_CACHE) > 16:
        _TEXT_CACHE.popitem(last=False)
    return encoded


def data_sources(objectives, primary, tasks, *, domain: Any, out_of_domain: Any) -> dict[str, Any]:
    """Each data stage of ``objectives`` (sorted) → what it reads: the labelled :class:`Task` of
    ``task`` / ``task:<name>`` (which must be one of ``tasks``, the run's tasks with a positive
    ratio) or the passages of ``domain`` / ``out_of_domain`` (True: the primary's ``domain.txt``).
    An :class:`AuxoptError` names a task not in the run, a missing ``domain.txt`` or text file.
    Needs no model: :meth:`AANG.check <auxopt.objectives.AANG.check>` calls it before training."""
    out: dict[str, Any] = {}
    for data in sorted({o.data for o in objectives}):
        if data == "task" or data.startswith("task:"):
            name = primary.name if data == "task" else data[5:]
            if name not in tasks:
                raise AuxoptError(
                    f"objective data {data!r} names task {name!r}, which is not in this run "
                    f"(tasks with a positive ratio: {sorted(tasks)}); add it to the auxiliaries "
                    "with a ratio > 0, or use another task's name"
                )
            out[data] = tasks[name]
            continue
        value = domain if data == "domain" else out_of_domain
        if value is True:
            if not primary.domain_text:
                raise AuxoptError(
                    f"the space's in-domain text is the primary task's domain.txt, but task "
                    f"{primary.name!r} has none; put a domain.txt beside its data or pass domain=PATH"
                )
            out[data] = tuple(primary.domain_text)
        elif value is None:
            own = "" if data != "domain" or primary.domain_text else f" (task {primary.name!r} has no domain.txt)"
            raise AuxoptError(f"objective data {data!r} needs {data}=PATH or a list of passages{own}")
        else:
            out[data] = read_texts(value, "in-domain" if data == "domain" else "out-of-domain")
    return out


class ObjectiveLosses:
    """Computes objective losses for one training run (see the module docstring).

    ``domain`` / ``out_of_domain`` are the space's text sources (True: the primary's ``domain.txt``).
    Every problem with the sources (a missing file, an unlabelled task, a task not in the run) is
    raised by :meth:`check` before training starts.
    """

    def __init__(
        self, ctx, objectives: list[AuxObjective], *, select_prob: float, domain: Any, out_of_domain: Any, seed: int
    ):
        self.ctx = ctx
        self.select_prob = select_prob
        self.generator = torch.Generator().manual_seed(seed)
        self.sources: dict[str, Encoded] = {}
        self.source_labels: dict[str, torch.Tensor | None] = {}
        self.source_task: dict[str, Any] = {}
        self.batches: dict[str, Batches] = {}
        tok = ctx.tokenizer
        max_length = ctx.config.max_length
        sources = data_sources(objectives, ctx.primary, ctx.tasks, domain=domain, out_of_domain=out_of_domain)
        for i, (data, source) in enumerate(sources.items()):
            if isinstance(source, tuple):  # unlabelled passages
                self.sources[data] = encode_texts(tok, source, max_length)
                self.source_labels[data] = None
                self.source_task[data] = None
            else:
                self.sources[data] = ctx.train_data[source.name]
                self.source_labels[data] = ctx.train_labels[source.name]
                self.source_task[data] = source
            self.batches[data] = Batches(len(self.sources[data]), ctx.config.batch_size, seed * 7919 + i)
        self.special = torch.tensor(sorted(set(tok.all_special_ids)), dtype=torch.long)
        vocab = len(tok)
        keep = torch.ones(vocab, dtype=torch.bool)
        keep[self.special[self.special < vocab]] = False
        self.vocabulary = keep.nonzero().squeeze(1)
        self.mask_id = tok.mask_token_id
        if self.mask_id is None and any(o.transform in ("mask", "bert_op") for o in objectives):
            raise AuxoptError("the tokenizer has no [MASK] token; drop the 'mask' and 'bert_op' transforms")
        encoder = ctx.model.encoder
        if any(o.output in ("denoise", "next_token") for o in objectives):
            embeddings = encoder.get_input_embeddings()
            if embeddings.num_embeddings < vocab:
                raise AuxoptError(
                    f"the encoder's {embeddings.num_embeddings} embeddings are fewer than the "
                    f"tokenizer's {vocab} tokens"
                )
        heads = getattr(ctx.model, "aang_heads", None)
        if heads is None:
            heads = nn.ModuleDict()
            ctx.model.aang_heads = heads  # trained by the run's optimiser (built after make_step)
        hidden_size = encoder.config.hidden_size
        eps = getattr(encoder.config, "layer_norm_eps", 1e-12)
        self.heads: dict[AuxObjective, nn.Module] = {}
        for obj in objectives:
            key = head_key(obj)
            if any(head_key(o) == key for o in self.heads):
                raise AuxoptError(
                    f"objectives {str(obj)!r} and another share the head name {key!r}; "
                    "rename a task so that its name differs by more than '.' vs '_'"
                )
            if key not in heads:
                if obj.output == "labels":
                    head = nn.Linear(hidden_size, self.source_task[obj.data].num_labels)
                else:
                    head = TiedLMHead(encoder.get_input_embeddings(), hidden_size, eps)
                heads[key] = head.to(ctx.device)
            self.heads[obj] = heads[key]
        if any(o.output == "next_token" and o.representation == "random_factorised" for o in objectives):
            if getattr(getattr(ctx.model.encoder, "embeddings", None), "position_embeddings", None) is None:
                raise AuxoptError(
                    "random-factorised next-token prediction needs an encoder with absolute "
                    "position embeddings (BERT-style); drop it from the space"
                )

    def _batch(self, data: str):
        index = self.batches[data].next()
        enc = self.sources[data].batch(index)
        labels = self.source_labels[data]
        return enc, (labels[index] if labels is not None else None)

    def _encode(self, ids, real, token_type_ids, representation, rank) -> torch.Tensor:
        ctx = self.ctx
        allowed = representation_mask(real, representation, rank)
        kwargs = {"input_ids": ids.to(ctx.device), "attention_mask": additive_mask(allowed).to(ctx.device)}
        if getattr(ctx.model.encoder.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids.to(ctx.device)
        return ctx.model.encoder(**kwargs).last_hidden_state

    def loss(self, obj: AuxObjective) -> tuple[torch.Tensor, int]:
        """The loss of ``obj`` on its next minibatch, and the minibatch size."""
        ctx, gen = self.ctx, self.generator
        enc, labels = self._batch(obj.data)
        ids, real = enc["input_ids"], enc["attention_mask"].bool()
        special = torch.isin(ids, self.special)
        selected = select_tokens(real, special, self.select_prob, gen)
        corrupted = apply_transform(
            ids, selected, obj.transform, mask_id=self.mask_id, vocabulary=self.vocabulary, generator=gen
        )
        n = ids.shape[0]
        with autocast(ctx.device, ctx.bf16):
            if obj.output == "labels":
                task = self.source_task[obj.data]
                pooled = ctx.model.pool(
                    corrupted.to(ctx.device), enc["attention_mask"].to(ctx.device), enc["token_type_ids"].to(ctx.device)
                )
                logits = self.heads[obj](ctx.model.dropout(pooled))
                return task_loss(task, logits, labels.to(ctx.device)), n
            order = rank = None
            if obj.representation == "random_factorised":
                order, rank = factorisation_order(real, gen)
            hidden = self._encode(corrupted, real, enc["token_type_ids"], obj.representation, rank)
            if obj.output == "denoise":
                rows, cols = selected.nonzero(as_tuple=True)
                targets = ids[rows, cols]
                h = hidden[rows.to(ctx.device), cols.to(ctx.device)]
            else:  # next_token
                target_pos, valid = next_token_targets(real, obj.representation, order, rank)
                pick = valid & (torch.rand(real.shape, generator=gen) < self.select_prob)
                empty = ~pick.any(dim=1) & valid.any(dim=1)
                if empty.any():
                    pick[empty] = valid[empty]
                rows, cols = pick.nonzero(as_tuple=True)
                tcols = target_pos[rows, cols]
                targets = ids[rows, tcols]
                h = hidden[rows.to(ctx.device), cols.to(ctx.device)]
                if obj.representation == "random_factorised":
                    h = h + ctx.model.encoder.embeddings.position_embeddings(tcols.to(ctx.device))
            logits = self.heads[obj](h)
        return F.cross_entropy(logits.float(), targets.to(ctx.device)), n

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "batches": {k: b.state_dict() for k, b in self.batches.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        for k, s in state["batches"].items():
            if k in self.batches:
                self.batches[k].load_state_dict(s)
