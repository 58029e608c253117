"""A job board for slow work that outlives a page run: the Explain page's heavy attribution maps.

One `JobBoard` is shared by every browser session of the server (the page caches it with st.cache_resource), so
jobs are keyed by what they compute: a second session asking for the same map gets the running job, not a new one.
Streamlit runs each session's script on its own thread, and the worker threads report progress, so every read
and write of the board's table happens under one lock. Finished jobs beyond `keep` are dropped, oldest first; a
page that finds its job gone simply submits it again. No streamlit here, so tests drive the board directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
FINISHED = (DONE, FAILED)


@dataclass
class _Job:
    progress: float = 0.0  # last fraction the job reported; written by its worker thread under the board's lock
    future: Future = field(init=False)


class JobBoard:
    """Runs `fn` on a small thread pool once per job key and tells any thread how it is going."""

    def __init__(self, max_workers: int = 1, keep: int = 64, thread_name: str = "jobs") -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name)
        self._keep = keep
        self._lock = threading.Lock()
        self._jobs: dict[Hashable, _Job] = {}  # insertion order is submission order: the oldest first

    def submit(self, job_key: Hashable, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run `fn(*args, progress=report, **kwargs)` in the background unless `job_key` is already on the board.

        `report(fraction)` records the job's progress in [0, 1] for `progress(job_key)`."""
        with self._lock:
            if job_key in self._jobs:
                return
            job = _Job()

            def report(fraction: float) -> None:
                with self._lock:  # the job's own entry: a later job under the same key keeps its own progress
                    job.progress = float(fraction)

            job.future = self._pool.submit(fn, *args, progress=report, **kwargs)
            self._jobs[job_key] = job
            self._evict()

    def _evict(self) -> None:
        # called with the lock held; unfinished jobs always stay, so nobody's running work is forgotten
        excess = len(self._jobs) - self._keep
        if excess > 0:
            finished = [key for key, job in self._jobs.items() if job.future.done()]
            for key in finished[:excess]:
                del self._jobs[key]

    def status(self, job_key: Hashable) -> str | None:
        """QUEUED, RUNNING, DONE or FAILED; None when the key is not on the board (never submitted, or dropped)."""
        with self._lock:
            job = self._jobs.get(job_key)
        if job is None:
            return None
        if not job.future.done():
            return RUNNING if job.future.running() else QUEUED
        return FAILED if job.future.exception() is not None else DONE

    def progress(self, job_key: Hashable) -> float:
        """The job's last reported fraction in [0, 1]: 1.0 once finished, 0.0 when not on the board."""
        with self._lock:
            job = self._jobs.get(job_key)
            if job is None:
                return 0.0
            return 1.0 if job.future.done() else job.progress

    def result(self, job_key: Hashable, timeout: float | None = None) -> Any:
        """What the job returned, waiting up to `timeout` seconds (None: for as long as it takes).

        Raises the job's own exception when it failed, KeyError when the key is not on the board and TimeoutError
        when it is still running after `timeout`."""
        with self._lock:
            job = self._jobs.get(job_key)
        if job is None:
            raise KeyError(f"no job {job_key!r} on the board (never submitted, or dropped once finished)")
        return job.future.result(timeout)  # outside the lock: waiting must not block other sessions
