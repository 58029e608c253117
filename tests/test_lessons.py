"""Classroom lessons: every lesson in lessons/ runs through the real worker pool at its real settings and its
claim holds (the contract of a lesson), the CLI runs one and prints its answer, and lesson files are validated
with messages that name the wrong entry.

All fifteen lessons are queued at once on one pool of two workers (about 61 small runs), so the module costs one
pool start and the lessons' own training time. Their margins across seeds were chosen with
benchmarks/lesson_margins.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import engine_env

from engine import lessons
from engine.records import ACTIVE, RunStatus

pytestmark = pytest.mark.timeout(560)
PROJECT = str(Path(__file__).resolve().parent.parent)
ALL = [lesson.name for lesson in lessons.load_lessons()[0]]


@pytest.fixture(scope="module")
def launched(runner):
    """Every lesson launched at once on the shared pool; {name: (lesson, group)} once every run has ended."""
    started = time.time()
    groups = {}
    for lesson in lessons.load_lessons()[0]:
        groups[lesson.name] = (lesson, lessons.launch(lesson, runner)[0])
    deadline = time.time() + 480
    while time.time() < deadline:
        runs = runner.store.list_runs()
        if not runs["status"].isin(list(ACTIVE)).any():
            break
        runner.recover()
        time.sleep(0.5)
    else:
        raise AssertionError("the lessons did not finish within 8 minutes")
    print(f"all {len(groups)} lessons ran in {time.time() - started:.1f} s")
    return groups


def test_the_gallery_has_the_lessons_of_the_syllabus():
    found, problems = lessons.load_lessons()
    assert problems == {}
    assert [lesson.name for lesson in found] == ["learning_rate", "momentum", "optimizer_race", "schedules",
                                                 "overfitting", "depth_skips", "exploding_gradients", "averaging",
                                                 "architectures", "explain_cnn", "order_matters",
                                                 "counting_to_attention", "temperature", "context_matters", "transfer"]
    for lesson in found:
        assert lesson.question.endswith("?") and lesson.look_for and lesson.charts and lesson.claims


@pytest.mark.parametrize("name", ALL)
def test_each_lessons_claim_holds_on_its_real_runs(launched, runner, name):
    lesson, group = launched[name]
    results = lessons.results_from_store(runner.store, lesson, group)
    assert len(results) == len(lesson.variants) * lesson.seeds  # one group, every (variant, seed)
    result = lessons.outcome(lesson, results)
    assert result.finished
    failing = [f"{c.claim.text}: {c.detail}" for c in result.checks if not c.holds]
    assert failing == [], failing
    assert result.holds is True
    ranked = set(lesson.answer_among) or {v.label for v in lesson.variants}  # the variants its question asks about
    assert {s.label for s in result.standings} == ranked
    assert result.answer.lower().startswith(result.standings[0].label.lower())  # the winner before any number


def test_runs_of_a_lesson_share_identical_data_and_one_group(launched, runner):
    lesson, group = launched["momentum"]
    runs = runner.store.list_runs(group=group)
    assert set(runs["cfg.train_limit"]) == {lesson.base.train_limit}
    assert set(runs["cfg.seed"]) == {0, 1}  # two seeds per optimizer, the same two for every optimizer
    assert runs.groupby("cfg.optimizer")["cfg.seed"].apply(sorted).tolist() == [[0, 1]] * 3


def test_the_too_large_learning_rate_is_shown_diverged_at_its_step(launched, runner):
    lesson, group = launched["learning_rate"]
    results = lessons.results_from_store(runner.store, lesson, group)
    diverged = next(r for r in results if r.status == RunStatus.DIVERGED)
    answer = lessons.outcome(lesson, results).answer
    assert f"Too large (lr 10) diverged at step {diverged.steps}." in answer
    assert f"at step {diverged.steps}" in diverged.error


def test_cli_runs_a_lesson_and_prints_its_answer(launched, runner_home):
    # on the module's home, so its warm pool takes the runs
    done = subprocess.run([sys.executable, "-m", "engine", "lesson", "averaging", "--wait"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=120, env=engine_env(runner_home))
    assert done.returncode == 0, done.stderr
    assert "One run, three sets of weights: final validation loss after epoch 4, 0." in done.stdout
    assert done.stdout.count("[holds]") == 2
    listed = subprocess.run([sys.executable, "-m", "engine", "lesson", "--list"], cwd=PROJECT, capture_output=True,
                            text=True, timeout=60, env=engine_env(runner_home))
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == len(ALL)


@pytest.mark.slow
def test_unknown_lesson_is_one_line_exit_2(trainlens_home):
    done = subprocess.run([sys.executable, "-m", "engine", "lesson", "no_such_lesson"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=60, env=engine_env(trainlens_home))
    assert done.returncode == 2
    assert done.stderr.startswith("error: no lesson named 'no_such_lesson'; known lessons: architectures")


LESSON = """
title = "t"
question = "q?"
[run]
model = "mlp"
[[variant]]
label = "a"
set = { lr = 0.1 }
[[variant]]
label = "b"
set = { lr = 0.01 }
[[claim]]
text = "a beats b"
left = "a"
metric = "val_acc"
right = "b"
"""


@pytest.mark.parametrize("change, words", [
    (("lr = 0.1 }", "lr = -1 }"), "lr=-1"),
    (('right = "b"', 'right = "c"'), "names variant 'c'"),
    (('metric = "val_acc"', 'stat = "median"'), "claim.stat='median'"),
    (('title = "t"', 'title = "t"\nsurprise = 1'), "unknown entries surprise"),
    (('label = "b"', 'label = "a"'), "variant and pretrain labels must differ"),
    (("[run]", "[run\n"), "not a readable TOML file"),
])
def test_a_bad_lesson_file_names_what_is_wrong(trainlens_home, change, words):
    folder = trainlens_home / "lessons"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text(LESSON.replace(*change))
    with pytest.raises(ValueError, match="mine.toml") as caught:
        lessons.get_lesson("mine")
    assert words in str(caught.value)
    found, problems = lessons.load_lessons()  # the gallery still lists the good lessons
    assert len(found) == len(ALL) and "mine.toml" in problems


def test_a_teachers_own_lesson_is_found_and_checked(trainlens_home):
    folder = trainlens_home / "lessons"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text(LESSON)
    lesson = lessons.get_lesson("mine")
    assert [c.lr for c in lesson.configs("g")] == [0.1, 0.01]
    results = [lessons.RunResult("1", "a", 0, "completed", {"val_acc": [0.5, 0.9]}, {"val_acc": [0, 1]}),
               lessons.RunResult("2", "b", 0, "completed", {"val_acc": [0.3, 0.4]}, {"val_acc": [0, 1]})]
    result = lessons.outcome(lesson, results)
    assert result.holds is True
    assert result.answer == "A reached the highest final validation accuracy after epoch 2, 0.900; b came last at 0.400."
    assert result.checks[0].detail == "last val_acc: a 0.900 > b 0.400"  # numbers alike: never 0.9 next to 0.400
    still_running = [results[0], lessons.RunResult("2", "b", 0, "running")]
    assert lessons.outcome(lesson, still_running).holds is None


def _in_time(call, seconds: float = 20.0):
    """call(), or a failure when it takes longer: a hang is what this guards against."""
    import threading

    result: list = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, f"still reading after {seconds:.0f} s"
    return result[0]


def test_the_lessons_folder_reads_only_regular_files_and_at_most_the_cap(trainlens_home):
    import os

    from engine.lessons import MAX_LESSON_BYTES, load_lessons

    folder = trainlens_home / "lessons"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "x.toml")  # opening a pipe used to wait for a writer for ever
    (folder / "zero.toml").symlink_to("/dev/zero")  # its size reads 0: it passed the size check, then read on
    (folder / "big.toml").write_bytes(b"# " + b"x" * MAX_LESSON_BYTES)
    found, problems = _in_time(load_lessons)
    assert {"momentum", "learning_rate"} <= {lesson.name for lesson in found}  # the others still load
    assert problems["x.toml"] == "x.toml: not a regular file (a pipe); a lesson file must be a plain file"
    assert problems["zero.toml"] == "zero.toml: not a regular file (a device); a lesson file must be a plain file"
    assert problems["big.toml"] == f"big.toml: {MAX_LESSON_BYTES + 2:,} bytes; a lesson file is at most 50,000"


def test_a_file_that_grows_past_the_cap_is_read_no_further(tmp_path):
    from engine.files import UnreadableFile, read_small_file

    path = tmp_path / "small.toml"
    path.write_bytes(b"a = 1\n")
    assert read_small_file(path, 10) == b"a = 1\n"
    with open(path, "ab") as f:
        f.write(b"b = 2\n")
    with pytest.raises(UnreadableFile, match="12 bytes; the file is at most 10"):
        read_small_file(path, 10)
