"""Every TRAINLENS_* setting in one place: its default, what it accepts, and its value, checked.

An operator configures TrainLens with environment variables. A bad value used to surface late and far away: a
worker or the Ray dispatcher died at start, was started again by the next page refresh (dozens of times a
minute), and the runs waited `queued` with the reason only in workers.log. Now every setting is read here, and
`check()` validates them all before anything starts: the command line before any command, the dashboard before
any page, the runner before it starts a worker process (and a worker or dispatcher started by hand checks again).
A bad value is one line naming the variable, the value and what it accepts:

    TRAINLENS_WORKER_IDLE_S='abc': expected a number of seconds > 0 (default 1800)

Values are read from the environment at each call (tests and operators change it between calls); an empty value
counts as unset. `value(name)` returns the parsed value or raises SettingError. Ground floor, torch-free.

Settings that only a benchmark or the test suite reads (TRAINLENS_TICK_LOG, TRAINLENS_VALIDATE_FIGURES,
TRAINLENS_WARM_POOL, TRAINLENS_SHARED_FIGURES) are here too: a typo in one of them is as confusing as any other.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable


class SettingError(ValueError):
    """A TRAINLENS_* variable holds a value TrainLens cannot use; `str()` is the whole one-line message."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: str  # as it would be written in the environment ("" = none)
    accepts: str  # what the variable accepts, for the message
    parse: Callable[[str], Any]  # raises ValueError for a value it does not accept


# ---- parsers -----------------------------------------------------------------------------------------------------
def _whole(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = int(text)
        if number < minimum:
            raise ValueError(f"below {minimum}")
        return number

    return parse


def _positive(text: str) -> float:
    number = float(text)
    if not math.isfinite(number) or number <= 0:
        raise ValueError("not a finite number > 0")
    return number


_FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _flag(text: str) -> bool:
    return _FLAGS[text.lower()]  # KeyError for anything else: turned into a SettingError by value()


EXECUTORS = ("local", "ray")


def _executor(text: str) -> str:
    name = text.lower()
    if name not in EXECUTORS:
        raise ValueError(name)
    return name


_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?)$")


def split_ray_address(address: str) -> tuple[str, str, int] | None:
    """('ray://' or '', host, port) of a Ray address, None for `auto`; ValueError for anything else."""
    if address == "auto":
        return None
    scheme = "ray://" if address.startswith("ray://") else ""
    rest = address[len(scheme):]
    host, sep, port_text = rest.rpartition(":")
    if not sep or not _HOST.match(host) or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(address)
    return scheme, host.strip("[]"), int(port_text)


def _ray_address(text: str) -> str:
    split_ray_address(text)
    return text


def _folders(text: str) -> list[str]:
    return [part.strip() for part in text.split(os.pathsep) if part.strip()]


def _home(text: str) -> str:
    path = os.path.expanduser(text)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError("not a folder")
    return text


def _text(text: str) -> str:
    return text


def _at_least_zero(text: str) -> float:
    number = float(text)
    if not math.isfinite(number) or number < 0:
        raise ValueError("not a finite number >= 0")
    return number


def _networks(text: str) -> tuple:
    from engine.classroom import trusted_proxies  # the one reader of this list (imported here: no import circle)

    return trusted_proxies(text)  # ValueError for what is not an address or a network


# ---- the settings ------------------------------------------------------------------------------------------------
_ALL = [
    Setting("TRAINLENS_HOME", ".trainlens", "a folder (created when missing), not a file", _home),
    Setting("TRAINLENS_DATA_DIRS", "", f"folders separated by {os.pathsep!r}", _folders),
    Setting("TRAINLENS_MODEL_DIRS", "", f"folders separated by {os.pathsep!r}", _folders),
    Setting("TRAINLENS_WORKERS", "", "a whole number of worker processes (0: start none on this machine)",
            _whole(0)),
    Setting("TRAINLENS_WORKERS_PER_GPU", "1", "a whole number >= 1", _whole(1)),
    Setting("TRAINLENS_WORKER_IDLE_S", "1800", "a number of seconds > 0", _positive),
    Setting("TRAINLENS_STALE_AFTER_S", "6", "a number of seconds > 0", _positive),
    Setting("TRAINLENS_EXECUTOR", "local", "local or ray", _executor),
    Setting("TRAINLENS_RAY_ADDRESS", "auto", "auto, HOST:PORT or ray://HOST:PORT", _ray_address),
    Setting("TRAINLENS_RAY_RETRIES", "1", "a whole number >= 0", _whole(0)),
    Setting("TRAINLENS_RAY_CONNECT_TIMEOUT_S", "20", "a number of seconds > 0", _positive),
    Setting("TRAINLENS_MAX_RUNNING", "1", "a whole number >= 1", _whole(1)),
    Setting("TRAINLENS_MAX_QUEUED", "4", "a whole number >= 1", _whole(1)),
    Setting("TRAINLENS_MAX_EPOCHS", "10", "a whole number >= 1", _whole(1)),
    Setting("TRAINLENS_MAX_EXAMPLES", "100000", "a whole number >= 1", _whole(1)),
    Setting("TRAINLENS_MAX_PARAMETERS", "10000000", "a whole number >= 1", _whole(1)),
    Setting("TRAINLENS_MAX_BATCH", "1024", "a whole number >= 1", _whole(1)),
    Setting("TRAINLENS_MAX_CPUS", "2", "a number of CPU cores > 0", _positive),
    Setting("TRAINLENS_MAX_GPUS", "1", "a number of GPUs >= 0 (0.25: a quarter of one)", _at_least_zero),
    Setting("TRAINLENS_MAX_MINUTES", "30", "a whole number of minutes >= 1", _whole(1)),
    Setting("TRAINLENS_MAX_LESSON_RUNS", "16", "a whole number >= 1", _whole(1)),
    Setting("TRAINLENS_TRUSTED_PROXIES", "", "IP addresses or networks separated by commas or spaces "
            "(e.g. 10.0.0.5 or 10.0.0.0/24)", _networks),
    Setting("TRAINLENS_ALLOW_SCRIPTS", "0", "1 or 0 (also true/false, yes/no, on/off)", _flag),
    # class mode checks the passphrases themselves when it starts (engine.classroom: both, long enough, different)
    Setting("TRAINLENS_CLASS_PASSPHRASE", "", "any text (class mode checks it)", _text),
    Setting("TRAINLENS_TEACHER_PASSPHRASE", "", "any text (class mode checks it)", _text),
    Setting("TRAINLENS_REFRESH_CORES", "0.5", "a number of CPU cores > 0", _positive),
    Setting("TRAINLENS_SHARED_FIGURES", "1", "1 or 0 (also true/false, yes/no, on/off)", _flag),
    Setting("TRAINLENS_WARM_POOL", "1", "1 or 0 (also true/false, yes/no, on/off)", _flag),
    Setting("TRAINLENS_VALIDATE_FIGURES", "0", "1 or 0 (also true/false, yes/no, on/off)", _flag),
    Setting("TRAINLENS_TICK_LOG", "", "a file to append to (benchmarks)", _text),
]
SETTINGS: dict[str, Setting] = {s.name: s for s in _ALL}

# what the worker pool is started with: a failed start is remembered for these values (engine.runs.pool_health)
POOL_SETTINGS = ("TRAINLENS_HOME", "TRAINLENS_WORKERS", "TRAINLENS_WORKERS_PER_GPU", "TRAINLENS_WORKER_IDLE_S",
                 "TRAINLENS_EXECUTOR", "TRAINLENS_RAY_ADDRESS", "TRAINLENS_RAY_RETRIES",
                 "TRAINLENS_RAY_CONNECT_TIMEOUT_S", "TRAINLENS_STALE_AFTER_S")


def raw(name: str) -> str:
    """The variable's text as set (stripped), or its default when unset or empty."""
    text = os.environ.get(name, "").strip()
    return text if text else SETTINGS[name].default


def is_set(name: str) -> bool:
    return bool(os.environ.get(name, "").strip())


def value(name: str) -> Any:
    """The parsed value of setting `name` (its default when unset); SettingError naming it otherwise."""
    setting = SETTINGS[name]
    text = raw(name)
    if text == "" and setting.default == "":
        return None
    try:
        return setting.parse(text)
    except (ValueError, KeyError, OverflowError):
        default = f" (default {setting.default})" if setting.default else " (or unset)"
        shown = text if len(text) <= 200 else text[:200] + "..."
        raise SettingError(f"{name}={shown!r}: expected {setting.accepts}{default}") from None


def problems() -> list[str]:
    """One line per setting whose value cannot be used (empty when every setting is fine)."""
    found = []
    for name in SETTINGS:
        try:
            value(name)
        except SettingError as exc:
            found.append(str(exc))
    return found


def check() -> None:
    """SettingError listing every setting that cannot be used (one sentence each); nothing when all are fine."""
    found = problems()
    if found:
        raise SettingError("; ".join(found))


def value_or_default(name: str) -> Any:
    """`value(name)`, or the default's value when the setting is bad: for values read once at import time, where
    raising would only trade the one-line message of `check()` (which every entry point runs first) for a
    traceback."""
    try:
        return value(name)
    except SettingError:
        default = SETTINGS[name].default
        return SETTINGS[name].parse(default) if default else None


def fingerprint(names: tuple[str, ...] = POOL_SETTINGS) -> str:
    """A short digest of these settings as set now: a remembered failure applies only while they are the same."""
    text = "\n".join(f"{name}={raw(name)}" for name in names)
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
