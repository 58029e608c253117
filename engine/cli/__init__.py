"""The command line (`trainlens ...`, the same as `python -m engine ...`): the scripting interface for teachers
preparing a class.

train [--config FILE.toml] [--set key=value ...] [--name NAME] [--group G] [--wait]
runs [--json] | show RUN_ID [--json] | metrics RUN_ID [--all|--json|--csv] | cancel RUN_ID | resume RUN_ID
explain RUN_ID IMAGE --method NAME [--target CLASS] [--checkpoint EPOCH] --out FILE.png
explain RUN_ID --text "..." --method ig [--target CLASS] [--json]
lesson [--list] | lesson NAME [--wait]
sample RUN_ID [--n 20] [--temperature 0.8] [--prefix TEXT] [--json]
explain-model IMAGE (--arch NAME --weights FILE [--config FILE.json] | --program FILE.pt2) [--method NAME] --out FILE.png
workers [--stop | --start]
import-tensorboard LOGDIR [--group G]
Every TRAINLENS_* setting is checked first (engine.settings): a bad value is one line naming it, exit 2.
Bad arguments exit 2 with a one-line message, never a traceback; cancelling a run that already ended exits 1.
A store that cannot be used (damaged, disk full, locked) is one line naming the file and what to do, exit 2; a
file that cannot be written (`--out` a folder, a full disk) is one line, exit 1; anything unexpected is one line
with the place of its traceback (TRAINLENS_HOME/logs/cli-error.log), exit 1.
Output piped into a reader that stops early (`| head`) ends quietly, with the shell's SIGPIPE status 141.

This module parses and dispatches, and turns every failure into that one line; the commands live by what they
act on: `runs.py` (train, runs, show, metrics, cancel, resume, workers), `explain.py`, `sample.py` (a character run's
samples), `classes.py` (class, lesson), `tensorboard.py` (import-tensorboard); `common.py` holds what they share and `tables.py` the metrics
summary.
"""

from __future__ import annotations

import argparse
import os
import sys

from engine.cli import classes, explain, runs, sample, tensorboard
from engine.cli.common import Parser, UsageError, prog

EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a command killed by SIGPIPE (`yes | head -1`)


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser of every command, and each command's function by name."""
    parser = Parser(prog=prog(), description="TrainLens engine: train, inspect and explain runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    commands = {}
    for register in (runs.register, explain.register, sample.register, classes.register, runs.register_workers,
                     tensorboard.register):
        commands.update(register(sub))
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    try:
        code = _run(argv)
        sys.stdout.flush()  # a reader that left (`| head -1`) shows up here at the latest, not at interpreter exit
        return code
    except BrokenPipeError:
        # The recipe of Python's docs (signal module, "Note on SIGPIPE"): point stdout at devnull so the
        # interpreter's final flush cannot raise again, and end quietly: stopping early is the reader's choice.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (an embedding host): nothing left to flush
            pass
        return EXIT_BROKEN_PIPE


def _run(argv: list[str] | None) -> int:
    import sqlite3

    try:
        parser, commands = build_parser()
        args = parser.parse_args(argv)
        from engine import settings

        settings.check()  # a TRAINLENS_* value TrainLens cannot use: one line naming it, before anything starts
        return commands[args.command](args)
    except UsageError as exc:
        return _fail(exc, 2)
    except sqlite3.DatabaseError as exc:  # met after opening (a page deep in a truncated file)
        from engine.paths import db_path
        from engine.runs.store.errors import describe

        return _fail(describe(exc, db_path()), 2)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        return _fail(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc, 2)
    except RecursionError:
        return _fail("the input nests too deeply to be read", 2)
    except BrokenPipeError:
        raise
    except OSError as exc:  # an output that cannot be written: a folder, /dev/full, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # The store's errors are imported only here: the store package imports pandas, which `--help` and bad
        # arguments must not pay for (a StoreUnavailable comes from a store that is already imported).
        from engine.runs.store.errors import StoreUnavailable

        if isinstance(exc, StoreUnavailable):
            return _fail(exc, 2)
        # a bug: one line for the user, the traceback kept for the report
        return _fail(f"unexpected {type(exc).__name__}: {exc} (details in {_save_traceback()})", 1)


def _fail(message, code: int) -> int:
    """Print `error: MESSAGE` on one line (cut to a readable length) and return the exit status."""
    text = " ".join(str(message).split())
    print(f"error: {text if len(text) <= 600 else text[:597] + '...'}", file=sys.stderr)
    return code


def _save_traceback() -> str:
    import traceback

    try:
        from engine.paths import logs_dir

        path = logs_dir() / "cli-error.log"
        path.write_text(traceback.format_exc())
        return str(path)
    except Exception:  # noqa: BLE001 - the one-line error must still come out
        return "no log: the logs folder cannot be written"
