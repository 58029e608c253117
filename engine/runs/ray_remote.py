"""What runs on the Ray cluster: the training task, and the channel that carries its reports to the head.

`train_on_ray` is a Ray task: it executes `run_job` (so `train(config, sink, should_stop)`, or a helper job) with a
`RelaySink` that buffers everything the run reports (metric rows, progress, checkpoint files as bytes, artifacts,
rewinds) and pushes it every PUSH_S seconds to the `Channel`, a small actor pinned to the head's node. The
dispatcher (engine.runs.ray_dispatch) drains the channel and is the only one that writes the store, so SQLite keeps
one writer and a Ray node never needs the head's filesystem: the task trains in a temporary TRAINLENS_HOME of its
own, and a resumed run gets its checkpoints shipped as bytes. The reply to every push says whether the run was
cancelled, so a cancel reaches the training loop within about PUSH_S plus the dispatcher's tick.

Every batch carries the run's lease: the dispatcher drops batches of an attempt that is no longer the run's.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import traceback

from engine.records import PLACEMENT, RAY_TRACEBACK, RunRecord

PUSH_S = 0.25


class Channel:
    """Mailbox between the tasks and the dispatcher (a Ray actor; its methods run one at a time)."""

    def __init__(self):
        self._events: dict[str, list] = {}
        self._cancelled: set[str] = set()

    def push(self, run_id: str, lease: int, events: list) -> bool:
        """Queue a task's events; returns whether the run must stop."""
        if events:
            self._events.setdefault(run_id, []).append((lease, events))
        return run_id in self._cancelled

    def drain(self) -> dict[str, list]:
        events, self._events = self._events, {}
        return events

    def cancel(self, run_id: str) -> None:
        self._cancelled.add(run_id)

    def forget(self, run_id: str) -> None:
        self._cancelled.discard(run_id)


class RelaySink:
    """The engine's Sink inside a Ray task: buffers events, a thread pushes them to the channel every PUSH_S."""

    def __init__(self, channel, run_id: str, lease: int):
        self.channel, self.run_id, self.lease = channel, run_id, lease
        self.cancel = threading.Event()
        self._events: list = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._push_loop, name=f"relay-{run_id}", daemon=True)
        self._thread.start()

    # ---- the Sink protocol (engine.sinks.Sink) ----
    def log(self, step, epoch, values):
        self._add(("log", int(step), int(epoch), {k: float(v) for k, v in values.items()}))

    def progress(self, step, total_steps, epoch):
        self._add(("progress", int(step), int(total_steps), int(epoch)))

    def checkpoint(self, epoch, kind, path, metrics, staged=None):
        source = staged or path
        with open(source, "rb") as f:
            data = f.read()
        if staged is not None:
            os.replace(staged, path)  # kept here too: the run's final reports and a resume read their own copy
        self._add(("checkpoint", int(epoch), kind, os.path.basename(path), dict(metrics), data))

    def artifact(self, name, value):
        self._add(("artifact", name, value))

    def rewind(self, step):
        self._add(("rewind", int(step)))

    def should_stop(self) -> bool:
        return self.cancel.is_set()

    # ---- relaying ----
    def _add(self, event) -> None:
        with self._lock:
            self._events.append(event)

    def push(self) -> None:
        import ray

        with self._lock:
            events, self._events = self._events, []
        if ray.get(self.channel.push.remote(self.run_id, self.lease, events)):
            self.cancel.set()

    def _push_loop(self) -> None:
        while not self._closed.wait(PUSH_S):
            try:
                self.push()
            except Exception:  # the head is gone (the driver exited): nobody can record this run, stop it
                self.cancel.set()
                return

    def close(self) -> None:
        """Stop the pusher and push what is left (before the task returns, so the dispatcher sees every event
        before it sees the result)."""
        self._closed.set()
        self._thread.join()
        self.push()


def placement(device: str, threads: int, config) -> dict:
    """Where this task runs, as the Runs page shows it."""
    import ray

    context = ray.get_runtime_context()
    return {"executor": "ray", "host": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(),
            "node_id": context.get_node_id(), "device": device, "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "pid": os.getpid(), "threads": threads, "num_cpus": config.num_cpus, "num_gpus": config.num_gpus}


def train_on_ray(run: RunRecord, channel, shipped: dict[str, bytes]) -> tuple[str, str | None]:
    """The Ray task: train one claimed run; returns (final status, error). `shipped`: checkpoint files of the run
    (name -> bytes) to resume from."""
    import torch

    from engine.records import RunStatus
    from engine.runs.jobs import job_device, run_job

    config = run["config"]
    threads = max(1, int(config.num_cpus))  # the cores Ray reserved for the run: more threads would fight over them
    torch.set_num_threads(threads)
    home = tempfile.mkdtemp(prefix="trainlens-ray-")
    previous_home = os.environ.get("TRAINLENS_HOME")
    os.environ["TRAINLENS_HOME"] = home  # this process's own home: checkpoints are shipped, never shared files
    sink = RelaySink(channel, run["run_id"], run["lease"])
    try:
        from engine.paths import checkpoint_dir

        folder = checkpoint_dir(run["run_id"])
        for name, data in shipped.items():
            (folder / name).write_bytes(data)
        device = job_device(config, "cuda" if torch.cuda.is_available() else "cpu")
        sink.artifact(PLACEMENT, placement(device, threads, config))
        try:
            status, error = run_job(run, sink, sink.should_stop, device)
        except Exception as exc:  # a bug or bad data fails the run, with the traceback for the log
            status, error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
            sink.artifact(RAY_TRACEBACK, traceback.format_exc()[-4000:])
        return str(status), error
    finally:
        sink.close()
        if previous_home is None:
            os.environ.pop("TRAINLENS_HOME", None)
        else:
            os.environ["TRAINLENS_HOME"] = previous_home
        shutil.rmtree(home, ignore_errors=True)


def wait_for(predicate, timeout: float, poll: float = 0.1) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass (used by the dispatcher's shutdown)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()
