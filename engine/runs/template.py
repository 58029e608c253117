"""The worker template: one process that pays a worker's imports once, then forks ready workers on demand.

Why: a worker started as a fresh interpreter spends about 3.4 s (idle, 2 cores) importing torch, torch._dynamo
(torch.optim's first optimizer imports it) and the training loop, and reading the default dataset, before its first
step; on a busy machine 6-9 s. Workers exit after TRAINLENS_WORKER_IDLE_S without work (30 min), so in a class the
first Start after a pause met that whole wait. The dashboard starts one template when it warms its pool
(app.ui.state.PoolWarmup); from then on every worker of this home and host is a fork of it, ready in milliseconds,
and the pool's warm-up itself imports torch once instead of once per worker (benchmarks/first_point.py, mode idle).

Once it has sat idle for a second it also imports scikit-learn, which a worker needs only for a run's final report
(`prepare_when_idle`): the warmed pool's forks are not delayed by it, later ones have it.

Fork safety: the template only imports modules and reads the default dataset's arrays with pandas and numpy. It
never runs a torch operation (torch's OpenMP threads are not fork-safe: a child whose parent ran a parallel region
can hang in its own), never initialises CUDA, never opens the store (an SQLite connection must not cross a fork),
and starts no Python thread; it checks the last before every fork and refuses otherwise. Native helper threads of
numpy's OpenBLAS and of jemalloc handle fork themselves. Each child starts its own session (a worker outlives the
dashboard, as before), takes the environment and log the runner sends, and runs `engine.runs.worker.main`.

Protocol: a Unix socket in TRAINLENS_HOME/workers (private: 0700 folder, 0600 socket). It is bound under a temporary
name and renamed into place once the imports are done, so a socket that answers means a template that is ready.
A request is one JSON line {"argv": [...], "env": {...}, "log": path, "cwd": path}; the answer one JSON line
{"pid": N} or {"error": "..."}.

Linux only (`supported`): elsewhere, workers start as fresh interpreters, as they do without a template.

Lifetime: the template exits when the process that started it is gone (the dashboard's server; checked every
second), when its socket was removed (its home deleted), or on SIGTERM/SIGINT. One template per home: a second one
finds the first's lock and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

SOCKET_NAME = "template.sock"
LOCK_NAME = "template.lock"
REQUEST_TIMEOUT_S = 5.0  # a ready template answers in milliseconds; past this the runner starts a fresh interpreter
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes: a home deeper than that gets no template (fresh interpreters)


def supported() -> bool:
    """Linux only: on macOS a fork of a process that loaded Apple's frameworks (numpy's Accelerate, the Objective-C
    runtime) may crash in the child, which is why Python's multiprocessing spawns there. Elsewhere workers start as
    fresh interpreters."""
    return sys.platform.startswith("linux")


def _folder() -> Path:
    from engine.paths import private_dir, trainlens_home

    return private_dir(trainlens_home() / "workers")


def socket_path() -> Path:
    return _folder() / SOCKET_NAME


# ---- the runner's side ----

def start(parent: int | None = None) -> subprocess.Popen | None:
    """Start this home's template in the background (None off Linux, when one runs already, or when the home's path
    is too long for a socket). It lives as long as `parent` (default: this process). Returns at once: it is ready
    seconds later."""
    if not supported() or state() != "none" or len(str(socket_path())) > MAX_SOCKET_PATH:
        return None
    from engine.paths import logs_dir
    from engine.runs.procs import PROJECT_ROOT, worker_env

    with open(logs_dir() / "workers.log", "ab") as log:
        # not a session of its own: Ctrl-C in the dashboard's terminal stops it with the server (its workers,
        # in sessions of their own, go on training)
        return subprocess.Popen([sys.executable, "-m", "engine.runs.template", "--parent", str(parent or os.getpid())],
                                cwd=str(PROJECT_ROOT), env=worker_env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def state() -> str:
    """'ready' (its socket answers), 'starting' (its process holds the lock, still importing) or 'none'."""
    path = socket_path()
    if path.exists():
        with contextlib.suppress(OSError), contextlib.closing(socket.socket(socket.AF_UNIX)) as probe:
            probe.settimeout(1.0)
            probe.connect(str(path))
            return "ready"
    try:
        with open(path.parent / LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: nobody is starting a template
    except BlockingIOError:
        return "starting"
    except OSError:
        pass
    return "none"


def wait_ready(timeout: float, process: subprocess.Popen | None = None) -> bool:
    """Wait until this home's template answers; False after `timeout` s, or once none is starting (`process`, the
    one `start` returned, may not have taken its lock yet: it counts as starting while it runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = state()
        if now == "ready":
            return True
        if now == "none" and (process is None or process.poll() is not None):
            return False
        time.sleep(0.1)
    return False


def fork_worker(argv: list[str], env: dict[str, str], log: str, cwd: str) -> int | None:
    """Ask the ready template for a worker running `python -m engine.runs.worker *argv`; its pid, or None when there
    is no ready template or it could not fork (the caller then starts a fresh interpreter)."""
    path = socket_path()
    if not supported() or not path.exists():
        return None
    try:
        with contextlib.closing(socket.socket(socket.AF_UNIX)) as conn:
            conn.settimeout(REQUEST_TIMEOUT_S)
            conn.connect(str(path))
            conn.sendall(json.dumps({"argv": argv, "env": env, "log": log, "cwd": cwd}).encode() + b"\n")
            answer = json.loads(_read_line(conn))
    except (OSError, ValueError):
        return None
    pid = answer.get("pid") if isinstance(answer, dict) else None
    return pid if isinstance(pid, int) and pid > 0 else None


def _read_line(conn: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError("request too long")
    return data


# ---- the template's side ----

def python_threads() -> int:
    """Python threads of this process besides the main one (a fork keeps only the caller: another thread's locks
    would stay held forever in the child)."""
    import threading

    return threading.active_count() - 1


def prepare() -> None:
    """Everything a worker would import and read before its first step, without running any torch operation.
    RuntimeError when CUDA got initialised on the way (its children could not use it: CUDA does not survive a fork)."""
    # an import that asks torch.cuda.is_available() then counts devices through NVML, which leaves the CUDA driver
    # uninitialised (the runtime's count would initialise it, and no fork of this process could use CUDA then)
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    import torch
    import torch._dynamo  # noqa: F401 - what torch.optim's first optimizer would import (2.8 s of a fresh worker)

    import engine.runs.jobs  # noqa: F401 - the training loop, its models and diagnostics
    import engine.runs.worker  # noqa: F401 - the worker itself (its main runs in each child)
    from engine.config import RunConfig
    from engine.data.loading import preload_arrays

    preload_arrays(RunConfig().dataset)
    if torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised while importing: forks of this process could not use it")


def prepare_when_idle() -> None:
    """What a worker needs only at a run's end: scikit-learn, for the classification report (0.8 s to import). The
    template imports it once it has sat idle for a second, so that forks asked for at once (the warmed pool) are not
    delayed by it, and the workers forked later have it. It starts no Python thread (its native BLAS threads, like
    numpy's, handle a fork). Never raises: a worker imports it itself then."""
    try:
        import engine.diagnostics.evaluate  # noqa: F401 - imports sklearn.metrics
    except Exception:  # noqa: BLE001
        print("worker template: could not import the evaluation module\n" + traceback.format_exc(), flush=True)


def _child(request: dict, listener: socket.socket, conn: socket.socket, log_fd: int) -> None:
    """In the forked child: become a worker in a session of its own, then exit without returning to the loop."""
    code = 1
    try:
        os.setsid()
        listener.close()
        conn.close()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(null)
        os.close(log_fd)
        for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        from engine.runs import worker

        sys.argv = ["engine.runs.worker", *request["argv"]]
        code = worker.main(list(request["argv"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - printed to the workers' log; the child must never return to the loop
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _valid(request) -> bool:
    return (isinstance(request, dict) and isinstance(request.get("argv"), list)
            and all(isinstance(a, str) for a in request["argv"]) and isinstance(request.get("env"), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in request["env"].items())
            and isinstance(request.get("log"), str) and isinstance(request.get("cwd"), str))


def _serve_one(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with contextlib.closing(conn):
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            line = _read_line(conn)
            if not line.strip():
                return  # a readiness probe (state()) connects and hangs up
            request = json.loads(line)
        except (OSError, ValueError) as exc:
            print(f"worker template: unreadable request ({exc})", flush=True)
            return
        if not _valid(request):
            answer = {"error": "malformed request"}
        elif python_threads():
            answer = {"error": f"the template has {python_threads()} other thread(s): forking it is unsafe"}
        else:
            answer = _fork(request, listener, conn)
        if "error" in answer:
            print(f"worker template: {answer['error']}", flush=True)
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(answer).encode() + b"\n")


def _fork(request: dict, listener: socket.socket, conn: socket.socket) -> dict:
    """Fork a worker for `request`: {"pid": N}, or {"error": ...} when its log cannot be opened or the fork fails (no
    memory, too many processes): the runner then starts a fresh interpreter, and the template goes on serving."""
    try:
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        return {"error": f"cannot open the workers' log: {exc}"}
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, listener, conn, log_fd)
        return {"pid": pid}
    except OSError as exc:
        return {"error": f"cannot fork: {exc}"}
    finally:
        os.close(log_fd)


def serve(parent: int) -> int:
    folder = _folder()
    lock = open(folder / LOCK_NAME, "a")  # noqa: SIM115 - held, locked, for the template's whole life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # this home has its template already
    path = folder / SOCKET_NAME
    if len(str(path)) > MAX_SOCKET_PATH:
        print(f"worker template: {path} is too long for a socket; workers start as fresh interpreters", flush=True)
        return 1
    stop = []
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.append(True))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel: no zombies to wait for
    started = time.perf_counter()
    try:
        prepare()
    except Exception:  # noqa: BLE001 - no template then: the runner starts workers as fresh interpreters
        print("worker template: cannot serve; workers start as fresh interpreters\n" + traceback.format_exc(),
              flush=True)
        return 1
    if stop:
        return 0
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a template that died without cleaning up (its lock was free)
    staging = folder / f"{SOCKET_NAME}.{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX)
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    old_mask = os.umask(0o177)
    try:
        listener.bind(str(staging))
    finally:
        os.umask(old_mask)
    listener.listen(16)
    listener.settimeout(1.0)
    os.replace(staging, path)  # ready: from now on the socket answers
    ours = path.stat().st_ino
    print(f"worker template {os.getpid()} ready after {time.perf_counter() - started:.1f} s", flush=True)
    idle_imports_done = False
    try:
        while not stop and os.getppid() == parent and path.exists():
            try:
                _serve_one(listener)
            except (TimeoutError, InterruptedError):  # once a second: is the parent still there, a stop asked for?
                if not idle_imports_done:
                    idle_imports_done = True
                    prepare_when_idle()
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino == ours:  # never a newer template's socket
                path.unlink()
        lock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.runs.template", description=__doc__.splitlines()[0])
    parser.add_argument("--parent", type=int, required=True, help="exit once this process is gone")
    args = parser.parse_args(argv)
    return serve(args.parent)


if __name__ == "__main__":
    sys.exit(main())
