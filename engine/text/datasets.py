"""Text datasets as a `DatasetSplit`: token ids in place of images, plus the vocabulary and, for `sentiment`,
the ground-truth relevance and the negation/contrast subset of every validation sentence.

`load_text_dataset` is what `engine.data.loading.load_dataset` calls for a text dataset, so training, the
evaluation report, the Run report and the Explain page all see the same split and the same vocabulary (built
from the training split only, so validation words the training data never had are `<unk>`, as in real use).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from engine.split import stratified_split
from engine.datasets import SENTIMENT_COUNT, DatasetUnavailable, dataset_info
from engine.text.corpus import CorpusOptions, generate_corpus
from engine.text.readers import TextData, read_ag_news, read_csv, read_imdb, read_sst2
from engine.text.vocab import Vocab, chars_of_words, tokenize

READERS = {"imdb": read_imdb, "sst2": read_sst2, "ag_news": read_ag_news}


@dataclass(frozen=True)
class TextOptions:
    """The config fields that shape a text dataset (part of the split key: they change the data)."""

    negation: float = 0.35
    contrast: float = 0.3
    filler: int = 3
    vocab_size: int = 20000
    min_count: int = 1
    text_column: str = ""
    label_column: str = ""
    level: str = "word"  # word | char tokens

    @classmethod
    def from_config(cls, config) -> "TextOptions":
        return cls(config.text_negation, config.text_contrast, config.text_filler, config.vocab_size,
                   config.vocab_min_count, config.text_column, config.label_column, config.text_level)


@dataclass
class TextExtras:
    """What a text split carries besides token ids."""

    vocab: Vocab
    val_tokens: list[list[str]]  # validation sentences as tokens (before <unk> mapping), for display
    val_relevance: list[tuple[bool, ...]] | None  # sentiment: per token, whether it decides the label
    val_hard: torch.Tensor | None  # sentiment: bool [M], the sentence is negated or a contrast
    notes: list[str]

    def val_metrics(self, model: torch.nn.Module, val_x: torch.Tensor, val_y: torch.Tensor) -> dict[str, float]:
        """What the split adds to validation (`DatasetSplit.extra_val_metrics`): the subset accuracies where the
        ground truth marks the negation/contrast sentences (sentiment), nothing for the other corpora."""
        return subset_accuracy(model, val_x, val_y, self.val_hard) if self.val_hard is not None else {}


@lru_cache(maxsize=4)
def _sentiment(seed: int, negation: float, contrast: float, filler: int):
    return generate_corpus(SENTIMENT_COUNT, seed=seed, options=CorpusOptions(negation, contrast, filler))


def _read(name: str, data_dir: str | None, options: TextOptions) -> TextData:
    from engine.paths import check_data_dir, data_dir as default_root

    if name == "text_csv":
        if not data_dir:
            raise DatasetUnavailable("text_csv reads your CSV file: set the data folder to its path (or upload it "
                                     "on the Train page)")
        return read_csv(check_data_dir(data_dir), options.text_column, options.label_column)
    root = check_data_dir(data_dir) if data_dir else Path(default_root())
    return READERS[name](root)


@dataclass
class TextSplit:
    """A text dataset's split: what engine.data.loading turns into its DatasetSplit (which it imports, not us)."""

    info: object  # DatasetInfo with size = vocabulary size and the classes
    train_x: torch.Tensor  # int64 [N, L] token ids
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    extras: TextExtras


def load_text_dataset(name: str, *, seed: int, val_fraction: float, data_dir: str | None, limit: int,
                      options: TextOptions) -> TextSplit:
    """The split of a text dataset (see the module docstring)."""
    info = dataset_info(name)
    relevance = hard = None
    if name == "sentiment":
        reviews = _sentiment(seed, options.negation, options.contrast, options.filler)
        labels = np.array([r.label for r in reviews], dtype=np.int64)
        train_idx, val_idx = stratified_split(labels, val_fraction, seed)
        train_tokens = [list(reviews[i].tokens) for i in train_idx]
        val_tokens = [list(reviews[i].tokens) for i in val_idx]
        train_y, val_y = labels[train_idx], labels[val_idx]
        relevance = [reviews[i].relevant for i in val_idx]
        if options.level == "char":  # the same reviews read letter by letter; a deciding word's letters decide
            train_tokens = [chars_of_words(t, (False,) * len(t))[0] for t in train_tokens]
            pairs = [chars_of_words(t, r) for t, r in zip(val_tokens, relevance)]
            val_tokens, relevance = [p[0] for p in pairs], [p[1] for p in pairs]
        hard = torch.tensor([reviews[i].hard for i in val_idx], dtype=torch.bool)
        classes, notes = info.classes, []
    else:
        data = _read(name, data_dir, options)
        classes, notes = data.classes, list(data.notes)
        tokens = [tokenize(t, options.level) for t in data.train_texts]
        labels = np.asarray(data.train_labels, dtype=np.int64)
        if data.test_texts:  # the publisher's held-out split validates, as for the torchvision datasets
            train_tokens, train_y = tokens, labels
            val_tokens = [tokenize(t, options.level) for t in data.test_texts]
            val_y = np.asarray(data.test_labels, dtype=np.int64)
        else:
            try:
                train_idx, val_idx = stratified_split(labels, val_fraction, seed)
            except ValueError as exc:  # a class with a single example cannot be split in two
                raise DatasetUnavailable(f"cannot split the data into training and validation: {exc}") from None
            train_tokens, val_tokens = [tokens[i] for i in train_idx], [tokens[i] for i in val_idx]
            train_y, val_y = labels[train_idx], labels[val_idx]
    if limit and limit < len(train_tokens):
        keep = np.sort(np.random.default_rng(seed).permutation(len(train_tokens))[:limit])
        train_tokens, train_y = [train_tokens[i] for i in keep], train_y[keep]
    vocab = Vocab.build(train_tokens, options.vocab_size, options.min_count)
    split_info = dataclasses.replace(info, size=len(vocab), classes=tuple(classes))
    return TextSplit(split_info, vocab.encode(train_tokens), torch.from_numpy(np.asarray(train_y)),
                     vocab.encode(val_tokens), torch.from_numpy(np.asarray(val_y)),
                     TextExtras(vocab, val_tokens, relevance, hard, notes))


@torch.no_grad()
def subset_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, hard: torch.Tensor,
                    batch_size: int = 1000) -> dict[str, float]:
    """Validation accuracy on the negation/contrast sentences (val_acc_hard) and on the others (val_acc_easy)."""
    was_training = model.training
    model.eval()
    try:
        pred = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)
    correct = (pred == y).cpu()
    out = {}
    for name, rows in (("val_acc_hard", hard), ("val_acc_easy", ~hard)):
        if rows.any():
            out[name] = correct[rows].float().mean().item()
    return out
