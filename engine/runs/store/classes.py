"""Class mode in the store: the teacher's settings (queue pause, class limits). The class's members are in
engine.runs.store.members.

Settings live in the `meta` table (`queue_paused`, `limit.<name>`), so every server process and worker sees the
same value the moment the teacher changes it. `class_settings`, `class_limits`, `queued_of` and `running_units`
read inside the caller's transaction: the queue (a claim), a submission and a resume check the limits in the same
transaction that acts on them, so a thousand requests at once cannot slip past a cap. A student's items for the
running and queued caps are runs, or whole lesson launches (`UNIT`), counted per member id. Who may change what is
decided in engine.runs.access.
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


# A run's item for the class limits: its lesson launch's group (engine.runs.store.launches: a whole lesson is one
# item), else the run itself. Run ids are 12 hex digits, so the prefixed groups never collide with them.
UNIT = "COALESCE('launch:' || l.grp, r.run_id)"
JOIN_LAUNCH = "LEFT JOIN launches l ON l.grp = r.grp"


def running_units(c: sqlite3.Connection) -> dict[tuple[str, str], set[str]]:
    """(owner_id, owner_role) -> the items each member has training (a run, or a lesson launch however many of its
    runs train), read on `c`."""
    units: dict[tuple[str, str], set[str]] = {}
    for row in c.execute(f"SELECT r.owner_id, r.owner_role, {UNIT} AS unit FROM runs r {JOIN_LAUNCH} "
                         f"WHERE r.status='{RunStatus.RUNNING}'"):
        units.setdefault((row["owner_id"], row["owner_role"]), set()).add(row["unit"])
    return units


def queued_of(c: sqlite3.Connection, actor: Actor) -> int:
    """How many items `actor` (a class member) has waiting in the queue: queued runs, and lesson launches none of
    whose runs has started (a launch already training is counted as running), read inside the caller's
    transaction."""
    waiting = {row["unit"] for row in c.execute(
        f"SELECT {UNIT} AS unit FROM runs r {JOIN_LAUNCH} WHERE r.status='{RunStatus.QUEUED}' AND r.owner_id=? "
        "AND r.owner_role=?", (actor.member_id, actor.role))}
    return len(waiting - running_units(c).get((actor.member_id, actor.role), set()))


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
