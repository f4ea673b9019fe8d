"""Specs: transformer_classifier, transformer_seq2seq, bert_classifier."""

from __future__ import annotations

from dataclasses import dataclass

from dlopt.models.spec import BATCH, SEQ, ArchSpec, QuantMethod, Task, TensorSpec
from dlopt.models.zoo.table import CLASSIFIER, register


@dataclass(frozen=True)
class TransformerClassifierConfig:
    vocab_size: int = 10000
    d_model: int = 512
    num_heads: int = 8
    num_layers: int = 6
    d_ff: int = 2048
    num_classes: int = 2
    max_len: int = 512  # longest sequence the positional table covers
    dropout: float = 0.1
    pad_id: int = 0  # padding token: masked from attention and pooling
    seq_len: int = 32  # example input length


@dataclass(frozen=True)
class TransformerSeq2SeqConfig:
    src_vocab: int = 1000
    tgt_vocab: int = 1000
    hidden: int = 256
    enc_layers: int = 3
    dec_layers: int = 3
    num_heads: int = 8
    ffn: int = 512
    dropout: float = 0.1
    max_len: int = 100  # learned position table size
    pad_id: int = 0
    seq_len: int = 16


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522  # bert-base's WordPiece vocabulary size; weights are random
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_len: int = 512
    num_classes: int = 2
    seq_len: int = 32


register(ArchSpec(
    name="transformer_classifier",
    train_defaults={"d_model": 128, "num_heads": 4, "num_layers": 2, "d_ff": 256},  # CPU-sized for training
    summary="Embedding*sqrt(d) + sinusoidal positions, 6 post-norm blocks (d 512, 8 heads, FFN 2048), mean pool",
    builder="dlopt.models.nets.transformer:TransformerClassifier", config=TransformerClassifierConfig,
    tiny={"vocab_size": 50, "d_model": 16, "num_heads": 2, "num_layers": 1, "d_ff": 32, "max_len": 64},
    inputs=(TensorSpec("tokens", (BATCH, SEQ), "int64", 1, "vocab_size"),),  # 0 is padding
    outputs=(TensorSpec("logits", (BATCH, "num_classes")),),
    **CLASSIFIER, dataset="text", source="000, 002",
))

register(ArchSpec(
    name="transformer_seq2seq", trainer="seq2seq",
    train_defaults={"hidden": 128, "enc_layers": 2, "dec_layers": 2, "num_heads": 4, "ffn": 256},  # CPU-sized
    summary="encoder-decoder Transformer: hid 256, 3+3 layers, 8 heads, FFN 512, padding and causal masks",
    builder="dlopt.models.nets.transformer:TransformerSeq2Seq", config=TransformerSeq2SeqConfig,
    tiny={"src_vocab": 20, "tgt_vocab": 20, "hidden": 16, "enc_layers": 1, "dec_layers": 1, "num_heads": 2, "ffn": 32,
          "max_len": 32},
    inputs=(
        TensorSpec("src", (BATCH, SEQ), "int64", 1, "src_vocab"),
        TensorSpec("tgt", (BATCH, SEQ), "int64", 1, "tgt_vocab"),
    ),
    outputs=(TensorSpec("logits", (BATCH, SEQ, "tgt_vocab")),),
    task=Task.SEQ2SEQ, dataset="seq2seq", metric="exact_match", source="004",
    quant_methods=frozenset(QuantMethod) - {QuantMethod.STATIC},
    limits={"quantize:static": "static int8 calibrates on (src, tgt) pairs, and the decoder input (the shifted target) "
                               "is not in the data samples; dynamic int8 needs no calibration"},
))

register(ArchSpec(
    name="bert_classifier",
    train_defaults={"hidden_size": 128, "num_layers": 2, "num_heads": 4, "intermediate_size": 256},  # CPU-sized
    summary="BERT encoder (Hugging Face, small random-weight config) with a Linear classifier on the pooled output",
    builder="dlopt.models.nets.bert:BertClassifier", config=BertConfig,
    tiny={"vocab_size": 50, "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32, "max_len": 64},
    inputs=(
        TensorSpec("input_ids", (BATCH, SEQ), "int64", 1, "vocab_size"),
        TensorSpec("attention_mask", (BATCH, SEQ), "int64", 1, 2),  # all tokens attended
    ),
    outputs=(TensorSpec("logits", (BATCH, "num_classes")),),
    **CLASSIFIER, dataset="text", source="001", extra="hf",
))
