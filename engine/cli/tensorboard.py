"""`import-tensorboard LOGDIR [--group G]`: TensorBoard event files into script runs, one run per run directory,
with their scalars (tags become metric keys, steps and wall times kept) and hparams (the run's config).

Event files are read with the `tensorboard` package's own reader (an optional dependency: without it, one line
says what to install). A folder holding event files is a run, named by its path under LOGDIR. The folder
`SummaryWriter.add_hparams` makes inside a run (its own event file with the hyperparameters and their metrics)
joins the run above it instead of becoming a run of its own.

Importing is idempotent: each run records its folder and the names, sizes and modification times of its event
files (`SCRIPT_INFO`). Importing the same files again adds nothing; files that changed since (a run that went on
training) replace that run's import.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from engine.cli.common import UsageError

EVENT_MARK = "tfevents"  # TensorBoard's event files: events.out.tfevents.<time>.<host>...
PROGRAM = "trainlens import-tensorboard"


def register(sub) -> dict:
    command = sub.add_parser("import-tensorboard", help="import TensorBoard event files as runs (scalars, hparams)")
    command.add_argument("logdir", help="a TensorBoard log folder (each folder with event files becomes a run)")
    command.add_argument("--group", help="put the imported runs in this group (to compare them together)")
    return {"import-tensorboard": cmd_import_tensorboard}


def cmd_import_tensorboard(args) -> int:
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader  # noqa: F401
    except ImportError:
        raise UsageError("import-tensorboard reads event files with the tensorboard package: "
                         "`pip install tensorboard`, then run it again") from None
    root = Path(args.logdir)
    if not root.is_dir():
        raise UsageError(f"{args.logdir}: no such folder")
    if args.group is not None:
        from engine.records import check_name

        check_name("group", args.group)
    runs = run_folders(root)
    if not runs:
        raise UsageError(f"{args.logdir}: no TensorBoard event files (events.out.tfevents.*) in it or below it")
    from engine.runs.store import Store

    store = Store()
    for folder, files in runs.items():
        print(import_run(store, root, folder, files, args.group))
    return 0


def run_folders(root: Path) -> dict[Path, list[Path]]:
    """Each folder under `root` (itself included) that holds event files -> its event files, sorted; an
    add_hparams folder's files are given to the run folder above it."""
    found: dict[Path, list[Path]] = {}
    for directory, _, names in os.walk(root):
        events = sorted(Path(directory) / n for n in names if EVENT_MARK in n)
        if events:
            found[Path(directory)] = events
    for folder in sorted(found, key=lambda p: len(p.parts), reverse=True):
        parent = folder.parent
        if folder != root and parent in found and _only_hparams(found[folder]):
            found[parent] = sorted(found[parent] + found.pop(folder))
    return found


def _only_hparams(files: list[Path]) -> bool:
    """Whether these event files are what add_hparams writes: a hparams session and a few metric values."""
    return any(_read(path)[1] for path in files) and sum(len(_read(path)[0]) for path in files) <= 100


def signature(files: list[Path]) -> list[list]:
    return [[str(path), path.stat().st_size, path.stat().st_mtime_ns] for path in files]


def import_run(store, root: Path, folder: Path, files: list[Path], group: str | None) -> str:
    """Import one run folder (unless these very files were imported already); returns the line to print."""
    from engine.records import RunStatus, fit_name

    source = str(folder.resolve())
    name = fit_name(str(folder.relative_to(root)) if folder != root else (root.resolve().name or "tensorboard"))
    stamp = signature(files)
    previous = store.imported_run(source)
    if previous is not None:
        info = store.script_info(previous) or {}
        if info.get("signature") == stamp:
            return f"{name}: already imported as run {previous} (unchanged)"
        store.delete_run(previous)
    rows, hparams = [], {}
    for path in files:
        scalars, params = _read(path)
        rows += scalars
        hparams.update(params)
    if not rows and not hparams:
        return f"{name}: no scalars or hparams in its event files; skipped"
    rows.sort(key=lambda row: (row[0], row[3]))  # by step, then wall time
    first_wall = min((row[3] for row in rows), default=None)
    from engine.classroom import Actor

    run_id = store.create_script_run(hparams, program=PROGRAM, host=socket.gethostname(), pid=os.getpid(),
                                     name=name, group=group, owner=Actor.local().name, source=source,
                                     details={"signature": stamp}, started_at=first_wall)
    epochs = _epochs(rows)
    batch = [(run_id, step, epoch, key, value, wall) for (step, key, value, wall), epoch in zip(rows, epochs)]
    for start in range(0, len(batch), 50_000):
        store.log_batch(batch[start:start + 50_000])
    last_wall = max((row[3] for row in rows), default=None)
    store.finish_script_run(run_id, RunStatus.COMPLETED, step=max((row[0] for row in rows), default=0),
                            finished_at=last_wall)
    tags = len({row[1] for row in rows})
    what = f"{tags} tag{'s' * (tags != 1)}, {len(rows):,} rows" + (f", {len(hparams)} hparams" if hparams else "")
    return f"{name}: imported as run {run_id} ({what}{'; replaced the earlier import' if previous else ''})"


def _epochs(rows: list[tuple]) -> list[int]:
    """The engine's epoch index of each (step, key, value, wall) row sorted by step: a key TrainLens logs once per
    epoch closes the epoch at its step, the first row at a later step opens the next (as trainlens.Run.log counts)."""
    from engine.records import is_epoch_level

    epoch, closed_at, out = 0, None, []
    for step, key, _, _ in rows:
        if closed_at is not None and step > closed_at:
            epoch, closed_at = epoch + 1, None
        if is_epoch_level(key):
            closed_at = step
        out.append(epoch)
    return out


_cache: dict[tuple, tuple[list, dict]] = {}


def _read(path: Path) -> tuple[list[tuple[int, str, float, float]], dict]:
    """(step, tag, value, wall_time) of every scalar in one event file, and the hparams it records."""
    key = (str(path), path.stat().st_size, path.stat().st_mtime_ns)
    if key in _cache:
        return _cache[key]
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    scalars, hparams = [], {}
    for event in EventFileLoader(str(path)).Load():
        if not event.HasField("summary"):
            continue
        for value in event.summary.value:
            plugin = value.metadata.plugin_data.plugin_name
            if plugin == "hparams":
                hparams.update(_hparams(value.metadata.plugin_data.content))
            elif value.HasField("simple_value"):
                scalars.append((int(event.step), value.tag, float(value.simple_value), float(event.wall_time)))
            elif value.HasField("tensor") and plugin in ("scalars", ""):
                array = tensor_util.make_ndarray(value.tensor)
                if array.size == 1 and array.dtype.kind in "fiub":
                    scalars.append((int(event.step), value.tag, float(array.reshape(-1)[0]), float(event.wall_time)))
    _cache[key] = (scalars, hparams)
    return scalars, hparams


def _hparams(content: bytes) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    if not data.HasField("session_start_info"):
        return {}
    out = {}
    for name, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = {"number_value": value.number_value, "string_value": value.string_value,
                     "bool_value": value.bool_value}.get(kind)
    return out
