"""What every command of the command line shares: the one-line usage error, the parser that raises it, how the
user called us, opening the store and finding a run by a prefix of its id."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


class UsageError(Exception):
    """Bad user input: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints the whole usage; one line is kinder in scripts
        raise UsageError(message)


def prog() -> str:
    """How the user called us, for help and hints: the `trainlens` console script or `python -m engine`."""
    return "trainlens" if Path(sys.argv[0]).name == "trainlens" else "python -m engine"


def open_store():
    from engine.runs.store import Store

    return Store()


def resolve(store, run_id: str) -> str:
    """The full id of the one run whose id starts with `run_id`; UsageError otherwise."""
    full = store.find_run(run_id)
    if full is None:
        raise UsageError(f"no run matches {run_id!r} (see `{prog()} runs`)")
    return full


def checkpoint_arg(text: str, flag: str = "--checkpoint") -> str | int:
    """'best', 'last', or an epoch number as users count it everywhere (pages, reports, the Explain page's "after
    epoch N"): N >= 1 is the checkpoint after epoch N, 0 the model before training. Returns the engine's epoch
    index (engine.records.epoch_number's inverse: 0 -> INITIAL_EPOCH, -1); UsageError for anything else."""
    if text in ("best", "last"):
        return text
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or number < 0:
        raise UsageError(f"{flag} {text!r}: expected an epoch number (1 = after the first epoch, 0 = before "
                         "training), 'best' or 'last'")
    return number - 1


def json_default(value):
    """JSON for what json cannot write itself: a non-finite float is null, anything else its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
