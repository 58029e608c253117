"""Word-level tokenisation and the vocabulary, built from the training split only.

`tokenize` lowercases and splits words from punctuation ("Not good!" -> ["not", "good", "!"]), keeping
apostrophes inside words ("didn't"); at the character level it gives one token per character, a space being
SPACE ("▁"), so a model reads spelling (and words it never saw) at the price of ~5x longer sequences. No
external tokenizer, nothing downloaded.

A `Vocab` maps tokens to ids: PAD_ID 0 (`<pad>`, only ever at the end of a sequence), UNK_ID 1 (`<unk>`, any
token not in the vocabulary), then the training tokens by falling count (ties alphabetically, so the same data
gives the same ids), at most `max_size` entries in all, each seen at least `min_count` times.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
MAX_TOKENS = 400  # a longer text is cut: an IMDB review averages ~230 words, the synthetic ones ~15
MAX_CHARS = 1500  # the same at the character level
SPACE = "\u2581"  # the character-level token of a space: visible when tokens are shown one by one
LEVELS = ("word", "char")

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[^\sa-z0-9]", re.IGNORECASE)


def tokenize(text: str, level: str = "word") -> list[str]:
    """Lowercase word and punctuation tokens of `text` (at most MAX_TOKENS), or its characters (level "char",
    runs of white space as one SPACE, at most MAX_CHARS)."""
    if level == "char":
        return [SPACE if c == " " else c for c in " ".join(text.lower().split())][:MAX_CHARS]
    if level != "word":
        raise ValueError(f"text_level={level!r}: allowed values are {', '.join(LEVELS)}")
    return _TOKEN.findall(text.lower())[:MAX_TOKENS]


def detokenize(tokens: list[str], level: str = "word") -> str:
    """Tokens back to readable text: words joined by spaces, characters joined as they were."""
    if level == "char":
        return "".join(" " if t == SPACE else t for t in tokens)
    return " ".join(tokens)


def chars_of_words(words: list[str], relevant: tuple[bool, ...]) -> tuple[list[str], tuple[bool, ...]]:
    """Character tokens of a word-tokenised sentence, each character relevant when its word is."""
    chars: list[str] = []
    marks: list[bool] = []
    for i, (word, mark) in enumerate(zip(words, relevant)):
        if i:
            chars.append(SPACE)
            marks.append(False)
        chars.extend(word)
        marks.extend([mark] * len(word))
    return chars, tuple(marks)


class Vocab:
    """Token <-> id, with <pad> = 0 and <unk> = 1."""

    def __init__(self, tokens: Sequence[str]):
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError("a vocabulary starts with <pad> and <unk>")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.index: dict[str, int] = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], max_size: int = 20000, min_count: int = 1) -> "Vocab":
        """The vocabulary of tokenised training sentences (never the validation ones: that would leak)."""
        if max_size < 2:
            raise ValueError(f"vocab_size={max_size!r}: must be at least 2 (<pad> and <unk>)")
        counts = Counter(token for sentence in sentences for token in sentence)
        ranked = sorted((t for t, c in counts.items() if c >= min_count and t not in (PAD, UNK)),
                        key=lambda t: (-counts[t], t))
        return cls([PAD, UNK, *ranked[:max_size - 2]])

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.index.get(token, UNK_ID) for token in tokens]

    def encode(self, sentences: Sequence[Sequence[str]], length: int | None = None) -> torch.Tensor:
        """int64 [N, L] ids padded with PAD_ID at the end; L = the longest sentence (at least 1) or `length`.
        An empty sentence becomes one <unk> so every row has a length of at least 1."""
        rows = [self.ids(s) or [UNK_ID] for s in sentences]
        width = length or max((len(r) for r in rows), default=1)
        out = torch.full((len(rows), width), PAD_ID, dtype=torch.int64)
        for i, row in enumerate(rows):
            row = row[:width]
            out[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
        return out

    def decode(self, ids: torch.Tensor | Sequence[int]) -> list[str]:
        """The tokens of one row of ids, padding left out."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self.tokens[i] if 0 <= i < len(self.tokens) else UNK for i in values if i != PAD_ID]


def lengths(ids: torch.Tensor) -> torch.Tensor:
    """Real (unpadded) length of each row of [B, L] ids, at least 1, on the CPU (as packing wants it)."""
    return (ids != PAD_ID).sum(1).clamp_min(1).cpu()
