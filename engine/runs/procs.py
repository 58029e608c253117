"""Is a worker's process still there? The one liveness check the store, the runner and the workers share.

A module of its own, with nothing but the standard library, so the store can check processes on every read
without importing the worker module (or torch).
"""

from __future__ import annotations

import os
import socket


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
