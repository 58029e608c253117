"""A lesson's answer as the class reads it (engine/lesson_answer.py): the winner named in words before any number,
numbers formatted alike, no invisible characters; and the colour keys that pair a lesson's variants.
"""

from __future__ import annotations

import pytest

from app.charts.text import escape_md
from engine import lessons
from engine.lesson_answer import answer, format_alike


def test_the_answer_names_the_winner_and_the_last_before_any_number():
    rows = [("SGD @ 0.001", 0.461, "", "after epoch 3"), ("Momentum @ 0.001", 0.827, "", "after epoch 3"),
            ("Adam @ 0.002", 0.953, "", "after epoch 3")]
    told = answer(rows, "val_acc", "last")
    assert told.sentence == ("Adam @ 0.002 reached the highest final validation accuracy after epoch 3, 0.953; "
                             "SGD @ 0.001 came last at 0.461.")
    assert [s.label for s in told.standings] == ["Adam @ 0.002", "Momentum @ 0.001", "SGD @ 0.001"]


def test_a_loss_is_better_low_and_ties_diverged_runs_and_seeds_are_said():
    rows = [("constant", 0.665, "", "after epoch 3"), ("cosine", 0.098, "", "after epoch 3"),
            ("1/t decay", 0.0981, "", "after epoch 3"), ("too large", None, "diverged at step 9", "")]
    told = answer(rows, "train_loss", "last", seeds=2)
    assert told.sentence == ("Cosine and 1/t decay tie for the lowest final training loss (mean of 2 seeds) after "
                             "epoch 3, 0.098; constant came last at 0.665. Too large diverged at step 9.")
    assert told.standings[-1].text == "diverged at step 9"


def test_epochs_that_differ_are_said_per_number_and_one_variant_reads_plainly():
    rows = [("no regularisation", 0.741, "", "after epoch 20"), ("early stopping", 0.673, "", "after epoch 9")]
    assert answer(rows, "val_loss", "last").sentence == (
        "Early stopping reached the lowest final validation loss, 0.673 (after epoch 9); no regularisation came last "
        "at 0.741 (after epoch 20).")
    rows.append(("augmentation", 0.568, "", "after epoch 20"))  # the two numbers quoted share their epoch: said once
    assert answer(rows, "val_loss", "last").sentence == (
        "Augmentation reached the lowest final validation loss after epoch 20, 0.568; no regularisation came last at "
        "0.741.")
    assert answer(rows[:1], "val_loss", "last").sentence == \
        "No regularisation: final validation loss after epoch 20, 0.741."
    assert answer([], "val_acc", "last").sentence == "No results yet."


def test_bits_per_character_are_better_low_like_a_loss():
    rows = [("bigram (counting)", 3.43, "", "after epoch 3"), ("GRU (reads the whole name)", 2.93, "", "after epoch 3")]
    assert answer(rows, "val_bpc", "last").sentence == (
        "GRU (reads the whole name) reached the lowest final bits per character after epoch 3, 2.930; bigram "
        "(counting) came last at 3.430.")


@pytest.mark.parametrize(("values", "expected"), [
    ([1.0, 0.442], ["1.000", "0.442"]),  # never "1" next to "0.442"
    ([0.9, 0.4], ["0.900", "0.400"]),
    ([44426.0, 118282.0], ["44,426", "118,282"]),  # parameter counts
    ([12.5, 3.25], ["12.50", "3.25"]),
    ([0.000825, 0.741], ["0.000825", "0.741"]),  # too small for three decimals: its own three digits
    ([2.68e-05, 0.001], ["2.68e-05", "0.001"]),
    ([None, 0.5], ["-", "0.500"]),
])
def test_numbers_of_one_answer_are_formatted_alike(values, expected):
    assert format_alike(values) == expected


def test_the_race_answer_has_no_invisible_characters():
    label = "Adam @ 0.002 (its own)"
    assert "\u2060" not in escape_md(f"{label} reached the highest final validation accuracy")
    assert "\u2060" in escape_md("write to ana@example.com")  # an address still cannot become a link


def test_variants_pair_up_by_colour_key():
    race = lessons.get_lesson("optimizer_race")
    keys = race.color_keys()
    assert keys["Momentum @ 0.001"] == keys["Momentum @ 0.02 (its own)"] == "Momentum"
    assert len(set(keys.values())) == 7  # seven optimizers, fourteen variants
    assert lessons.default_color_key("too small (lr 0.0002)") == "too small (lr 0.0002)"
    named = lessons.parse_lesson("mine", {
        "title": "t", "question": "q?", "run": {"epochs": 1},
        "variant": [{"label": "a", "set": {"lr": 0.1}, "color_key": "fast"}, {"label": "b", "set": {"lr": 0.01}}],
        "claim": [{"text": "a beats b", "left": "a", "metric": "val_acc", "right": "b"}]})
    assert named.color_keys() == {"a": "fast", "b": "b"}
    with pytest.raises(ValueError, match="color_key must be text"):
        lessons.parse_lesson("bad", {"title": "t", "question": "q?", "variant": [{"label": "a", "color_key": 3}],
                                     "claim": [{"text": "x", "left": "a", "status": "completed"}]})


def test_the_transfer_lesson_answers_its_question_among_the_five_example_variants():
    """Its question is about 5 examples per class: the answer ranks those four, not the K=50 runs that beat them all."""
    lesson = lessons.get_lesson("transfer")
    value = {"Scratch @ K=5": 0.48, "Head only @ K=5": 0.52, "Fine-tune @ K=5": 0.66, "LoRA @ K=5": 0.63,
             "Scratch @ K=50": 0.93, "Head only @ K=50": 0.58, "Fine-tune @ K=50": 0.95, "LoRA @ K=50": 0.94}
    results = [lessons.RunResult(run_id=f"r{i}", variant=label, seed=0, status="completed", steps=10,
                                 values={"val_acc": [acc]}, epochs={"val_acc": [2]})
               for i, (label, acc) in enumerate(value.items())]
    told = lessons.lesson_answer(lesson, results)
    assert told.sentence.startswith("Fine-tune @ K=5 reached the highest final validation accuracy")
    assert "Scratch @ K=5 came last" in told.sentence and "K=50" not in told.sentence
    assert len(told.standings) == 4
