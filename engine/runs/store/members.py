"""Class mode in the store: who is in the class. A member has a stable id and owns runs; the display name is a label.

- **Joining** (`join_class`) makes a new member, or lets an earlier one back in: a student with their personal
  rejoin code (engine.classroom), the teacher by the teacher passphrase alone (they may act on every run anyway).
  A name someone is signed in under is refused (`NameTaken`, `signed_in`), and so, until the newcomer says they are
  someone new (`new_member=True`), is the name of an earlier student who still has runs: whoever types a freed or
  signed-out name becomes a new member and never gets the runs of the one before. Names compare as
  engine.classroom.name_key does ('ana  lopez' is 'Ana Lopez').
- **Seats**: each signed-in browser holds a seat (named in its seat token), so a member may be signed in on a
  laptop and the projector at once. Signing out ends that seat; the teacher freeing a member ends all of theirs.
  A seat's `seen_at` (written at most once a minute by the page) tells the teacher who is idle.
- **Rejoin requests**: a student without their code asks the teacher (`request_rejoin`); the teacher lets them back
  in as one of the members of that name, or refuses (`decide_rejoin`); the waiting browser then takes its seat
  (`claim_rejoin`). A request not answered within REQUEST_TTL_S lapses.

Codes are hashed before any transaction starts and checked outside one (each check costs ~50 ms of PBKDF2), so the
write lock is never held for them. Who may free or approve is checked here too (engine.runs.access).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import pandas as pd

from engine.classroom import (SEAT_HOURS, STUDENT, TEACHER, Actor, check_display_name, hash_rejoin_code,
                              name_key, new_rejoin_code, rejoin_code_matches)
from engine.runs.access import check_may_teach
from engine.runs.store.migrations import new_member_id
from engine.runs.store.schema import StoreBase

IDLE_AFTER_S = 300.0  # a signed-in member with no page view for this long shows as idle to the teacher
SEEN_EVERY_S = 60.0  # a seat's seen_at is written at most this often
REQUEST_TTL_S = 900.0  # a rejoin request the teacher has not answered lapses after this long
SEAT_TTL_S = SEAT_HOURS * 3600  # a seat older than its token counts as ended

# what the teacher sees for each member (MembersMixin.members)
SIGNED_IN, IDLE, SIGNED_OUT, WAITING = "signed in", "idle", "signed out", "waiting to rejoin"


class NameTaken(ValueError):
    """The name belongs to someone: `signed_in` when a member is signed in under it now, else an earlier student
    who still has runs. The message says how to rejoin as oneself, or how to join as someone new."""

    def __init__(self, message: str, signed_in: bool):
        super().__init__(message)
        self.signed_in = signed_in


class WrongCode(ValueError):
    """A rejoin code that is not the one of any member of that name (counted as a wrong guess)."""


@dataclass(frozen=True)
class Joined:
    """A browser just signed in: who it acts as, its seat, and the rejoin code to show them once ('' for none)."""

    actor: Actor
    seat_id: str
    code: str = ""
    rejoined: bool = False  # an earlier member came back (their runs are theirs again)


class MembersMixin(StoreBase):
    """Members, seats and rejoin requests."""

    def join_class(self, name: str, role: str, *, code: str = "", new_member: bool = False,
                   now: float | None = None) -> Joined:
        """Sign a browser in as `name` (role from the passphrase it gave): see the module docstring. ValueError for a
        bad name, NameTaken for a name someone has, WrongCode for a code that matches no member of that name."""
        name = check_display_name(name)
        key, now = name_key(name), now or time.time()
        if role == STUDENT and code.strip():
            return self._rejoin_with_code(name, key, code, now)
        fresh_code = new_rejoin_code() if role == STUDENT else ""
        fresh_hash = hash_rejoin_code(fresh_code) if fresh_code else None
        seat_id = secrets.token_hex(8)
        with self._tx() as c:
            members = c.execute("SELECT member_id, name, role FROM members WHERE name_key=? ORDER BY joined_at",
                                (key,)).fetchall()
            seated = {r["member_id"] for r in c.execute(
                f"SELECT member_id FROM seats WHERE ended_at IS NULL AND started_at > ? AND member_id IN "
                f"({','.join('?' * len(members))})", [now - SEAT_TTL_S] + [m["member_id"] for m in members])}
            teacher = next((m for m in members if m["role"] == TEACHER), None)
            if role == TEACHER and teacher is not None:  # the teacher passphrase is proof enough
                self._seat(c, teacher["member_id"], seat_id, now)
                return Joined(Actor(teacher["name"], TEACHER, teacher["member_id"]), seat_id, rejoined=True)
            if seated:
                raise NameTaken(f"Someone in the class is signed in as {name!r}. If that is you on another tab or "
                                "laptop, enter your rejoin code, or ask the teacher to let you back in; otherwise "
                                "choose another name", signed_in=True)
            owners = [m for m in members if m["role"] == STUDENT and c.execute(
                "SELECT 1 FROM runs WHERE owner_id=? LIMIT 1", (m["member_id"],)).fetchone()]
            if owners and not new_member and role == STUDENT:
                raise NameTaken(f"A classmate called {name!r} joined earlier, and their runs stay theirs. If that "
                                "was you, enter your rejoin code, or ask the teacher to let you back in; otherwise "
                                "join as someone new under this name, or choose another", signed_in=False)
            member_id = new_member_id()
            c.execute("INSERT INTO members(member_id, name, name_key, role, joined_at, code_hash) VALUES (?,?,?,?,?,?)",
                      (member_id, name, key, role, now, fresh_hash))
            self._seat(c, member_id, seat_id, now)
        return Joined(Actor(name, role, member_id), seat_id, fresh_code)

    def _rejoin_with_code(self, name: str, key: str, code: str, now: float) -> Joined:
        candidates = self.conn.execute("SELECT member_id, name, code_hash FROM members WHERE name_key=? AND role=?",
                                       (key, STUDENT)).fetchall()
        match = next((m for m in candidates if rejoin_code_matches(code, m["code_hash"])), None)
        if match is None:
            raise WrongCode(f"That rejoin code is not the one given to {name!r}. Check it (it was shown when you "
                            "joined), or ask the teacher to let you back in")
        fresh_code = new_rejoin_code()  # a code is good for one rejoin: one copied off a screen stops working
        fresh_hash, seat_id = hash_rejoin_code(fresh_code), secrets.token_hex(8)
        with self._tx() as c:
            changed = c.execute("UPDATE members SET code_hash=? WHERE member_id=? AND code_hash=?",
                                (fresh_hash, match["member_id"], match["code_hash"])).rowcount
            if not changed:  # the same code used twice at once: one wins
                raise WrongCode(f"That rejoin code of {name!r} was just used; use the new one, or ask the teacher")
            self._seat(c, match["member_id"], seat_id, now)
        return Joined(Actor(match["name"], STUDENT, match["member_id"]), seat_id, fresh_code, rejoined=True)

    @staticmethod
    def _seat(c, member_id: str, seat_id: str, now: float) -> None:
        c.execute("INSERT INTO seats(seat_id, member_id, started_at, seen_at) VALUES (?,?,?,?)",
                  (seat_id, member_id, now, now))

    def seat_actor(self, seat_id: str, role: str | None = None, now: float | None = None) -> Actor | None:
        """Who this seat admits (name, role and member id, from the store), or None when it has ended: signed out,
        freed by the teacher, older than its token, or not of `role`."""
        row = self.conn.execute(
            "SELECT m.member_id, m.name, m.role FROM seats s JOIN members m ON m.member_id = s.member_id "
            "WHERE s.seat_id=? AND s.ended_at IS NULL AND s.started_at > ?",
            (seat_id, (now or time.time()) - SEAT_TTL_S)).fetchone()
        if row is None or (role is not None and row["role"] != role):
            return None
        return Actor(row["name"], row["role"], row["member_id"])

    def seat_seen(self, seat_id: str, now: float | None = None) -> None:
        """Note a page view of this seat (for the teacher's idle column); a write only once a minute."""
        now = now or time.time()
        self.conn.execute("UPDATE seats SET seen_at=? WHERE seat_id=? AND seen_at < ?",
                          (now, seat_id, now - SEEN_EVERY_S))

    def leave_class(self, seat_id: str) -> None:
        """Sign this seat out (the member's other browsers stay signed in)."""
        self.conn.execute("UPDATE seats SET ended_at=? WHERE seat_id=? AND ended_at IS NULL", (time.time(), seat_id))

    def free_member(self, member_id: str, actor: Actor | None = None) -> int:
        """Sign a member out everywhere (teacher only): every seat token of theirs stops working, their name can be
        taken by someone new, and their runs stay theirs. Returns how many seats ended."""
        check_may_teach(actor, "free a student's name")
        return self.conn.execute("UPDATE seats SET ended_at=? WHERE member_id=? AND ended_at IS NULL",
                                 (time.time(), member_id)).rowcount

    def members(self, now: float | None = None) -> pd.DataFrame:
        """Every member, oldest first: member_id, name, role, joined_at, status (SIGNED_IN, IDLE, SIGNED_OUT or
        WAITING: a request to rejoin under their name waits for the teacher) and last_seen (None: never)."""
        now = now or time.time()
        rows = self.conn.execute(
            "SELECT m.member_id, m.name, m.name_key, m.role, m.joined_at, "
            "MAX(CASE WHEN s.ended_at IS NULL AND s.started_at > ? THEN s.seen_at END) AS active_seen, "
            "MAX(s.seen_at) AS last_seen FROM members m LEFT JOIN seats s ON s.member_id = m.member_id "
            "GROUP BY m.member_id ORDER BY m.joined_at, m.rowid", (now - SEAT_TTL_S,)).fetchall()
        waiting = set(self.rejoin_requests(now)["name_key"])
        records = []
        for r in rows:
            if r["active_seen"] is not None:
                status = SIGNED_IN if now - r["active_seen"] < IDLE_AFTER_S else IDLE
            else:
                status = WAITING if r["name_key"] in waiting else SIGNED_OUT
            records.append({"member_id": r["member_id"], "name": r["name"], "role": r["role"],
                            "joined_at": r["joined_at"], "status": status, "last_seen": r["last_seen"]})
        return pd.DataFrame(records, columns=["member_id", "name", "role", "joined_at", "status", "last_seen"])

    # ---- asking the teacher to be let back in ----
    def request_rejoin(self, name: str, role: str = STUDENT, now: float | None = None) -> str:
        """A browser that gave the class passphrase asks to rejoin as `name`; returns the request's id. One request
        waits per name: a newer one replaces it (the older browser's wait lapses), so the teacher's list stays one
        line per name however often someone asks."""
        name, request_id = check_display_name(name), secrets.token_hex(8)
        with self._tx() as c:
            c.execute("DELETE FROM rejoin_requests WHERE name_key=? AND decided_at IS NULL", (name_key(name),))
            c.execute("INSERT INTO rejoin_requests(request_id, name, name_key, role, requested_at) VALUES (?,?,?,?,?)",
                      (request_id, name, name_key(name), role, now or time.time()))
        return request_id

    def rejoin_requests(self, now: float | None = None) -> pd.DataFrame:
        """The requests waiting for the teacher, oldest first: request_id, name, name_key, requested_at."""
        rows = self.conn.execute("SELECT request_id, name, name_key, requested_at FROM rejoin_requests "
                                 "WHERE decided_at IS NULL AND requested_at > ? ORDER BY requested_at",
                                 ((now or time.time()) - REQUEST_TTL_S,)).fetchall()
        return pd.DataFrame([dict(r) for r in rows], columns=["request_id", "name", "name_key", "requested_at"])

    def decide_rejoin(self, request_id: str, member_id: str | None, actor: Actor | None = None) -> None:
        """The teacher lets the request's browser back in as `member_id` (a member of that name), or refuses (None)."""
        check_may_teach(actor, "let a student back in")
        with self._tx() as c:
            request = c.execute("SELECT name_key, role FROM rejoin_requests WHERE request_id=? AND decided_at IS NULL",
                                (request_id,)).fetchone()
            if request is None:
                raise ValueError("That request was already answered, or withdrawn")
            same_name = c.execute("SELECT 1 FROM members WHERE member_id=? AND name_key=? AND role=?",
                                  (member_id, request["name_key"], request["role"])).fetchone()
            if member_id is not None and same_name is None:
                raise ValueError("A request can only be let in as a member of the name it asked for")
            c.execute("UPDATE rejoin_requests SET member_id=?, decided_at=?, approved=? WHERE request_id=?",
                      (member_id, time.time(), int(member_id is not None), request_id))

    def rejoin_answer(self, request_id: str, now: float | None = None) -> str:
        """'waiting', 'approved', 'refused', or 'lapsed' (unanswered too long, withdrawn or already used)."""
        row = self.conn.execute("SELECT requested_at, decided_at, approved FROM rejoin_requests WHERE request_id=?",
                                (request_id,)).fetchone()
        if row is None:
            return "lapsed"
        if row["decided_at"] is None:
            return "waiting" if (now or time.time()) - row["requested_at"] < REQUEST_TTL_S else "lapsed"
        return "approved" if row["approved"] else "refused"

    def withdraw_rejoin(self, request_id: str) -> None:
        self.conn.execute("DELETE FROM rejoin_requests WHERE request_id=?", (request_id,))

    def claim_rejoin(self, request_id: str, now: float | None = None) -> Joined | None:
        """The seat of an approved request, with a new rejoin code (None when it is not approved, or was claimed)."""
        now = now or time.time()
        fresh_code = new_rejoin_code()
        fresh_hash, seat_id = hash_rejoin_code(fresh_code), secrets.token_hex(8)
        with self._tx() as c:
            row = c.execute("SELECT m.member_id, m.name, m.role FROM rejoin_requests r JOIN members m "
                            "ON m.member_id = r.member_id WHERE r.request_id=? AND r.approved=1",
                            (request_id,)).fetchone()
            if row is None:
                return None
            c.execute("DELETE FROM rejoin_requests WHERE request_id=?", (request_id,))  # one seat per approval
            if row["role"] == STUDENT:
                c.execute("UPDATE members SET code_hash=? WHERE member_id=?", (fresh_hash, row["member_id"]))
            self._seat(c, row["member_id"], seat_id, now)
        return Joined(Actor(row["name"], row["role"], row["member_id"]), seat_id,
                      fresh_code if row["role"] == STUDENT else "", rejoined=True)
