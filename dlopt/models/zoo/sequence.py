"""Specs: rnn, lstm, bilstm, gru (sine regression), text_lstm, lstm_attention, seq2seq_gru."""

from __future__ import annotations

from dataclasses import dataclass

from dlopt.models.spec import BATCH, SEQ, ArchSpec, PruneMethod, Task, TensorSpec
from dlopt.models.zoo.table import CLASSIFIER, register


@dataclass(frozen=True)
class RNNConfig:
    cell: str = "rnn"  # rnn | lstm | gru
    input_size: int = 1  # one sine sample per step
    hidden_size: int = 50
    num_layers: int = 1
    dropout: float = 0.0  # between stacked layers and before the head
    bidirectional: bool = False
    output_size: int = 1  # the next value
    seq_len: int = 19  # the previous 19 samples


@dataclass(frozen=True)
class LSTMConfig(RNNConfig):
    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2


@dataclass(frozen=True)
class GRUConfig(LSTMConfig):
    cell: str = "gru"


@dataclass(frozen=True)
class BiLSTMConfig(RNNConfig):
    cell: str = "lstm"
    hidden_size: int = 64
    bidirectional: bool = True  # the head reads 2 * hidden


@dataclass(frozen=True)
class TextLSTMConfig:
    vocab_size: int = 10000
    embed_dim: int = 100
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.3
    num_classes: int = 2
    seq_len: int = 32  # example input length; any length works


@dataclass(frozen=True)
class LSTMAttentionConfig:
    vocab_size: int = 10000
    embed_dim: int = 128
    hidden_size: int = 256  # per direction: attention and head read 512
    dropout: float = 0.3
    num_classes: int = 5
    seq_len: int = 32


@dataclass(frozen=True)
class Seq2SeqGRUConfig:
    input_size: int = 16  # source features per step (one-hot tokens for the generated task)
    hidden_size: int = 128
    output_size: int = 16  # target vocabulary: logits per decoded step
    num_layers: int = 1
    max_length: int = 50  # greedy decoding steps at inference
    seq_len: int = 12  # example source length


REGRESSION_IO = {
    "inputs": (TensorSpec("series", (BATCH, SEQ, "input_size")),),
    "outputs": (TensorSpec("prediction", (BATCH, "output_size")),),
    "task": Task.REGRESSION, "dataset": "sine", "metric": "mse",
    "builder": "dlopt.models.nets.recurrent:RecurrentRegressor", "trainer": "regression",
}
TOKENS = (TensorSpec("tokens", (BATCH, SEQ), "int64", 0, "vocab_size"),)
LOGITS = (TensorSpec("logits", (BATCH, "num_classes")),)
TINY_RNN = {"hidden_size": 8}
UNSTRUCTURED_ONLY = frozenset({PruneMethod.UNSTRUCTURED})


def _no_structured(why: str) -> dict[str, str]:
    return {"prune:structured": f"structured pruning cannot resize its hidden size: {why}; unstructured (magnitude) "
                                "pruning applies"}


register(ArchSpec(name="rnn", summary="nn.RNN(1, 50) -> Linear on the last step: next sine value",
                  config=RNNConfig, tiny=TINY_RNN, source="000, 001, 002", **REGRESSION_IO))
register(ArchSpec(name="lstm", summary="2-layer LSTM(64, dropout 0.2) -> Dropout -> Linear on the last step",
                  config=LSTMConfig, tiny=TINY_RNN, source="000, 001, 003", **REGRESSION_IO))
register(ArchSpec(name="bilstm", summary="bidirectional LSTM(64) -> Linear(2*64, 1) on the last step",
                  config=BiLSTMConfig, tiny=TINY_RNN, source="000", **REGRESSION_IO,
                  prune_methods=UNSTRUCTURED_ONLY, limits=_no_structured(
                      "Torch-Pruning's graph tracing fails on the bidirectional output taken at the last step")))
register(ArchSpec(name="gru", summary="2-layer GRU(64, dropout 0.2) -> Dropout -> Linear on the last step",
                  config=GRUConfig, tiny=TINY_RNN, source="000", **REGRESSION_IO))

register(ArchSpec(
    name="text_lstm",
    summary="Embedding(10000, 100) -> 2-layer LSTM(256, dropout 0.3) -> last hidden -> Dropout -> Linear",
    builder="dlopt.models.nets.recurrent:TextLSTM", config=TextLSTMConfig,
    tiny={"vocab_size": 50, "embed_dim": 8, "hidden_size": 8},
    inputs=TOKENS, outputs=LOGITS,
    **CLASSIFIER, dataset="text", source="000",
    prune_methods=UNSTRUCTURED_ONLY, limits=_no_structured(
        "the classifier reads the LSTM's final hidden state h_n, a path Torch-Pruning's graph does not trace"),
))

register(ArchSpec(
    name="lstm_attention",
    summary="Embedding(10000, 128) -> BiLSTM(256) -> additive attention pooling -> Dropout -> Linear(512, 5)",
    builder="dlopt.models.nets.recurrent:LSTMAttention", config=LSTMAttentionConfig,
    tiny={"vocab_size": 50, "embed_dim": 8, "hidden_size": 8},
    inputs=TOKENS, outputs=LOGITS,
    **CLASSIFIER, dataset="text", source="002",
    prune_methods=UNSTRUCTURED_ONLY, limits=_no_structured(
        "Torch-Pruning couples the one-channel attention scores (broadcast over time) with the LSTM features"),
))

register(ArchSpec(
    name="seq2seq_gru", trainer="seq2seq",
    summary="GRU encoder + GRU decoder + Linear; teacher forcing in training, greedy decoding (50 steps) at inference",
    builder="dlopt.models.nets.recurrent:Seq2SeqGRU", config=Seq2SeqGRUConfig,
    tiny={"input_size": 6, "hidden_size": 8, "output_size": 6, "max_length": 5},
    inputs=(TensorSpec("src", (BATCH, SEQ, "input_size")),),
    outputs=(TensorSpec("logits", (BATCH, "max_length", "output_size")),),
    task=Task.SEQ2SEQ, dataset="seq2seq", metric="exact_match", source="000",
    torchscript="script",  # the greedy decoding loop stays a loop (a trace would unroll max_length steps)
    prune_methods=UNSTRUCTURED_ONLY, limits=_no_structured(
        "the encoder's final hidden state initialises the decoder, a coupling Torch-Pruning's graph does not trace"),
))
