"""The vocabulary shared by the engine and the dashboard, written once: run statuses, run kinds, metric keys,
artifact names, a run as the store returns it (`RunRecord`) and the shapes of the stored artifacts.

Torch-free and streamlit-free on purpose: the store, the workers, the CLI and every page import it, and a page
must not pay torch's import (seconds) to know what "interrupted" means. Statuses are a `str` enum, so a value
read back from SQLite (`"running"`) compares equal to `RunStatus.RUNNING` and pandas columns of plain strings
can be tested with `.isin(ACTIVE)`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict


class RunStatus(StrEnum):
    """Where a run is in its life. A run is queued, then running, then ends in exactly one terminal status."""

    QUEUED = "queued"  # waiting for a free worker
    RUNNING = "running"  # a worker is training it (or loading its data)
    COMPLETED = "completed"  # trained every epoch
    STOPPED_EARLY = "stopped_early"  # early stopping ended it: a success
    CANCELLED = "cancelled"  # a user asked it to stop
    DIVERGED = "diverged"  # the loss became NaN or infinite
    FAILED = "failed"  # an error (bad data, a bug); the error says which
    INTERRUPTED = "interrupted"  # its worker was lost (killed, out of memory, shut down); resumable


ACTIVE: tuple[RunStatus, ...] = (RunStatus.QUEUED, RunStatus.RUNNING)
TERMINAL: tuple[RunStatus, ...] = (RunStatus.COMPLETED, RunStatus.STOPPED_EARLY, RunStatus.CANCELLED,
                                   RunStatus.DIVERGED, RunStatus.FAILED, RunStatus.INTERRUPTED)
STATUSES: tuple[RunStatus, ...] = ACTIVE + TERMINAL
SUCCEEDED: tuple[RunStatus, ...] = (RunStatus.COMPLETED, RunStatus.STOPPED_EARLY)  # exit 0 for `train --wait`
RESUMABLE: tuple[RunStatus, ...] = (RunStatus.INTERRUPTED, RunStatus.CANCELLED, RunStatus.FAILED)
UNSUCCESSFUL: tuple[RunStatus, ...] = (RunStatus.FAILED, RunStatus.DIVERGED, RunStatus.INTERRUPTED)  # shown with their error
DELETABLE: tuple[RunStatus, ...] = (RunStatus.QUEUED,) + TERMINAL  # a running run must be cancelled first


class RunKind(StrEnum):
    """What a queued row of the `runs` table is: a training run, or a helper job serving one (`parent_id`)."""

    TRAIN = "train"
    LR_FIND = "lr_find"  # the fast.ai learning-rate sweep
    OVERFIT = "overfit"  # the recipe's overfit-one-batch check
    SCRIPT = "script"  # trained by a user's own script through the `trainlens` client (or imported): never queued


TRAINED: tuple[RunKind, ...] = (RunKind.TRAIN, RunKind.SCRIPT)  # the kinds a page lists as runs (not helper jobs)


class ScriptConfig(dict):
    """A script run's config: any JSON object of hyperparameters, as the script gave it (`trainlens.init(config=)`,
    `add_hparams`). `to_dict()` as RunConfig's; `columns()` flattens nested objects to dotted keys (`opt.lr`) and
    writes lists as JSON text, so the runs listing can spread them over `cfg.<key>` columns next to engine runs'
    fields, and Compare can group by any of them."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def to_json(self) -> str:
        import json

        return json.dumps(self, sort_keys=True, allow_nan=False, default=str)

    def columns(self) -> dict[str, Any]:
        import json

        flat: dict[str, Any] = {}

        def spread(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for key, inner in value.items():
                    spread(f"{prefix}.{key}" if prefix else str(key), inner)
            elif isinstance(value, (list, tuple, dict)):
                flat[prefix] = json.dumps(value, default=str)
            else:
                flat[prefix] = value

        for key, value in self.items():
            spread(str(key), value)
        return flat


# Artifacts of script runs (written by the trainlens client): a script's identity, what it logged beyond scalars.
SCRIPT_INFO = "script"  # {"program": argv[0], "host", "pid", "cancellable", "source" (an import's folder)}
SCRIPT_HISTOGRAM_PREFIX = "histogram/"  # histogram/{step}/{tag}: {"tag", "step", "edges", "counts", "wall_time"...}
SCRIPT_TEXT_PREFIX = "text/"  # text/{step}/{tag}: {"tag", "step", "text", "wall_time"}
LOGGED_MODEL = "logged_model"  # what run.log_model saved: {"kind": "zoo" | "torchvision", "architecture", ...}


def script_artifact(prefix: str, step: int, tag: str) -> str:
    """The name of a script run's histogram or text artifact, e.g. 'histogram/120/fc1.weight'."""
    return f"{prefix}{int(step)}/{tag}"


def split_script_artifact(name: str, prefix: str) -> tuple[int, str] | None:
    """(step, tag) of an artifact named by script_artifact with `prefix`; None for any other name."""
    if not name.startswith(prefix):
        return None
    step, _, tag = name[len(prefix):].partition("/")
    try:
        return int(step), tag
    except ValueError:
        return None


# ---- metric keys -------------------------------------------------------------------------------------------------
# Logged every optimizer step by the training loop.
STEP_KEYS = ("loss", "lr", "grad_norm", "clipped", "examples")
# Logged once per epoch, at the epoch's last step. The EMA/SWA twins of the validation keys carry a prefix.
EPOCH_KEYS = frozenset({"train_loss", "train_acc", "val_loss", "val_acc", "val_precision", "val_recall", "val_f1",
                        "examples_per_s", "best_epoch"})
# Also per epoch, only for text datasets with a negation/contrast subset (sentiment): accuracy on it and off it.
SUBSET_KEYS = ("val_acc_hard", "val_acc_easy")
# Also per epoch, only for character datasets (language modelling): validation loss in bits per character, the share
# of the recorded samples that are distinct, new (not a training document) and real (a held-out one), characters
# trained per second.
LM_KEYS = ("val_bpc", "val_distinct", "val_new", "val_real", "chars_per_s")
AVERAGED_PREFIXES = ("ema_", "swa_")  # ema_val_acc, swa_val_loss...: validation of the averaged weights
FINAL_KEYS = ("train_loss", "val_loss", "val_acc", "val_precision", "val_recall", "val_f1")  # a run's summary
# The keys the Compare page always charts (per step: loss, lr, grad_norm, clipped as its fraction, examples as an
# x axis; per epoch: validation accuracy, training and validation loss). Its "More metrics" offers every other key.
COMPARE_KEYS = STEP_KEYS + ("train_loss", "val_loss", "val_acc")
# Helper jobs stream their points as metrics of their own row.
LR_FIND_POINT = {"lr": "lr_find_lr", "loss": "lr_find_loss", "smoothed": "lr_find_smoothed"}  # sweep field -> key
LR_FIND_KEYS = tuple(LR_FIND_POINT.values())
OVERFIT_KEY = "overfit_final_loss"  # the overfit check's last loss, logged once at its end
# Per-layer statistics are logged as f"{statistic}/{layer}" every `layer_stats_every` steps.
LAYER_STAT_SEPARATOR = "/"


NAME_MAX = 120  # characters in a run, group, lesson or display name: enough to say what it is, not a page


def check_name(what: str, name: str) -> str:
    """`name` if it is a usable name; ValueError with a sentence a user can act on otherwise. Names are shown as
    plain text everywhere; this keeps them to a size every page can lay out, on one line, and free of the invisible
    characters that make a name read as something else (see `hidden_character`)."""
    if not isinstance(name, str):
        raise ValueError(f"{what} must be text, not {type(name).__name__}")
    if len(name) > NAME_MAX:
        raise ValueError(f"{what} is {len(name):,} characters long; at most {NAME_MAX} are allowed")
    if any(ord(ch) < 32 and ch not in "\t" for ch in name):
        raise ValueError(f"{what} contains control characters (line breaks...); use one line of text")
    if (hidden := hidden_character(name)) is not None:
        raise ValueError(f"{what} contains an invisible or control character ({hidden}); use plain text")
    return name


# Unicode categories no name needs: controls (Cc; a tab is let through by check_name), formatting characters (Cf:
# the bidirectional overrides U+202A-202E and isolates U+2066-2069, the marks U+200E/U+200F, zero-width spaces and
# joiners), private use (Co), lone surrogates (Cs), line and paragraph separators (Zl, Zp). U+202E in a run name
# shows "gpj.exe" as "exe.jpg" on every page and in every legend.
HIDDEN_CATEGORIES = ("Cc", "Cf", "Co", "Cs", "Zl", "Zp")


def hidden_character(text: str, allowed: str = "\t") -> str | None:
    """The first character of `text` that is invisible or reorders the text around it, as 'U+202E RIGHT-TO-LEFT
    OVERRIDE'; None when there is none (characters in `allowed` pass)."""
    import unicodedata

    for ch in text:
        if ch not in allowed and unicodedata.category(ch) in HIDDEN_CATEGORIES:
            return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}".rstrip()
    return None


def fit_name(text: str) -> str:
    """A name made from other names (a helper job's "LR finder: <run name>") cut to NAME_MAX, with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= NAME_MAX else text[:NAME_MAX - 1] + "…"


def epoch_number(epoch_index: int) -> int:
    """The epoch number users see for the engine's 0-based `epoch_index`: epochs count from 1 everywhere
    (pages, reports, CLI), and "epoch N" means "after N epochs of training". 0 means before training."""
    return int(epoch_index) + 1


def epoch_label(epoch_index: int) -> str:
    """'after epoch N' for a 0-based engine epoch index (see epoch_number); -1 reads 'before training'."""
    number = epoch_number(epoch_index)
    return "before training" if number == 0 else f"after epoch {number}"


def is_epoch_level(key: str) -> bool:
    """True for keys logged once per epoch (validation metrics, their EMA/SWA twins, best_epoch). Any other key is
    step-level: the per-step keys and the per-layer statistics (every K steps)."""
    return key in EPOCH_KEYS or key in SUBSET_KEYS or key in LM_KEYS or key.startswith(AVERAGED_PREFIXES)


# ---- artifact names ----------------------------------------------------------------------------------------------
# {"parameters" (all of them), "repr", "steps_per_epoch", "total_steps", and what engine.transfer did: "trainable",
# "frozen", "adapter" (parameter counts), "source" (init_from resolved, "" for random weights), "new_head"...}
MODEL_SUMMARY = "model_summary"
RECIPE_CHECKS = "recipe_checks"  # list[RecipeCheck] of a run's first life
RECIPE_CHECKS_RESUMED = "recipe_checks_resumed"  # checks measured after a resume
LR_FIND = "lr_find"  # the LR finder's result, on the job and on the run it served
OVERFIT_ONE_BATCH = "overfit_one_batch"  # the overfit check (a RecipeCheck), on the job and on the run
REPORT_KINDS = ("best", "last", "ema", "swa")  # the weights an evaluation report is computed for
REPORT_PREFIX = "report/"
HISTOGRAM_PREFIX = "hist/"
# character runs: the samples recorded at an evaluation, `samples/{step}`: {"step", "epoch", "temperature", "seed",
# "samples": [str], "distinct", "new", "real"} (engine.chars.sampling.record); the counting baselines,
# {"uniform", "unigram", "bigram"} in nats per character, and "vocab" (engine.chars.data)
SAMPLES_PREFIX = "samples/"
LM_BASELINES = "lm_baselines"
# where a run executes, filed when it starts on a Ray task: {"executor", "host", "node_ip", "node_id", "device",
# "gpu_ids", "pid", "threads", "num_cpus", "num_gpus"} (engine.runs.ray_remote writes it, engine.runs.placement reads)
PLACEMENT = "placement"
RAY_ATTEMPTS = "ray_attempts"  # list[str]: why earlier Ray attempts of a run ended (its worker or node lost)
RAY_TRACEBACK = "ray_traceback"  # str: the end of the traceback of a run that failed inside its Ray task


def report_artifact(kind: str) -> str:
    """Name of the evaluation report of one set of weights, e.g. 'report/best'."""
    if kind not in REPORT_KINDS:
        raise ValueError(f"report kind {kind!r}: allowed values are {', '.join(REPORT_KINDS)}")
    return f"{REPORT_PREFIX}{kind}"


def histogram_artifact(step: int) -> str:
    """Name of the layer histograms taken at a step, e.g. 'hist/150' (the step count the metrics use)."""
    return f"{HISTOGRAM_PREFIX}{int(step)}"


def histogram_steps(artifact_names: list[str] | tuple[str, ...] | set[str]) -> list[int]:
    """The steps that have histograms, ascending, from a run's artifact names."""
    return _steps(artifact_names, HISTOGRAM_PREFIX)


def samples_artifact(step: int) -> str:
    """Name of the samples recorded at a step, e.g. 'samples/250'."""
    return f"{SAMPLES_PREFIX}{int(step)}"


def samples_steps(artifact_names: list[str] | tuple[str, ...] | set[str]) -> list[int]:
    """The steps that have recorded samples, ascending, from a run's artifact names."""
    return _steps(artifact_names, SAMPLES_PREFIX)


def _steps(artifact_names, prefix: str) -> list[int]:
    steps = []
    for name in artifact_names:
        if name.startswith(prefix):
            try:
                steps.append(int(name[len(prefix):]))
            except ValueError:
                continue
    return sorted(steps)


# ---- a run, as the store returns it ------------------------------------------------------------------------------
class RunRecord(TypedDict):
    """One run as `Store.get_run` and `Store.claim_next` return it, and as a worker executes it: every column of the
    store's `runs` table (`grp` read as `group`, `config` parsed), then three values derived when it is read.
    `Store.list_runs` has a column for every key but `config`, which it spreads over one `cfg.<field>` column each."""

    run_id: str  # 12 hex characters; the CLI accepts any unique prefix
    kind: str  # a RunKind value: train | lr_find | overfit | script
    name: str  # at most NAME_MAX characters (older rows are cut to 1,000 when read)
    group: str  # the `grp` column: runs meant to be compared together ('' when none)
    owner: str  # a display name in a class; the OS user's name (or '') for a local run
    owner_role: str  # local | student | teacher (engine.classroom)
    owner_id: str  # the class member who owns it (engine.runs.store.members); '' for a local run
    config: Any  # the RunConfig (engine.config imports this module, so it is not imported here); a ScriptConfig
    #              for a script run (kind script)
    status: str  # a RunStatus value (compares equal to the enum's members)
    device: str | None  # where it trains ('cpu', 'cuda:0', 'ray (waiting for resources)'...); None until claimed
    worker_id: str | None  # the worker that claimed it last; None while queued anew after a resume
    created_at: float  # Unix time it was submitted; kept across resumes
    queued_at: float  # Unix time of its place in the queue; reset when it is resumed
    parent_id: str | None  # for a helper job (lr_find, overfit): the run it serves
    started_at: float | None  # Unix time of its first claim; kept across resumes
    finished_at: float | None  # Unix time it ended; None while queued or running
    heartbeat_at: float | None  # Unix time of its worker's last heartbeat or progress report
    step: int  # optimizer steps done
    total_steps: int  # optimizer steps of the whole run; 0 until its worker knows
    epoch: int  # 0-based index of the epoch being trained (see epoch_number)
    error: str | None  # why it failed, diverged, was interrupted or was stopped by a class limit; None otherwise
    cancel_requested: int  # 1 once a cancel was asked of it while running (its worker reads it with its heartbeat)
    resume_from: str | None  # 'last' when it must continue from its last checkpoint (a resumed run)
    lease: int  # claim number: its worker's writes apply only under the current one
    claimed_at: float | None  # Unix time of its latest claim (a resume's, say); None until claimed
    pace: float | None  # steps per second, smoothed over its current claim's progress reports; None until measured
    pace_at: float | None  # Unix time of the current claim's last progress report
    pace_since: float | None  # Unix time of its first (the pace leaves out the start: data loading, warm-up)
    progress: float  # derived: step / total_steps, 0 to 1 (1 once completed)
    eta_s: float | None  # derived: seconds left at the measured pace, once it was measured a few seconds; else None
    duration_s: float | None  # derived: seconds from its first start to its end (or to now); None before it starts


# ---- the shapes of stored artifacts ------------------------------------------------------------------------------
class RecipeCheck(TypedDict):
    """One check of Karpathy's recipe, as `engine.diagnostics.recipe` builds it and the Run report draws it."""

    name: str  # loss_at_init | input_independent | overfit_one_batch | clipping | dead_units | saturation | update_ratio
    title: str
    status: str  # pass | warn | skip ("skip": could not run; never a silent pass)
    value: float | None
    numbers: dict[str, Any]  # label -> number (None where not finite)
    message: str  # what was measured and what to do
    why: str  # one line: why the check matters


class Misclassified(TypedDict):
    index: int  # position in the run's validation split
    true: int
    pred: int
    confidence: float  # probability of the predicted class
    true_prob: float  # probability of the true class


class EvaluationReport(TypedDict, total=False):
    """`report/{kind}`: scikit-learn's classification report and the confusion matrix of one set of weights."""

    n: int
    accuracy: float
    loss: float  # mean cross-entropy
    labels: list[str]
    report: dict[str, dict[str, float]]  # classification_report(output_dict=True) plus "micro avg"
    report_text: str
    confusion: list[list[int]]
    confusion_normalized: list[list[float]]
    misclassified: list[Misclassified]  # the most confident mistakes first
    misclassified_total: int


# ---- constants both sides need -----------------------------------------------------------------------------------
UPDATE_RATIO_REFERENCE = -3.0  # log10 std(update)/std(weights): makemore's ~1e-3 per step is healthy
OVERFIT_WHY = ("A model and optimizer that cannot memorise a handful of examples have a bug "
               "(labels, loss, optimizer wiring) or far too little capacity or learning rate.")
