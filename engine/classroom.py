"""Class mode: who is who on a server shared by a teacher and a class.

By default TrainLens is single-user and loopback-only: every run belongs to the OS user (role `local`) and there is
no login. Class mode is the explicit opt-in for serving a room: the operator sets two passphrases
(`TRAINLENS_CLASS_PASSPHRASE` for students, `TRAINLENS_TEACHER_PASSPHRASE` for the teacher) and starts the server
with `python -m engine class`. A visitor then enters a passphrase and a display name; that makes an `Actor`.

- Passphrases are compared in constant time (`hmac.compare_digest` over their SHA-256 digests, so the length of the
  secret does not leak either), never logged, never shown, never put in a URL.
- A reload keeps the visitor signed in through a *seat token* in the page URL: name, role, member, seat and expiry
  signed with HMAC-SHA256 under a key made of a random server secret (TRAINLENS_HOME/class-secret, mode 0600) and
  both passphrases, so changing a passphrase signs everyone out. A token is not the passphrase: it admits one seat
  for 12 hours (while the store says the seat holds), and a forged or edited one is refused.
- A visitor is a *member* of the class with a stable id (`Actor.member_id`): their runs belong to that id, and the
  display name is only its label. A name freed by the teacher or signed out never hands its runs to the next
  person who types it; a student gets back to their own runs from a new tab or laptop with their personal *rejoin
  code* (`new_rejoin_code`, shown once at sign-in, kept only as a salted PBKDF2 hash) or the teacher's approval.
- Repeated wrong passphrases and rejoin codes are slowed down (`Guesses`): after 3 failures from one client address
  each further attempt must wait 2, 4, 8 ... up to 60 s, and the server counts every failure too, so neither a new
  browser session nor a new address starts afresh. `client_address` says who a client is, behind the proxies the
  operator trusts (TRAINLENS_TRUSTED_PROXIES).
- Who may do what is decided in the engine (engine.runs.access), from the Actor, never by the page alone.
"""

from __future__ import annotations

import base64
import collections
import getpass
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from engine.paths import trainlens_home
from engine.records import hidden_character

TEACHER, STUDENT, LOCAL = "teacher", "student", "local"
ROLES = (TEACHER, STUDENT, LOCAL)
DISPLAY_NAME_MAX = 40  # characters: a name fits a leaderboard row and a legend
SEAT_HOURS = 12.0  # a seat token admits its holder this long: a school day
MIN_PASSPHRASE = 6  # characters: short enough to write on a board, long enough not to be guessed in a lesson


@dataclass(frozen=True)
class Actor:
    """Who is acting: a display name, a role and, in a class, the member id their runs belong to (the name is only a
    label). `local` is the single user of a loopback server or the CLI (no member id)."""

    name: str
    role: str = LOCAL
    member_id: str = ""

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

    Names are shown as text everywhere, so HTML or markdown in them is harmless; control, invisible and
    bidirectional-override characters are refused because they garble tables and logs, or make one name read as
    another (engine.records.hidden_character)."""
    cleaned = " ".join(unicodedata.normalize("NFKC", name or "").split())
    if not cleaned:
        raise ValueError("Enter a display name: it is how your runs are labelled for the class")
    if len(cleaned) > DISPLAY_NAME_MAX:
        raise ValueError(f"That name is {len(cleaned):,} characters long; use at most {DISPLAY_NAME_MAX}")
    if (hidden := hidden_character(cleaned, allowed="")) is not None:
        raise ValueError(f"A display name cannot contain control or invisible characters ({hidden})")
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
        try:
            trusted_proxies()
        except ValueError as exc:
            return str(exc)
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
        body = json.dumps({"n": actor.name, "r": actor.role, "m": actor.member_id, "s": seat_id,
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
            return Actor(check_display_name(body["n"]), body["r"], str(body.get("m", ""))), str(body["s"])
        except (ValueError, KeyError, TypeError):
            return None


# ---- rejoin codes ----
# 8 characters from 31 that cannot be mistaken for one another (no 0/O, 1/I/L): about 40 bits, read off a screen and
# typed on another laptop in seconds. Wrong codes count as wrong guesses (Guesses), per address and per name.
REJOIN_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
REJOIN_LENGTH = 8
_CODE_ITERATIONS = 200_000  # PBKDF2 rounds: ~50 ms per check, so a stolen store does not give the codes away


def new_rejoin_code() -> str:
    """A fresh personal rejoin code, shown to its member once, e.g. 'K7QM-2XPA'."""
    code = "".join(secrets.choice(REJOIN_ALPHABET) for _ in range(REJOIN_LENGTH))
    return f"{code[:4]}-{code[4:]}"


def _code_text(code: str) -> str:
    # typed codes vary: lower case, spaces, a missing dash
    return "".join(ch for ch in (code or "").upper() if ch.isalnum())


def hash_rejoin_code(code: str) -> str:
    """The code as stored: a salted PBKDF2-SHA256 hash, never the code itself."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", _code_text(code).encode(), salt, _CODE_ITERATIONS)
    return f"pbkdf2-sha256${_CODE_ITERATIONS}${salt.hex()}${digest.hex()}"


def rejoin_code_matches(code: str, stored: str | None) -> bool:
    """Whether `code` is the one `stored` was made from (constant-time comparison; False for anything malformed)."""
    try:
        scheme, rounds, salt, digest = (stored or "").split("$")
        if scheme != "pbkdf2-sha256" or not _code_text(code):
            return False
        given = hashlib.pbkdf2_hmac("sha256", _code_text(code).encode(), bytes.fromhex(salt), int(rounds))
        return hmac.compare_digest(given.hex(), digest)
    except ValueError:
        return False


# ---- slowing down wrong guesses ----
class Guesses:
    """Slows down repeated wrong guesses (passphrases, rejoin codes), per key and for the whole server.

    A key is a client address (see `client_address`) or a display name (for rejoin codes). After FREE failures of
    one key each further guess must wait 2, 4, 8 ... up to MAX_WAIT_S seconds. The server also counts every failure:
    beyond SERVER_FREE within SERVER_WINDOW_S, every guess from anywhere waits the same way, so opening new browser
    sessions (or sending made-up forwarded addresses) buys no free guesses. A key's failures are forgotten after
    SERVER_WINDOW_S without one, or when it signs in."""

    FREE = 3  # wrong guesses allowed per key before waiting starts (typos happen)
    MAX_WAIT_S = 60.0
    SERVER_FREE = 30  # wrong guesses the whole server allows per window: a class's typos, not a guessing script
    SERVER_WINDOW_S = 600.0

    def __init__(self):
        self._fails: dict[str, tuple[int, float, float]] = {}  # key -> (failures, last failure, wait until)
        # times of the window's failures (bounded: far past SERVER_FREE every guess waits the longest anyway)
        self._server: collections.deque[float] = collections.deque(maxlen=10_000)
        self._server_until = 0.0
        self._lock = threading.Lock()

    def wait_s(self, *keys: str, now: float | None = None) -> float:
        """Seconds before the next guess from these keys is even compared (0: go ahead)."""
        now = now or time.time()
        with self._lock:
            until = max([self._server_until] + [self._entry(key, now)[2] for key in keys])
        return max(0.0, until - now)

    def failed(self, *keys: str, now: float | None = None) -> float:
        """Record a wrong guess made by all of `keys` at once; returns the wait it earns."""
        now = now or time.time()
        with self._lock:
            wait = 0.0
            for key in keys:
                count = self._entry(key, now)[0] + 1
                key_wait = self._backoff(count, self.FREE)
                self._fails[key] = (count, now, now + key_wait)
                wait = max(wait, key_wait)
            while self._server and now - self._server[0] > self.SERVER_WINDOW_S:
                self._server.popleft()
            self._server.append(now)
            server_wait = self._backoff(len(self._server), self.SERVER_FREE)
            self._server_until = max(self._server_until, now + server_wait)
            while len(self._fails) > 10_000:  # a flood of addresses must not grow this without bound
                self._fails.pop(next(iter(self._fails)))
        return max(wait, server_wait)

    def succeeded(self, key: str) -> None:
        """Forget `key`'s failures (the server's count stays: one right guess does not excuse the wrong ones)."""
        with self._lock:
            self._fails.pop(key, None)

    def _entry(self, key: str, now: float) -> tuple[int, float, float]:
        count, last, until = self._fails.get(key, (0, 0.0, 0.0))
        return (0, 0.0, 0.0) if now - last > self.SERVER_WINDOW_S else (count, last, until)

    def _backoff(self, count: int, free: int) -> float:
        return 0.0 if count <= free else min(self.MAX_WAIT_S, 2.0 ** (count - free))


# ---- who is guessing: the client's address, behind the proxies the operator trusts ----
LOOPBACK_CLIENT = "loopback"  # Streamlit hides 127.0.0.1 and ::1: this computer, an SSH forward, a local proxy


def trusted_proxies(text: str | None = None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of TRAINLENS_TRUSTED_PROXIES (addresses or CIDR blocks, separated by commas or spaces);
    ValueError naming the variable and the entry it cannot read."""
    text = os.environ.get("TRAINLENS_TRUSTED_PROXIES", "") if text is None else text
    networks = []
    for entry in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"TRAINLENS_TRUSTED_PROXIES: {entry[:60]!r} is not an IP address or network (e.g. "
                             "127.0.0.1, 10.0.0.5 or 10.0.0.0/24)") from None
    return tuple(networks)


def _is_trusted(address: str, networks) -> bool:
    if address == LOOPBACK_CLIENT:
        candidates = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    else:
        try:
            candidates = [ipaddress.ip_address(address.strip("[]"))]
        except ValueError:
            return False
    return any(candidate.version == network.version and candidate in network
               for candidate in candidates for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, networks=()) -> str:
    """Who is guessing: the peer's address (None: loopback, as Streamlit reports it), or, when the peer is a trusted
    proxy, the nearest address in X-Forwarded-For that is not one (each proxy appends the address it saw, so the
    entries left of a trusted proxy's own are only what the client claimed)."""
    address = peer or LOOPBACK_CLIENT
    if not networks or not forwarded_for or not _is_trusted(address, networks):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _is_trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop.strip("[]")))
            except ValueError:
                return address  # garbage where an address should be: the proxy's own address is all we know
    return address
