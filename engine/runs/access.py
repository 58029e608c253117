"""Who may do what to which run, and the class's fair-share limits: the rules the store enforces.

The store calls these inside its write transactions (engine.runs.store), so the rule holds whoever asks: a page,
a forged request, the CLI. A page hides buttons too, but only as a courtesy.

- A student may cancel, resume or delete only runs they own (same display name, role student). The teacher and
  the local user (the CLI, a single-user dashboard) may act on every run. Everyone may read every run.
- Per-student caps (`ClassLimits`): runs running at once, runs queued, epochs per run, training examples per run,
  runs per lesson. A lesson launch is one item for the running and queued caps (a student's 14-run optimizer race
  counts as one, like one run); its runs are bounded by the runs-per-lesson cap, and each by the training work
  (epochs x examples) of the largest run the class limits allow (`check_lesson`). Defaults suit 30 students on one
  GPU server, and let a student start every shipped lesson; the operator overrides them with TRAINLENS_MAX_*
  variables, and the teacher from the Class page (stored in the store's meta table as `limit.<name>`, so every server
  process and worker sees the same value).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from engine.classroom import Actor

LIMIT_PREFIX = "limit."


class PermissionDenied(PermissionError):
    """An actor tried to change a run (or the class) that is not theirs to change."""


class CapReached(ValueError):
    """A class limit refused a submission; the message says which limit and what to do."""


@dataclass(frozen=True)
class ClassLimits:
    running: int = 1  # runs one student may have training at once (the others wait in the queue)
    queued: int = 4  # runs one student may have waiting in the queue
    epochs: int = 10  # epochs per run
    examples: int = 100_000  # training examples per run (`train_limit`, else the dataset's training split)
    lesson_runs: int = 16  # runs in one lesson launch (the largest shipped lesson, the optimizer race, has 14)

    ENV = {"running": "TRAINLENS_MAX_RUNNING", "queued": "TRAINLENS_MAX_QUEUED", "epochs": "TRAINLENS_MAX_EPOCHS",
           "examples": "TRAINLENS_MAX_EXAMPLES", "lesson_runs": "TRAINLENS_MAX_LESSON_RUNS"}

    @classmethod
    def from_settings(cls, stored: dict[str, str] | None = None) -> ClassLimits:
        """Defaults, overridden by the environment, overridden by values the teacher stored (`limit.<name>`)."""
        limits = cls()
        for f in fields(cls):
            raw = os.environ.get(cls.ENV[f.name])
            if stored and LIMIT_PREFIX + f.name in stored:
                raw = stored[LIMIT_PREFIX + f.name]
            if raw not in (None, ""):
                limits = replace(limits, **{f.name: check_limit(f.name, raw)})
        return limits


def check_limit(name: str, value) -> int:
    """A limit value as an int >= 1; ValueError naming the limit otherwise."""
    if name not in ClassLimits.ENV:
        raise ValueError(f"unknown class limit {name!r}: allowed are {', '.join(ClassLimits.ENV)}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"class limit {name}={value!r} is not a whole number") from None
    if number < 1:
        raise ValueError(f"class limit {name}={number} must be at least 1")
    return number


def may_act(actor: Actor | None, owner: str, owner_role: str) -> bool:
    """Whether `actor` may cancel, resume or delete a run owned by (`owner`, `owner_role`). None: the engine itself."""
    if actor is None or actor.is_teacher:
        return True
    from engine.classroom import name_key

    return owner_role == actor.role and name_key(owner) == name_key(actor.name)


def check_may_act(actor: Actor | None, run_id: str, owner: str, owner_role: str, what: str) -> None:
    if not may_act(actor, owner, owner_role):
        raise PermissionDenied(f"Run {run_id} belongs to {owner or 'someone else'}: you can view it and compare it, "
                               f"but only its owner or the teacher can {what} it")


def check_may_teach(actor: Actor | None, what: str) -> None:
    if actor is not None and not actor.is_teacher:
        raise PermissionDenied(f"Only the teacher can {what}")


# Training examples of the datasets' full training data (an upper bound: the validation split comes out of it), for
# runs with no `train_limit`; a dataset missing here is capped only through `train_limit`.
FULL_TRAIN_EXAMPLES = {"mnist5k": 5_000, "shapes": 6_000, "mnist": 60_000, "fashion_mnist": 60_000, "cifar10": 50_000,
                       "sentiment": 6_000, "imdb": 25_000, "sst2": 67_349, "ag_news": 120_000}


def run_examples(config) -> int | None:
    """Training examples a run's config asks for (None when unknown)."""
    return int(config.train_limit) if config.train_limit else FULL_TRAIN_EXAMPLES.get(config.dataset)


def check_submission(actor: Actor | None, limits: ClassLimits, *, epochs: int, examples: int | None,
                     queued: int) -> None:
    """CapReached when a student's new run would break a class limit (teachers and the local user have none)."""
    if actor is None or not actor.is_student:
        return
    if epochs > limits.epochs:
        raise CapReached(f"This run asks for {epochs} epochs; the class limit is {limits.epochs} per run. "
                         "Lower the epochs (or ask the teacher to raise the limit)")
    if examples is not None and examples > limits.examples:
        raise CapReached(f"This run trains on {examples:,} examples; the class limit is {limits.examples:,} per run. "
                         "Set 'train limit' to at most that")
    check_queue_room(actor, limits, queued)


def check_queue_room(actor: Actor | None, limits: ClassLimits, queued: int) -> None:
    """CapReached when a student who has `queued` items waiting (runs, or lesson launches none of whose runs has
    started) may not queue one more (a new run, a resume or a lesson)."""
    if actor is not None and actor.is_student and queued >= limits.queued:
        raise CapReached(f"You already have {queued} run(s) or lesson(s) waiting in the queue; the class limit is "
                         f"{limits.queued}. Wait for one to start, or cancel one")


def check_lesson(actor: Actor | None, limits: ClassLimits, runs: list[tuple[int, int | None]], queued: int) -> None:
    """CapReached when a student may not launch a lesson whose runs ask for these (epochs, training examples).

    A lesson is one item for the running and queued caps, so its runs are bounded as a whole instead: at most
    `lesson_runs` of them, each training on at most `examples` examples and at most `epochs x examples` examples in
    all (the work of the largest run a student may start). The overfitting lesson's 20 epochs of 200 examples fit;
    20 epochs of the full data would not. Lessons come from the operator's files, never from a student's form, so
    only their size matters."""
    if actor is None or not actor.is_student:
        return
    if len(runs) > limits.lesson_runs:
        raise CapReached(f"This lesson starts {len(runs)} runs; the class limit is {limits.lesson_runs} runs per "
                         "lesson. Watch the class's run of it, or ask the teacher to run it for the class")
    budget = limits.epochs * limits.examples
    for epochs, examples in runs:
        if examples is None:  # a dataset of unknown size: only the epochs can be checked
            if epochs > limits.epochs:
                raise CapReached(f"A run of this lesson asks for {epochs} epochs; the class limit is {limits.epochs} "
                                 "per run. Ask the teacher to run it for the class (or to raise the limit)")
            continue
        if examples > limits.examples:
            raise CapReached(f"A run of this lesson trains on {examples:,} examples; the class limit is "
                             f"{limits.examples:,} per run. Ask the teacher to run it for the class (or to raise the "
                             "limit)")
        if epochs * examples > budget:
            raise CapReached(f"A run of this lesson trains {epochs} epochs of {examples:,} examples; the class limits "
                             f"allow {limits.epochs} epochs of {limits.examples:,} per run. Ask the teacher to run it "
                             "for the class (or to raise the limits)")
    check_queue_room(actor, limits, queued)
