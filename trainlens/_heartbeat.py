"""A script run's heartbeat: a daemon thread that tells the store every HEARTBEAT_S seconds that the script is
alive (and at which step) and brings back the store's answer (a cancel asked from the dashboard or the CLI, or a
run deleted meanwhile); a second thread touches its pulse file every second whatever the store does.

The store's reapers mark the run `interrupted` once both stop (engine.runs.store.scripts), so a script killed
with `kill -9` shows as interrupted within seconds, with no code of its own running. A busy store only delays a
beat: the pulse goes on, so the reapers know the script is waiting, not gone.
"""

from __future__ import annotations

import threading

HEARTBEAT_S = 1.0


class Heartbeat:
    def __init__(self, store, run_id: str, step, on_cancel, on_gone):
        from engine.runs.store import script_pulse_id

        self.store, self.run_id, self.step = store, run_id, step
        self.on_cancel, self.on_gone = on_cancel, on_gone
        self.pulse_id = script_pulse_id(run_id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainlens-heartbeat", daemon=True)
        # the pulse has a thread of its own: a heartbeat waiting on a locked store (up to the connection's busy
        # timeout) must not look like a frozen script
        self._pulse = threading.Thread(target=self._pulse_loop, name="trainlens-pulse", daemon=True)
        self.touch()
        self.beat()
        self._thread.start()
        self._pulse.start()

    def touch(self) -> None:
        from engine.runs.procs import touch_pulse

        try:
            touch_pulse(self.pulse_id)
        except OSError:
            pass  # without a pulse the reapers go by the heartbeat alone

    def _pulse_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.touch()

    def beat(self) -> None:
        import sqlite3

        try:
            reply = self.store.script_heartbeat(self.run_id, self.step())
        except sqlite3.DatabaseError:
            return  # busy or failing: the next beat tries again (the sink warns about a failing store)
        if reply["gone"]:
            self.on_gone()
        elif reply["cancel"]:
            self.on_cancel()

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the heartbeat must outlive any surprise; the reaper judges silence
                pass

    def stop(self) -> None:
        self._stop.set()
        for thread in (self._thread, self._pulse):
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(timeout=5)
        try:
            from engine.runs.procs import pulse_path

            pulse_path(self.pulse_id).unlink(missing_ok=True)
        except OSError:
            pass
