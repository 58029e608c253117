"""Datasets uploaded from the browser (a CSV on the Train page): stored once, private, and bounded in total size.

Uploads used to pile up under TRAINLENS_HOME/data/uploads for ever, readable by every account on the machine. Now
an upload is named by its content's hash (the same file is stored once; storing it again only marks it used), is
written 0600 in a 0700 folder, and the folder is kept under MAX_TOTAL_BYTES and MAX_FILES: before a new upload is
stored, the uploads no run uses are removed, least recently used first, until it fits. An upload that a run in
the store still reads (`in_use`: any run, which may be resumed, reported or explained) is never removed; when
those alone fill the space, the new upload is refused with what to do. Ground floor, torch-free.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from engine.paths import data_dir, make_private, private_dir

UPLOADS = "uploads"  # under TRAINLENS_HOME/data: a run's data_dir names an upload as "uploads/<hash>.csv"
MAX_TOTAL_BYTES = 200 * 2**20  # about twenty uploads at the 10 MB the dashboard accepts
MAX_FILES = 100


class UploadRefused(ValueError):
    """The upload space is full of datasets that runs still use; `str()` says what to do."""


def uploads_dir() -> Path:
    return private_dir(data_dir() / UPLOADS)


def save_upload(data: bytes, in_use: Iterable[str], suffix: str = ".csv") -> str:
    """Store `data` (once per content) and return the data_dir that names it ("uploads/<hash><suffix>"). `in_use`:
    the data_dir values of the runs in the store, whose uploads are kept. UploadRefused when they fill the space."""
    folder = uploads_dir()
    name = f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    path = folder / name
    if path.is_file():
        os.utime(path)  # used again: the last to go
        return f"{UPLOADS}/{name}"
    kept = {Path(str(d)).name for d in in_use if d}
    prune(kept, room_for=len(data))
    used = sum(p.stat().st_size for p in _uploads(folder))
    if used + len(data) > MAX_TOTAL_BYTES or len(_uploads(folder)) >= MAX_FILES:
        raise UploadRefused(f"The server's space for uploaded datasets ({MAX_TOTAL_BYTES // 2**20} MB, {MAX_FILES} "
                            f"files) is full of datasets that runs still use; delete old runs on the Runs page "
                            "(or ask the teacher to), then upload again")
    staged = folder / f".{name}.{os.getpid()}.partial"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    make_private(staged)
    os.replace(staged, path)
    return f"{UPLOADS}/{name}"


def prune(kept: set[str], room_for: int = 0) -> list[str]:
    """Remove uploads not named in `kept`, least recently used first, until `room_for` more bytes and one more file
    fit under the limits; returns the names removed."""
    folder = uploads_dir()
    files = sorted(_uploads(folder), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    removed = []
    for path in files:
        if total + room_for <= MAX_TOTAL_BYTES and len(files) - len(removed) < MAX_FILES:
            break
        if path.name in kept:
            continue
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path.name)
    return removed


def _uploads(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
