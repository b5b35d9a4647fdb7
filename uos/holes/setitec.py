"""Setitec drilling files: the text format with an `.xls` name, in every variant seen on real units.

A file is a run of sections (`*** Name ***`), each holding header-row / value-row pairs, and ends
with the Datas table (the signals). What varies between units and firmware versions, and how this
module copes (see DOMAIN.md section 2):

- encoding: Latin-1 / cp1252, stray NUL bytes, a UTF-8 re-save with U+FFFD: the metadata is
  decoded leniently, the signals are ASCII;
- separator TAB or `;` (decided per line), comma or dot decimals (decided per value in the
  metadata, per table for the signals), rows padded with separators: the table's width is what
  most rows have (lines sampled over the whole table), a row padded otherwise keeps its place;
- more header names than values: names and values are paired by position, names left without a
  value are dropped; a version-4 header split over two lines is joined back;
- the Datas table is found by its header line (`Position (mm)`), never by line number.

The signal table is read with pyarrow's C++ CSV reader, block by block straight from the file's
bytes into arrays sized once (a file costs its bytes plus its arrays); a slow pure-Python reader
takes over only to explain what is wrong with a table the fast one rejects. Whatever a file says,
nothing is stored that the dataset cannot hold: integers beyond int64 are issues, an extra column
never takes a canonical column's name, a monstrous row is refused before anything splits it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np

from uos.errors import InputError
from uos.holes.quality import FILE_COLUMN_NAMES
from uos.holes.record import (
    EXTRA_SIGNALS,
    INTEGER_SIGNALS,
    PROGRAM_FIELDS,
    REQUIRED_SIGNALS,
    SIGNAL_KEY_COLUMNS,
    STEP_RESULT_FIELDS,
    Hole,
    Issue,
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
_INT64_LIMIT = 2.0**63  # the dataset stores whole numbers as int64: [-2^63, 2^63)


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
    """A whole number the dataset can store (int64), else None: `1e30` is no counter."""
    return _storable(to_number(text))


def _storable(value: float | None) -> int | None:
    if value is None or not -_INT64_LIMIT <= value < _INT64_LIMIT:  # NaN and Inf fail too
        return None
    return round(value)


def _dropped_int(text: str | None) -> bool:
    """A number given where a whole number was expected, that `to_int` cannot keep."""
    value = to_number(text)
    return value is not None and _storable(value) is None


def _whole(text: str | None, label: str, issues: list[Issue]) -> int | None:
    """A whole number the dataset can store; one out of range is dropped with a warning (never
    stored wrapped)."""
    if _dropped_int(text):
        issues.append(Issue("warning", f"{label} {text!r} is not a whole number in range: ignored"))
    return to_int(text)


def _int_field(section: dict[str, str], names: tuple[str, ...], label: str, issues: list[Issue]) -> int | None:
    """A whole-number header field (see `_whole`)."""
    return _whole(_lookup(section, *names), label, issues)


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
    rows: list[dict[str, str]], aliases: dict[str, str], fields: tuple[str, ...], section: str, issues: list[Issue]
) -> list[dict[str, Any]]:
    records = []
    for row in rows:
        record: dict[str, Any] = dict.fromkeys(fields)
        for name, value in row.items():
            field = aliases.get(normalise_name(name))
            if field is None:
                continue
            number = _whole(value, f"{section} {name!r}", issues) if field in _INTEGER_FIELDS else to_number(value)
            # `Inf` (feed per revolution of a step at 0 rpm) is "not defined": null, like a gap.
            record[field] = number if number is None or math.isfinite(number) else None
        if any(v is not None for v in record.values()):
            records.append(record)
    return records


def metadata_fields(flat: dict[str, Any], issues: list[Issue] | None = None) -> dict[str, Any]:
    """The typed hole metadata from the raw sections; whole numbers out of range are left out
    with a warning in `issues` (an error for the format version)."""
    issues = [] if issues is None else issues
    general = _keyed(flat.get("general infos"))
    box = _keyed(flat.get("control box datas"))
    motor = _keyed(flat.get("motor datas"))
    head = _keyed(flat.get("head datas"))
    pset = _keyed(flat.get("pset"))
    results = _keyed(flat.get("results"))
    tag = _lookup(head, "head tag uid")
    name = _lookup(head, "head name")
    head_id = head_identity(tag, name)
    global_counter = _int_field(head, ("head global counter",), "Head Global Counter", issues)
    version = _lookup(general, "version")
    if _dropped_int(version):
        issues.append(Issue("error", f"Version {version!r} is not a whole number in range"))
    meta = {
        "format_version": to_int(version),
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
        "tool_age": _int_field(head, ("head local counter 1", "head local counter"), "Head Local Counter 1", issues),
        "local_counter_2": _int_field(head, ("head local counter 2",), "Head Local Counter 2", issues),
        "pset": _int_field(pset, ("pset nb",), "Pset Nb.", issues),
        "cycle_time_s": to_number(_lookup(results, "cycle time (s)")),
        "distance_mm": to_number(_lookup(results, "distance (mm)")),
        "cycle_ok": to_bool(_lookup(results, "cycle ok")),
        "hole_id": make_hole_id(head_id, global_counter),
    }
    return meta


# --- the signal table ------------------------------------------------------------------------

# A Datas row is ~60 bytes; a line longer than this is no table row, and is refused before any
# reader splits it (one 50 MB line of 7 M fields cost 11 GB). Lines must fit in a read block.
MAX_LINE_BYTES = 1 << 18
_BLOCK_BYTES = 1 << 20  # small blocks: the reader's working memory stays a few MB
_WHOLE_BYTES = 1 << 24  # tables up to this size are read in one block (faster for small files)
# Canonical columns an extra Datas column must never take: the dataset's own and the signals'.
_RESERVED = frozenset({*SIGNAL_KEY_COLUMNS, *REQUIRED_SIGNALS, *_RAW_REQUIRED})


def signal_names(header: list[str]) -> list[str]:
    """Canonical names for the Datas header, in file order (not yet made unique)."""
    keys = [normalise_name(n) for n in header]
    names: list[str] = []
    for position, key in enumerate(keys):
        if key in _REQUIRED_HEADERS:
            names.append(_RAW_REQUIRED[_REQUIRED_HEADERS.index(key)])
        else:
            names.append(EXTRA_SIGNALS.get(key) or re.sub(r"[^a-z0-9]+", "_", key).strip("_") or f"column_{position}")
    return names


def unique_signal_names(header: list[str], n_values: int, issues: list[Issue]) -> list[str]:
    """A name per value column: an extra column never shadows a canonical one (`Hole ID`, `Depth
    mm`, a second `I Torque (A)`...): it is stored as `extra_<name>`, with a warning."""
    shown = header[:n_values] + [f"column {i + 1}" for i in range(len(header), n_values)]
    names = signal_names(shown)
    taken: set[str] = set()
    out = []
    for original, name in zip(shown, names, strict=True):
        canonical = normalise_name(original) in _REQUIRED_HEADERS and name not in taken
        if not canonical and (name in taken or name in _RESERVED):
            candidate, suffix = f"extra_{name}", 2
            while candidate in taken or candidate in _RESERVED:
                candidate, suffix = f"extra_{name}_{suffix}", suffix + 1
            issues.append(Issue("warning", f"Datas column '{original}' stored as '{candidate}': its name is taken"))
            name = candidate
        taken.add(name)
        out.append(name)
    return out


class _OddRows:
    """pyarrow's handler for rows whose field count differs from the table's: rows padded with
    more or fewer separators are read here (they keep their place), short rows are counted as
    incomplete, a row far wider than the header is refused."""

    def __init__(self, sep: str, decimal: str, n_values: int, header: list[str]):
        self.sep, self.decimal, self.n_values, self.header = sep, decimal, n_values, header
        self.handled: list[int] = []  # line numbers (1-based, in the body) of every row seen here
        self.rows: list[tuple[int, list[float]]] = []
        self.incomplete = 0
        self.refused: str | None = None  # why the table cannot be read
        self.text_cells: dict[int, int] = {}  # extra column -> cells that are not numbers

    def __call__(self, row: Any) -> str:
        self.handled.append(row.number)
        text = row.text.rstrip(self.sep + " \r\n")
        if not text.strip(self.sep + " "):
            return "skip"  # a blank padding line
        count = text.count(self.sep) + 1
        if count > _max_values(self.header):
            self.refused = self.refused or _too_wide(row.number, count, self.header)
            return "skip"
        cells = [c.strip() for c in text.split(self.sep)]
        if len(cells) < self.n_values:
            self.incomplete += 1
            return "skip"
        values = [_cell_number(c, self.decimal) for c in cells[: self.n_values]]
        for column in (i for i, value in enumerate(values) if value is None):
            if column >= len(_REQUIRED_HEADERS):  # text in an extra column (a comment): empty
                self.text_cells[column] = self.text_cells.get(column, 0) + 1
                values[column] = math.nan
                continue
            name = _column_name(self.header, column)
            self.refused = self.refused or f"Datas row {row.number}, column '{name}': {cells[column]!r} is not a number"
            return "skip"
        self.rows.append((row.number, values))
        return "skip"

    def merged(self, columns: list[np.ndarray]) -> list[np.ndarray]:
        """The columns with the rows read here put back where they were in the file."""
        if not self.rows:
            return columns
        lines = np.array([line for line, _ in self.rows])
        # A row's place among the table's rows: lines before it, minus those handled here.
        places = lines - 1 - np.searchsorted(np.array(self.handled), lines)
        values = np.array([v for _, v in self.rows], dtype=np.float64)
        return [np.insert(column, places, values[:, i]) for i, column in enumerate(columns)]


def _cell_number(cell: str, decimal: str) -> float | None:
    if not cell:
        return math.nan
    try:
        return float(cell.replace(",", ".") if decimal == "," else cell)
    except ValueError:
        return None


def _column_name(header: list[str], column: int) -> str:
    return header[column] if column < len(header) else f"column {column + 1}"


def _text_cell_warnings(header: list[str], text_cells: dict[int, int]) -> list[Issue]:
    """Text in extra columns (a comment): stored as empty, said once per column."""
    return [
        Issue(
            "warning",
            f"Datas column '{_column_name(header, column)}': {count} values that are not numbers stored as empty",
        )
        for column, count in text_cells.items()
    ]


def _too_wide(row: int, values: int, header: list[str]) -> str:
    return f"Datas row {row} has {values} values: the header names {len(header)} columns"


def _read_body_arrow(raw: bytes, body_start: int, table: _TableShape, odd: _OddRows) -> list[np.ndarray]:
    """The numeric body as float columns. A table of a few MB (every real file) is read in one
    go, the fastest way; a bigger one block by block into arrays sized once, so that it costs
    its arrays and not twice that."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from uos.arrays import float_column

    names = [f"c{i}" for i in range(table.n_fields)]
    body = pa.py_buffer(memoryview(raw)[body_start:])
    whole = body.size <= _WHOLE_BYTES
    options = {
        "read_options": pcsv.ReadOptions(
            column_names=names, use_threads=False, block_size=_WHOLE_BYTES if whole else _BLOCK_BYTES
        ),
        "parse_options": pcsv.ParseOptions(delimiter=table.sep, invalid_row_handler=odd, ignore_empty_lines=False),
        "convert_options": pcsv.ConvertOptions(
            decimal_point=table.decimal,
            include_columns=names[: table.n_values],
            column_types=dict.fromkeys(names[: table.n_values], pa.float64()),
            strings_can_be_null=True,
        ),
    }
    if whole:
        read = pcsv.read_csv(body, **options)
        return [float_column(read.column(i)) for i in range(table.n_values)]
    columns = [np.empty(table.rows_guess) for _ in range(table.n_values)]
    filled = 0
    for batch in pcsv.open_csv(pa.BufferReader(body), **options):
        if filled + batch.num_rows > len(columns[0]):  # shorter rows than the sample's: grow
            grown = max(2 * len(columns[0]), filled + batch.num_rows)
            columns = [np.concatenate([column[:filled], np.empty(grown - filled)]) for column in columns]
        for column, values in zip(columns, batch.columns, strict=True):
            column[filled : filled + batch.num_rows] = float_column(values)
        filled += batch.num_rows
    return [column[:filled] for column in columns]


def _read_body_python(
    lines: list[str], header: list[str], n_values: int, source: str, issues: list[Issue]
) -> tuple[list[np.ndarray], int]:
    """Slow reader that names the first cell of a required signal that is not a number; text in
    an extra column (a comment) is stored as empty, with a warning, and costs no hole."""
    rows: list[list[float]] = []
    dropped = 0
    text_cells: dict[int, int] = {}  # extra column -> cells that are not numbers
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
            if value is None and cell.lower() not in ("nan",) and column >= len(_REQUIRED_HEADERS):
                text_cells[column] = text_cells.get(column, 0) + 1
            elif value is None and cell.lower() not in ("nan",):
                column_name = _column_name(header, column)
                raise InputError(
                    f"Datas row {line_no - 1}, column '{column_name}': {cell!r} is not a number",
                    source,
                )
            row.append(math.nan if value is None else value)
        rows.append(row)
    issues += _text_cell_warnings(header, text_cells)
    values = np.array(rows, dtype=float) if rows else np.empty((0, n_values))
    return list(values.T), dropped


@dataclass(frozen=True)
class _TableShape:
    sep: str
    decimal: str
    n_fields: int  # fields per row as pyarrow sees them (trailing padding included)
    n_values: int  # value columns (padding left out)
    rows_guess: int  # rows expected from the sampled rows' length: the arrays' first size


def _sample_lines(raw: bytes, body_start: int, sep: str, header: list[str], source: str) -> list[str]:
    """Data lines to learn the table's shape from: the first ones, and some spread over the
    table, so that one odd row (two extra TABs on the first) does not decide it."""
    size = len(raw) - body_start
    lines: list[str] = []
    for k in range(8):
        offset = body_start + k * size // 8
        if k:
            offset = raw.find(b"\n", offset) + 1
            if offset == 0:
                break
        for _ in range(5 if k == 0 else 1):
            if offset >= len(raw):
                break
            end = raw.find(b"\n", offset)
            end = len(raw) if end < 0 else end
            if end - offset > MAX_LINE_BYTES:
                row = raw.count(b"\n", body_start, offset) + 1
                raise InputError(_too_wide(row, raw.count(sep.encode(), offset, end) + 1, header), source)
            line = raw[offset:end].decode("latin-1").rstrip("\r")
            if line.strip("\t; "):
                lines.append(line)
            offset = end + 1
    return lines


def _table_shape(raw: bytes, body_start: int, sep: str, header: list[str], source: str) -> _TableShape:
    lines = _sample_lines(raw, body_start, sep, header, source)
    if not lines:
        raise InputError("the Datas table has a header but no rows", source)
    n_fields = Counter(line.count(sep) + 1 for line in lines).most_common(1)[0][0]
    n_values = Counter(line.rstrip(sep + " ").count(sep) + 1 for line in lines).most_common(1)[0][0]
    if n_values > _max_values(header):
        raise InputError(f"Datas rows have {n_values} values: the header names {len(header)} columns", source)
    decimal = "," if any("," in line for line in lines) else "."
    row_bytes = sum(map(len, lines)) / len(lines) + 1
    return _TableShape(sep, decimal, n_fields, n_values, int((len(raw) - body_start) / row_bytes * 1.1) + 64)


# Real tables have the 7 required columns and at most 6 more; every column is stored for every
# sample of every hole in the dataset (a 3,000-column file beside a 5 M-sample hole took 21 GB).
_MAX_COLUMNS = len(_REQUIRED_HEADERS) + 32


def _max_values(header: list[str]) -> int:
    """More values than this in a row is not a table row (real rows have at most the header's)."""
    return max(2 * len(header), len(header) + 8)


def read_signal_table(raw: bytes, source: str, start: int = 0) -> tuple[list[str], dict[str, np.ndarray], list[Issue]]:
    """Read the Datas table starting at `start` (its header line), without copying the bytes.

    Returns the header names, the canonical signal arrays and what is worth a warning or an error.
    """
    import pyarrow as pa

    newline = raw.find(b"\n", start)
    body_start = len(raw) if newline < 0 else newline + 1
    header_line = raw[start:body_start].decode("latin-1")
    header = header_names(split_row(header_line))
    sep = "\t" if "\t" in header_line else (";" if ";" in header_line else "\t")
    table = _table_shape(raw, body_start, sep, header, source)
    odd = _OddRows(sep, table.decimal, table.n_values, header)
    read_issues: list[Issue] = []
    try:
        columns = _read_body_arrow(raw, body_start, table, odd)
    except pa.ArrowInvalid:  # a cell that is not a number, or a line longer than a block
        _refuse_long_lines(raw, body_start, sep, header, source)
        lines = raw[body_start:].decode("latin-1").splitlines()
        columns, dropped = _read_body_python(lines, header, table.n_values, source, read_issues)
    else:
        if odd.refused:
            raise InputError(odd.refused, source)
        columns, dropped = odd.merged(columns), odd.incomplete
        read_issues += _text_cell_warnings(header, odd.text_cells)
    columns = _without_blank_rows(columns)
    if len(columns[0]) == 0:
        raise InputError("the Datas table has a header but no complete rows", source)
    issues: list[Issue] = read_issues
    names = unique_signal_names(header, table.n_values, issues)
    if len(names) > _MAX_COLUMNS:
        issues.append(
            Issue(
                "warning", f"{len(names) - _MAX_COLUMNS} Datas columns beyond the {_MAX_COLUMNS} a unit writes: ignored"
            )
        )
        names, columns = names[:_MAX_COLUMNS], columns[:_MAX_COLUMNS]
    signals = finish_signals(dict(zip(names, columns, strict=True)), issues, in_place=True)
    if dropped:
        issues.insert(
            0,
            Issue(
                "warning",
                f"{dropped} incomplete row{'s' if dropped > 1 else ''} in the Datas table dropped (truncated file?)",
            ),
        )
    return header, signals, issues


def _refuse_long_lines(raw: bytes, body_start: int, sep: str, header: list[str], source: str) -> None:
    """A line longer than a read block makes pyarrow fail: name it instead of splitting it."""
    view = np.frombuffer(raw, dtype=np.uint8)
    previous, row = body_start - 1, 0
    for chunk in range(body_start, len(raw) + 1, _BLOCK_BYTES):
        ends = np.flatnonzero(view[chunk : chunk + _BLOCK_BYTES] == 10) + chunk
        ends = np.append(ends, len(raw)) if chunk + _BLOCK_BYTES >= len(raw) else ends
        lengths = np.diff(ends, prepend=previous) - 1
        if len(lengths) and lengths.max() > MAX_LINE_BYTES:
            at = int(lengths.argmax())
            begin, end = int(ends[at] - lengths[at]), int(ends[at])
            raise InputError(_too_wide(row + at + 1, raw.count(sep.encode(), begin, end) + 1, header), source)
        if len(ends):
            previous, row = int(ends[-1]), row + len(ends)


def _without_blank_rows(columns: list[np.ndarray]) -> list[np.ndarray]:
    """Rows made only of separators read as all-NaN: they are padding, not data."""
    if not np.isnan(columns[0]).any():
        return columns
    blank = np.isnan(columns[0])
    for column in columns[1:]:
        blank &= np.isnan(column)
    kept = np.flatnonzero(~blank)
    if len(kept) == 0 or kept[-1] == len(kept) - 1:  # only trailing padding: views, no copies
        return [column[: len(kept)] for column in columns]
    return [column[kept] for column in columns]


def finish_signals(
    signals: dict[str, np.ndarray], issues: list[Issue] | None = None, in_place: bool = False
) -> dict[str, np.ndarray]:
    """Canonical names and dtypes: depth from the (negative) position, integer step and stop code.

    Integer signals with values that are not whole numbers within int64 get those values nulled
    (never wrapped around), with an error in `issues`. `in_place`: the columns are the caller's
    to reuse, which saves a copy of the position.
    """
    out: dict[str, np.ndarray] = {}
    for name, column in signals.items():
        if name == "position_mm":
            depth = np.negative(column, out=column if in_place and column.flags.writeable else None)
            depth += 0.0  # turns -0.0 into 0.0
            out["depth_mm"] = depth
        elif name in INTEGER_SIGNALS:
            out[name] = integer_signal(name, column, issues, in_place)
        else:
            out[name] = np.asarray(column, dtype=np.float64)
    order = [n for n in REQUIRED_SIGNALS if n in out] + [n for n in out if n not in REQUIRED_SIGNALS]
    return {n: out[n] for n in order}


def _not_whole(values: np.ndarray) -> np.ndarray:
    """Values that are no int64: fractions, beyond its range, infinite (NaN is told apart later)."""
    outside = (values < -_INT64_LIMIT) | (values >= _INT64_LIMIT)
    return ((np.rint(values) != values) | outside) & ~np.isnan(values)


def integer_signal(
    name: str, column: np.ndarray, issues: list[Issue] | None = None, in_place: bool = False
) -> np.ndarray:
    """An int64 column when every value is a whole number that fits; else float, with the values
    that do not fit nulled (an error in `issues`) and NaN kept for the non-finite check.
    `in_place`: the float column is the caller's to reuse; it becomes the int64 one."""
    column = np.asarray(column, dtype=np.float64)
    slices = [slice(start, start + (1 << 20)) for start in range(0, len(column), 1 << 20)]  # small temporaries
    if _fits_int64(column) and all(np.array_equal(np.rint(column[s]), column[s]) for s in slices):
        return _as_int64(column, slices, in_place)  # the common case, checked in few passes
    bad = [np.flatnonzero(_not_whole(column[s])) + s.start for s in slices]
    bad_rows = np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)
    if len(bad_rows):
        if issues is not None:
            first, count = int(bad_rows[0]), len(bad_rows)
            issues.append(
                Issue(
                    "error",
                    f"{FILE_COLUMN_NAMES.get(name, name)}: {count} value{'s' if count > 1 else ''} not a whole number "
                    f"in range (first: {column[first]:g} in Datas row {first + 1})",
                )
            )
        column = column.copy()
        column[bad_rows] = np.nan
        return column
    return column  # NaN: kept as float so that the non-finite check sees it


def _fits_int64(column: np.ndarray) -> bool:
    """Every value finite and within int64 (False with any NaN: min and max are NaN then)."""
    return len(column) == 0 or (column.min() >= -_INT64_LIMIT and column.max() < _INT64_LIMIT)


def _as_int64(column: np.ndarray, slices: list[slice], in_place: bool) -> np.ndarray:
    if not (in_place and column.flags.writeable):  # arrays over Arrow's buffers are read-only
        return column.astype(np.int64)
    integers = column.view(np.int64)  # same size: converted slice by slice over itself
    for s in slices:
        integers[s] = column[s].astype(np.int64)
    return integers


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
    issues: list[Issue] = []
    meta = metadata_fields(flat, issues)
    program = _table_records(flat.get("program", []), _PROGRAM_ALIASES, PROGRAM_FIELDS, "Program", issues)
    step_results = _table_records(
        flat.get("step results", []), _STEP_RESULT_ALIASES, STEP_RESULT_FIELDS, "Step Results", issues
    )
    return Hole(meta=meta, signals={}, program=program, step_results=step_results, raw_metadata=flat, issues=issues)


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
    # A converter wrote NUL as the six characters "\u0000"; the units write real NUL bytes.
    rows = [split_row(line) for line in decode_text(raw[: match.start()]).replace("\\u0000", "").split("\n")]
    hole = hole_from_rows(rows, source)
    header, signals, issues = read_signal_table(raw, source, match.start())  # no copy of the bytes
    attach_signals(hole, header, signals, issues)
    return hole


def attach_signals(hole: Hole, header: list[str], signals: dict[str, np.ndarray], issues: list[Issue]) -> None:
    hole.signals = signals
    hole.meta["signal_columns"] = header
    hole.issues.extend(issues)
    version = hole.meta.get("format_version")
    if version is not None and version not in KNOWN_VERSIONS:
        hole.warn(f"unknown format version {version}: parsed as best it can")
    elif version is None and not _lookup(_keyed(hole.raw_metadata.get("general infos")), "version"):
        hole.warn("no format version in General Infos")
