"""Character-level language models: character ids [B, T] -> logits [B, T, V], the next character of every position.

One family per idea, as makemore builds them up:
- `bigram`: a learned V x V table, the next character from the last one alone (the counting baseline).
- `mlp`: Bengio et al. 2003: embed the last `context` characters, concatenate, hidden layers, logits.
- `rnn`/`gru`/`lstm`: a recurrent network over the embeddings (its state carries the whole prefix).
- `transformer`: the smallest faithful GPT (nanoGPT's model.py): token and learned position embeddings, `depth`
  blocks of LayerNorm -> causal self-attention -> LayerNorm -> MLP with residuals, a final LayerNorm and logits.

Every model is causal: position t reads positions <= t only, so padding at a row's end never changes an earlier
prediction, and sampling feeds a model its own output. Each has `embedding` (the token embedding, where context
attributions are taken) and `window` (how many characters it can read: 1, `context`, `block_size`, or None for
all). Final layers start small so the loss at initialisation is close to ln V (Karpathy's "init well").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def _small(layer: nn.Linear, scale: float = 0.1) -> nn.Linear:
    with torch.no_grad():
        layer.weight.mul_(scale)
        layer.bias.zero_()
    return layer


class Bigram(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, vocab_size)  # row = the last character, columns = next's logits
        nn.init.zeros_(self.embedding.weight)  # uniform at init: loss ln V exactly
        self.window = 1
        # its one table is its head (engine.transfer's rule: freeze=backbone freezes nothing here)
        self.head_name, self.backbone_names = "embedding", ()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)


class CharMLP(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, depth: int, context: int, activation: str,
                 dropout: float):
        super().__init__()
        self.window = context
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        layers: list[nn.Module] = []
        width = context * embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        layers += [nn.Dropout(dropout), _small(nn.Linear(width, vocab_size))]
        self.net = nn.Sequential(*layers)
        self.head_name = f"net.{len(layers) - 1}"  # the classifier of the next character (engine.transfer)
        self.backbone_names = ("embedding",) + tuple(f"net.{i}" for i, layer in enumerate(layers[:-1])
                                                     if isinstance(layer, nn.Linear))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # the window of each position: the `context` characters ending there, the boundary before the start
        windows = F.pad(ids, (self.window - 1, 0), value=0).unfold(1, self.window, 1)  # [B, T, context]
        emb = self.embedding(windows)  # [B, T, context, E]
        return self.net(emb.flatten(2))


class CharRNN(nn.Module):
    def __init__(self, kind: str, vocab_size: int, embed_dim: int, hidden: int, depth: int, dropout: float):
        super().__init__()
        self.window = None
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        cell = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind]
        self.rnn = cell(embed_dim, hidden, num_layers=depth, batch_first=True, dropout=dropout if depth > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.fc = _small(nn.Linear(hidden, vocab_size))
        self.head_name, self.backbone_names = "fc", ("embedding", "rnn")  # engine.transfer's rule

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embedding(ids))
        return self.fc(self.dropout(out))


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions <= t. With `keep_attention` set, the
    weights [B, heads, T, T] of the last forward are kept in `attention` (computed explicitly; otherwise the fused
    kernel computes the same thing faster)."""

    def __init__(self, embed_dim: int, heads: int, block_size: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.c_attn = nn.Linear(embed_dim, 3 * embed_dim)
        self.c_proj = nn.Linear(embed_dim, embed_dim)
        self.resid_dropout = nn.Dropout(dropout)
        self.register_buffer("causal", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool)),
                             persistent=False)
        self.keep_attention = False
        self.attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (part.view(b, t, self.heads, c // self.heads).transpose(1, 2)
                   for part in self.c_attn(x).split(c, dim=2))
        if self.keep_attention:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
            weights = scores.masked_fill(~self.causal[:t, :t], float("-inf")).softmax(-1)
            self.attention = weights.detach()
            y = F.dropout(weights, self.dropout, self.training) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                               is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)))


class Block(nn.Module):
    def __init__(self, embed_dim: int, heads: int, block_size: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(embed_dim)
        self.attn = CausalSelfAttention(embed_dim, heads, block_size, dropout)
        self.ln_2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, 4 * embed_dim), nn.GELU(), nn.Linear(4 * embed_dim, embed_dim),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, depth: int, heads: int, block_size: int, dropout: float):
        super().__init__()
        self.window = block_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)  # nanoGPT's wte
        self.positions = nn.Embedding(block_size, embed_dim)  # wpe: learned positions
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(embed_dim, heads, block_size, dropout) for _ in range(depth))
        self.ln_f = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, vocab_size)
        self.head_name, self.backbone_names = "head", ("embedding", "positions", "blocks")  # engine.transfer's rule
        for module in self.modules():  # GPT-2's initialisation
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.window:
            raise ValueError(f"the transformer reads at most block_size={self.window} characters, got {t}")
        x = self.drop(self.embedding(ids) + self.positions(torch.arange(t, device=ids.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def build_char_model(name: str, *, vocab_size: int, embed_dim: int = 64, hidden: int = 128, depth: int = 2,
                     context: int = 3, block_size: int = 32, heads: int = 4, activation: str = "relu",
                     dropout: float = 0.0) -> nn.Module:
    if vocab_size < 2:
        raise ValueError(f"a character model needs the vocabulary size (at least 2), got {vocab_size!r}")
    if name == "bigram":
        return Bigram(vocab_size)
    if name == "mlp":
        return CharMLP(vocab_size, embed_dim, hidden, depth, context, activation, dropout)
    if name in ("rnn", "gru", "lstm"):
        return CharRNN(name, vocab_size, embed_dim, hidden, depth, dropout)
    if name == "transformer":
        if embed_dim % heads:
            raise ValueError(f"heads={heads}: embed_dim={embed_dim} must be a multiple of it")
        return Transformer(vocab_size, embed_dim, depth, heads, block_size, dropout)
    raise ValueError(f"model={name!r}: character models are bigram, mlp, rnn, gru, lstm, transformer")
