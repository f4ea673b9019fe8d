"""Recurrent models: sine-wave regressors, text classifiers, and the GRU seq2seq."""

from __future__ import annotations

import torch
from torch import nn

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentRegressor(nn.Module):
    """nn.RNN / LSTM / GRU (optionally bidirectional) -> Dropout -> Linear on the last step."""

    def __init__(self, cfg) -> None:
        super().__init__()
        if cfg.cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cfg.cell!r}")
        dropout = cfg.dropout if cfg.num_layers > 1 else 0.0  # nn.RNN ignores (and warns on) dropout for 1 layer
        self.rnn = _CELLS[cfg.cell](cfg.input_size, cfg.hidden_size, cfg.num_layers, batch_first=True,
                                    dropout=dropout, bidirectional=cfg.bidirectional)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size * (2 if cfg.bidirectional else 1), cfg.output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, out)
        out, _ = self.rnn(x)  # (B, T, H * directions)
        return self.head(self.dropout(out[:, -1]))


class TextLSTM(nn.Module):
    """Embedding -> multi-layer LSTM -> last layer's final hidden state -> Dropout -> Linear."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden_size, cfg.num_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, cfg.num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) int64 -> (B, classes)
        _, (h_n, _) = self.lstm(self.embedding(tokens))  # h_n: (layers, B, H)
        return self.head(self.dropout(h_n[-1]))


class LSTMAttention(nn.Module):
    """Embedding -> BiLSTM -> additive attention pooling over time -> Dropout -> Linear."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden_size, batch_first=True, bidirectional=True)
        self.attention = nn.Linear(2 * cfg.hidden_size, 1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden_size, cfg.num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(tokens))  # (B, T, 2H)
        weights = torch.softmax(self.attention(out), dim=1)  # (B, T, 1), softmax over time
        pooled = (weights * out).sum(dim=1)  # (B, 2H)
        return self.head(self.dropout(pooled))


class Seq2SeqGRU(nn.Module):
    """GRU encoder, GRU decoder, Linear projection to output_size logits.

    forward(src) decodes greedily for max_length steps, feeding back the one-hot of each step's
    argmax (a zero vector starts). teacher_forcing(src, tgt_in) is the training path.
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        self.max_length = cfg.max_length
        self.encoder = nn.GRU(cfg.input_size, cfg.hidden_size, cfg.num_layers, batch_first=True)
        self.decoder = nn.GRU(cfg.output_size, cfg.hidden_size, cfg.num_layers, batch_first=True)
        self.projection = nn.Linear(cfg.hidden_size, cfg.output_size)

    def teacher_forcing(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        _, hidden = self.encoder(src)  # (layers, B, H)
        out, _ = self.decoder(tgt_in, hidden)  # (B, T, H)
        return self.projection(out)  # (B, T, output_size)

    def forward(self, src: torch.Tensor) -> torch.Tensor:  # (B, S, F) -> (B, max_length, output_size)
        _, hidden = self.encoder(src)
        step = torch.zeros(src.shape[0], 1, self.projection.out_features, dtype=src.dtype, device=src.device)
        outputs: list[torch.Tensor] = []
        for _step in range(self.max_length):  # not `_`: TorchScript types it, and `_` above is a tensor
            out, hidden = self.decoder(step, hidden)
            logits = self.projection(out)  # (B, 1, output_size)
            outputs.append(logits)
            step = (logits == logits.amax(dim=-1, keepdim=True)).to(src.dtype)  # one-hot of the argmax
        return torch.cat(outputs, dim=1)
