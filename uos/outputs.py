"""Files the commands write, whole or not at all: a reader (a stage after it, DVC, a team-mate's
`uos` on the same folder) sees the old file or the new one, never half of one, whatever kills the
writer."""

from __future__ import annotations

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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # (two writers never share one)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent)


def _fsync(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:  # a folder some file systems cannot sync: the rename is still atomic
        pass


def write_json(path: str | Path, data: Any) -> None:
    """`data` as indented JSON, written atomically; the folder is made when missing (a stage's
    metrics may go outside its --out)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with write_atomic(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
