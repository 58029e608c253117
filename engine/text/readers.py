"""Readers of real text corpora in their official formats, and of a user's CSV. Our own code, no downloads.

Each reader returns `TextData`: train and test (texts, labels) and the class names. The official layouts:

- IMDB (Maas et al. 2011, `aclImdb_v1.tar.gz` unpacked): `aclImdb/{train,test}/{neg,pos}/ID_RATING.txt`, one
  review per file (HTML line breaks `<br />` inside); `unsup/` is ignored.
- SST-2 (GLUE): `SST-2/train.tsv` and `SST-2/dev.tsv`, tab separated, header `sentence<TAB>label`, labels 0/1
  (the GLUE test file has no labels, so dev is the held-out split).
- AG News (Zhang et al. 2015, `ag_news_csv`): `train.csv`, `test.csv` without a header, columns class index
  (1-4), title, description, every field quoted; `\\n` inside a field stands for a new line.
- Your own CSV: a header row, a text column and a label column (named, or detected: the label column is
  named label/sentiment/class/category/target/y, the text column is the one with the longest values);
  labels may be any strings. Rows with empty text are skipped and counted; everything else that is wrong
  raises `DatasetUnavailable` (a ValueError) with a sentence saying what and how to fix it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from engine.datasets import DatasetUnavailable

MAX_CSV_BYTES = 200 * 2**20  # 200 MB: far more than a class needs, far less than a worker's memory
LABEL_NAMES = ("label", "labels", "sentiment", "class", "category", "target", "y")
IMDB_CLASSES = ("negative", "positive")
SST2_CLASSES = ("negative", "positive")
AG_NEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")


@dataclass
class TextData:
    """Texts and integer labels of a corpus, split as its publisher split it (test may be empty)."""

    classes: tuple[str, ...]
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str] = field(default_factory=list)
    test_labels: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the reader skipped, for the user


def _missing(title: str, folder: Path, expected: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"{title} is not on this machine: looked for {expected} in {folder}. TrainLens does not download text "
        f"corpora; get the official files and put them there (or point the data folder at a copy), or pick the "
        f"built-in 'sentiment' dataset, which needs no download.")


def read_imdb(root: Path) -> TextData:
    """The IMDB review folders under `root` (either the `aclImdb` folder itself or its parent)."""
    base = root / "aclImdb" if (root / "aclImdb").is_dir() else root
    if not all((base / split / label).is_dir() for split in ("train", "test") for label in ("neg", "pos")):
        raise _missing("IMDB", root, "aclImdb/{train,test}/{neg,pos}/*.txt")
    data = TextData(IMDB_CLASSES, [], [])
    for split, texts, labels in (("train", data.train_texts, data.train_labels),
                                 ("test", data.test_texts, data.test_labels)):
        for label, name in enumerate(("neg", "pos")):
            for path in sorted((base / split / name).glob("*.txt")):
                texts.append(path.read_text(encoding="utf-8", errors="replace").replace("<br />", " "))
                labels.append(label)
    if not data.train_texts:
        raise _missing("IMDB", root, "review files (*.txt) in aclImdb/train/neg and aclImdb/train/pos")
    return data


def _sst2_file(path: Path) -> tuple[list[str], list[int]]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or [c.strip() for c in rows[0][:2]] != ["sentence", "label"]:
        raise DatasetUnavailable(f"{path} is not a GLUE SST-2 file: its first line should be 'sentence<TAB>label'")
    texts, labels = [], []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < 2 or row[1].strip() not in ("0", "1"):
            raise DatasetUnavailable(f"{path}, line {number}: expected a sentence, a tab and a label 0 or 1")
        texts.append(row[0])
        labels.append(int(row[1]))
    return texts, labels


def read_sst2(root: Path) -> TextData:
    """GLUE SST-2 under `root` (the `SST-2` folder itself or its parent): train.tsv for training, dev.tsv held out."""
    base = root / "SST-2" if (root / "SST-2").is_dir() else root
    if not (base / "train.tsv").is_file() or not (base / "dev.tsv").is_file():
        raise _missing("SST-2", root, "SST-2/train.tsv and SST-2/dev.tsv")
    train_texts, train_labels = _sst2_file(base / "train.tsv")
    test_texts, test_labels = _sst2_file(base / "dev.tsv")
    return TextData(SST2_CLASSES, train_texts, train_labels, test_texts, test_labels)


def _ag_file(path: Path) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if len(row) != 3 or row[0].strip() not in ("1", "2", "3", "4"):
                raise DatasetUnavailable(f"{path}, line {number}: expected class index 1-4, title, description")
            texts.append(f"{row[1]}. {row[2]}".replace("\\n", " ").replace("\\", " "))
            labels.append(int(row[0]) - 1)
    return texts, labels


def read_ag_news(root: Path) -> TextData:
    """AG News under `root` (the `ag_news_csv` folder itself or its parent)."""
    base = root / "ag_news_csv" if (root / "ag_news_csv").is_dir() else root
    if not (base / "train.csv").is_file() or not (base / "test.csv").is_file():
        raise _missing("AG News", root, "ag_news_csv/train.csv and ag_news_csv/test.csv")
    train_texts, train_labels = _ag_file(base / "train.csv")
    test_texts, test_labels = _ag_file(base / "test.csv")
    return TextData(AG_NEWS_CLASSES, train_texts, train_labels, test_texts, test_labels)


def _csv_path(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*.csv"))
        if len(found) != 1:
            raise DatasetUnavailable(f"{path} holds {len(found)} CSV files; point the data folder at one CSV file")
        return found[0]
    if not path.is_file():
        raise DatasetUnavailable(f"{path} does not exist: point the data folder at your CSV file")
    return path


def read_csv(path: Path, text_column: str = "", label_column: str = "") -> TextData:
    """A user's CSV of texts and labels; the columns are named or detected (see the module docstring)."""
    path = _csv_path(path)
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise DatasetUnavailable(f"{path.name} is {size / 2**20:,.0f} MB; a text CSV may be at most "
                                 f"{MAX_CSV_BYTES // 2**20} MB (take a sample of the rows)")
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetUnavailable(f"{path.name} is not UTF-8 text (byte {exc.start} cannot be read); save it as "
                                 "'CSV UTF-8' and try again") from None
    if not content.strip():
        raise DatasetUnavailable(f"{path.name} is empty")
    try:
        dialect = csv.Sniffer().sniff(content[:20000], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = _csv_rows(path.name, content, dialect)
    header = [h.strip() for h in rows[0]]
    body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    if not body:
        raise DatasetUnavailable(f"{path.name} has a header but no rows of data")
    text_i, label_i = _columns(path.name, header, body, text_column, label_column)
    texts, raw_labels, skipped = [], [], 0
    for row in body:
        text = row[text_i].strip() if text_i < len(row) else ""
        label = row[label_i].strip() if label_i < len(row) else ""
        if not text or not label:
            skipped += 1
            continue
        texts.append(text)
        raw_labels.append(label)
    classes = tuple(sorted(set(raw_labels)))
    if len(classes) < 2:
        raise DatasetUnavailable(f"{path.name}: the label column {header[label_i]!r} has "
                                 f"{'one class' if classes else 'no values'}; a classifier needs at least two")
    if len(classes) > 100:
        raise DatasetUnavailable(f"{path.name}: the label column {header[label_i]!r} has {len(classes)} different "
                                 "values; is it really the label? (at most 100 classes)")
    index = {c: i for i, c in enumerate(classes)}
    notes = [f"skipped {skipped} row(s) with an empty text or label"] if skipped else []
    return TextData(classes, texts, [index[c] for c in raw_labels], notes=notes)


def _csv_rows(name: str, content: str, dialect) -> list[list[str]]:
    """The rows of a CSV text, read strictly: a quote opened and never closed used to swallow every later row into
    one field without a word (the run then trained on what was left); it is refused, naming the line it opens on."""
    reader = csv.reader(io.StringIO(content), dialect, strict=True)
    rows, last_line = [], 0
    try:
        for row in reader:
            rows.append(row)
            last_line = reader.line_num
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise DatasetUnavailable(f"{name}, line {last_line + 1}: a quote (\") opened in this row is never closed, "
                                     "so every row after it would be read as one text; close it or remove it") from None
        raise DatasetUnavailable(f"{name}, line {reader.line_num}: not readable as CSV ({exc})") from None
    return rows


def _columns(name: str, header: list[str], body: list[list[str]], text_column: str, label_column: str) -> tuple[int, int]:
    """Indices of the text and label columns, chosen by name or detected."""
    lowered = [h.lower() for h in header]

    def named(column: str, role: str) -> int:
        if column.lower() not in lowered:
            raise DatasetUnavailable(f"{name} has no column {column!r} for the {role}; its columns are "
                                     f"{', '.join(repr(h) for h in header)}")
        return lowered.index(column.lower())

    if len(header) < 2:
        raise DatasetUnavailable(f"{name} has {len(header)} column(s); it needs a text column and a label column")
    if label_column:
        label_i = named(label_column, "labels")
    else:
        matches = [i for i, h in enumerate(lowered) if h in LABEL_NAMES]
        if not matches:
            raise DatasetUnavailable(f"{name}: no label column found (none is called {', '.join(LABEL_NAMES)}); "
                                     f"name it in label_column. Its columns are "
                                     f"{', '.join(repr(h) for h in header)}")
        label_i = matches[0]
    if text_column:
        text_i = named(text_column, "texts")
    else:
        others = [i for i in range(len(header)) if i != label_i]
        text_i = max(others, key=lambda i: sum(len(row[i]) for row in body[:500] if i < len(row)))
    if text_i == label_i:
        raise DatasetUnavailable(f"{name}: the text and the label cannot be the same column ({header[text_i]!r})")
    return text_i, label_i
