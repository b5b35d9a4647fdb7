"""Setitec drilling files: the text format with an `.xls` name, in every variant seen on real units.

A file is a run of sections (`*** Name ***`), each holding header-row / value-row pairs, and ends
with the Datas table (the signals). What varies between units and firmware versions, and how this
module copes (see DOMAIN.md section 2):

- encoding: Latin-1 / cp1252, stray NUL bytes, a UTF-8 re-save with U+FFFD: the metadata is
  decoded leniently, the signals are ASCII;
- separator TAB or `;` (decided per line), comma or dot decimals (decided per value in the
  metadata, per table for the signals), rows padded with separators;
- more header names than values: names and values are paired by position, names left without a
  value are dropped; a version-4 header split over two lines is joined back;
- the Datas table is found by its header line (`Position (mm)`), never by line number.

The signal table is read with pyarrow's C++ CSV reader; a slow pure-Python reader takes over only
to explain what is wrong with a table the fast one rejects.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np

from uos.errors import InputError
from uos.holes.record import (
    EXTRA_SIGNALS,
    INTEGER_SIGNALS,
    PROGRAM_FIELDS,
    REQUIRED_SIGNALS,
    STEP_RESULT_FIELDS,
    Hole,
    head_identity,
    make_hole_id,
)

KNOWN_VERSIONS = frozenset({4, 7, 8, 9, 11})
MULTI_ROW_SECTIONS = frozenset({"program", "step results"})

_DATA_HEADER = re.compile(rb"^[ \t]*Position \(mm\)", re.MULTILINE)
_BANNER = re.compile(r"^\*{3}\s*(.*?)\s*\*{3}\s*$")
# "Stroke Limit (A)Thrust Limit (A)": two names whose separator a converter lost.
_GLUED_NAMES = re.compile(r"(?<=\))(?=[A-Z])")

# Position of each required signal in the Datas table; every version has them first, in order.
_REQUIRED_HEADERS = (
    "position (mm)",
    "i torque (a)",
    "i thrust (a)",
    "i torque empty (a)",
    "i thrust empty (a)",
    "step (nb)",
    "stop code",
)

# Names while reading: the feed position becomes `depth_mm` in `finish_signals`.
_RAW_REQUIRED = ("position_mm", *REQUIRED_SIGNALS[1:])

_PROGRAM_ALIASES = {
    "step nb": "step",
    "step on/off": "enabled",
    "stroke (mm)": "stroke_mm",
    "dep (mm)": "stroke_mm",
    "rpm": "rpm",
    "feed (mm/s)": "feed_mm_s",
    "av (mm/s)": "feed_mm_s",
    "feed (mm/tr)": "feed_mm_rev",
    "av (mm/tr)": "feed_mm_rev",
    "thrust max (a)": "thrust_max_a",
    "torque max (a)": "torque_max_a",
    "thrust min (a)": "thrust_min_a",
    "torque min (a)": "torque_min_a",
    "thrust safety (a)": "thrust_safety_a",
    "torque safety (a)": "torque_safety_a",
    "gap (mm)": "gap_mm",
    "peck (nb)": "pecks",
    "delay (ms)": "delay_ms",
    "stroke limit (a)": "stroke_limit_a",
    "thrust limit (a)": "thrust_limit_a",
    "torque limit (a)": "torque_limit_a",
    "lub air": "lub_air",
    "lub flow": "lub_flow",
    "vacuum": "vacuum",
    "material": "material",
}
_STEP_RESULT_ALIASES = {
    "step number": "step",
    "stop code": "stop_code",
    "duration (s)": "duration_s",
    "distance m1": "distance_m1_mm",
    "distance m2": "distance_m2_mm",
    "m1 max amp": "m1_max_a",
    "m2 max amp": "m2_max_a",
    "m1 no load amp": "m1_no_load_a",
    "m2 no load amp": "m2_no_load_a",
    "gap max (mm)": "gap_max_mm",
}
_INTEGER_FIELDS = frozenset({"step", "stop_code", "enabled", "pecks"})


# --- cells and numbers -----------------------------------------------------------------------


@lru_cache(maxsize=4096)
def normalise_name(name: str) -> str:
    """Header name as a lookup key: lower case, single spaces, `Pset n°` in any encoding as `pset nb`."""
    key = re.sub(r"\s+", " ", name.strip().lower())
    if key.startswith("pset n") and key not in ("pset nb.", "pset nb"):
        return "pset nb"
    return key.rstrip(".")


def to_number(text: str | None) -> float | None:
    """A metadata value as a float: comma or dot decimals, `Inf`; None when it is not a number."""
    if not text:
        return None
    try:
        return float(text.replace(",", "."))
    except ValueError:
        return None


def to_int(text: str | None) -> int | None:
    value = to_number(text)
    if value is None or not math.isfinite(value):
        return None
    return round(value)


def to_bool(text: str | None) -> bool | None:
    if text is None:
        return None
    lowered = text.strip().lower()
    if lowered in ("true", "1", "ok"):
        return True
    if lowered in ("false", "0", "notok", "nok"):
        return False
    return None


def to_date(text: str | None) -> datetime | None:
    """Unit dates: `2024-05-30:04:31:01`, or ISO `2024-05-08T17:51:30Z` in re-exports (kept naive)."""
    if not text:
        return None
    for fmt in (
        "%Y-%m-%d:%H:%M:%S",
        "%Y-%m-%dT%H:%M:%SZ",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ):
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    return None


def split_row(line: str) -> list[str]:
    """Cells of one text line: TAB-separated, or `;` in re-exported files. Blank lines: []."""
    if not line.strip("\t; \r\n"):
        return []
    sep = "\t" if "\t" in line else (";" if ";" in line else "\t")
    return [c.strip() for c in line.rstrip("\r\n").split(sep)]


def _trim(cells: list[str]) -> list[str]:
    if not cells or cells[-1]:
        return cells
    end = len(cells)
    while end and not cells[end - 1]:
        end -= 1
    return cells[:end]


def header_names(cells: list[str]) -> list[str]:
    """Header cells without trailing padding, with names glued together by a converter split apart."""
    names: list[str] = []
    for cell in _trim(cells):
        if ")" in cell[:-1]:
            names.extend(part.strip() for part in _GLUED_NAMES.split(cell))
        else:
            names.append(cell)
    return names


# --- sections --------------------------------------------------------------------------------

Table = tuple[list[str], list[list[str]]]  # header names, value rows


def parse_sections(rows: list[list[str]]) -> dict[str, list[Table]]:
    """Group metadata rows into sections of (header, values) tables.

    In most sections each header row is followed by exactly one value row (which may be blank:
    an empty `Comment`); Program and Step Results have one header and a row per step. Version 4
    splits the Control Box header over two lines separated by blank lines, the second starting
    with the last name of the first: those are joined.
    """
    rows = [_trim(r) for r in rows]
    sections: dict[str, list[Table]] = {}
    current: list[Table] | None = None
    name = ""
    i, n = 0, len(rows)
    while i < n:
        cells = rows[i]
        if banner := _banner(cells):
            name = banner
            current = sections.setdefault(name, [])
            i += 1
            continue
        if not cells or current is None:
            i += 1
            continue
        header = header_names(cells)
        i += 1
        if name in MULTI_ROW_SECTIONS:
            values: list[list[str]] = []
            while i < n and rows[i] and not _banner(rows[i]):
                values.append(rows[i])
                i += 1
            current.append((header, values))
            continue
        if i < n and not rows[i]:
            k = i
            while k < n and not rows[k]:
                k += 1
            if k < n and rows[k][0] == header[-1] and not _banner(rows[k]):
                header = header + header_names(rows[k])[1:]
                i = k + 1
        if i >= n or _banner(rows[i]):  # a header with no value row before the next section
            current.append((header, [[]]))
            continue
        current.append((header, [rows[i]]))
        i += 1
    return sections


def _banner(cells: list[str]) -> str | None:
    """The section name of a `*** Name ***` row."""
    if len(cells) == 1 and cells[0].startswith("***") and (match := _BANNER.match(cells[0])):
        return match.group(1).strip().lower()
    return None


def _pairs(header: list[str], values: list[str]) -> dict[str, str]:
    """Names to values by position; names without a value are dropped."""
    out: dict[str, str] = {}
    for name, value in zip(header, values, strict=False):
        key = name
        suffix = 2
        while key in out:
            key = f"{name} ({suffix})"
            suffix += 1
        out[key] = value
    return out


def flatten_sections(sections: dict[str, list[Table]]) -> dict[str, Any]:
    """Every name/value pair the file holds, by section: nothing the unit wrote is lost."""
    flat: dict[str, Any] = {}
    for section, tables in sections.items():
        if section in MULTI_ROW_SECTIONS:
            flat[section] = [_pairs(header, row) for header, rows in tables for row in rows]
        else:
            merged: dict[str, str] = {}
            for header, rows in tables:
                for key, value in _pairs(header, rows[0] if rows else []).items():
                    merged[key if key not in merged else f"{key} (2)"] = value
            flat[section] = merged
    return flat


def _lookup(section: dict[str, str] | None, *names: str) -> str | None:
    """The first non-empty value among `names` (normalised keys)."""
    if not section:
        return None
    for name in names:
        value = section.get(name)
        if value:
            return value
    return None


def _keyed(section: Any) -> dict[str, str]:
    return {normalise_name(k): v for k, v in section.items()} if isinstance(section, dict) else {}


def _table_records(
    rows: list[dict[str, str]], aliases: dict[str, str], fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    records = []
    for row in rows:
        record: dict[str, Any] = dict.fromkeys(fields)
        for name, value in row.items():
            field = aliases.get(normalise_name(name))
            if field is None:
                continue
            number = to_int(value) if field in _INTEGER_FIELDS else to_number(value)
            # `Inf` (feed per revolution of a step at 0 rpm) is "not defined": null, like a gap.
            record[field] = number if number is None or math.isfinite(number) else None
        if any(v is not None for v in record.values()):
            records.append(record)
    return records


def metadata_fields(flat: dict[str, Any]) -> dict[str, Any]:
    """The typed hole metadata from the raw sections."""
    general = _keyed(flat.get("general infos"))
    box = _keyed(flat.get("control box datas"))
    motor = _keyed(flat.get("motor datas"))
    head = _keyed(flat.get("head datas"))
    pset = _keyed(flat.get("pset"))
    results = _keyed(flat.get("results"))
    tag = _lookup(head, "head tag uid")
    name = _lookup(head, "head name")
    head_id = head_identity(tag, name)
    global_counter = to_int(_lookup(head, "head global counter"))
    meta = {
        "format_version": to_int(_lookup(general, "version")),
        "date": to_date(_lookup(general, "date")),
        "sample_rate_hz": to_number(_lookup(general, "sample rate (hz)")),
        "cycle_id": _lookup(general, "drilling cycle id"),
        "controller_name": _lookup(box, "box name"),
        "controller_sn": _lookup(box, "box sn"),
        "controller_firmware": _lookup(box, "box firmware version"),
        "motor_name": _lookup(motor, "motor name"),
        "motor_sn": _lookup(motor, "motor sn"),
        "head_id": head_id,
        "head_name": name,
        "head_tag": tag,
        "cutting_tool": _lookup(head, "customer info"),
        "global_counter": global_counter,
        "tool_age": to_int(_lookup(head, "head local counter 1", "head local counter")),
        "local_counter_2": to_int(_lookup(head, "head local counter 2")),
        "pset": to_int(_lookup(pset, "pset nb")),
        "cycle_time_s": to_number(_lookup(results, "cycle time (s)")),
        "distance_mm": to_number(_lookup(results, "distance (mm)")),
        "cycle_ok": to_bool(_lookup(results, "cycle ok")),
        "hole_id": make_hole_id(head_id, global_counter),
    }
    return meta


# --- the signal table ------------------------------------------------------------------------


def signal_names(header: list[str]) -> list[str]:
    """Canonical names for the Datas header, in file order."""
    keys = [normalise_name(n) for n in header]
    names: list[str] = []
    for position, key in enumerate(keys):
        if key in _REQUIRED_HEADERS:
            names.append(_RAW_REQUIRED[_REQUIRED_HEADERS.index(key)])
        else:
            names.append(EXTRA_SIGNALS.get(key) or re.sub(r"[^a-z0-9]+", "_", key).strip("_") or f"column_{position}")
    return names


def _read_body_arrow(body: bytes, sep: str, n_values: int, n_fields: int, decimal: str) -> tuple[list[np.ndarray], int]:
    """The numeric body as `n_values` float columns, and how many malformed rows were dropped."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = [f"c{i}" for i in range(n_fields)]
    dropped = 0

    def on_invalid(row: Any) -> str:
        nonlocal dropped
        if row.text.strip(sep + " \r\n"):
            dropped += 1
        return "skip"

    table = pcsv.read_csv(
        pa.py_buffer(body),
        read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 24),
        parse_options=pcsv.ParseOptions(delimiter=sep, invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(
            decimal_point=decimal,
            include_columns=names[:n_values],
            column_types=dict.fromkeys(names[:n_values], pa.float64()),
            strings_can_be_null=True,
        ),
    )
    from uos.arrays import float_column

    return [float_column(table.column(i)) for i in range(n_values)], dropped


def _read_body_python(lines: list[str], header: list[str], n_values: int, source: str) -> tuple[list[np.ndarray], int]:
    """Slow reader that names the first cell that is not a number."""
    rows: list[list[float]] = []
    dropped = 0
    for line_no, line in enumerate(lines, start=2):
        cells = _trim(split_row(line))
        if not cells:
            continue
        if len(cells) < n_values:
            dropped += 1
            continue
        row = []
        for column, cell in enumerate(cells[:n_values]):
            if cell == "":
                row.append(math.nan)
                continue
            value = to_number(cell)
            if value is None and cell.lower() not in ("nan",):
                column_name = header[column] if column < len(header) else f"column {column + 1}"
                raise InputError(
                    f"Datas row {line_no - 1}, column '{column_name}': {cell!r} is not a number",
                    source,
                )
            row.append(math.nan if value is None else value)
        rows.append(row)
    values = np.array(rows, dtype=float) if rows else np.empty((0, n_values))
    return list(values.T), dropped


def read_signal_table(data: bytes, source: str) -> tuple[list[str], dict[str, np.ndarray], int]:
    """Read the Datas table (starting at its header line).

    Returns the header names, the canonical signal arrays and the number of malformed rows dropped.
    """
    newline = data.find(b"\n")
    header_line = (data if newline < 0 else data[:newline]).decode("latin-1")
    body = b"" if newline < 0 else data[newline + 1 :]
    header = header_names(split_row(header_line))
    sep = "\t" if "\t" in header_line else (";" if ";" in header_line else "\t")

    first = _first_data_line(body)
    if first is None:
        raise InputError("the Datas table has a header but no rows", source)
    first_fields = first.rstrip("\r").split(sep)
    n_values = len(_trim([c.strip() for c in first_fields]))
    n_fields = len(first_fields)
    decimal = "," if "," in first else "."
    try:
        columns, dropped = _read_body_arrow(body, sep, n_values, n_fields, decimal)
    except Exception:
        columns, dropped = _read_body_python(body.decode("latin-1").splitlines(), header, n_values, source)
    if np.isnan(columns[0]).any():
        # Rows made only of separators read as all-NaN: they are padding, not data.
        keep = ~np.logical_and.reduce([np.isnan(c) for c in columns])
        columns = [c[keep] for c in columns]
    if len(columns[0]) == 0:
        raise InputError("the Datas table has a header but no complete rows", source)

    names = signal_names(header[:n_values])
    if n_values > len(names):
        names += [f"column_{i + 1}" for i in range(len(names), n_values)]
    signals: dict[str, np.ndarray] = {}
    for column, name in enumerate(names[:n_values]):
        if name in signals:  # a repeated header name keeps its first column
            continue
        signals[name] = columns[column]
    return header, finish_signals(signals), dropped


def finish_signals(signals: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical names and dtypes: depth from the (negative) position, integer step and stop code."""
    out: dict[str, np.ndarray] = {}
    for name, column in signals.items():
        if name == "position_mm":
            out["depth_mm"] = -np.asarray(column, dtype=np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0
        elif name in INTEGER_SIGNALS:
            column = np.asarray(column, dtype=np.float64)
            if np.isfinite(column).all():
                out[name] = np.rint(column).astype(np.int64)
            else:
                out[name] = column  # kept as float so that the non-finite check sees it
        else:
            out[name] = np.asarray(column, dtype=np.float64)
    order = [n for n in REQUIRED_SIGNALS if n in out] + [n for n in out if n not in REQUIRED_SIGNALS]
    return {n: out[n] for n in order}


def _first_data_line(body: bytes) -> str | None:
    start = 0
    while start < len(body):
        end = body.find(b"\n", start)
        end = len(body) if end < 0 else end
        line = body[start:end].decode("latin-1")
        if line.strip("\t; \r"):
            return line
        start = end + 1
    return None


# --- whole files ------------------------------------------------------------------------------


def decode_text(raw: bytes) -> str:
    """Metadata text: UTF-8 when the bytes are valid UTF-8 (a re-save), else cp1252 / Latin-1."""
    raw = raw.replace(b"\x00", b"")
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def hole_from_rows(metadata_rows: list[list[str]], source: str) -> Hole:
    """A hole from its metadata rows; signals are added by the caller."""
    flat = flatten_sections(parse_sections(metadata_rows))
    if not flat:
        raise InputError("not a Setitec file: no '*** Section ***' banner before the Datas table", source)
    meta = metadata_fields(flat)
    program = _table_records(flat.get("program", []), _PROGRAM_ALIASES, PROGRAM_FIELDS)
    step_results = _table_records(flat.get("step results", []), _STEP_RESULT_ALIASES, STEP_RESULT_FIELDS)
    return Hole(meta=meta, signals={}, program=program, step_results=step_results, raw_metadata=flat)


def _as_single_byte_text(raw: bytes, source: str) -> bytes:
    """Undo a UTF-16 re-save (Excel's 'Unicode text'); refuse what is not text at all."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16").encode("utf-8")
    head = raw[:4096]
    if len(head) >= 64 and head[1::2].count(0) > 0.9 * len(head[1::2]):
        return raw.decode("utf-16-le", errors="replace").encode("utf-8")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:]
    control = sum(head.count(bytes([c])) for c in (*range(0, 9), *range(14, 32)))
    if control > 0.05 * len(head):
        raise InputError("binary content, not a Setitec text file", source)
    return raw


def parse_setitec_text(raw: bytes, source: str) -> Hole:
    """Parse the bytes of a Setitec text file."""
    if not raw.strip():
        raise InputError("empty file", source)
    raw = _as_single_byte_text(raw, source)
    match = _DATA_HEADER.search(raw)
    if match is None:
        if b"***" not in raw[:200]:
            raise InputError("not a Setitec file: no '*** General Infos ***' section", source)
        raise InputError("no Datas section (no header line starting with 'Position (mm)')", source)
    head, data = raw[: match.start()], raw[match.start() :]
    # A converter wrote NUL as the six characters "\u0000"; the units write real NUL bytes.
    rows = [split_row(line) for line in decode_text(head).replace("\\u0000", "").split("\n")]
    hole = hole_from_rows(rows, source)
    header, signals, dropped = read_signal_table(data, source)
    attach_signals(hole, header, signals, dropped)
    return hole


def attach_signals(hole: Hole, header: list[str], signals: dict[str, np.ndarray], dropped: int) -> None:
    hole.signals = signals
    hole.meta["signal_columns"] = header
    if dropped:
        hole.warn(f"{dropped} incomplete row{'s' if dropped > 1 else ''} in the Datas table dropped (truncated file?)")
    version = hole.meta.get("format_version")
    if version is not None and version not in KNOWN_VERSIONS:
        hole.warn(f"unknown format version {version}: parsed as best it can")
    elif version is None:
        hole.warn("no format version in General Infos")
