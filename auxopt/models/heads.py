"""Task heads on a shared encoder."""

from __future__ import annotations

import fnmatch

import torch
from torch import nn

from auxopt.tasks.task import Task


class MultiTaskModel(nn.Module):
    """A shared encoder, mean pooling over real tokens, and one linear head per head name.

    Classification heads output one logit per class; regression heads a single value. Tasks with the
    same :attr:`Task.head` share a head (they must agree on the number of outputs).
    """

    def __init__(self, encoder: nn.Module, hidden_size: int, tasks: list[Task], dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        sizes: dict[str, int] = {}
        for task in tasks:
            size = sizes.setdefault(task.head_name, task.num_labels)
            if size != task.num_labels:
                from auxopt.errors import AuxoptError

                raise AuxoptError(
                    f"task {task.name!r} shares head {task.head_name!r} but has {task.num_labels} "
                    f"outputs where the head has {size}"
                )
        self.heads = nn.ModuleDict({name: nn.Linear(hidden_size, n) for name, n in sizes.items()})

    def pool(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and getattr(self.encoder.config, "type_vocab_size", 0) > 1:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    def forward(self, head: str, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        pooled = self.pool(input_ids, attention_mask, token_type_ids)
        return self.heads[head](self.dropout(pooled))


def select_parameters(
    model: torch.nn.Module, patterns=("encoder",), *, owner: str = "GradientDecomposer"
) -> list[tuple[str, torch.nn.Parameter]]:
    """The shared parameters: the trainable non-head parameters whose names match any pattern
    (exact name, a dotted prefix such as ``"encoder"`` or ``"encoder.encoder.layer.5"``, or an
    ``fnmatch`` glob) and no ``"!"`` pattern (the same rules: ``"!*word_embeddings*"`` drops the
    word-embedding matrix). The one rule ATTITTUD, AANG's alignment and the Jacobian-descent
    baselines use; ``owner`` names the caller in the error."""
    patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("heads.")]

    def matches(name: str, pats) -> bool:
        return any(
            name == pat or name.startswith(pat.rstrip(".") + ".") or fnmatch.fnmatchcase(name, pat) for pat in pats
        )

    chosen = [(n, p) for n, p in named if matches(n, include) and not matches(n, exclude)]
    if not chosen:
        examples = ", ".join(n for n, _ in named[:3])
        from auxopt.errors import AuxoptError

        raise AuxoptError(
            f"{owner}: params {patterns!r} match no shared parameter; give a name prefix or "
            f"glob such as 'encoder' or 'encoder.encoder.layer.*' (names look like: {examples}, …)"
        )
    return chosen
