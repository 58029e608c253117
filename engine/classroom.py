"""Class mode: who is who on a server shared by a teacher and a class.

By default TrainLens is single-user and loopback-only: every run belongs to the OS user (role `local`) and there is
no login. Class mode is the explicit opt-in for serving a room: the operator sets two passphrases
(`TRAINLENS_CLASS_PASSPHRASE` for students, `TRAINLENS_TEACHER_PASSPHRASE` for the teacher) and starts the server
with `python -m engine class`. A visitor then enters a passphrase and a display name; that makes an `Actor`.

- Passphrases are compared in constant time (`hmac.compare_digest` over their SHA-256 digests, so the length of the
  secret does not leak either), never logged, never shown, never put in a URL.
- A reload keeps the visitor signed in through a *seat token* in the page URL: name, role and expiry signed with
  HMAC-SHA256 under a key made of a random server secret (TRAINLENS_HOME/class-secret, mode 0600) and both
  passphrases, so changing a passphrase signs everyone out. A token is not the passphrase: it admits one name for
  12 hours, and a forged or edited one is refused.
- Repeated wrong passphrases are slowed down (`Guesses`): after 3 failures from one client each further attempt
  must wait 2, 4, 8 ... up to 60 s.
- Who may do what is decided in the engine (engine.runs.access), from the Actor, never by the page alone.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from engine.paths import trainlens_home

TEACHER, STUDENT, LOCAL = "teacher", "student", "local"
ROLES = (TEACHER, STUDENT, LOCAL)
DISPLAY_NAME_MAX = 40  # characters: a name fits a leaderboard row and a legend
SEAT_HOURS = 12.0  # a seat token admits its holder this long: a school day
MIN_PASSPHRASE = 6  # characters: short enough to write on a board, long enough not to be guessed in a lesson


@dataclass(frozen=True)
class Actor:
    """Who is acting: a display name and a role. `local` is the single user of a loopback server or the CLI."""

    name: str
    role: str = LOCAL

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role={self.role!r}: allowed roles are {', '.join(ROLES)}")

    @property
    def is_teacher(self) -> bool:
        return self.role in (TEACHER, LOCAL)  # the local user owns the whole server

    @property
    def is_student(self) -> bool:
        return self.role == STUDENT

    @classmethod
    def local(cls) -> Actor:
        """The OS user, as the CLI and a single-user dashboard act."""
        try:
            user = getpass.getuser()
        except Exception:  # no passwd entry (some containers)
            user = ""
        return cls(user or "local", LOCAL)


def name_key(name: str) -> str:
    """The form two display names are compared in: 'Ana  Lopez' and 'ana lopez' are the same person's name."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def check_display_name(name: str) -> str:
    """The display name as it will be stored (trimmed, inner spaces collapsed); ValueError with a readable reason.

    Names are shown as text everywhere, so HTML or markdown in them is harmless; control characters are refused
    because they garble tables and logs."""
    cleaned = " ".join(unicodedata.normalize("NFKC", name or "").split())
    if not cleaned:
        raise ValueError("Enter a display name: it is how your runs are labelled for the class")
    if len(cleaned) > DISPLAY_NAME_MAX:
        raise ValueError(f"That name is {len(cleaned):,} characters long; use at most {DISPLAY_NAME_MAX}")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") for ch in cleaned):
        raise ValueError("A display name cannot contain control or invisible characters")
    return cleaned


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class ClassMode:
    """The class settings of this server, read from the environment."""

    def __init__(self, class_passphrase: str | None = None, teacher_passphrase: str | None = None,
                 home: Path | None = None):
        self._class = os.environ.get("TRAINLENS_CLASS_PASSPHRASE", "") if class_passphrase is None else class_passphrase
        self._teacher = (os.environ.get("TRAINLENS_TEACHER_PASSPHRASE", "") if teacher_passphrase is None
                         else teacher_passphrase)
        self._home = home

    @property
    def enabled(self) -> bool:
        return bool(self._class or self._teacher)

    def problem(self) -> str | None:
        """Why these settings cannot serve a class (None when they can)."""
        if not self._class or not self._teacher:
            return ("Class mode needs both TRAINLENS_CLASS_PASSPHRASE (for students) and TRAINLENS_TEACHER_PASSPHRASE "
                    "(for the teacher)")
        if len(self._class) < MIN_PASSPHRASE or len(self._teacher) < MIN_PASSPHRASE:
            return f"Class and teacher passphrases must each be at least {MIN_PASSPHRASE} characters long"
        if hmac.compare_digest(_digest(self._class), _digest(self._teacher)):
            return "The class and teacher passphrases must differ, or every student could act as the teacher"
        return None

    def role_for(self, passphrase: str) -> str | None:
        """`teacher`, `student` or None, comparing in constant time against both passphrases every time."""
        given = _digest(passphrase or "")
        is_teacher = bool(self._teacher) and hmac.compare_digest(given, _digest(self._teacher))
        is_student = bool(self._class) and hmac.compare_digest(given, _digest(self._class))
        return TEACHER if is_teacher else STUDENT if is_student else None

    # ---- seat tokens ----
    def _key(self) -> bytes:
        path = (self._home or trainlens_home()) / "class-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # O_EXCL: two sessions signing in at once must not each write a different secret
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32))
            except FileExistsError:
                pass
        secret = ""
        for _ in range(50):  # the other writer may not have written yet
            secret = path.read_text().strip()
            if secret:
                break
            time.sleep(0.01)
        return hmac.new(secret.encode(), _digest(self._class) + _digest(self._teacher), hashlib.sha256).digest()

    def issue_seat(self, actor: Actor, seat_id: str, now: float | None = None) -> str:
        """A URL-safe token that admits `actor` for SEAT_HOURS."""
        body = json.dumps({"n": actor.name, "r": actor.role, "s": seat_id,
                           "e": int((now or time.time()) + SEAT_HOURS * 3600)}, separators=(",", ":"))
        payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        signature = hmac.new(self._key(), payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{payload}.{signature}"

    def read_seat(self, token: str, now: float | None = None) -> tuple[Actor, str] | None:
        """(actor, seat_id) for a valid, unexpired token; None for anything else (forged, edited, expired, garbage)."""
        if not token or len(token) > 1000 or token.count(".") != 1:
            return None
        payload, signature = token.split(".")
        expected = hmac.new(self._key(), payload.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(expected, signature):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if float(body["e"]) < (now or time.time()):
                return None
            return Actor(check_display_name(body["n"]), body["r"]), str(body["s"])
        except (ValueError, KeyError, TypeError):
            return None


class Guesses:
    """Slows down repeated wrong passphrases, per client (its address, or its browser session)."""

    FREE = 3  # wrong guesses allowed before waiting starts (typos happen)
    MAX_WAIT_S = 60.0

    def __init__(self):
        self._fails: dict[str, tuple[int, float]] = {}  # client -> (failures, wait until)
        self._lock = threading.Lock()

    def wait_s(self, client: str, now: float | None = None) -> float:
        """Seconds this client must still wait before its next guess is even compared (0: go ahead)."""
        with self._lock:
            _, until = self._fails.get(client, (0, 0.0))
        return max(0.0, until - (now or time.time()))

    def failed(self, client: str, now: float | None = None) -> float:
        """Record a wrong guess; returns the wait it earns."""
        now = now or time.time()
        with self._lock:
            count = self._fails.get(client, (0, 0.0))[0] + 1
            wait = 0.0 if count <= self.FREE else min(self.MAX_WAIT_S, 2.0 ** (count - self.FREE))
            self._fails[client] = (count, now + wait)
            if len(self._fails) > 10_000:  # a flood of clients must not grow this without bound
                self._fails.pop(next(iter(self._fails)))
        return wait

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._fails.pop(client, None)
