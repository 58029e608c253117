"""Reading a small file that a person put somewhere (a lesson in the lessons folder, a `--config` file), defensively:
a regular file only, at most a cap of bytes, never blocking.

A FIFO named `x.toml` in the lessons folder hung `lesson --list` and the Lessons page (opening a pipe waits for a
writer); a symlink to /dev/zero passed the size check (a device's size reads 0) and was then read without end. Here
the file is opened without blocking, checked on the opened descriptor (so nothing can be swapped in between the
check and the read), and read up to the cap plus one byte, which is enough to know it is too big. Ground floor.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class UnreadableFile(ValueError):
    """A file that is not read: not a regular file, too big, or not there. `str()` names it and says why."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def read_small_file(path: str | Path, cap: int, what: str = "the file") -> bytes:
    """The bytes of the regular file at `path` (symlinks to one are followed), if it holds at most `cap` bytes;
    UnreadableFile otherwise, naming the file: '<name>: N bytes; <what> is at most CAP'."""
    name = Path(path).name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnreadableFile(f"{name}: no such file") from None
    except OSError as exc:
        raise UnreadableFile(f"{name}: cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(f"{name}: not a regular file ({_kind(info.st_mode)}); {what} must be a plain file")
        if info.st_size > cap:
            raise UnreadableFile(f"{name}: {info.st_size:,} bytes; {what} is at most {cap:,}")
        chunks, size = [], 0
        while size <= cap:  # the size can change after fstat: never read more than cap + 1 bytes
            chunk = os.read(fd, cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise UnreadableFile(f"{name}: more than {cap:,} bytes; {what} is at most {cap:,}")
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile(f"{name}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
