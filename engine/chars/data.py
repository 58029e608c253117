"""A character dataset as a split of character ids, each position labelled with the character that follows it.

The vocabulary is built from the training split: id 0 is the boundary token (a document's start and its end, as
makemore's "."; never a character of the text, so a text full of dots keeps them), then the training characters,
the most frequent first (at most `vocab_size`, each seen `vocab_min_count` times; characters left out are dropped
from the text and counted in the notes). Names train one per row: `x` = boundary + name, `y` = name + boundary,
padded with the boundary in `x` and IGNORE in `y` (no loss there; the models are causal, so padding at the end
never changes an earlier prediction). Long text (reviews, a text file) is packed: documents joined by the
boundary, cut into chunks of `block_size` characters. The split is the data seed's, as for every dataset: by
document (names, reviews: a held-out name is one the model never saw), or by chunk for a single text file.

`baselines` are the losses of counting models fitted on the training split and scored on the validation one
(nats per character): uniform (ln V), unigram and bigram (add-one smoothing); drawn as reference lines.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.chars.corpus import PADDED, read_names, read_reviews, read_text_file
from engine.datasets import DatasetUnavailable, dataset_info

BOUNDARY_ID = 0
BOUNDARY_LABEL = "·"  # how the boundary token is shown (heat maps, attention axes)
IGNORE = -100  # the label of padding positions: F.cross_entropy's default ignore_index
TEXT_SAMPLE_CHARS = 200  # a sample of a text file (no document end) stops after this many characters


@dataclass(frozen=True)
class CharOptions:
    """The config fields that shape a character dataset (part of the split key)."""

    names_list: str = "first"
    block_size: int = 32
    vocab_size: int = 20000
    min_count: int = 1

    @classmethod
    def from_config(cls, config) -> "CharOptions":
        return cls(config.names_list, config.block_size, config.vocab_size, config.vocab_min_count)


class CharVocab:
    """Characters <-> ids; id 0 is the boundary token."""

    def __init__(self, chars: tuple[str, ...]):
        self.chars = tuple(chars)
        self.index = {c: i + 1 for i, c in enumerate(self.chars)}

    @classmethod
    def build(cls, docs: list[str], max_size: int = 20000, min_count: int = 1) -> "CharVocab":
        counts = Counter(c for doc in docs for c in doc)
        ranked = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
        return cls(tuple(sorted(ranked[:max(1, max_size - 1)])))

    def __len__(self) -> int:
        return len(self.chars) + 1

    @property
    def tokens(self) -> tuple[str, ...]:
        """Every id's label, boundary first (the "classes" of next-character prediction)."""
        return (BOUNDARY_LABEL,) + self.chars

    def unknown(self, text: str) -> list[str]:
        """The characters of `text` the vocabulary does not have, each once, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.index))

    def encode(self, text: str) -> list[int]:
        """The ids of `text`; ValueError naming the characters the vocabulary lacks."""
        missing = self.unknown(text)
        if missing:
            shown = ", ".join(repr(c) for c in missing[:10])
            raise ValueError(f"{shown} {'is' if len(missing) == 1 else 'are'} not in the run's vocabulary of "
                             f"{len(self.chars)} characters ({_alphabet(self.chars)})")
        return [self.index[c] for c in text]

    def decode(self, ids) -> str:
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return "".join(self.chars[i - 1] for i in values if 0 < i <= len(self.chars))


def _alphabet(chars: tuple[str, ...]) -> str:
    shown = "".join(c if c.isprintable() and c != " " else {" ": "␣", "\n": "⏎"}.get(c, "?") for c in chars)
    return shown if len(shown) <= 60 else shown[:57] + "..."


@dataclass
class CharExtras:
    """What a character split carries besides the ids."""

    vocab: CharVocab
    padded: bool  # one document per row (names); else packed chunks
    train_docs: frozenset[str]  # the training documents (to tell a new sample from a memorised one)
    val_docs: frozenset[str]  # held-out documents (a sample that is one is "real": a name the model never saw)
    max_chars: int  # a sample stops after this many characters if it has not ended
    block_size: int
    baselines: dict[str, float] = field(default_factory=dict)  # uniform, unigram, bigram: nats per character
    notes: list[str] = field(default_factory=list)
    name: str = ""  # the dataset


@dataclass
class CharSplit:
    info: object  # DatasetInfo with size = vocabulary size and classes = the vocabulary's labels
    train_x: torch.Tensor  # int64 [N, T] character ids
    train_y: torch.Tensor  # int64 [N, T] the next character of each position (IGNORE on padding)
    val_x: torch.Tensor
    val_y: torch.Tensor
    extras: CharExtras


def _documents(name: str, options: CharOptions, seed: int, data_dir: str | None) -> list[str]:
    if name == "names":
        return list(read_names(options.names_list))
    if name == "reviews":
        return list(read_reviews(seed))
    if name == "text_file":
        from engine.paths import check_data_dir

        if not data_dir:
            raise DatasetUnavailable("text_file reads your text: upload it on the Train page (or set the data folder "
                                     "to its path)")
        return [read_text_file(Path(check_data_dir(data_dir)))]
    raise ValueError(f"{name} is not a character dataset")


def _rows(docs: list[str], vocab: CharVocab) -> tuple[torch.Tensor, torch.Tensor]:
    """One document per row: x = boundary + doc, y = doc + boundary, padded."""
    width = max(len(d) for d in docs) + 1
    x = torch.full((len(docs), width), BOUNDARY_ID, dtype=torch.int64)
    y = torch.full((len(docs), width), IGNORE, dtype=torch.int64)
    for i, doc in enumerate(docs):
        ids = [vocab.index[c] for c in doc]
        x[i, 1:len(ids) + 1] = torch.tensor(ids, dtype=torch.int64)
        y[i, :len(ids) + 1] = torch.tensor(ids + [BOUNDARY_ID], dtype=torch.int64)
    return x, y


def _chunks(docs: list[str], vocab: CharVocab, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Documents joined by the boundary, cut into chunks of `block` characters (the last partial one dropped)."""
    stream: list[int] = []
    for doc in docs:
        stream.append(BOUNDARY_ID)
        stream.extend(vocab.index[c] for c in doc)
    stream.append(BOUNDARY_ID)
    ids = torch.tensor(stream, dtype=torch.int64)
    n = max(0, (len(ids) - 1) // block)
    return ids[:n * block].view(n, block), ids[1:n * block + 1].view(n, block)


def baselines(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor,
              vocab_size: int) -> dict[str, float]:
    """Validation loss (nats per character) of the uniform guess and of unigram/bigram counts of the training split."""
    def pairs(x, y):
        keep = y != IGNORE
        return x[keep], y[keep]

    tx, ty = pairs(train_x, train_y)
    vx, vy = pairs(val_x, val_y)
    unigram = torch.bincount(ty, minlength=vocab_size).double() + 1
    unigram = unigram / unigram.sum()
    bigram = torch.ones(vocab_size, vocab_size, dtype=torch.float64)
    bigram.index_put_((tx, ty), torch.ones(len(tx), dtype=torch.float64), accumulate=True)
    bigram = bigram / bigram.sum(1, keepdim=True)
    return {"uniform": math.log(vocab_size), "unigram": float(-unigram[vy].log().mean()),
            "bigram": float(-bigram[vx, vy].log().mean())}


def load_char_dataset(name: str, *, seed: int, val_fraction: float, data_dir: str | None, limit: int,
                      options: CharOptions) -> CharSplit:
    """The split of a character dataset (see the module docstring)."""
    docs = [d for d in _documents(name, options, seed, data_dir) if d]
    padded = name in PADDED
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    by_document = len(docs) >= 10
    if by_document:
        order = rng.permutation(len(docs))
        n_val = max(1, round(len(docs) * val_fraction))
        val_docs, train_docs = [docs[i] for i in order[:n_val]], [docs[i] for i in order[n_val:]]
        if limit and limit < len(train_docs) and padded:
            train_docs = train_docs[:limit]
    else:
        train_docs = val_docs = docs
    vocab = CharVocab.build(train_docs, options.vocab_size, options.min_count)
    dropped = sum(1 for doc in docs for c in doc if c not in vocab.index)
    if dropped:
        notes.append(f"{dropped:,} characters outside the vocabulary of {len(vocab.chars)} were left out")
        train_docs = ["".join(c for c in d if c in vocab.index) for d in train_docs]
        val_docs = ["".join(c for c in d if c in vocab.index) for d in val_docs]
    if padded:
        train_x, train_y = _rows(train_docs, vocab)
        val_x, val_y = _rows(val_docs, vocab)
    elif by_document:
        train_x, train_y = _chunks(train_docs, vocab, options.block_size)
        val_x, val_y = _chunks(val_docs, vocab, options.block_size)
    else:  # one text: its chunks are split, each chunk a held-out stretch of the text or a training one
        x, y = _chunks(docs if not dropped else train_docs, vocab, options.block_size)
        if len(x) < 2:
            raise DatasetUnavailable(f"the text has {sum(map(len, docs)):,} characters: too short to split into "
                                     f"chunks of block_size={options.block_size}; give a longer text or a smaller "
                                     "block size")
        order = torch.from_numpy(rng.permutation(len(x)))
        n_val = max(1, round(len(x) * val_fraction))
        val_x, val_y, train_x, train_y = x[order[:n_val]], y[order[:n_val]], x[order[n_val:]], y[order[n_val:]]
    if limit and not padded and limit < len(train_x):
        train_x, train_y = train_x[:limit], train_y[:limit]
    if len(train_x) == 0 or len(val_x) == 0:
        raise DatasetUnavailable(f"{name}: too little text for a training and a validation split")
    longest = max((len(d) for d in train_docs), default=TEXT_SAMPLE_CHARS)
    max_chars = min(2 * longest, 400) if by_document else TEXT_SAMPLE_CHARS
    extras = CharExtras(vocab, padded, frozenset(train_docs) if by_document else frozenset(),
                        frozenset(val_docs) if by_document else frozenset(), max_chars, options.block_size,
                        baselines(train_x, train_y, val_x, val_y, len(vocab)), notes, name)
    info = dataclasses.replace(dataset_info(name), size=len(vocab), classes=vocab.tokens)
    return CharSplit(info, train_x, train_y, val_x, val_y, extras)
