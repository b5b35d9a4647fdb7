"""Input files read safely: only regular files (a FIFO would wait for ever, /dev/zero never
ends), each problem as a one-line reason, and names shown so that any byte prints on one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from uos.errors import InputError

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _not_regular(mode: int) -> str:
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind})"


def _unreadable(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "broken symbolic link" if path.is_symlink() else "no such file or directory"
    return f"cannot read: {exc.strerror}"


def regular_file_problem(path: str | Path) -> str | None:
    """Why `path` (symbolic links resolved) is not a regular file to read, or None when it is."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return _unreadable(Path(path), exc)
    return None if stat.S_ISREG(mode) else _not_regular(mode)


def open_regular(path: str | Path, source: str | None = None) -> BinaryIO:
    """`path` opened for reading, refusing anything but a regular file before reading a byte:
    opening a FIFO would wait for a writer, and /dev/zero never ends. Raises InputError."""
    try:
        # Non-blocking so that opening a FIFO returns at once; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(_unreadable(Path(path), exc), source) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputError(_not_regular(mode), source)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path: str | Path, source: str | None = None) -> bytes:
    """The bytes of a regular file (see `open_regular`). Raises InputError."""
    with open_regular(path, source) as handle:
        try:
            return handle.read()
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", source) from None


# Control characters in a name (a newline, an escape) would break a report line or the terminal.
_CONTROL = {code: f"\\x{code:02x}" for code in [*range(32), 127]}


def printable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (a Latin-1 `°` from an old unit) show as
    `\\xb0`, control characters as `\\x0a`, so that the name can go to JSON, Parquet, CSV and
    the terminal on one line."""
    return os.fsencode(name).decode("utf-8", "backslashreplace").translate(_CONTROL)
