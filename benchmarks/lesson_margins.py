"""How much room each lesson's claims have: run every lesson in this process (no workers) on several base seeds,
and print each claim's verdict and numbers per seed, with the time the lesson took.

    python benchmarks/lesson_margins.py [NAME ...] [--seeds 0,1,2]

A claim that fails on any seed here is not a lesson (the test suite runs the lessons at seed 0 through the
worker pool; this script is how their margins were chosen).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from engine import lessons  # noqa: E402
from engine.data.loading import load_run_split  # noqa: E402
from engine.records import MODEL_SUMMARY  # noqa: E402
from engine.train import MemorySink, train  # noqa: E402


def run_in_process(lesson: lessons.Lesson) -> list[lessons.RunResult]:
    """Every run of the lesson, its pretraining stages first (their checkpoints in a scratch TRAINLENS_HOME, where
    the variants that start from them read them); the variants' results."""
    results = []
    runs, sources = lesson.launch_runs("margins")
    ids: dict[str, str] = {}
    for name, config in runs:
        ids[name] = uuid.uuid4().hex[:12]
        if name in sources:
            config = config.with_updates(init_from=ids[sources[name]])
        sink = MemorySink()
        result = train(config, sink, run_id=ids[name], device="cpu", split=load_run_split(config))
        if lesson.variant_of(name) is None:  # a pretraining stage: no claim reads it
            continue
        run = lessons.RunResult(config.name, lesson.variant_of(config.name), config.seed, str(result.status),
                                steps=result.step, parameters=sink.artifacts[MODEL_SUMMARY]["parameters"])
        for step, epoch, key, value in sink.rows:
            run.values.setdefault(key, []).append(value)
            run.epochs.setdefault(key, []).append(epoch)
        results.append(run)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["TRAINLENS_HOME"] = tempfile.mkdtemp(prefix="lesson_margins_")  # checkpoints of this script's runs
    chosen = [lessons.get_lesson(n) for n in args.names] if args.names else lessons.load_lessons()[0]
    for lesson in chosen:
        for seed in [int(s) for s in args.seeds.split(",")]:
            seeded = lessons.Lesson(**{**lesson.__dict__, "base": lesson.base.with_updates(seed=seed)})
            start = time.perf_counter()
            results = run_in_process(seeded)
            outcome = lessons.outcome(seeded, results)
            print(f"{lesson.name} seed {seed}: {time.perf_counter() - start:.1f} s (1 thread, in process)")
            print(f"  {outcome.answer}")
            for check in outcome.checks:
                print(f"  [{'ok' if check.holds else 'FAIL'}] {check.claim.text}: {check.detail}")


if __name__ == "__main__":
    main()
