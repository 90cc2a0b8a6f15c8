"""auxopt's primary-task model as a transformers model: any encoder, mean pooling, one linear head.

This file is the whole architecture of a model that ``auxopt export`` writes. It imports only torch
and transformers, because it is also copied beside the weights as remote code (``config.json``'s
``auto_map``): a folder loads anywhere transformers does, with or without auxopt installed::

    from transformers import pipeline
    classify = pipeline("text-classification", model="FOLDER", trust_remote_code=True, truncation=True)
    classify("a sentence")                                       # [{"label": ..., "score": ...}]
    classify({"text": "a premise", "text_pair": "a hypothesis"})  # text-pair tasks

Where auxopt is installed, ``import auxopt.models.modeling_auxopt`` registers the classes with the
Auto classes, and ``trust_remote_code`` is not needed. ``truncation=True`` cuts inputs at the tokenizer's
``model_max_length``, the length the model was trained at, as training did.

The computation is exactly auxopt's :class:`~auxopt.models.heads.MultiTaskModel` for one head:
``logits = W · mean_{t : mask_t = 1} h_t + b`` over the encoder's last hidden states ``h``, with
dropout before the head in training. Token type ids reach the encoder only where its vocabulary of
them has more than one entry, as in training.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "auxopt"


class AuxoptConfig(PretrainedConfig):
    """An encoder's configuration (``encoder_config``, a dict with its ``model_type``), the pooling,
    and the head's dropout; ``num_labels``, ``id2label`` and ``problem_type`` as transformers has them."""

    model_type = MODEL_TYPE

    def __init__(
        self, encoder_config: dict | None = None, pooling: str = "mean", classifier_dropout: float = 0.1, **kwargs
    ):
        if pooling != "mean":
            raise ValueError(f"auxopt models pool with 'mean', not {pooling!r}")
        self.encoder_config = dict(encoder_config or {"model_type": "bert"})
        self.pooling = pooling
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)

    def encoder(self) -> PretrainedConfig:
        """The encoder's own configuration object."""
        fields = dict(self.encoder_config)
        return AutoConfig.for_model(fields.pop("model_type"), **fields)


class AuxoptForSequenceClassification(PreTrainedModel):
    """An encoder, mean pooling over the tokens its attention mask keeps, dropout and a linear head."""

    config_class = AuxoptConfig
    base_model_prefix = "auxopt"
    _no_split_modules: list[str] = []

    def __init__(self, config: AuxoptConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder())
        if getattr(self.encoder, "pooler", None) is not None:  # the encoder's own pooler is not used
            self.encoder.pooler = None
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(self.encoder.config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear) and module is self.classifier:
            module.weight.data.normal_(0.0, 0.02)
            if module.bias is not None:
                module.bias.data.zero_()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and getattr(self.encoder.config, "type_vocab_size", 0) > 1:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.config.problem_type == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits, labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)


def register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForSequenceClassification`` (and so ``pipeline``) know the
    architecture without remote code. Idempotent."""
    from transformers import AutoModelForSequenceClassification
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if MODEL_TYPE in CONFIG_MAPPING:
        return
    AutoConfig.register(MODEL_TYPE, AuxoptConfig)
    AutoModelForSequenceClassification.register(AuxoptConfig, AuxoptForSequenceClassification)


if __name__ == "auxopt.models.modeling_auxopt":  # imported from auxopt, not loaded as a folder's remote code
    register()
