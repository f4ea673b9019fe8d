"""Transformers: the text classifier, the encoder-decoder seq2seq, and ViT (post-norm blocks)."""

from __future__ import annotations

import math

import torch
from torch import nn

NEG_INF = -1e9  # finite, so a fully masked row gives a uniform softmax rather than NaN


class MultiHeadAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"model width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(dim, dim) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, heads, T, C/heads)
        return x.reshape(x.shape[0], x.shape[1], self.num_heads, -1).transpose(1, 2)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        query, key, value = self._split(self.w_q(q)), self._split(self.w_k(kv)), self._split(self.w_v(kv))
        scores = query @ key.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, h, Tq, Tk)
        if mask is not None:  # mask broadcasts to (B, h, Tq, Tk); False = do not attend
            scores = scores.masked_fill(~mask, NEG_INF)
        out = self.dropout(torch.softmax(scores, dim=-1)) @ value  # (B, h, Tq, C/h)
        return self.w_o(out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__(nn.Linear(dim, hidden), act(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class EncoderBlock(nn.Module):
    """Self-attention + residual + LayerNorm, then FFN + residual + LayerNorm."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn, dropout, act)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention over the encoder, FFN; each + residual + LayerNorm."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attention = MultiHeadAttention(dim, heads, dropout)
        self.cross_attention = MultiHeadAttention(dim, heads, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, y: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        y = self.norm1(y + self.dropout(self.self_attention(y, y, tgt_mask)))
        y = self.norm2(y + self.dropout(self.cross_attention(y, memory, src_mask)))
        return self.norm3(y + self.dropout(self.ffn(y)))


def sinusoidal_positions(max_len: int, dim: int) -> torch.Tensor:
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(max_len, dim)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(position * div), torch.cos(position * div)
    return pe.unsqueeze(0)  # (1, max_len, dim)


class TransformerClassifier(nn.Module):
    """Embedding * sqrt(d) + sinusoidal positions, N encoder blocks, masked mean pooling, MLP head.

    Token id `pad_id` is padding: it is masked out of attention and of the mean.
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        self.dim, self.pad_id = cfg.d_model, cfg.pad_id
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        # std d^-0.5, so that embedding * sqrt(d) is ~1 like the sinusoids; with PyTorch's N(0, 1) default the
        # scaled embedding is sqrt(d) times larger and drowns out word order (as in Vaswani et al.'s setup)
        nn.init.normal_(self.embedding.weight, std=cfg.d_model ** -0.5)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_len, cfg.d_model), persistent=False)
        self.blocks = nn.ModuleList(EncoderBlock(cfg.d_model, cfg.num_heads, cfg.d_ff, cfg.dropout) for _ in range(cfg.num_layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model // 2), nn.ReLU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(cfg.d_model // 2, cfg.num_classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) int64 -> (B, classes)
        keep = tokens != self.pad_id  # (B, T)
        x = self.embedding(tokens) * math.sqrt(self.dim) + self.positions[:, : tokens.shape[1]]
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, keep[:, None, None, :])
        weights = keep.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)


class TransformerSeq2Seq(nn.Module):
    """Encoder-decoder Transformer: learned token and position embeddings, source padding mask,
    causal + padding target mask. forward(src, tgt_in) returns next-token logits (teacher forcing)."""

    def __init__(self, cfg) -> None:
        super().__init__()
        d = cfg.hidden
        self.scale, self.pad_id = math.sqrt(d), cfg.pad_id
        self.src_embedding, self.tgt_embedding = nn.Embedding(cfg.src_vocab, d), nn.Embedding(cfg.tgt_vocab, d)
        self.src_positions, self.tgt_positions = nn.Embedding(cfg.max_len, d), nn.Embedding(cfg.max_len, d)
        self.encoder = nn.ModuleList(EncoderBlock(d, cfg.num_heads, cfg.ffn, cfg.dropout) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(DecoderBlock(d, cfg.num_heads, cfg.ffn, cfg.dropout) for _ in range(cfg.dec_layers))
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(d, cfg.tgt_vocab)

    def _embed(self, tokens: torch.Tensor, table: nn.Embedding, positions: nn.Embedding) -> torch.Tensor:
        pos = torch.arange(tokens.shape[1], device=tokens.device).unsqueeze(0)  # (1, T)
        return self.dropout(table(tokens) * self.scale + positions(pos))

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        src_mask = (src != self.pad_id)[:, None, None, :]  # (B, 1, 1, S)
        memory = self._embed(src, self.src_embedding, self.src_positions)
        for block in self.encoder:
            memory = block(memory, src_mask)
        return memory, src_mask

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(tgt.shape[1], device=tgt.device)
        causal = pos[None, :] <= pos[:, None]  # (T, T): row attends to itself and earlier
        tgt_mask = (tgt != self.pad_id)[:, None, None, :] & causal  # (B, 1, T, T)
        y = self._embed(tgt, self.tgt_embedding, self.tgt_positions)
        for block in self.decoder:
            y = block(y, memory, tgt_mask, src_mask)
        return self.out(y)  # (B, T, tgt_vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        memory, src_mask = self.encode(src)
        return self.decode(tgt, memory, src_mask)

    @torch.no_grad()
    def generate(self, src: torch.Tensor, bos_id: int, max_len: int) -> torch.Tensor:
        """Greedy decoding: (B, S) -> (B, max_len) token ids, starting from bos_id."""
        memory, src_mask = self.encode(src)
        out = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        for _ in range(max_len):
            next_token = self.decode(out, memory, src_mask)[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, next_token], dim=1)
        return out[:, 1:]


class ViT(nn.Module):
    """Vision Transformer: conv patch embedding, class token, learned positions, encoder blocks
    (GELU MLP), LayerNorm, linear head on the class token."""

    def __init__(self, cfg) -> None:
        super().__init__()
        if cfg.input_size % cfg.patch_size:
            raise ValueError(f"input_size {cfg.input_size} is not a multiple of patch_size {cfg.patch_size}")
        num_patches = (cfg.input_size // cfg.patch_size) ** 2
        d = cfg.embed_dim
        self.patch_embedding = nn.Conv2d(cfg.in_channels, d, cfg.patch_size, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, d) * 0.02)
        ffn = int(d * cfg.mlp_ratio)
        self.blocks = nn.ModuleList(EncoderBlock(d, cfg.num_heads, ffn, cfg.dropout, nn.GELU) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.num_classes)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, classes)
        x = self.patch_embedding(x).flatten(2).transpose(1, 2)  # (B, patches, d)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])
