"""Content-addressed cache of parsed holes, so that re-parsing 1,300 files costs only the new ones.

Entries are keyed by the sha256 of the input's bytes and grouped in *packs*: one file per batch
of parsed inputs, written once and never modified (creating a file costs more than writing
100 kB on the machines we run on, so one file per hole would dominate a cold run). A pack holds a
JSON index (each hole's record: metadata, program, step results, issues; or the reason an input
failed) followed by the raw signal columns, each part with its CRC-32 in the pack's header: a
damaged pack (cut short, overwritten, a flipped bit) is found when the cache is opened, removed,
and its inputs parsed again, never served. The cache folder's name includes a digest of the
parser's own source and of the quality rules, so a changed parser never serves stale results.
Deleting the cache is always safe: it only costs a re-parse.

    pack = "UOSPACK2" | index length (8 bytes) | CRC-32 of the index | CRC-32 of the signals
           | index (JSON, padded to 8 bytes) | signal columns
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import uuid
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from uos.holes.quality import QualityRules
from uos.holes.record import Hole, Issue
from uos.outputs import remove_if_orphaned, write_atomic

_PACK_MAGIC = b"UOSPACK2"
_HEAD = len(_PACK_MAGIC) + 16  # magic, index length, the two CRC-32s


def default_cache_root() -> Path:
    if env := os.environ.get("UOS_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "uos"


# The code whose change makes a cached hole stale: the readers and checks (uos/holes and the small
# modules they import: tests/test_dvc_deps.py checks the list against their imports), this
# module, and layout.py, which decides what can be stored (see write_pack).
PARSER_CODE = (
    *(f"holes/{name}.py" for name in ("__init__", "excel", "files", "mqtt", "quality", "read", "record", "setitec")),
    *("arrays.py", "errors.py", "numeric.py", "dataset/cache.py", "dataset/layout.py"),
)


@cache
def _code_digest() -> str:
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for name in PARSER_CODE:
        digest.update(name.encode() + (package / name).read_bytes())
    return digest.hexdigest()


def parser_digest(rules: QualityRules) -> str:
    """Changes whenever the parsing code or the quality rules change."""
    digest = hashlib.sha256(_code_digest().encode())
    digest.update(json.dumps(asdict(rules), sort_keys=True).encode())
    return digest.hexdigest()[:16]


# --- records (everything but the signals) ----------------------------------------------------


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)


def _loads(data: bytes) -> Any:
    return orjson.loads(data)


def encode_record(hole: Hole, issues: list[Issue]) -> dict[str, Any]:
    meta = dict(hole.meta)
    if isinstance(meta.get("date"), datetime):
        meta["date"] = meta["date"].isoformat()
    return {
        "meta": meta,
        "program": hole.program,
        "step_results": hole.step_results,
        "raw_metadata": hole.raw_metadata,
        "issues": [[i.level, i.reason] for i in issues],
    }


def decode_record(record: dict[str, Any]) -> dict[str, Any]:
    record = dict(record)
    record["meta"] = dict(record["meta"])
    if record["meta"].get("date"):
        record["meta"]["date"] = datetime.fromisoformat(record["meta"]["date"])
    record["issues"] = [Issue(level, reason) for level, reason in record["issues"]]
    return record


# --- packs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """Where one input's result lives: a record and its signals, or the reason it failed."""

    pack: Path
    record: dict[str, Any] | None
    columns: list[list[Any]] | None  # [name, dtype, count, offset]
    error: str | None


def write_pack(directory: Path, results: dict[str, tuple[Hole, list[Issue]] | str]) -> Path:
    """Write one pack for `results` (sha256 -> (hole, issues) or failure reason). A hole that
    cannot be stored is cached as that input's failure, with the reason: never the batch's."""
    entries: list[bytes] = []
    blobs: list[np.ndarray] = []
    offset = 0
    for sha256, result in results.items():
        if not isinstance(result, str):
            stored = _hole_entry(sha256, *result, offset)
            if isinstance(stored, tuple):
                entry, arrays, offset = stored
                entries.append(entry)
                blobs.extend(arrays)
                continue
            result = stored
        entries.append(_entry(sha256, {"error": result}))
    index = b"{" + b",".join(entries) + b"}"
    index += b" " * (-(len(index) + _HEAD) % 8)  # 8-byte aligned columns
    signals_crc = 0
    for blob in blobs:
        signals_crc = zlib.crc32(memoryview(blob).cast("B"), signals_crc)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.pack"
    with write_atomic(path) as tmp, tmp.open("wb") as handle:  # a reader never sees half a pack
        handle.write(_PACK_MAGIC + len(index).to_bytes(8, "little"))
        handle.write(zlib.crc32(index).to_bytes(4, "little") + signals_crc.to_bytes(4, "little") + index)
        for blob in blobs:
            handle.write(memoryview(blob).cast("B"))
    return path


def _hole_entry(sha256: str, hole: Hole, issues: list[Issue], offset: int) -> tuple[bytes, list[np.ndarray], int] | str:
    """A hole's index entry, its signal arrays (stored from `offset` on) and the offset after
    them; or the reason the hole cannot be stored."""
    from uos.dataset.layout import unwritable

    if reason := unwritable(hole):
        return reason
    arrays = [np.ascontiguousarray(column) for column in hole.signals.values()]
    columns = []
    for name, data in zip(hole.signals, arrays, strict=True):
        columns.append([name, data.dtype.str, len(data), offset])
        offset += data.nbytes
    try:
        return _entry(sha256, {"record": encode_record(hole, issues), "columns": columns}), arrays, offset
    except TypeError as exc:  # what unwritable() missed (orjson.JSONEncodeError is a TypeError)
        return f"cannot be stored: {exc}"


def _entry(sha256: str, item: dict[str, Any]) -> bytes:
    """One `"sha256": {...}` member of a pack's index, encoded on its own so that one input's
    value cannot fail the others."""
    return _dumps(sha256) + b":" + _dumps(item)


def _read_index(path: Path) -> dict[str, Any]:
    """A pack's index, checked against the file: raises ValueError for a damaged pack (cut
    short, overwritten, a bit flipped in its index or its signals) rather than serving it."""
    with path.open("rb") as handle:
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(handle.fileno()).st_size else b""
    with memoryview(data) as view:
        if len(view) < _HEAD or view[: len(_PACK_MAGIC)] != _PACK_MAGIC:
            raise ValueError("not a pack")
        length = int.from_bytes(view[8:16], "little")
        if length > len(view) - _HEAD:
            raise ValueError("index longer than the file")
        index_crc, signals_crc = int.from_bytes(view[16:20], "little"), int.from_bytes(view[20:24], "little")
        if zlib.crc32(view[_HEAD : _HEAD + length]) != index_crc:
            raise ValueError("its index does not match its checksum")
        if zlib.crc32(view[_HEAD + length :]) != signals_crc:
            raise ValueError("its signals do not match their checksum")
        index = _loads(view[_HEAD : _HEAD + length])
        room = len(view) - _HEAD - length
    if isinstance(data, mmap.mmap):
        data.close()
    if not isinstance(index, dict):
        raise ValueError("index is not a mapping")
    for item in index.values():
        if not isinstance(item, dict) or not isinstance(item.get("error", item.get("record")), (str, dict)):
            raise ValueError("index entry without a record or an error")
        try:
            for _, dtype, count, offset in item.get("columns", []):
                if offset < 0 or offset + count * np.dtype(dtype).itemsize > room:
                    raise ValueError("signals cut short")
        except TypeError as exc:  # a garbled column description
            raise ValueError(f"bad column ({exc})") from None
    return index


class ParseCache:
    def __init__(self, root: Path, rules: QualityRules):
        self.dir = Path(root) / f"parse-{parser_digest(rules)}"
        self._entries: dict[str, Entry] | None = None
        self.notes: list[str] = []  # what the user should know about the cache (damaged packs)

    def entries(self) -> dict[str, Entry]:
        """Every cached input, by sha256 (packs are read once per run)."""
        if self._entries is None:
            self._entries = {}
            for leftover in self.dir.glob(".*.pack.*.tmp") if self.dir.exists() else []:
                remove_if_orphaned(leftover)  # half a pack, from a worker killed while writing it
            for pack in sorted(self.dir.glob("*.pack")) if self.dir.exists() else []:
                if not pack.is_file():  # not one of ours (a folder made there): nothing to read or remove
                    continue
                try:
                    index = _read_index(pack)
                except (OSError, ValueError) as exc:
                    # Removed, so that its inputs are parsed again and cached anew, once.
                    pack.unlink(missing_ok=True)
                    self.notes.append(f"cache pack {pack} was damaged ({exc}): removed, its inputs are parsed again")
                    continue
                self._add(pack, index)
        return self._entries

    def _add(self, pack: Path, index: dict[str, Any]) -> None:
        assert self._entries is not None
        for sha256, item in index.items():
            if "error" in item:
                self._entries[sha256] = Entry(pack, None, None, item["error"])
            else:
                self._entries[sha256] = Entry(pack, item["record"], item["columns"], None)

    def add_pack(self, pack: Path) -> None:
        self.entries()
        self._add(pack, _read_index(pack))

    def lookup(self, sha256: str) -> dict[str, Any] | str | None:
        """The cached record (without signals), the reason the input failed, or None."""
        entry = self.entries().get(sha256)
        if entry is None:
            return None
        return entry.error if entry.error is not None else decode_record(entry.record)

    def signals(self, sha256s: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """Signals of several inputs, reading each pack once (arrays view the pack's bytes)."""
        entries = self.entries()
        by_pack: dict[Path, list[str]] = {}
        for sha in sha256s:
            by_pack.setdefault(entries[sha].pack, []).append(sha)
        out: dict[str, dict[str, np.ndarray]] = {}
        for pack, shas in by_pack.items():
            with pack.open("rb") as handle:
                # Mapped, not read: the arrays view the file until they are gone.
                data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            base = _HEAD + int.from_bytes(data[8:16], "little")
            for sha in shas:
                out[sha] = {
                    name: np.frombuffer(data, dtype=np.dtype(dtype), count=count, offset=base + offset)
                    for name, dtype, count, offset in entries[sha].columns
                }
        return out
