"""The Ray executor's dispatcher: claims queued runs from the store and trains each in a Ray task on the cluster.

Started by the runner as `python -m engine.runs.ray_dispatch` when TRAINLENS_EXECUTOR=ray (one per head, in place
of the local worker pool). To the store it is a worker like the others: it registers, heartbeats, claims runs under
a lease, and dies visibly (a reaper marks its runs interrupted). It is also the store's single writer for every run
it dispatched: the tasks push their reports to a channel actor (engine.runs.ray_remote) and the dispatcher applies
them through one fenced StoreSink per run, so SQLite never sees a second writer and no node touches the head's disk.

Every TICK_S it: drains the channel into the store, finishes the tasks that returned, relays cancel requests,
and claims another queued run while the cluster has room (at most one run waits in Ray's queue, the others stay
queued in the store where the pages show them). A task whose worker process or node died leaves its run
`interrupted` with the reason; with TRAINLENS_RAY_RETRIES > 0 it is queued again to continue from its last
checkpoint (on whichever node has room), the rows after that checkpoint dropped, so the curve has no duplicated
or missing steps. When the dispatcher itself stops (or its head restarts), Ray ends the tasks it owned, and its
runs are interrupted and resumable like a local worker's.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sqlite3
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field

from engine import settings
from engine.paths import checkpoint_dir, logs_dir, make_private
from engine.records import PLACEMENT, RAY_ATTEMPTS, RunRecord, RunStatus
from engine.runs.executor import ray_address, ray_retries, require_ray
from engine.runs.placement import write_cluster
from engine.runs.procs import pid_alive, touch_pulse
from engine.runs.store import Store
from engine.runs.store.errors import retry_locked
from engine.runs.worker import HEARTBEAT_S, STORE_BUSY_TIMEOUT_S, WRITE_PATIENCE_S, StoreSink

TICK_S = 0.2
PROBE_TIMEOUT_S = 5.0  # a head's port that does not answer in this long is not there
CLUSTER_EVERY_S = 5.0
_CHECKPOINT_NAME = re.compile(r"^(epoch_\d+|best)\.safetensors$")  # the only files a task may send back


@dataclass
class Dispatched:
    """A run handed to Ray: its claim, its sink into the store and the task's result reference."""

    run: RunRecord
    lease: int
    sink: StoreSink
    ref: object
    started: bool = False  # the task reported its placement (it has resources and is training)
    cancel_sent: bool = False
    placement: dict = field(default_factory=dict)


class Dispatcher:
    def __init__(self, worker_id: str, *, address: str | None = None, retries: int | None = None,
                 idle_exit_s: float = 1800.0, store: Store | None = None):
        self.ray = require_ray()
        self.worker_id, self.idle_exit_s = worker_id, idle_exit_s
        self.address = address or ray_address()
        self.retries = ray_retries() if retries is None else retries
        self.store = store or Store()
        self.host = socket.gethostname()
        self.active: dict[str, Dispatched] = {}
        self.attempts: dict[str, list[str]] = {}
        self.stop = threading.Event()
        self._cluster_at = 0.0
        # the pulse first: reapers must see a dispatcher that is still connecting as alive, not as a lost worker
        touch_pulse(worker_id)
        threading.Thread(target=self._pulse_loop, name="pulse", daemon=True).start()
        self._connect()
        retry_locked(lambda: self.store.register_worker(worker_id, os.getpid(), self.host, "ray"),
                     give_up_after_s=WRITE_PATIENCE_S)

    def _connect(self) -> None:
        from engine.runs.ray_remote import Channel, train_on_ray

        ray = self.ray
        if not ray.is_initialized():
            write_cluster({"time": time.time(), "address": self.address,
                           "error": f"connecting to the Ray cluster at {self.address}..."})
            try:
                check_reachable(self.address)
                _init_within(ray, self.address, settings.value("TRAINLENS_RAY_CONNECT_TIMEOUT_S"))
            except ConnectionError as exc:  # said where the pages look, then by the runner's pool record
                write_cluster({"time": time.time(), "address": self.address,
                               "error": f"{exc}; queued runs wait for it"})
                raise
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # the channel lives on this (the head's) node, never elsewhere: a task's node may die, the mailbox must not
        self.node_id = ray.get_runtime_context().get_node_id()
        here = NodeAffinitySchedulingStrategy(self.node_id, soft=False)
        self.channel = ray.remote(Channel).options(num_cpus=0, scheduling_strategy=here).remote()
        # max_retries=0: a lost task is retried by the dispatcher from the run's checkpoint, never replayed by Ray
        self.task = ray.remote(max_retries=0)(train_on_ray)

    # ---- the loop ----
    def serve(self) -> None:
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        idle_since = time.monotonic()
        try:
            while not self.stop.is_set():
                self.tick()
                if self.active:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > self.idle_exit_s:
                    break
                time.sleep(TICK_S)
        except Exception:  # the cluster went away under the dispatcher: say why before stopping its runs
            _log(traceback.format_exc())
            raise
        finally:
            self.shutdown()

    def tick(self) -> None:
        ray = self.ray
        refs = [d.ref for d in self.active.values()]
        ready = set()
        if refs:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            ready = {ref for ref in done}
        self._apply(ray.get(self.channel.drain.remote()))  # every event a finished task pushed before returning
        for run_id, dispatched in list(self.active.items()):
            if dispatched.ref in ready:
                self._finish(run_id, dispatched)
        self._relay_cancels()
        while not self.stop.is_set() and self._has_room():
            if not self._claim():
                break
        if time.monotonic() - self._cluster_at > CLUSTER_EVERY_S:
            self._snapshot_cluster()

    def _has_room(self) -> bool:
        """Claim while the cluster has free CPUs beyond what the runs still waiting in Ray asked for; always one."""
        waiting = [d for d in self.active.values() if not d.started]
        if not waiting:
            return True
        free = self.ray.available_resources().get("CPU", 0.0)
        return free - sum(d.run["config"].num_cpus for d in waiting) >= 1.0

    def _claim(self) -> bool:
        run = retry_locked(lambda: self.store.claim_next(self.worker_id, "ray (waiting for resources)"),
                           give_up_after_s=60.0, stop=self.stop.is_set)
        if run is None:
            return False
        run_id, lease = run["run_id"], run["lease"]
        sink = StoreSink(self.store, run_id, mirror_to=run.get("parent_id"), lease=lease)
        config = run["config"]
        shipped = self._checkpoints_to_ship(run_id) if run.get("resume_from") else {}
        self.ray.get(self.channel.forget.remote(run_id))  # a cancel of an earlier attempt must not stop this one
        ref = self.task.options(num_cpus=config.num_cpus, num_gpus=config.num_gpus,
                                name=f"trainlens-{run_id}").remote(run, self.channel, shipped)
        self.active[run_id] = Dispatched(run, lease, sink, ref)
        return True

    @staticmethod
    def _checkpoints_to_ship(run_id: str) -> dict[str, bytes]:
        """The last epoch checkpoint and the best one, as bytes: the node resumes from its own copy."""
        folder = checkpoint_dir(run_id)
        epochs = sorted((int(m.group(1)), p) for p in folder.iterdir()
                        if (m := re.match(r"^epoch_(\d+)\.safetensors$", p.name)))
        files = [epochs[-1][1]] if epochs else []
        if (folder / "best.safetensors").exists():
            files.append(folder / "best.safetensors")
        return {path.name: path.read_bytes() for path in files}

    def _apply(self, drained: dict[str, list]) -> None:
        for run_id, batches in drained.items():
            dispatched = self.active.get(run_id)
            for lease, events in batches:
                if dispatched is None or lease != dispatched.lease:
                    continue  # an earlier attempt's late words: the run is not its own any more
                for event in events:
                    self._apply_event(run_id, dispatched, event)

    def _apply_event(self, run_id: str, dispatched: Dispatched, event: tuple) -> None:
        kind, sink = event[0], dispatched.sink
        if kind == "log":
            sink.log(*event[1:])
        elif kind == "progress":
            sink.progress(*event[1:])
        elif kind == "rewind":
            sink.rewind(event[1])
        elif kind == "artifact":
            name, value = event[1], event[2]
            if name == PLACEMENT:
                dispatched.started, dispatched.placement = True, value
                fence = (run_id, dispatched.lease)
                retry_locked(lambda: self.store.set_running(run_id, self.worker_id, value["device"], fence=fence),
                             give_up_after_s=WRITE_PATIENCE_S)
            sink.artifact(name, value)
        elif kind == "checkpoint":
            epoch, ckpt_kind, name, metrics, data = event[1:]
            if not _CHECKPOINT_NAME.match(name):
                return
            path = checkpoint_dir(run_id) / name
            staged = path.with_name(f".{name}.ray.partial")
            staged.write_bytes(data)
            make_private(staged)
            sink.checkpoint(epoch, ckpt_kind, str(path), metrics, staged=str(staged))

    def _relay_cancels(self) -> None:
        for run_id, dispatched in self.active.items():
            if dispatched.cancel_sent or not self.store.cancel_requested(run_id):
                continue
            dispatched.cancel_sent = True
            if dispatched.started:
                self.channel.cancel.remote(run_id)  # the task's next push returns True: train() stops in a step
            else:
                self.ray.cancel(dispatched.ref)  # still waiting for resources: never starts

    def _finish(self, run_id: str, dispatched: Dispatched) -> None:
        ray = self.ray
        from ray.exceptions import RayTaskError, TaskCancelledError

        del self.active[run_id]
        lost = None
        try:
            status, error = ray.get(dispatched.ref)
        except TaskCancelledError:
            status, error = RunStatus.CANCELLED, None
        except RayTaskError as exc:  # the task raised outside the job's own error handling
            status, error = RunStatus.FAILED, " ".join(str(exc.cause if exc.cause else exc).split())[:2000]
        except Exception as exc:  # the worker process or its node died (WorkerCrashedError, NodeDiedError...)
            status, error, lost = RunStatus.INTERRUPTED, None, exc
        dispatched.sink.close(give_up=self.stop.is_set)
        fence = (run_id, dispatched.lease)
        if lost is not None:
            self._interrupted(run_id, dispatched, lost)
            return
        if self.stop.is_set() and status == RunStatus.CANCELLED and not self.store.cancel_requested(run_id):
            status, error = RunStatus.INTERRUPTED, "the Ray dispatcher was shut down; resume the run to continue " \
                                                   "from its last checkpoint"
        retry_locked(lambda: self.store.update_status(run_id, status, error, fence=fence),
                     give_up_after_s=WRITE_PATIENCE_S)

    def _interrupted(self, run_id: str, dispatched: Dispatched, exc: Exception) -> None:
        where = dispatched.placement
        node = f" on node {where.get('node_ip', '?')} ({str(where.get('node_id', ''))[:8]})" if where else ""
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        step = (self.store.get_run(run_id) or {}).get("step", 0)
        reason = f"the Ray worker training it was lost{node} at step {step} ({type(exc).__name__}: {first_line})"
        history = self.attempts.setdefault(run_id, [])
        history.append(reason)
        fence = (run_id, dispatched.lease)
        retry = len(history) <= self.retries and not self.stop.is_set()
        try:
            retry_locked(lambda: self.store.put_artifact(run_id, RAY_ATTEMPTS, history, fence=fence),
                         give_up_after_s=WRITE_PATIENCE_S)
        except Exception:
            pass  # the run was deleted or taken: nothing to record
        suffix = ("; retrying from its last checkpoint" if retry else
                  "; resume the run to continue from its last checkpoint")
        applied = retry_locked(lambda: self.store.update_status(run_id, RunStatus.INTERRUPTED, reason + suffix,
                                                                fence=fence), give_up_after_s=WRITE_PATIENCE_S)
        if applied and retry:
            retry_locked(lambda: self.store.resume_run(run_id), give_up_after_s=WRITE_PATIENCE_S)

    def _snapshot_cluster(self) -> None:
        self._cluster_at = time.monotonic()
        try:
            nodes = [{"node_id": n["NodeID"], "ip": n.get("NodeManagerAddress", ""), "alive": bool(n.get("Alive")),
                      "resources": {k: v for k, v in n.get("Resources", {}).items() if k in ("CPU", "GPU", "memory")}}
                     for n in self.ray.nodes()]
            write_cluster({"time": time.time(), "address": self.address, "nodes": nodes, "dispatcher_node": self.node_id,
                            "total": _main_resources(self.ray.cluster_resources()),
                            "available": _main_resources(self.ray.available_resources()),
                            "running": len([d for d in self.active.values() if d.started]),
                            "waiting": len([d for d in self.active.values() if not d.started])})
        except Exception:  # a snapshot is for display only; the next tick tries again
            pass

    # ---- staying visible to the store ----
    def _heartbeat_loop(self) -> None:
        store = Store(self.store.path)  # this thread's own connection
        last_reap = 0.0
        while not self.stop.is_set():
            try:
                reply = store.heartbeat(self.worker_id, "busy" if self.active else "idle", None)
                if reply["stop"]:
                    self.stop.set()
                if time.time() - last_reap > 2.0:
                    store.reap(is_alive=pid_alive)
                    last_reap = time.time()
            except sqlite3.DatabaseError:
                pass  # a busy store: the pulse keeps reapers off; try again next second
            except Exception:
                _log(traceback.format_exc())
            time.sleep(HEARTBEAT_S)

    def _pulse_loop(self) -> None:
        while not self.stop.is_set():
            try:
                touch_pulse(self.worker_id)
            except OSError:
                pass
            time.sleep(HEARTBEAT_S)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every task (their runs end `interrupted`, resumable), record them, and leave the cluster."""
        from engine.runs.ray_remote import wait_for

        self.stop.set()
        for run_id, dispatched in self.active.items():
            if dispatched.started:
                self.channel.cancel.remote(run_id)
            else:
                self.ray.cancel(dispatched.ref)

        def drained() -> bool:
            self.tick()
            return not self.active

        try:
            wait_for(drained, timeout, poll=TICK_S)
        except Exception:
            _log(traceback.format_exc())
        for run_id, dispatched in list(self.active.items()):  # tasks that did not stop in time
            dispatched.sink.close(give_up=lambda: True)
            self.store.update_status(run_id, RunStatus.INTERRUPTED, "the Ray dispatcher was shut down; resume the "
                                     "run to continue from its last checkpoint", fence=(run_id, dispatched.lease))
        self.active.clear()
        try:
            self.store.mark_worker(self.worker_id, "stopped")
        except sqlite3.DatabaseError:
            pass


def check_reachable(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """ConnectionError naming `address` when no Ray cluster can be there: a ray:// address without Ray Client
    installed, or a HOST:PORT where nothing answers within `timeout_s`. Ray itself would retry such an address for
    minutes. `auto` is left to Ray, which looks for a head on this machine and says at once when there is none."""
    parts = settings.split_ray_address(address)  # ValueError for a malformed one (settings.check refused it before)
    if parts is None:
        return
    scheme, host, port = parts
    if scheme and not _ray_client_installed():
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: a ray:// address needs Ray Client, which "
                              "is not installed here (pip install \"ray[client]\")")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: nothing answers at {host}:{port} "
                              f"({exc.strerror or exc})") from None


def _ray_client_installed() -> bool:
    """Whether Ray Client's own dependency (gRPC, what `pip install "ray[client]"` adds) can be imported here."""
    try:
        import grpc  # noqa: F401
    except ImportError:
        return False
    return True


def _init_within(ray, address: str, timeout_s: float) -> None:
    """ray.init(address), or ConnectionError naming the address when it fails or takes longer than `timeout_s`."""
    outcome: list = []

    def connect():
        try:
            ray.init(address=address, namespace="trainlens")  # also a ray:// (Ray Client) address
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - reported below, whatever Ray raised
            outcome.append(exc)

    # Ray retries an address that stopped answering for minutes: give up sooner, and say why
    thread = threading.Thread(target=connect, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    problem = outcome[0] if outcome else TimeoutError(f"no answer within {timeout_s:.0f} s")
    if problem is not None:
        raise ConnectionError(f"cannot reach the Ray cluster at {address} ({type(problem).__name__}: "
                              f"{' '.join(str(problem).split())[:300]})")


def _main_resources(resources: dict) -> dict:
    return {k: float(v) for k, v in resources.items() if k in ("CPU", "GPU")}


def _log(text: str) -> None:
    with open(logs_dir() / "ray_dispatch.log", "a") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    from engine.runs import pool_health

    parser = argparse.ArgumentParser(prog="python -m engine.runs.ray_dispatch",
                                     description="TrainLens: train queued runs on a Ray cluster")
    parser.add_argument("--threads", type=int, default=1, help="ignored (the runner's option for local workers)")
    parser.add_argument("--idle-exit", type=float, default=settings.value_or_default("TRAINLENS_WORKER_IDLE_S"))
    parser.add_argument("--worker-id", default=None)
    args = parser.parse_args(argv)
    Store.BUSY_TIMEOUT_S = STORE_BUSY_TIMEOUT_S  # as a worker: retry a locked store instead of blocking 30 s per call
    try:
        settings.check()
        dispatcher = Dispatcher(args.worker_id or uuid.uuid4().hex[:8], idle_exit_s=args.idle_exit)
    except Exception as exc:  # noqa: BLE001 - no cluster, no Ray Client, no store: recorded, then leave
        reason = " ".join(str(exc).split()) or type(exc).__name__
        pool_health.record_failure(reason, what="Ray dispatcher")
        print(reason, file=sys.stderr)
        os._exit(1)  # Ray's connecting thread may still be retrying: do not wait for it
    pool_health.clear()
    dispatcher.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
