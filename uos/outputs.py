"""Files the commands write, whole or not at all: a reader (a stage after it, DVC, a team-mate's
`uos` on the same folder) sees the old file or the new one, never half of one, whatever kills the
writer."""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def write_atomic(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write to; when the block ends, that file replaces
    `path` in one rename. An error in the block removes it and leaves `path` as it was.

    `durable`: the file and the rename are also flushed to disk (a power cut keeps the new file),
    for what a person typed (annotations); the rest can be made again."""
    path = Path(path)
    _remove_stale(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # (two processes never share one)
    try:
        yield tmp
        if durable:
            _fsync(tmp)  # a disk that cannot keep it: the error goes up, `path` stays as it was
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:  # (a folder some file systems cannot sync: the rename is made all the same)
        with contextlib.suppress(OSError):
            _fsync(path.parent)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_stale(path: Path) -> None:
    """The temporary files of `path` that writers killed before their rename left (their process
    is gone): a `kill -9` leaves no litter that grows with every crash."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        remove_if_orphaned(leftover)


def remove_if_orphaned(leftover: Path) -> None:
    """Remove a temporary file `.NAME.PID.tmp` whose writer PID no longer runs."""
    pid = leftover.name.rsplit(".", 2)[-2]
    if not pid.isdigit() or int(pid) == os.getpid():
        return
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        leftover.unlink(missing_ok=True)
    except OSError:  # another user's process: alive
        pass


def write_json(path: str | Path, data: Any) -> None:
    """`data` as indented JSON, written atomically; the folder is made when missing (a stage's
    metrics may go outside its --out)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with write_atomic(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
