"""A script's run: `init` starts it in the store, `Run.log` buffers metric rows, `finish` (or leaving a `with`
block, or the interpreter's normal exit) ends it with a true status.

- Where: the store the CLI and the dashboard use (`TRAINLENS_HOME`, else `./.trainlens`), so a script and
  `streamlit run app/main.py` started in the same folder meet.
- Status: `completed` at `finish()` or normal interpreter exit (atexit); `failed` with the exception's message when
  one ends a `with` block or the script (sys.excepthook, chained), or when the script calls `sys.exit` with a
  failing status (`sys.exit(1)`, `sys.exit("message")`); `cancelled` after a cancel from the dashboard
  (raised in the script as RunCancelled at its next `log`; `cancellable=False` opts out); `interrupted` after
  Ctrl-C; `diverged` when a loss became NaN or infinite. A killed script is marked `interrupted` by the store's
  reapers (its heartbeat stops: trainlens._heartbeat).
- One run at a time per process, as `wandb.init` does: a second `init` finishes the first (with a warning). A
  process forked after `init` (os.fork, a DataLoader worker) must not write its parent's run: `log` refuses there.
- Class mode: a store serving a class refuses script runs unless the operator sets TRAINLENS_ALLOW_SCRIPTS=1
  (scripts write the store directly, so only those who can log into the server run them).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
import threading
import time
from typing import Any

from trainlens._errors import RunCancelled, TrainLensError
from trainlens._values import Cleaner, is_loss, warn

ALLOW_SCRIPTS = "TRAINLENS_ALLOW_SCRIPTS"
BUSY_PATIENCE_S = 60.0  # how long init waits out a store another program holds locked


_current: "Run | None" = None
_open: list["Run"] = []  # unfinished runs of this process (init's and SummaryWriters'), finished at exit
_uncaught: BaseException | None = None
_exit_status: object = None  # what the script last passed to sys.exit (0, None: success; a number or text: not)
_hooks_installed = False
_guard = threading.Lock()


def init(name: str | None = None, config: Any = None, group: str | None = None, *, cancellable: bool = True) -> "Run":
    """Start a run in the TrainLens store and make it this process's current run (`trainlens.log` writes to it).

    `config`: any dict of hyperparameters (or an argparse Namespace), shown as the run's config and groupable on
    Compare. A run already started by `init` in this process is finished first, with a warning."""
    global _current
    with _guard:
        previous = _current
    if previous is not None and not previous.finished:
        warn(f"trainlens.init: finishing the previous run {previous.name!r} ({previous.run_id}) first: one run at a "
             "time per process (call run.finish() to end it yourself)", stacklevel=3)
        previous.finish()
    run = Run(name=name, config=config, group=group, cancellable=cancellable)
    with _guard:
        _current = run
    return run


def log(metrics: dict[str, Any], step: int | None = None) -> None:
    """`run.log` on the current run (the last `init`'s)."""
    if _current is None or _current.finished:
        raise TrainLensError("trainlens.log: no run is active; call trainlens.init() first")
    _current.log(metrics, step)


def finish() -> None:
    """Finish the current run (the last `init`'s), if any."""
    if _current is not None:
        _current.finish()


def current() -> "Run | None":
    """The run `trainlens.log` writes to, or None."""
    return _current if _current is not None and not _current.finished else None


def _plain_config(config: Any) -> dict[str, Any]:
    """A JSON object of the hyperparameters: a dict as given, an argparse Namespace's fields; values JSON cannot
    hold are kept as their text (a NaN, a path, a device)."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        if hasattr(config, "__dict__"):
            config = vars(config)
        else:
            raise TrainLensError(f"config must be a dict of hyperparameters, not {type(config).__name__}")

    def plain(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        try:  # numpy and torch scalars
            number = value.item()
            if isinstance(number, (bool, int, float)):
                return plain(number)
        except (AttributeError, TypeError, ValueError, RuntimeError):
            pass
        return str(value)

    return json.loads(json.dumps(plain(config)))


def _check_class_mode(store) -> None:
    """TrainLensError when the store serves a class and the operator did not allow scripts."""
    from engine import settings

    if settings.value_or_default(ALLOW_SCRIPTS):  # 1/true/yes/on, as every TRAINLENS_* flag reads
        return
    from engine.classroom import SEAT_HOURS, ClassMode

    seated = store.members()
    in_class = ClassMode().enabled or bool((seated["joined_at"] > time.time() - SEAT_HOURS * 3600).any())
    if in_class:
        raise TrainLensError(f"the TrainLens store {store.path} serves a class: runs from scripts are refused unless "
                             f"the operator allows them with {ALLOW_SCRIPTS}=1")


def _open_store():
    """The store the CLI and the dashboard use; a busy one is waited for, a damaged one is one line."""
    import sqlite3

    from engine.runs.store import Store, StoreUnavailable
    from engine.runs.store.errors import describe
    from engine.paths import db_path

    try:
        return Store()
    except StoreUnavailable as exc:
        raise TrainLensError(str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise TrainLensError(str(describe(exc, db_path()))) from None


class Run:
    """One run a script trains: `log` metrics, `finish` it; a context manager (an exception fails it)."""

    def __init__(self, name: str | None = None, config: Any = None, group: str | None = None, *,
                 cancellable: bool = True, announce: bool = True):
        import socket
        import sqlite3

        from engine.runs.store.errors import describe, retry_locked
        from trainlens._heartbeat import Heartbeat
        from trainlens._sink import ScriptSink

        self.config = _plain_config(config)
        self.store = _open_store()
        _check_class_mode(self.store)
        from engine.classroom import Actor

        program = sys.argv[0] if sys.argv and sys.argv[0] else "python"
        try:
            self.run_id = retry_locked(lambda: self.store.create_script_run(
                self.config, program=program, host=socket.gethostname(), pid=os.getpid(), name=name, group=group,
                owner=Actor.local().name, cancellable=cancellable), give_up_after_s=BUSY_PATIENCE_S)
        except ValueError as exc:
            raise TrainLensError(f"trainlens.init: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise TrainLensError(str(describe(exc, self.store.path))) from None
        record = self.store.get_run(self.run_id)
        self.name: str = record["name"] if record else str(name)
        self.cancellable = cancellable
        self.finished = False
        self.pid = os.getpid()
        self._step = 0  # the next step when log() is given none
        self._last_step = 0
        self._epoch = 0  # the engine's 0-based epoch index of the rows logged now (see log)
        self._epoch_closed_at: int | None = None
        self._cleaner = Cleaner()
        self._cancel = False
        self._cancel_raised = False
        self._gone = False
        self._diverged: str | None = None
        self._sink = ScriptSink(self.store, self._non_finite)
        self._heartbeat = Heartbeat(self.store, self.run_id, lambda: self._last_step, self._cancel_asked,
                                    self._deleted)
        _register(self)
        if announce:
            print(f"trainlens: run {self.name!r} ({self.run_id}) is live in the TrainLens store {self.store.path}",
                  file=sys.stderr)

    # ---- logging ----
    def log(self, metrics: dict[str, Any], step: int | None = None, *, wall_time: float | None = None) -> None:
        """Queue one row per key of `metrics` at `step` (the next step when omitted: 0, 1, 2...). Values must be
        numbers; anything else is skipped with one warning per key. Raises RunCancelled once after a cancel."""
        if self.pid != os.getpid():
            raise TrainLensError(f"trainlens: this process ({os.getpid()}) was forked from the one that started run "
                                 f"{self.run_id} ({self.pid}); log from the parent, or call trainlens.init() here")
        if self.finished:
            raise TrainLensError(f"trainlens: run {self.name!r} ({self.run_id}) is finished; start a new one with "
                                 "trainlens.init()")
        if self._cancel and not self._cancel_raised:
            self._cancel_raised = True
            raise RunCancelled(f"run {self.name!r} ({self.run_id}) was cancelled from TrainLens")
        if self._gone:
            return  # deleted from TrainLens (said once): rows for a run that is gone would be orphans
        if step is None:
            step = self._step
        else:
            step = int(step)
        if step >= self._step:
            self._step = step + 1
        self._last_step = step
        now = time.time() if wall_time is None else float(wall_time)
        # Epochs as the engine counts them, so Compare's epoch axis places a script's curves like an engine run's:
        # a key TrainLens logs once per epoch (val_acc, val_loss, train_loss...) closes the epoch at its step, and
        # the first row at a later step opens the next one.
        if self._epoch_closed_at is not None and step > self._epoch_closed_at:
            self._epoch += 1
            self._epoch_closed_at = None
        epoch, closes = self._epoch, False
        keys, cleaner, run_id = self._cleaner.keys, self._cleaner, self.run_id
        rows = []
        for key, value in metrics.items():
            known = keys.get(key)
            stored, epoch_level = known if known is not None else cleaner.key(key)
            kind = type(value)
            if kind is not float and kind is not int:
                value = cleaner.number(stored, value)
                if value is None:
                    continue
            closes = closes or epoch_level
            rows.append((run_id, step, epoch, stored, value, now))
        if closes:
            self._epoch_closed_at = step
        sink = self._sink
        with sink.lock:
            sink.rows += rows
            queued = len(sink.rows)
        if queued >= 50_000:
            sink.full()

    def _write(self, operation) -> None:
        """Queue another store write (artifact, config) behind the rows logged so far."""
        if self.pid != os.getpid() or self.finished:
            return
        self._sink.write(operation)

    def put_artifact(self, name: str, value: Any) -> None:
        run_id, store = self.run_id, self.store
        self._write(lambda: store.put_artifact(run_id, name, value))

    def update_config(self, values: dict[str, Any]) -> None:
        """Add hyperparameters to the run's config (as TensorBoard's add_hparams does)."""
        values = _plain_config(values)
        self.config.update(values)
        run_id, store = self.run_id, self.store
        self._write(lambda: store.update_script_config(run_id, values))

    def flush(self) -> None:
        """Write every row logged so far now (waiting out a busy store)."""
        if self.pid == os.getpid():
            self._sink.flush(patience_s=BUSY_PATIENCE_S)

    def log_model(self, model, **what) -> str:
        """Save the model's weights (safetensors) for the Explain page; see trainlens._model.log_model."""
        from trainlens._model import log_model

        return log_model(self, model, **what)

    # ---- what the heartbeat and the flusher report ----
    def _cancel_asked(self) -> None:
        if self.cancellable:
            self._cancel = True

    def _deleted(self) -> None:
        if not self._gone:
            self._gone = True
            warn(f"trainlens: run {self.run_id} was deleted or ended from TrainLens; what this script logs "
                 "from now on is not stored")

    def _non_finite(self, run_id: str, key: str, step: int, value: float) -> None:
        if self._diverged is None and is_loss(key):
            self._diverged = (f"{key} became {value} at step {step} (the values are stored; charts stop at the last "
                              "finite point)")
            warn(f"trainlens: {key} is {value} at step {step}: stored; the run will be marked diverged")

    # ---- ending ----
    def finish(self, status: str | None = None, error: str | None = None) -> None:
        """Write what is left and end the run: completed (cancelled after a cancel, diverged after a NaN loss)."""
        from engine.records import RunStatus

        if self.finished or self.pid != os.getpid():
            return
        self.finished = True
        self._heartbeat.stop()
        landed = self._sink.close()
        if status is None:
            status = RunStatus.CANCELLED if self._cancel else RunStatus.COMPLETED
            if self._diverged and status == RunStatus.COMPLETED:
                status, error = RunStatus.DIVERGED, self._diverged
        if not landed:
            error = ((error + "; ") if error else "") + f"some rows could not be written ({self._sink.failing})"
        from engine.runs.store.errors import retry_locked

        try:
            retry_locked(lambda: self.store.finish_script_run(self.run_id, status, error, self._last_step),
                         give_up_after_s=BUSY_PATIENCE_S)
        except Exception as exc:  # noqa: BLE001 - at exit: say it, never hide the script's own error
            print(f"trainlens: could not record the end of run {self.run_id}: {exc}", file=sys.stderr)
        _unregister(self)

    def fail(self, exc: BaseException) -> None:
        """End the run as the exception `exc` ends the script: failed with its message; cancelled for a
        RunCancelled; interrupted for Ctrl-C."""
        from engine.records import RunStatus

        if isinstance(exc, RunCancelled):
            self.finish(RunStatus.CANCELLED, str(exc))
        elif isinstance(exc, KeyboardInterrupt):
            self.finish(RunStatus.INTERRUPTED, f"the script was stopped with Ctrl-C at step {self._last_step}")
        else:
            message = " ".join(str(exc).split())
            self.finish(RunStatus.FAILED, f"{type(exc).__name__}: {message}" if message else type(exc).__name__)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.finish()
        else:
            self.fail(exc)
        return False

    def __repr__(self) -> str:
        return f"<trainlens.Run {self.name!r} ({self.run_id})>"


# ---- the process's runs, finished at exit ------------------------------------------------------------------------
def _register(run: Run) -> None:
    global _hooks_installed
    with _guard:
        _open.append(run)
        if _hooks_installed:
            return
        _hooks_installed = True
    previous_hook = sys.excepthook

    def excepthook(kind, exc, tb):  # chained: the script's own hook (or Python's) still prints the traceback
        global _uncaught
        _uncaught = exc
        previous_hook(kind, exc, tb)

    sys.excepthook = excepthook
    # `sys.exit(1)` ends a script without an exception hook: a wrapper keeps the status it asked for (argparse's
    # errors and `raise SystemExit(code)` from a library that looks sys.exit up go through it too)
    previous_exit = sys.exit

    def exit_with(status=None):
        global _exit_status
        _exit_status = status
        previous_exit(status)

    sys.exit = exit_with
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_in_child)


def _unregister(run: Run) -> None:
    global _current
    with _guard:
        if run in _open:
            _open.remove(run)
        if _current is run:
            _current = None


def _at_exit() -> None:
    for run in list(_open):
        if run.pid != os.getpid():
            continue
        if _uncaught is not None:
            run.fail(_uncaught)
        elif _exit_status not in (None, 0):
            from engine.records import RunStatus

            said = f"exited with status {_exit_status}" if isinstance(_exit_status, int) else f"exited: {_exit_status}"
            run.finish(RunStatus.FAILED, f"the script {' '.join(said.split())} at step {run._last_step}")
        else:
            run.finish()


def _forget_in_child() -> None:
    """In a forked child: the parent's runs are not this process's (their threads did not survive the fork). The
    current run stays known, so `log` there says why it refuses rather than that no run is active."""
    global _guard
    _guard = threading.Lock()  # the parent may have held it while forking
    _open.clear()
