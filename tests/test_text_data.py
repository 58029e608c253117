"""Text data: the sentiment grammar, tokenisation and vocabulary, the official-format readers on tiny files
made here, and a user's CSV with the mistakes users make."""

from __future__ import annotations

import pytest
import torch

from engine.data.loading import load_dataset, load_run_split
from engine.datasets import DatasetUnavailable
from engine.config import RunConfig
from engine.text.corpus import NEGATORS, NEGATIVE, POSITIVE, CorpusOptions, generate_corpus, label_of
from engine.text.readers import read_ag_news, read_csv, read_imdb, read_sst2
from engine.text.vocab import PAD_ID, UNK_ID, Vocab, tokenize


def test_corpus_is_deterministic_and_labels_follow_the_grammar():
    reviews = generate_corpus(600, seed=3)
    assert reviews == generate_corpus(600, seed=3)
    assert reviews != generate_corpus(600, seed=4)
    for review in reviews:
        assert label_of(review.tokens) == review.label  # the rule, read independently of the generator
    assert {r.label for r in reviews} == {0, 1}
    assert 0.2 < sum(r.contrast for r in reviews) / len(reviews) < 0.4  # the default share is 0.3


def test_negation_scope_and_contrast():
    # scope: a negator flips its own clause only; contrast: the clause after "but" decides
    assert label_of("the plot was not good".split()) == 0
    assert label_of("the plot was not good but the cast was great".split()) == 1
    assert label_of("the plot was good but the cast was never great".split()) == 0
    negated = [r for r in generate_corpus(400, seed=1, options=CorpusOptions(negation=1.0, contrast=0.0))]
    assert all(r.negated and any(t in NEGATORS for t in r.tokens) for r in negated)


def test_relevance_marks_the_deciding_tokens():
    for review in generate_corpus(300, seed=2):
        marked = [t for t, rel in zip(review.tokens, review.relevant) if rel]
        adjectives = [t for t in marked if t in POSITIVE or t in NEGATIVE]
        assert len(adjectives) == 1  # the deciding clause's adjective ...
        assert set(marked) - set(adjectives) <= set(NEGATORS)  # ... and its negator, nothing else
        assert (len(marked) == 2) == review.negated
        if review.contrast:  # the deciding clause comes after "but"
            assert review.tokens.index("but") < review.relevant.index(True)


def test_tokenize_and_vocab_from_training_only():
    assert tokenize("Not GOOD, didn't like it!") == ["not", "good", ",", "didn't", "like", "it", "!"]
    vocab = Vocab.build([["good", "good", "bad"], ["bad", "plot"]], max_size=4, min_count=1)
    assert vocab.tokens == ("<pad>", "<unk>", "bad", "good")  # by count, ties alphabetical, capped
    ids = vocab.encode([["good", "plot"], ["bad"]])
    assert ids.tolist() == [[3, UNK_ID], [2, PAD_ID]]
    assert vocab.decode(ids[1]) == ["bad"]
    assert Vocab.build([["a", "b", "b"]], min_count=2).tokens == ("<pad>", "<unk>", "b")


def test_sentiment_split_is_a_run_split_with_ground_truth():
    split = load_run_split(RunConfig(dataset="sentiment", model="gru", train_limit=500))
    text = split.text
    assert split.train_x.dtype == split.val_x.dtype == torch.int64
    assert not split.train_x.is_floating_point() and split.info.size == len(text.vocab)
    assert len(split.train_y) == 500 and len(split.val_y) == len(text.val_tokens) == len(text.val_relevance)
    assert text.val_hard.any() and not text.val_hard.all()
    first = text.vocab.decode(split.val_x[0])
    assert len(first) == len(text.val_relevance[0])


def _imdb(root):
    for split in ("train", "test"):
        for label, words in (("neg", "awful<br />dull"), ("pos", "great fun")):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(f"{words} film {i}", encoding="utf-8")
    (root / "aclImdb" / "train" / "unsup").mkdir()


def test_imdb_folders(tmp_path):
    _imdb(tmp_path)
    data = read_imdb(tmp_path)
    assert len(data.train_texts) == len(data.test_texts) == 6
    assert data.train_labels == [0, 0, 0, 1, 1, 1] and "<br />" not in data.train_texts[0]
    with pytest.raises(DatasetUnavailable, match="aclImdb"):
        read_imdb(tmp_path / "elsewhere")


def test_imdb_through_the_registry(trainlens_home):
    root = trainlens_home / "data"
    root.mkdir(parents=True, exist_ok=True)
    _imdb(root)
    split = load_dataset("imdb", data_dir=None)
    assert len(split.train_y) == 6 and len(split.val_y) == 6 and split.info.classes == ("negative", "positive")


def test_sst2_tsv(tmp_path):
    base = tmp_path / "SST-2"
    base.mkdir()
    (base / "train.tsv").write_text("sentence\tlabel\nhide new secretions \t0\na gorgeous film \t1\n", encoding="utf-8")
    (base / "dev.tsv").write_text("sentence\tlabel\nit 's a charming journey \t1\n", encoding="utf-8")
    data = read_sst2(tmp_path)
    assert data.train_labels == [0, 1] and data.test_texts == ["it 's a charming journey "]
    (base / "dev.tsv").write_text("text,label\nx,1\n", encoding="utf-8")
    with pytest.raises(DatasetUnavailable, match="first line"):
        read_sst2(tmp_path)


def test_ag_news_csv(tmp_path):
    base = tmp_path / "ag_news_csv"
    base.mkdir()
    (base / "train.csv").write_text('"3","Wall St. Bears","Short-sellers, \\\\band of ultra-cynics"\n'
                                    '"2","Phelps wins","Gold again\\n in Athens"\n', encoding="utf-8")
    (base / "test.csv").write_text('"4","New chip","Faster than ever"\n', encoding="utf-8")
    data = read_ag_news(tmp_path)
    assert data.train_labels == [2, 1] and data.test_labels == [3]
    assert data.classes[2] == "Business" and "\\" not in data.train_texts[1]


def test_user_csv_detects_columns_and_skips_empty_rows(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("id,review,sentiment\n1,loved every minute,pos\n2,,neg\n3,a waste of time,neg\n\n"
                    "4,pretty good,pos\n", encoding="utf-8")
    data = read_csv(path)
    assert data.classes == ("neg", "pos") and data.train_texts[0] == "loved every minute"
    assert data.train_labels == [1, 0, 1] and "1 row" in data.notes[0]
    named = read_csv(path, text_column="Review", label_column="sentiment")
    assert named.train_texts == data.train_texts


@pytest.mark.parametrize("content, message", [
    ("text,label\ngood,1\nbad,1\n", "one class"),
    ("text,stars\ngood,1\nbad,0\n", "no label column found .* name it in label_column"),
    # an unclosed quote used to swallow every later row into one text, and the run trained on what was left
    ('text,label\ngood film,pos\n"unclosed, bad film,neg\nfine,pos\nmeh,neg\n',
     r'bad.csv, line 3: a quote \(\"\) opened in this row is never closed'),
    ("text,label\n", "no rows"),
    ("", "empty"),
    ("just one column\nx\n", "column"),
])
def test_user_csv_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetUnavailable, match=message):
        read_csv(path)


def test_user_csv_wrong_encoding_missing_column_and_size(tmp_path, monkeypatch):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 cr\xe8me,1\nbad,0\n".encode("latin-1"))
    with pytest.raises(DatasetUnavailable, match="not UTF-8"):
        read_csv(path)
    path.write_text("text,label\ngood,1\nbad,0\n", encoding="utf-8")
    with pytest.raises(DatasetUnavailable, match="no column 'body'"):
        read_csv(path, text_column="body")
    import engine.text.readers as readers

    monkeypatch.setattr(readers, "MAX_CSV_BYTES", 10)  # a 1 GB file, scaled down
    with pytest.raises(DatasetUnavailable, match="at most"):
        read_csv(path)


def test_text_csv_needs_a_file_and_config_rejects_image_models():
    with pytest.raises(DatasetUnavailable, match="data folder"):
        load_run_split(RunConfig(dataset="text_csv", model="bow"))
    with pytest.raises(ValueError, match="text dataset"):
        RunConfig(dataset="sentiment", model="convnet").validate()
    with pytest.raises(ValueError, match="image dataset"):
        RunConfig(dataset="mnist5k", model="bow").validate()


def test_character_level_tokens_and_relevance():
    from engine.text.vocab import SPACE, detokenize

    assert tokenize("Not  good!", "char") == ["n", "o", "t", SPACE, "g", "o", "o", "d", "!"]
    assert detokenize(tokenize("not  good!", "char"), "char") == "not good!"
    split = load_run_split(RunConfig(dataset="sentiment", model="gru", train_limit=200, text_level="char"))
    tokens, relevant = split.text.val_tokens[0], split.text.val_relevance[0]
    assert len(tokens) == len(relevant) and split.info.size < 60  # letters, digits of no kind, SPACE, specials
    words = load_run_split(RunConfig(dataset="sentiment", model="gru", train_limit=200)).text  # same sentences
    assert detokenize(tokens, "char") == " ".join(words.val_tokens[0])
    deciding = "".join(w for w, r in zip(words.val_tokens[0], words.val_relevance[0]) if r)
    assert "".join(t for t, r in zip(tokens, relevant) if r) == deciding  # the deciding words' letters
    with pytest.raises(ValueError, match="text_level"):
        tokenize("x", "byte")
