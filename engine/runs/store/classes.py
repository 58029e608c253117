"""Class mode in the store: the teacher's settings (queue pause, class limits). The class's members are in
engine.runs.store.members.

Settings live in the `meta` table (`queue_paused`, `limit.<name>`), so every server process and worker sees the
same value the moment the teacher changes it. `class_settings`, `class_limits` and `queued_of` read inside the
caller's transaction: the queue (a claim), a submission and a resume check the limits in the same transaction that
acts on them, so a thousand requests at once cannot slip past a cap. Who may change what is decided in
engine.runs.access.
"""

from __future__ import annotations

import sqlite3

from engine.classroom import Actor
from engine.records import RunStatus
from engine.runs.access import LIMIT_PREFIX, ClassLimits, check_limit, check_may_teach
from engine.runs.store.schema import StoreBase


def class_settings(c: sqlite3.Connection) -> dict[str, str]:
    """The class settings the teacher stored, read on `c` (see ClassesMixin.settings)."""
    return {r["key"]: r["value"] for r in c.execute(
        "SELECT key, value FROM meta WHERE key='queue_paused' OR key LIKE ?", (LIMIT_PREFIX + "%",))}


def class_limits(c: sqlite3.Connection) -> ClassLimits:
    """The class limits in force, read on `c`."""
    try:
        return ClassLimits.from_settings(class_settings(c))
    except ValueError:  # a hand-edited meta row: fall back to the environment's limits
        return ClassLimits.from_settings()


def queued_of(c: sqlite3.Connection, actor: Actor) -> int:
    """How many runs `actor` (a class member) has waiting in the queue (read inside the caller's transaction)."""
    return c.execute(f"SELECT COUNT(*) FROM runs WHERE status='{RunStatus.QUEUED}' AND owner_id=? AND owner_role=?",
                     (actor.member_id, actor.role)).fetchone()[0]


class ClassesMixin(StoreBase):
    # ---- class settings ----
    def settings(self) -> dict[str, str]:
        """The class settings the teacher stored: `queue_paused` ('1' / '0') and `limit.<name>`."""
        return class_settings(self.conn)

    def limits(self) -> ClassLimits:
        return class_limits(self.conn)

    def set_queue_paused(self, paused: bool, actor: Actor | None = None) -> None:
        check_may_teach(actor, "pause or resume the queue")
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('queue_paused', ?)", ("1" if paused else "0",))

    def set_limit(self, name: str, value: int | float, actor: Actor | None = None) -> None:
        check_may_teach(actor, "change the class limits")
        value = check_limit(name, value)
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (LIMIT_PREFIX + name, str(value)))
