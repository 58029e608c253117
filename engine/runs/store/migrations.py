"""Schema 3 -> 4: the class's members get stable ids, and runs are owned by a member, not by a name.

Schema 3 kept one `members` row per display name (`name_key` its primary key) and compared a run's `owner` name with
whoever asked, so a freed or signed-out name handed its runs to the next person who typed it. Schema 4 keeps
members by id (`MEMBERS_SCHEMA`): a member's signed-in browsers are `seats`, a student who lost their seat asks the
teacher through `rejoin_requests`, and `runs.owner_id` names the member who owns the run (`owner` stays, as the label
shown). `members_by_id` moves a schema 3 store over inside the migration's transaction:

- every old member row becomes a member with a new id (its seat, if still signed in, becomes a seat of it, so a
  student signed in across the upgrade stays signed in: the seat token names the seat, not the member);
- every class run (role student or teacher) is given the member of its owner's name and role, a member being made
  (signed out, no rejoin code yet) for an owner who had left the class; the teacher lets them back in from the Class
  page, or they join with a new name. Local runs keep owner_id '' (the OS user owns them, as before).

No store code (StoreBase) is imported here, so the schema module can call it without an import circle.
"""

from __future__ import annotations

import sqlite3
import time
import uuid

from engine.classroom import STUDENT, TEACHER, name_key

_MEMBERS_TABLE = """
CREATE TABLE IF NOT EXISTS members (
    member_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,                       -- the display name it joined with (shown; never an identity)
    name_key TEXT NOT NULL,                   -- the name as compared: engine.classroom.name_key
    role TEXT NOT NULL,                       -- student | teacher
    joined_at REAL NOT NULL,
    code_hash TEXT                            -- its rejoin code, hashed (engine.classroom.hash_rejoin_code)
)"""
_MEMBERS_INDEX = "CREATE INDEX IF NOT EXISTS members_by_name ON members(name_key)"
MEMBERS_SCHEMA = _MEMBERS_TABLE + ";\n" + _MEMBERS_INDEX + """;
CREATE TABLE IF NOT EXISTS seats (
    seat_id TEXT PRIMARY KEY,                 -- named in the seat token of one signed-in browser
    member_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL,                    -- its last page view (written at most once a minute): idle or not
    ended_at REAL                             -- signed out, or the teacher freed the member
);
CREATE INDEX IF NOT EXISTS seats_by_member ON seats(member_id);
CREATE TABLE IF NOT EXISTS rejoin_requests (
    request_id TEXT PRIMARY KEY,
    name TEXT NOT NULL, name_key TEXT NOT NULL, role TEXT NOT NULL,
    requested_at REAL NOT NULL,
    member_id TEXT,                           -- the member the teacher let them back in as
    decided_at REAL, approved INTEGER         -- NULL until the teacher answers; 1 let in, 0 refused
);
"""


def new_member_id() -> str:
    return uuid.uuid4().hex[:12]


def members_by_id(c: sqlite3.Connection) -> None:
    """Inside the migration's transaction, once `runs.owner_id` exists: rebuild a schema 3 `members` table by id and
    give every class run its owner's member (see the module docstring)."""
    now = time.time()
    columns = {r[1] for r in c.execute("PRAGMA table_info(members)")}
    if "member_id" not in columns:  # the schema 3 table: one row per name
        c.execute("ALTER TABLE members RENAME TO members_v3")  # (its index goes with it, and is dropped with it)
        c.execute(_MEMBERS_TABLE)
        for old in c.execute("SELECT name_key, name, role, seat_id, joined_at, left_at FROM members_v3").fetchall():
            member_id = new_member_id()
            c.execute("INSERT INTO members(member_id, name, name_key, role, joined_at) VALUES (?,?,?,?,?)",
                      (member_id, old[1], name_key(old[1]), old[2], old[4]))
            if old[5] is None:  # still signed in: its seat token keeps working
                c.execute("INSERT OR IGNORE INTO seats(seat_id, member_id, started_at, seen_at) VALUES (?,?,?,?)",
                          (old[3], member_id, old[4], old[4]))
        c.execute("DROP TABLE members_v3")
        c.execute(_MEMBERS_INDEX)
    owners = c.execute("SELECT DISTINCT owner, owner_role FROM runs WHERE owner_role IN (?, ?) AND owner_id=''",
                       (STUDENT, TEACHER)).fetchall()
    for owner, role in owners:
        row = c.execute("SELECT member_id FROM members WHERE name_key=? AND role=? ORDER BY joined_at LIMIT 1",
                        (name_key(owner), role)).fetchone()
        member_id = row[0] if row else new_member_id()
        if row is None:  # they had left the class: a member without a seat, for the teacher to let back in
            c.execute("INSERT INTO members(member_id, name, name_key, role, joined_at) VALUES (?,?,?,?,?)",
                      (member_id, owner, name_key(owner), role, now))
        c.execute("UPDATE runs SET owner_id=? WHERE owner=? AND owner_role=? AND owner_id=''", (member_id, owner, role))
    c.execute("DELETE FROM queue_turns")  # keyed by name in schema 3; the turns start afresh, in a fair order
