"""Who may do what to which run, and the class's fair-share limits: the rules the store enforces.

The store calls these inside its write transactions (engine.runs.store), so the rule holds whoever asks: a page,
a forged request, the CLI. A page hides buttons too, but only as a courtesy.

- A student may cancel, resume or delete only runs they own: runs of their member id (engine.runs.store.members),
  never runs of someone who had the same display name. The teacher and the local user (the CLI, a single-user
  dashboard) may act on every run. Everyone may read every run.
- Per-student caps (`ClassLimits`): runs running at once, runs queued, and what one run may cost: epochs, training
  examples (your own CSV's rows count), model parameters (counted on torch's meta device, never allocated), batch
  size, CPU cores and GPUs, and minutes of training (a run over it is stopped: engine.runs.store.workers). Every
  size field of a run is bounded by one of them.
- A lesson launch is one item for the running and queued caps (a student's 14-run optimizer race counts as one,
  like one run); its runs are bounded by the runs-per-lesson cap, each by the training work (epochs x examples) of
  the largest run the class limits allow, and each by the same cost caps as any run (`check_lesson`).
- Defaults suit 30 students on one GPU server and let a student start every shipped lesson; the operator
  overrides them with TRAINLENS_MAX_* variables, and the teacher from the Class page (stored in the store's meta
  table as `limit.<name>`, so every server process and worker sees the same value).
"""

from __future__ import annotations

import math
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
    examples: int = 100_000  # training examples per run (`train_limit`, else the dataset's, or the CSV's, rows)
    # what one run may cost: the shipped lessons' largest run has 0.65 million parameters, batches of 32, 1 core and
    # no GPU (tests/test_class_limits.py checks that every lesson's runs fit)
    parameters: int = 10_000_000  # model parameters per run (40 MB of weights; Adam keeps 3 more copies)
    batch: int = 1024  # examples per optimizer step (activations grow with it)
    cpus: float = 2.0  # num_cpus per run (cores reserved on a Ray cluster, and torch threads)
    gpus: float = 1.0  # num_gpus per run (0.25 = a quarter of one)
    minutes: int = 30  # minutes one claim of a run may train before it is stopped (a resume starts a new one)
    lesson_runs: int = 16  # runs in one lesson launch (the largest shipped lesson, the optimizer race, has 14)

    ENV = {"running": "TRAINLENS_MAX_RUNNING", "queued": "TRAINLENS_MAX_QUEUED", "epochs": "TRAINLENS_MAX_EPOCHS",
           "examples": "TRAINLENS_MAX_EXAMPLES", "parameters": "TRAINLENS_MAX_PARAMETERS",
           "batch": "TRAINLENS_MAX_BATCH", "cpus": "TRAINLENS_MAX_CPUS", "gpus": "TRAINLENS_MAX_GPUS",
           "minutes": "TRAINLENS_MAX_MINUTES", "lesson_runs": "TRAINLENS_MAX_LESSON_RUNS"}

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


FRACTIONAL_LIMITS = ("cpus", "gpus")  # may be fractions (0.5 cores, a quarter of a GPU); gpus may be 0: none at all


def check_limit(name: str, value) -> int | float:
    """A limit value: a whole number >= 1, or for cpus (> 0) and gpus (>= 0) a number; ValueError naming the limit
    otherwise."""
    if name not in ClassLimits.ENV:
        raise ValueError(f"unknown class limit {name!r}: allowed are {', '.join(ClassLimits.ENV)}")
    if name in FRACTIONAL_LIMITS:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise ValueError(f"class limit {name}={value!r} is not a number") from None
        if not math.isfinite(number) or number < 0 or (number == 0 and name == "cpus"):
            raise ValueError(f"class limit {name}={value!r} must be {'above' if name == 'cpus' else 'at least'} 0")
        return number
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"class limit {name}={value!r} is not a whole number") from None
    if number < 1:
        raise ValueError(f"class limit {name}={number} must be at least 1")
    return number


def may_act(actor: Actor | None, owner_id: str, owner_role: str) -> bool:
    """Whether `actor` may cancel, resume or delete a run owned by the member `owner_id` (role `owner_role`). None:
    the engine itself. A student owns what their member id owns, whatever name anyone types."""
    if actor is None or actor.is_teacher:
        return True
    return bool(actor.member_id) and owner_role == actor.role and owner_id == actor.member_id


def check_may_act(actor: Actor | None, run_id: str, owner_id: str, owner_role: str, what: str, owner: str = "") -> None:
    if not may_act(actor, owner_id, owner_role):
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
    """Training examples a run's config asks for (None when unknown): its `train_limit`, else the dataset's training
    data, else, for your own CSV (`text_csv`), its rows as the reader reads them (the reader's one-line ValueError
    when it cannot read them: such a run could not train anyway), for a character dataset its names or chunks. K
    examples per class (`train_per_class`) count as K times the classes chosen, when that is fewer."""
    examples = _examples(config)
    if config.train_per_class:
        from engine.datasets import DATASETS
        from engine.transfer_spec import chosen_class_names

        classes = DATASETS[config.dataset].classes
        if classes:
            few = config.train_per_class * len(chosen_class_names(config.classes, classes))
            return few if examples is None else min(examples, few)
    return examples


def _examples(config) -> int | None:
    from engine.datasets import DATASETS

    if config.train_limit:
        return int(config.train_limit)
    if config.dataset == "text_csv" and config.data_dir:
        from engine.paths import check_data_dir
        from engine.text.readers import read_csv

        return len(read_csv(check_data_dir(config.data_dir), config.text_column, config.label_column).train_texts)
    if DATASETS[config.dataset].kind == "chars":  # names (rows) or chunks of text, bounded without reading it all
        from engine.chars.corpus import training_examples_bound

        return training_examples_bound(config)
    return FULL_TRAIN_EXAMPLES.get(config.dataset)


# The config fields that decide a model's size, named when its parameters are over the class limit.
SIZE_FIELDS = {"mlp": ("hidden", "depth"), "convnet": (), "resnet": ("width", "depth"),
               "rnn": ("hidden", "depth"), "gru": ("hidden", "depth"), "lstm": ("hidden", "depth"),
               "bow": ("embed_dim", "hidden"), "textcnn": ("embed_dim", "hidden")}
# ... and a character model's (its embedding; the MLP's context window; the transformer's learned positions)
CHAR_SIZE_FIELDS = {"bigram": (), "mlp": ("embed_dim", "context", "hidden", "depth"),
                    "rnn": ("embed_dim", "hidden", "depth"), "gru": ("embed_dim", "hidden", "depth"),
                    "lstm": ("embed_dim", "hidden", "depth"), "transformer": ("embed_dim", "depth", "block_size")}


def size_fields(config) -> tuple[str, ...]:
    """The fields that decide the size of `config`'s model (a text model's embedding too)."""
    from engine.datasets import DATASETS

    kind = DATASETS[config.dataset].kind
    if kind == "chars":
        return CHAR_SIZE_FIELDS.get(config.model, ())
    text = kind == "text"
    return tuple(dict.fromkeys(SIZE_FIELDS.get(config.model, ()) + (("embed_dim", "vocab_size") if text else ())))


def check_submission(actor: Actor | None, limits: ClassLimits, config, *, parameters: int | None,
                     examples: int | None, queued: int) -> None:
    """CapReached when a student's new run would break a class limit (teachers and the local user have none): one
    line naming the field, its value and the limit. `parameters` and `examples` are counted by the caller
    (engine.models.estimate_parameters, run_examples), outside the write transaction this runs in."""
    if actor is None or not actor.is_student:
        return
    if config.epochs > limits.epochs:
        raise CapReached(f"This run asks for {config.epochs} epochs; the class limit is {limits.epochs} per run. "
                         "Lower the epochs (or ask the teacher to raise the limit)")
    if examples is not None and examples > limits.examples:
        where = " (the rows of your CSV)" if config.dataset == "text_csv" and not config.train_limit else ""
        raise CapReached(f"This run trains on {examples:,} examples{where}; the class limit is {limits.examples:,} "
                         "per run. Set 'train limit' to at most that")
    check_cost(limits, config, parameters)
    check_queue_room(actor, limits, queued)


def check_cost(limits: ClassLimits, config, parameters: int | None) -> None:
    """CapReached when one run's model or resources are over the class limits: parameters, batch size, num_cpus,
    num_gpus (for a student's run, and every run of a student's lesson)."""
    if parameters is not None and parameters > limits.parameters:
        named = [f"{name}={getattr(config, name)}" for name in size_fields(config)]
        raise CapReached(f"This run's model has {parameters:,} parameters ({config.model}"
                         + (f" with {', '.join(named)}" if named else "") + f"); the class limit is "
                         f"{limits.parameters:,} per run. Make it smaller"
                         + (f" (lower {' or '.join(n.split('=')[0] for n in named)})" if named else ""))
    for name, value, limit in (("batch_size", config.batch_size, limits.batch),
                               ("num_cpus", config.num_cpus, limits.cpus), ("num_gpus", config.num_gpus, limits.gpus)):
        if value > limit:
            raise CapReached(f"{name}={value:g}: the class limit is {limit:g} per run. Lower {name} (or ask the "
                             "teacher to raise the limit)")


def check_queue_room(actor: Actor | None, limits: ClassLimits, queued: int) -> None:
    """CapReached when a student who has `queued` items waiting (runs, or lesson launches none of whose runs has
    started) may not queue one more (a new run, a resume or a lesson)."""
    if actor is not None and actor.is_student and queued >= limits.queued:
        raise CapReached(f"You already have {queued} run(s) or lesson(s) waiting in the queue; the class limit is "
                         f"{limits.queued}. Wait for one to start, or cancel one")


def check_lesson(actor: Actor | None, limits: ClassLimits, runs: list[tuple[object, int | None, int | None]],
                 queued: int) -> None:
    """CapReached when a student may not launch a lesson whose runs are these (config, parameters, training examples).

    A lesson is one item for the running and queued caps, so its runs are bounded as a whole instead: at most
    `lesson_runs` of them, each training on at most `examples` examples and at most `epochs x examples` examples in
    all (the work of the largest run a student may start), and each within the cost caps of any run (`check_cost`).
    The overfitting lesson's 20 epochs of 200 examples fit; 20 epochs of the full data would not. Lessons come from
    the operator's files, never from a student's form, but a teacher's lowered limits still apply."""
    if actor is None or not actor.is_student:
        return
    if len(runs) > limits.lesson_runs:
        raise CapReached(f"This lesson starts {len(runs)} runs; the class limit is {limits.lesson_runs} runs per "
                         "lesson. Watch the class's run of it, or ask the teacher to run it for the class")
    budget = limits.epochs * limits.examples
    for config, parameters, examples in runs:
        epochs = config.epochs
        if examples is None:  # a dataset of unknown size: only the epochs can be checked
            if epochs > limits.epochs:
                raise CapReached(f"A run of this lesson asks for {epochs} epochs; the class limit is {limits.epochs} "
                                 "per run. Ask the teacher to run it for the class (or to raise the limit)")
        elif examples > limits.examples:
            raise CapReached(f"A run of this lesson trains on {examples:,} examples; the class limit is "
                             f"{limits.examples:,} per run. Ask the teacher to run it for the class (or to raise the "
                             "limit)")
        elif epochs * examples > budget:
            raise CapReached(f"A run of this lesson trains {epochs} epochs of {examples:,} examples; the class limits "
                             f"allow {limits.epochs} epochs of {limits.examples:,} per run. Ask the teacher to run it "
                             "for the class (or to raise the limits)")
        check_cost(limits, config, parameters)
    check_queue_room(actor, limits, queued)
