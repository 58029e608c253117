"""The documents of the character datasets, before any splitting: one string per document.

- `names`: the US census first names (and/or surnames) shipped inside the MIT-licensed `names` package (its data
  files `dist.female.first`, `dist.male.first`, `dist.all.last`), lower-cased a-z and deduplicated, in file order.
- `reviews`: the `sentiment` generator's reviews as plain sentences (engine.text.corpus).
- `text_file`: a user's UTF-8 text, refused with one line when it is empty, binary or over TEXT_FILE_MAX_BYTES.

`PADDED` corpora train one document per row (a name); the others are long text, packed into fixed-length chunks.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from engine.datasets import SENTIMENT_COUNT, TEXT_FILE_MAX_BYTES, DatasetUnavailable
from engine.files import read_small_file

PADDED = ("names",)  # one document per row; the other corpora are packed into chunks of block_size
# Upper bounds for the class limits, known without reading a corpus whole (engine.models.estimate_parameters and
# engine.runs.access.run_examples check a launch with them): the vocabulary with its boundary token (names: a-z;
# reviews: a-z and the space), and the reviews' characters with their boundaries (342,337 at seed 0).
VOCAB_BOUND = {"names": 27, "reviews": 28}
REVIEWS_CHARS_BOUND = 400_000
NAMES_FILES = {"first": ("dist.female.first", "dist.male.first"), "last": ("dist.all.last",),
               "both": ("dist.female.first", "dist.male.first", "dist.all.last")}


@lru_cache(maxsize=3)
def read_names(which: str = "first") -> tuple[str, ...]:
    """The census names of `which` (first | last | both), lower-case a-z, each once, in the files' order."""
    if which not in NAMES_FILES:
        raise ValueError(f"names_list={which!r}: allowed values are {', '.join(NAMES_FILES)}")
    try:
        package = resources.files("names")
    except ModuleNotFoundError:
        raise DatasetUnavailable("the names dataset reads the `names` package: pip install names") from None
    seen: dict[str, None] = {}
    for file in NAMES_FILES[which]:
        for line in package.joinpath(file).read_text(encoding="ascii").splitlines():
            word = line.split(maxsplit=1)[0].lower() if line.strip() else ""
            if word.isascii() and word.isalpha():
                seen.setdefault(word, None)
    return tuple(seen)


@lru_cache(maxsize=2)
def read_reviews(seed: int) -> tuple[str, ...]:
    """The sentiment dataset's reviews (default knobs) as sentences."""
    from engine.text.corpus import generate_corpus

    return tuple(review.text for review in generate_corpus(SENTIMENT_COUNT, seed=seed))


def vocabulary_bound(config) -> int:
    """At most how many tokens (characters and the boundary) the vocabulary of a run of `config` holds."""
    return min(VOCAB_BOUND.get(config.dataset, config.vocab_size + 1), config.vocab_size + 1)


def training_examples_bound(config) -> int | None:
    """At most how many rows (names) or chunks of `block_size` characters (long text) a run of `config` trains on
    before its `train_limit`: the validation split comes out of it. None when unknown (no text file yet)."""
    if config.dataset == "names":
        return len(read_names(config.names_list))
    if config.dataset == "reviews":
        return REVIEWS_CHARS_BOUND // config.block_size
    if config.dataset == "text_file" and config.data_dir:
        from engine.paths import check_data_dir

        try:  # a file's bytes are at least its characters
            return check_data_dir(config.data_dir).stat().st_size // config.block_size + 1
        except (OSError, ValueError):
            return None  # the run cannot load it either, and says why when it starts
    return None


def check_text_bytes(data: bytes, what: str = "the text file") -> str:
    """`data` as text; ValueError with one line when it is empty, binary, not UTF-8 or over the cap."""
    if len(data) > TEXT_FILE_MAX_BYTES:
        raise ValueError(f"{what} is {len(data):,} bytes; at most {TEXT_FILE_MAX_BYTES:,} are trained on "
                         f"({TEXT_FILE_MAX_BYTES // 1_000_000} MB)")
    if b"\x00" in data[:65536]:
        raise ValueError(f"{what} is binary (it holds NUL bytes), not text: give a plain UTF-8 text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8 text (byte {exc.start:,} cannot be read); save it as UTF-8") from None
    if not text.strip():
        raise ValueError(f"{what} is empty: it has no characters to learn from")
    controls = sum(1 for c in text[:65536] if ord(c) < 32 and c not in "\n\r\t")
    if controls > 0.01 * min(len(text), 65536):
        raise ValueError(f"{what} looks binary ({controls:,} control characters), not text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text_file(path: Path) -> str:
    """A user's text file (a `data_dir` already checked to lie inside the data folders), read as engine.files reads
    a file a person put somewhere: a plain file only (never a pipe or a device), the cap checked before reading."""
    if path.is_dir():
        raise DatasetUnavailable(f"text_file reads one text file; {path.name} is a folder: set the data folder to "
                                 "the file itself (or upload it on the Train page)")
    if not path.exists():
        raise DatasetUnavailable(f"text_file: no file at {path.name}; upload it on the Train page or set the data "
                                 "folder to its path")
    try:
        data = read_small_file(path, TEXT_FILE_MAX_BYTES, "a text file trained on")
        return check_text_bytes(data, path.name)
    except ValueError as exc:  # UnreadableFile is one
        raise DatasetUnavailable(str(exc)) from None
