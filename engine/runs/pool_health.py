"""Why the worker pool cannot start, remembered where every reader finds it, and when to try again.

A worker or the Ray dispatcher that cannot start (no Ray cluster at the address, Ray Client missing, a store it
cannot open) used to die at once and be started again by the next reader that saw queued runs without a worker:
the dashboard every 3 s, `train --wait` every 3 s. That was a restart storm, with the runs left `queued` and the
reason only in workers.log. Now:

- The process that fails to start records why (`record_failure`) in TRAINLENS_HOME/workers/pool-failure.json,
  with the settings it was started with (engine.settings.fingerprint) and how many starts failed in a row. A
  start that succeeds clears it (`clear`). A file rather than the store: the reason may be that the store cannot
  be opened or written.
- The runner asks `may_start` before it starts a process. After a failed start it waits BACKOFF_S, then twice as
  long after each further failure; after MAX_TRIES failed starts, automatic restarts (a page refreshing, `train
  --wait` watching) stop. A person asking for work (queueing or resuming a run) may try again once per
  GIVE_UP_RETRY_S; `trainlens workers --start` or the Runs page's "Try again" tries at once. Changed settings start
  afresh (the failure was remembered for the old ones).
- Readers (`current`) show it: the Runs page above the table, the queued run's "why it waits" (`show`,
  `trainlens workers`), and `train --wait` stops with it (exit 1) instead of waiting for ever.

Torch-free and store-free: the dispatcher records its failure before it has imported Ray or opened the store.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from engine import settings

MAX_TRIES = 3  # failed starts in a row before automatic restarts stop
BACKOFF_S = 10.0  # wait after the first failed start; doubles after each further one
GIVE_UP_RETRY_S = 60.0  # after MAX_TRIES, a person's new run or resume tries again at most this often
FILE_NAME = "pool-failure.json"


@dataclass(frozen=True)
class PoolFailure:
    reason: str  # one line: what failed, naming the setting or address
    tries: int  # failed starts in a row
    last_at: float  # when the last one failed (time.time())
    fingerprint: str  # engine.settings.fingerprint() of the process that failed
    host: str
    what: str  # "worker" or "Ray dispatcher"

    def next_try_at(self, explicit: bool) -> float | None:
        """When a start may be tried again: None when automatic restarts have stopped (`explicit`: a person asked
        for work, who may try once per GIVE_UP_RETRY_S)."""
        if self.tries >= MAX_TRIES:
            return self.last_at + GIVE_UP_RETRY_S if explicit else None
        return self.last_at + BACKOFF_S * 2 ** (self.tries - 1)

    def describe(self, now: float | None = None) -> str:
        """The reason, with how often it failed and what happens next, in one line."""
        now = time.time() if now is None else now
        tries = "once" if self.tries == 1 else f"{self.tries} times in a row"
        when = time.strftime("%H:%M:%S", time.localtime(self.last_at))
        retry = self.next_try_at(explicit=False)
        if retry is None:
            after = ("automatic restarts have stopped: fix it, then queue a run, or run `trainlens workers --start` "
                     "(or Try again on the Runs page)")
        elif retry > now + 0.5:
            after = f"the next try is in {round(retry - now)} s"
        else:
            after = "the next try is due now"
        return f"the {self.what} could not start ({tries}, last at {when}): {self.reason}; {after}"


def _path() -> Path:
    from engine.paths import private_dir, trainlens_home

    return private_dir(trainlens_home() / "workers") / FILE_NAME


def current() -> PoolFailure | None:
    """The recorded failure, or None (also when the file is missing or unreadable)."""
    try:
        data = json.loads(_path().read_text())
        return PoolFailure(reason=str(data["reason"]), tries=int(data["tries"]), last_at=float(data["last_at"]),
                           fingerprint=str(data["fingerprint"]), host=str(data.get("host", "")),
                           what=str(data.get("what", "worker")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_failure(reason: str, what: str = "worker") -> PoolFailure:
    """Remember that a start failed with `reason` (one line); counts up the failures in a row for these settings."""
    reason = " ".join(str(reason).split())[:600]
    previous = current()
    same = previous is not None and previous.fingerprint == settings.fingerprint()
    failure = PoolFailure(reason=reason, tries=(previous.tries + 1) if same else 1, last_at=time.time(),
                          fingerprint=settings.fingerprint(), host=socket.gethostname(), what=what)
    _write(failure)
    return failure


def clear() -> None:
    """A start succeeded (or a person asked to try again at once): forget the failure."""
    try:
        _path().unlink()
    except FileNotFoundError:
        pass


def may_start(explicit: bool, now: float | None = None) -> PoolFailure | None:
    """None when the runner may start a process now; else the failure that holds it back."""
    failure = current()
    if failure is None or failure.fingerprint != settings.fingerprint():
        return None  # nothing failed, or it failed with other settings: try
    retry = failure.next_try_at(explicit)
    now = time.time() if now is None else now
    return None if retry is not None and now >= retry else failure


def _write(failure: PoolFailure) -> None:
    path = _path()
    staged = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        staged.write_text(json.dumps(asdict(failure)))
        os.replace(staged, path)  # readers never see half a record
    except OSError:
        staged.unlink(missing_ok=True)  # a full disk: the reason still reaches workers.log
