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
    """'best', 'last' or an epoch number given on the command line."""
    if text in ("best", "last"):
        return text
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected an epoch number, 'best' or 'last'") from None


def json_default(value):
    """JSON for what json cannot write itself: a non-finite float is null, anything else its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
