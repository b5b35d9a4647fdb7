"""Holes that cannot be answered, or that tempt a wrong answer, built from a good Setitec file's
bytes (tests write them in a temporary folder): for predict, label and serve alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

Rows = list[list[str]]


def _split(raw: bytes) -> tuple[str, list[str], Rows]:
    """(everything before the Datas table, its header line, its rows as cells)."""
    text = raw.decode("latin-1")
    start = text.index("Position (mm)")
    lines = text[start:].split("\n")
    rows = [line.split("\t") for line in lines[1:] if line.strip("\t\r ")]
    return text[:start], lines[0], rows


def _join(head: str, header: str, rows: Rows) -> bytes:
    return (head + "\n".join([header, *("\t".join(r) for r in rows)]) + "\n").encode("latin-1")


def _number(cell: str) -> float:
    return float(cell.strip().replace(",", "."))


def _cell(value: float) -> str:
    return f"{value:.3f}".replace(".", ",")


def edited(raw: bytes, edit: Callable[[Rows], Rows]) -> bytes:
    head, header, rows = _split(raw)
    return _join(head, header, edit(rows))


def first_rows(raw: bytes, n: int) -> bytes:
    return edited(raw, lambda rows: rows[:n])


def only_air(raw: bytes) -> bytes:
    """The drill never meets material: torque and thrust stay at zero."""

    def edit(rows: Rows) -> Rows:
        for row in rows:
            row[1], row[2] = _cell(0.0), _cell(0.0)
        return rows

    return edited(raw, edit)


def nan_depth(raw: bytes, every: int = 50) -> bytes:
    """Some positions are NaN."""

    def edit(rows: Rows) -> Rows:
        for row in rows[::every]:
            row[0] = "NaN"
        return rows

    return edited(raw, edit)


def stuck_depth(raw: bytes) -> bytes:
    """The position never moves from where it started (the signals still vary)."""

    def edit(rows: Rows) -> Rows:
        for row in rows:
            row[0] = rows[0][0]
        return rows

    return edited(raw, edit)


def baseline_shift(raw: bytes, start_mm: float, end_mm: float, shift_a: float = 0.2) -> bytes:
    """The air baseline lifts by `shift_a` between two depths (the no-load re-measured at a step
    change, say), well below cutting level: not an entry."""

    def edit(rows: Rows) -> Rows:
        for row in rows:
            depth = -_number(row[0])
            if start_mm <= depth <= end_mm:
                row[1] = _cell(_number(row[1]) + shift_a)
        return rows

    return edited(raw, edit)


def capture_with_text(capture: Path, folder: Path) -> Path:
    """A copy of MQTT `capture` (Result.json, Trace.json) in `folder`, with the text 'n/a' among
    the Trace's positions."""
    folder.mkdir()
    for name in ("Result.json", "Trace.json"):
        (folder / name).write_bytes((capture / name).read_bytes())
    trace = json.loads((folder / "Trace.json").read_bytes())
    for key, entry in trace["Messages"]["Payload"].items():
        if key.endswith("PositionTrace.StepTraceContent[0].Values"):
            entry["Value"][3] = "n/a"
    (folder / "Trace.json").write_text(json.dumps(trace))
    return folder
