"""One entry point for every input kind: Setitec text file, binary Excel re-save, MQTT capture."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from uos.errors import InputError
from uos.holes.excel import is_binary_excel, parse_binary_excel
from uos.holes.files import printable, read_regular
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
