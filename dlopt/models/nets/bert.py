"""BERT classifier through Hugging Face transformers (optional extra), random weights, small config."""

from __future__ import annotations

import torch
from torch import nn

from dlopt.core.errors import MissingDependencyError

INSTALL_HINT = "bert_classifier needs Hugging Face transformers: pip install 'dlopt[hf]'"


class BertClassifier(nn.Module):
    """BertModel -> pooled output -> Dropout -> Linear (BertForSequenceClassification)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        try:
            from transformers import BertConfig, BertForSequenceClassification
        except ImportError:
            raise MissingDependencyError(INSTALL_HINT) from None
        config = BertConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.max_len, num_labels=cfg.num_classes,
            attn_implementation="eager",  # plain matmul attention: exports and verifies everywhere
        )
        self.bert = BertForSequenceClassification(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, classes)
