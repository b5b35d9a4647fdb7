"""One entry point for every input kind: Setitec text file, binary Excel re-save, MQTT capture."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np

from uos.errors import InputError
from uos.holes.excel import is_binary_excel, parse_binary_excel
from uos.holes.mqtt import capture_digest, is_capture_folder, read_capture
from uos.holes.record import Hole, signals_hash
from uos.holes.setitec import parse_setitec_text


def read_bytes(raw: bytes, source: str, sha256: str | None = None) -> Hole:
    """A hole from the bytes of a Setitec file (text or binary Excel, told apart by magic bytes).
    `sha256`: the bytes' digest when the caller has it already."""
    if is_binary_excel(raw):
        hole = parse_binary_excel(raw, source)
        kind = "setitec-xls"
    else:
        hole = parse_setitec_text(raw, source)
        kind = "setitec"
    finish(hole, source, kind, sha256 or hashlib.sha256(raw).hexdigest())
    return hole


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


def read_source(path: str | Path, source: str | None = None) -> Hole:
    """Read a file or a capture folder into a hole. Raises InputError with a one-line reason.
    `source`: the name to give the input (default: the path as given, printable)."""
    path = Path(path)
    source = source or printable(str(path))
    if path.is_dir():
        if not is_capture_folder(path):
            raise InputError(
                "folder is not an MQTT capture (needs Trace.json and Result.json or ResultManagement.json)",
                source,
            )
        hole = read_capture(path, source)
        finish(hole, source, "mqtt", capture_digest(path, source))
        return hole
    return read_bytes(read_regular(path, source), source)


def finish(hole: Hole, source: str, kind: str, sha256: str) -> None:
    """Fill the fields every source shares: provenance, hashes, sizes."""
    depth = hole.signals.get("depth_mm", np.empty(0))
    hole.meta.update(
        source=source,
        source_kind=kind,
        sha256=sha256,
        n_samples=len(depth),
        depth_start_mm=float(depth[0]) if len(depth) else None,
        depth_end_mm=float(depth[-1]) if len(depth) else None,
    )
    if not hole.meta.get("hole_id"):
        # No head or counter in the metadata: fall back to a content-derived id, stable per file.
        hole.meta["hole_id"] = f"unknown-{sha256[:12]}"
        hole.warn("no head identity or global counter in the metadata: hole id derived from the content")
    if all(name in hole.signals for name in ("depth_mm", "torque_a", "thrust_a")):
        hole.meta["signals_hash"] = signals_hash(hole.signals)
