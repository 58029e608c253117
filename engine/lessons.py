"""Lessons: ready-made classroom experiments, each a plain TOML file in `lessons/` (or TRAINLENS_HOME/lessons).

A lesson says what to ask the class (`question`), which runs answer it (a shared `[run]` config and its
`[[variant]]`s, each with `seeds` seeds), which charts to show (`[[chart]]`), what to look for, and the expected
outcome as a machine-checkable claim (`[[claim]]`) over the finished runs' metrics. `launch` queues the whole
lesson as one group (every run of one seed sees identical data: the data stream depends only on seed and epoch);
`outcome` reads the finished runs back, says whether each claim holds and words the answer from the actual numbers
(engine/lesson_answer.py: the winner first). Torch-free and streamlit-free: the CLI (`trainlens lesson`) and the
Lessons page both use it; handed the runner and the store it works with, it imports neither.

A lesson may pretrain first: each `[[pretrain]]` stage is one run (the shared config plus its `set`, the base seed),
and a variant with `start_from = "<stage label>"` starts from that run's best weights (`init_from`). The launch
queues the stages and the variants together; a variant's runs wait in the queue until their stage has finished
(engine.runs.store.queue).

A claim compares one statistic of a metric between two variants (`left` op `right` + `margin`), or with a
number (`value`), or asks for a status (`status = "diverged"`). With several seeds the statistic is the mean
over seeds. Statistics: last (the final value), max, min, first. The metric `parameters` is the model's
parameter count; `steps` is the number of optimizer steps the run took.
"""

from __future__ import annotations

import math
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from engine.config import RunConfig
from engine.files import read_small_file
from engine.lesson_answer import Answer, Standing, answer, format_alike
from engine.lesson_parts import (OPS, PSEUDO_METRICS, STATS, X_AXES, Chart, Claim,  # noqa: F401 (the lesson's parts)
                                 array, choice, parse_chart, parse_claim, required_text, table)
from engine.records import MODEL_SUMMARY, NAME_MAX, TERMINAL, RunStatus, check_name, epoch_label

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUILTIN_DIR = PROJECT_ROOT / "lessons"
GROUP_PREFIX = "lesson "  # a lesson's runs share the group "lesson NAME · launch time"
MAX_LESSON_BYTES = 50_000


@dataclass(frozen=True)
class Variant:
    """One arm of the lesson: a label (the run's name), the config fields it changes, and its colour key: variants
    with one key have one colour on every chart of the lesson (default: the label without its " @ rate" part)."""

    label: str
    changes: dict[str, Any]
    note: str = ""
    color_key: str = ""
    start_from: str = ""  # the label of the lesson's [[pretrain]] stage whose run it starts from ("" = none)


@dataclass(frozen=True)
class Lesson:
    name: str  # the file's stem: the URL (?lesson=NAME) and CLI name
    title: str
    question: str
    minutes: float  # wall time on 2 CPU cores, measured
    look_for: tuple[str, ...]
    base: RunConfig
    variants: tuple[Variant, ...]
    seeds: int
    charts: tuple[Chart, ...]
    claims: tuple[Claim, ...]
    answer_metric: str = "val_acc"
    answer_stat: str = "last"
    answer_among: tuple[str, ...] = ()  # the variants the answer ranks (all when empty): the question's, e.g. K=5
    order: int = 100
    explain: bool = False  # offer links into the Explain page for the lesson's runs
    samples: bool = False  # character runs: show each variant's recorded samples side by side, newest first
    path: str = ""
    pretrain: tuple[Variant, ...] = ()  # runs the variants start from, queued first (each once, at the base seed)

    @property
    def run_count(self) -> int:
        return len(self.pretrain) + len(self.variants) * self.seeds

    def configs(self, group: str = "") -> list[RunConfig]:
        """One config per (variant, seed), named by `run_name`, all in `group`."""
        configs = []  # a variant that starts from a stage gets its init_from at launch (launch_runs)
        for variant in self.variants:
            for offset in range(self.seeds):
                seed = self.base.seed + offset
                changes = {**variant.changes, "seed": seed, "group": group,
                           "name": run_name(variant.label, seed if self.seeds > 1 else None)}
                configs.append(self.base.with_updates(**changes))
        return configs

    def launch_runs(self, group: str = "") -> tuple[list[tuple[str, RunConfig]], dict[str, str]]:
        """Every run a launch queues, the pretraining stages first, as (name, config); and {run name: the name of the
        stage run it starts from} for the variants' runs that start from one."""
        stages = [(stage.label, self.base.with_updates(**{**stage.changes, "group": group, "name": stage.label}))
                  for stage in self.pretrain]
        start_from = {variant.label: variant.start_from for variant in self.variants if variant.start_from}
        runs = [(config.name, config) for config in self.configs(group)]
        return stages + runs, {name: start_from[self.variant_of(name)] for name, _ in runs
                               if self.variant_of(name) in start_from}

    def color_keys(self) -> dict[str, str]:
        """Variant (and stage) label -> colour key, in the lesson's order (the order the keys take the palette)."""
        return {variant.label: variant.color_key or variant.label for variant in self.pretrain + self.variants}

    def variant_of(self, name: str) -> str | None:
        """The variant label of a run named `name` (None for a run that is no part of this lesson)."""
        for variant in self.variants:
            if name == variant.label or name.startswith(variant.label + SEED_SEPARATOR):
                return variant.label
        return None


SEED_SEPARATOR = " · seed "


def run_name(label: str, seed: int | None) -> str:
    return label if seed is None else f"{label}{SEED_SEPARATOR}{seed}"


def default_color_key(label: str) -> str:
    """A variant's colour key when its lesson names none: the label up to " @ ", so that "Momentum @ 0.001" and
    "Momentum @ 0.02 (its own)" share Momentum's colour."""
    return label.split(" @ ")[0].strip() or label


# ---- loading -----------------------------------------------------------------------------------------------------
def lesson_dirs() -> list[Path]:
    """Built-in lessons, then the teacher's own in TRAINLENS_HOME/lessons (a same-named file there wins)."""
    from engine.paths import trainlens_home

    return [BUILTIN_DIR, trainlens_home() / "lessons"]


def lesson_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for folder in lesson_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                files[path.stem] = path
    return files


def load_lessons() -> tuple[list[Lesson], dict[str, str]]:
    """Every readable lesson in gallery order, and {file name: problem} for the ones that are not."""
    lessons, problems = [], {}
    for name, path in lesson_files().items():
        try:
            lessons.append(load_lesson_file(path))
        except ValueError as exc:
            problems[path.name] = str(exc)
    return sorted(lessons, key=lambda lesson: (lesson.order, lesson.name)), problems


def get_lesson(name: str) -> Lesson:
    """The lesson called `name`; ValueError naming the known lessons otherwise."""
    files = lesson_files()
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise ValueError(f"no lesson named {name!r}; known lessons: {known}")
    return load_lesson_file(files[name])


def load_lesson_file(path: Path) -> Lesson:
    try:  # a regular file, capped, read without blocking (engine.files): a pipe named x.toml must not hang the gallery
        data = tomllib.loads(read_small_file(path, MAX_LESSON_BYTES, "a lesson file").decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path.name}: not a readable TOML file ({exc})") from None
    try:
        return parse_lesson(path.stem, data, str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path.name}: {exc.args[0] if exc.args else exc}") from None


def parse_lesson(name: str, data: dict[str, Any], path: str = "") -> Lesson:
    """Build and validate a Lesson from a parsed TOML table; ValueError says which entry is wrong."""
    known = {"title", "question", "minutes", "look_for", "run", "variant", "seeds", "chart", "claim", "answer",
             "order", "explain", "samples", "pretrain"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown entries {', '.join(unknown)}; a lesson has {', '.join(sorted(known))}")
    check_name("the lesson's file name", name)  # its name and title are shown as names are: on one line, as typed
    check_name("title", required_text(data, "title"))
    base = RunConfig.from_dict({**RunConfig().to_dict(), **table(data, "run")})
    variants = tuple(_variant(v) for v in array(data, "variant"))
    pretrain = tuple(_variant(v) for v in array(data, "pretrain"))
    if not variants:
        raise ValueError("a lesson needs at least one [[variant]]")
    labels = [v.label for v in variants]
    stages = [v.label for v in pretrain]
    if len(set(labels + stages)) != len(labels + stages):
        raise ValueError(f"variant and pretrain labels must differ: {labels + stages}")
    for variant in pretrain + variants:
        base.with_updates(**variant.changes)  # every variant must be a valid config
        if variant.start_from and (variant.start_from not in stages or variant in pretrain):
            raise ValueError(f"variant {variant.label!r}: start_from={variant.start_from!r} names no [[pretrain]] "
                             f"stage; the stages are {', '.join(stages) or 'none'}")
    seeds = int(data.get("seeds", 1))
    if not 1 <= seeds <= 10:
        raise ValueError(f"seeds={seeds}: must be 1..10")
    if len(labels) * seeds > 30:
        raise ValueError(f"{len(labels) * seeds} runs: a lesson has at most 30")
    if len(max(labels, key=len)) + len(SEED_SEPARATOR) + 2 > NAME_MAX:
        raise ValueError("a variant label is too long to name its runs")
    charts = tuple(parse_chart(c, labels + stages) for c in array(data, "chart"))
    claims = tuple(parse_claim(c, labels) for c in array(data, "claim"))
    if not claims:
        raise ValueError("a lesson needs at least one [[claim]]: its expected outcome, checked on the results")
    answer = table(data, "answer")
    among = tuple(str(label) for label in answer.get("among", []))
    if unknown := [label for label in among if label not in labels]:
        raise ValueError(f"answer.among names {unknown[0]!r}, not a variant's label")
    lesson = Lesson(
        name=name, title=required_text(data, "title"), question=required_text(data, "question"), minutes=float(data.get("minutes", 1)),
        look_for=tuple(str(item) for item in data.get("look_for", [])), base=base, variants=variants, seeds=seeds,
        charts=charts, claims=claims, answer_metric=str(answer.get("metric", "val_acc")),
        answer_stat=choice(answer.get("stat", "last"), STATS, "answer.stat"), answer_among=among, order=int(data.get("order", 100)),
        explain=bool(data.get("explain", False)), samples=bool(data.get("samples", False)), path=path,
        pretrain=pretrain)
    return lesson


def _variant(data: dict) -> Variant:
    label = check_name("variant label", required_text(data, "label"))
    key = data.get("color_key", default_color_key(label))
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"variant {label!r}: color_key must be text")
    start_from = data.get("start_from", "")
    if not isinstance(start_from, str) or (start_from and "init_from" in table(data, "set")):
        raise ValueError(f"variant {label!r}: start_from is a [[pretrain]] label, and a variant that has it sets no "
                         "init_from")
    return Variant(label, dict(table(data, "set")), str(data.get("note", "")), key.strip(), start_from)


# ---- launching ---------------------------------------------------------------------------------------------------
def launch_group(lesson: Lesson, when: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when or time.time()))
    return f"{GROUP_PREFIX}{lesson.name} · {stamp}"


def launch(lesson: Lesson, runner, owner: str | None = None, for_class: bool = False) -> tuple[str, list[str]]:
    """Queue every run of the lesson as one group, one item for the class limits; returns (group, run ids).

    Whole or not at all: a refusal (a class limit, CapReached) queues nothing. `for_class` (the teacher only): the
    launch every student's Lessons page shows (engine.runs.store.launches)."""
    runs, sources = lesson.launch_runs()
    return runner.submit_lesson(lesson.name, runs, launch_group(lesson), owner=owner, for_class=for_class,
                                sources=sources)


def is_lesson_group(group: str, lesson_name: str | None = None) -> bool:
    if not isinstance(group, str) or not group.startswith(GROUP_PREFIX):
        return False
    return lesson_name is None or group.startswith(f"{GROUP_PREFIX}{lesson_name} · ")


def latest_group(groups: Iterable[str], lesson_name: str) -> str | None:
    """The most recent launch of the lesson among `groups` (launch groups sort by their time stamp)."""
    mine = sorted({g for g in groups if is_lesson_group(g, lesson_name)})
    return mine[-1] if mine else None


# ---- results and the claim ---------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a claim needs of one finished run: its variant, status and every metric's values in step order."""

    run_id: str
    variant: str
    seed: int
    status: str
    values: dict[str, list[float]] = field(default_factory=dict)
    epochs: dict[str, list[int]] = field(default_factory=dict)  # 0-based epoch index of each value
    parameters: float | None = None
    steps: int = 0
    error: str = ""


def results_from_store(store, lesson: Lesson, group: str) -> list[RunResult]:
    """The lesson's runs in `group` read back from the store (all, finished or not)."""
    runs = store.list_runs(group=group)
    results = []
    for row in runs.to_dict(orient="records"):
        variant = lesson.variant_of(str(row["name"]))
        if variant is None:
            continue
        metrics = store.get_metrics(row["run_id"], keys=_claim_keys(lesson))
        result = RunResult(row["run_id"], variant, int(row.get("cfg.seed") or 0), str(row["status"]),
                           steps=int(row.get("step") or 0), error=str(row.get("error") or ""))
        for key, rows in metrics.sort_values("step", kind="stable").groupby("key"):
            result.values[str(key)] = [float(v) for v in rows["value"]]
            result.epochs[str(key)] = [int(e) for e in rows["epoch"]]
        summary = store.get_artifact(row["run_id"], MODEL_SUMMARY)
        if isinstance(summary, dict) and "parameters" in summary:
            result.parameters = float(summary["parameters"])
        results.append(result)
    return results


def _claim_keys(lesson: Lesson) -> list[str]:
    keys = {lesson.answer_metric} | {c.metric for c in lesson.claims if c.metric} | {
        c.right_metric for c in lesson.claims if c.right_metric}
    return sorted(keys - set(PSEUDO_METRICS))


def statistic(result: RunResult, metric: str, stat: str) -> float | None:
    """One number of one run: `stat` of `metric`'s finite values (None when it logged none)."""
    if metric == "parameters":
        return result.parameters
    if metric == "steps":
        return float(result.steps)
    values = [v for v in result.values.get(metric, []) if math.isfinite(v)]
    if not values:
        return None
    return {"last": values[-1], "first": values[0], "max": max(values), "min": min(values)}[stat]


def variant_statistic(results: list[RunResult], variant: str, metric: str, stat: str) -> float | None:
    """The mean over the variant's seeds (None when any seed has no value: a claim needs every run)."""
    values = [statistic(r, metric, stat) for r in results if r.variant == variant]
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


@dataclass(frozen=True)
class ClaimCheck:
    claim: Claim
    holds: bool | None  # None: not decidable yet (runs unfinished or missing)
    detail: str  # the numbers behind the verdict


def check_claims(lesson: Lesson, results: list[RunResult]) -> list[ClaimCheck]:
    return [_check(claim, results) for claim in lesson.claims]


def _check(claim: Claim, results: list[RunResult]) -> ClaimCheck:
    left_runs = [r for r in results if r.variant == claim.left]
    if not left_runs:
        return ClaimCheck(claim, None, f"no runs of {claim.left!r}")
    if claim.status:
        statuses = sorted({r.status for r in left_runs})
        holds = all(r.status == claim.status for r in left_runs)
        return ClaimCheck(claim, holds, f"{claim.left}: {', '.join(s.replace('_', ' ') for s in statuses)}")
    left = variant_statistic(results, claim.left, claim.metric, claim.stat)
    if claim.right:
        right_metric, right_stat = claim.right_metric or claim.metric, claim.right_stat or claim.stat
        right = variant_statistic(results, claim.right, right_metric, right_stat)
    else:
        right = claim.value
    if left is None or right is None:
        return ClaimCheck(claim, None, f"{claim.stat} {claim.metric}: not logged yet")
    left_text, right_text = format_alike([left, right])  # 1.000 next to 0.442, never 1
    if claim.right:
        same = (right_metric, right_stat) == (claim.metric, claim.stat)
        right_text = f"{claim.right} {right_text}" if same else \
            f"{claim.right} {right_stat} {right_metric} {right_text}"
    bound = right + claim.margin if claim.op in (">", ">=") else right - claim.margin
    holds = {">": left > bound, ">=": left >= bound, "<": left < bound, "<=": left <= bound}[claim.op]
    signed = claim.margin if claim.op in (">", ">=") else -claim.margin
    margin = f" {'+' if signed > 0 else '-'} {abs(signed):,g}" if claim.margin else ""
    return ClaimCheck(claim, holds, f"{claim.stat} {claim.metric}: {claim.left} {left_text} {claim.op} "
                                    f"{right_text}{margin}")


def lesson_answer(lesson: Lesson, results: list[RunResult]) -> Answer:
    """The answer from the actual numbers: the best and the last variant named first, then every variant's."""
    rows = []
    for variant in lesson.variants:
        if lesson.answer_among and variant.label not in lesson.answer_among:
            continue
        runs = [r for r in results if r.variant == variant.label]
        diverged = [r for r in runs if r.status == RunStatus.DIVERGED]
        if runs:
            epochs = runs[0].epochs.get(lesson.answer_metric) or []
            rows.append((variant.label, None if diverged else variant_statistic(
                results, variant.label, lesson.answer_metric, lesson.answer_stat),
                f"diverged at step {diverged[0].steps}" if diverged else "has no value yet",
                epoch_label(epochs[-1]) if lesson.answer_stat == "last" and epochs else ""))
    return answer(rows, lesson.answer_metric, lesson.answer_stat, lesson.seeds)


@dataclass(frozen=True)
class Outcome:
    finished: bool  # every run has ended
    answer: str  # the winner named first (lesson_answer)
    checks: list[ClaimCheck]
    standings: tuple[Standing, ...] = ()  # every variant's number, best first

    @property
    def holds(self) -> bool | None:
        """True when every claim holds, False when one fails, None while undecided."""
        if any(c.holds is False for c in self.checks):
            return False
        if self.finished and all(c.holds for c in self.checks):
            return True
        return None


def outcome(lesson: Lesson, results: list[RunResult]) -> Outcome:
    finished = bool(results) and all(r.status in TERMINAL for r in results)
    checks = check_claims(lesson, results) if finished else [ClaimCheck(c, None, "waiting for the runs to finish")
                                                             for c in lesson.claims]
    told = lesson_answer(lesson, results) if finished else Answer("", ())
    return Outcome(finished, told.sentence, checks, told.standings)


def lessons_home_hint() -> str:
    from engine.paths import trainlens_home

    return os.fspath(trainlens_home() / "lessons")
