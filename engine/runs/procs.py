"""Is a worker's process still there? The one liveness check the store, the runner and the workers share.

A module of its own, with nothing but the standard library, so the store can check processes on every read
without importing the worker module (or torch).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def pid_alive(pid: int, host: str) -> bool | None:
    """True/False for a process on this host (zombies count as dead); None when it lives elsewhere."""
    if host != socket.gethostname():
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where workers start (their cwd) and import the project from


def worker_env() -> dict[str, str]:
    """The environment of a process the runner starts (a worker, the worker template): this one's, with the data
    home made absolute and the project importable from wherever it runs."""
    from engine.paths import trainlens_home

    env = dict(os.environ)
    env["TRAINLENS_HOME"] = str(trainlens_home())
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# A worker's pulse: a file whose modification time a worker's own thread refreshes every second, whatever the
# store is doing. A heartbeat that stopped in the database while the pulse goes on means a worker waiting for a
# busy store (alive, not to be reaped); both stopped means a frozen process (SIGSTOP, a suspended laptop, a swap
# storm) whose run must go to someone else. Only readers on the worker's host see the file.
_SAFE = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")


def pulse_path(worker_id: str):
    from engine.paths import private_dir, trainlens_home

    name = "".join(ch if ch in _SAFE else "_" for ch in worker_id)[:64] or "_"
    return private_dir(trainlens_home() / "workers") / f"{name}.pulse"


PULSE_BYTES = 512  # the pulse file's size, written when it is made: room for the worker's last words


def touch_pulse(worker_id: str) -> None:
    path = pulse_path(worker_id)
    try:
        os.utime(path)
    except FileNotFoundError:
        path.write_bytes(b" " * PULSE_BYTES)


def leave_last_words(worker_id: str, reason: str) -> None:
    """Write why this worker stops into its pulse file, for the reaper that finds it gone (its run's reason then
    says it, not "killed or out of memory"). In place, over bytes written when the file was made: a full disk,
    often the very reason, has no room for a new file or a longer one."""
    data = " ".join(reason.split()).encode("utf-8")[:PULSE_BYTES]
    try:
        with open(pulse_path(worker_id), "r+b") as f:
            f.write(data.ljust(PULSE_BYTES))
    except OSError:
        pass  # the run's reason falls back to the process's state


def last_words(worker_id: str) -> str | None:
    """What the worker wrote before it stopped (see leave_last_words); None when nothing."""
    try:
        text = pulse_path(worker_id).read_bytes()[:PULSE_BYTES].decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text or None


def pulse_age(worker_id: str, now: float) -> float | None:
    """Seconds since the worker's pulse was refreshed; None when there is no pulse file here to look at."""
    try:
        return now - pulse_path(worker_id).stat().st_mtime
    except OSError:
        return None
