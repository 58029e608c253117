"""Text models: token ids [B, L] (padded with 0 at the end) -> logits [B, classes].

- `bow`: the mean of the token embeddings, then an MLP. Blind to order: "good but bad" = "bad but good".
- `textcnn`: 1-D convolutions of widths 2, 3 and 4 over the embeddings, max over time (Kim 2014).
- `rnn`/`gru`/`lstm`: a recurrent network over the embeddings (layers, hidden size, bidirectional,
  dropout between layers); the classifier reads the last layer's final state(s).

Padding never changes a prediction: each model trims the batch to its longest sentence, gives <pad> a zero
embedding, averages/maxes over real tokens only, and packs sequences for the RNNs, so a sentence gets the
same logits alone or in a batch padded to any length. The embedding layer is `model.embedding`: token
attributions (engine.explain.text) are taken there. Like the image models (engine.models), each names its head
(`head_name`) and its feature layers (`backbone_names`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from engine.text.vocab import PAD_ID, lengths

CNN_WIDTHS = (2, 3, 4)


class TextModel(nn.Module):
    """Common part: the embedding, the trimming and the real-token mask."""

    def __init__(self, vocab_size: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)

    @property
    def target_layer(self) -> nn.Module | None:
        return None  # no spatial feature map: Grad-CAM does not apply

    def embed(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embeddings [B, T, E] with pad positions zeroed, mask [B, T], lengths [B] on the CPU), T = longest."""
        if ids.is_floating_point():
            raise TypeError("text models take token ids (an integer tensor), got floats")
        n = lengths(ids)
        # embed first, then trim: the embedding layer's output keeps the input's shape, which attribution
        # methods that replace it (Integrated Gradients from a baseline of <pad>s) rely on
        width = int(n.max())
        emb, mask = self.embedding(ids)[:, :width], (ids != PAD_ID)[:, :width]
        # the pad embedding is zero already (padding_idx); masking again keeps replaced embedding outputs
        # (Integrated Gradients' path points) from leaking into pad positions
        return emb * mask.unsqueeze(-1), mask, n


class BagOfWords(TextModel):
    head_name = "fc2"
    backbone_names = ("embedding",)  # fc1 reads the mean embedding: it is the classifier's hidden layer

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64, hidden: int = 128,
                 dropout: float = 0.0):
        super().__init__(vocab_size, embed_dim)
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        emb, mask, n = self.embed(ids)
        mean = emb.sum(1) / n.to(emb.device, emb.dtype).unsqueeze(1)
        return self.fc2(self.dropout(self.relu(self.fc1(mean))))


class TextCNN(TextModel):
    head_name = "fc"
    backbone_names = ("embedding", "convs")

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64, hidden: int = 128,
                 dropout: float = 0.0):
        super().__init__(vocab_size, embed_dim)
        # full convolutions (padding width-1 each side): every window that touches a real token is computed,
        # and the zero padding they read equals the zeroed <pad> embeddings of a longer batch
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, hidden, w, padding=w - 1) for w in CNN_WIDTHS)
        self.relus = nn.ModuleList(nn.ReLU() for _ in CNN_WIDTHS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden * len(CNN_WIDTHS), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        emb, mask, n = self.embed(ids)
        x = emb.transpose(1, 2)  # [B, E, T]
        pooled = []
        for width, conv, relu in zip(CNN_WIDTHS, self.convs, self.relus):
            out = relu(conv(x))  # [B, H, T + width - 1]
            positions = torch.arange(out.shape[2], device=out.device)
            # output t reads tokens t-width+1..t: it touches a real token when t < length + width - 1
            valid = positions.unsqueeze(0) < (n.to(out.device) + width - 1).unsqueeze(1)
            pooled.append(out.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(2))
        return self.fc(self.dropout(torch.cat(pooled, 1)))


class TextRNN(TextModel):
    head_name = "fc"
    backbone_names = ("embedding", "rnn")

    def __init__(self, kind: str, vocab_size: int, num_classes: int, embed_dim: int = 64, hidden: int = 128,
                 depth: int = 1, bidirectional: bool = False, dropout: float = 0.0):
        super().__init__(vocab_size, embed_dim)
        cell = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind]
        self.rnn = cell(embed_dim, hidden, num_layers=depth, batch_first=True, bidirectional=bidirectional,
                        dropout=dropout if depth > 1 else 0.0)
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden * self.directions, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        emb, mask, n = self.embed(ids)
        packed = pack_padded_sequence(emb, n, batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        if isinstance(state, tuple):  # LSTM: (h, c)
            state = state[0]
        last = torch.cat(list(state[-self.directions:]), dim=1)  # the last layer's final state per direction
        return self.fc(self.dropout(last))


def build_text_model(name: str, *, vocab_size: int, num_classes: int, embed_dim: int = 64, hidden: int = 128,
                     depth: int = 1, bidirectional: bool = False, dropout: float = 0.0) -> TextModel:
    if vocab_size < 2:
        raise ValueError(f"a text model needs the vocabulary size (at least 2), got {vocab_size!r}")
    if name == "bow":
        return BagOfWords(vocab_size, num_classes, embed_dim, hidden, dropout)
    if name == "textcnn":
        return TextCNN(vocab_size, num_classes, embed_dim, hidden, dropout)
    if name in ("rnn", "gru", "lstm"):
        return TextRNN(name, vocab_size, num_classes, embed_dim, hidden, depth, bidirectional, dropout)
    raise ValueError(f"model={name!r}: text models are bow, textcnn, rnn, gru, lstm")
