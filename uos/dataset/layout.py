"""The parsed dataset on disk, and how later stages read it back column by column.

<dir>/holes.parquet    one row per hole: metadata, program, step results, status, issues
<dir>/signals/         one row per sample: hole_id, sample, depth_mm, torque_a, ...: a Parquet
                       dataset of a few parts written in parallel, rows sorted by hole_id so
                       that reading one hole skips most row groups
<dir>/report.csv       one row per input: source, hole_id, status (ok/warning/error), reasons
<dir>/summary.json     counts (a DVC metric)
<dir>/manifest.json    what the dataset was built from (parser digest, inputs and hashes)

A new dataset is written whole in a folder beside <dir> and put in its place with renames, so a
reader (or a crash) sees the old dataset or the new one, never a mix of the two.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import itertools
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from uos.errors import UosError
from uos.holes.record import (
    EXTRA_SIGNALS,
    INTEGER_SIGNALS,
    MEASURED_SIGNALS,
    META_FIELDS,
    PROGRAM_FIELDS,
    REQUIRED_SIGNALS,
    STEP_RESULT_FIELDS,
    Hole,
    Issue,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class InputOutcome:
    """One line of the quality report: what became of one input."""

    source: str
    sha256: str | None = None
    hole_id: str | None = None
    status: str = "error"  # ok | warning | error
    reasons: list[str] = field(default_factory=list)


HOLES_FILE = "holes.parquet"
SIGNALS_DIR = "signals"
REPORT_FILE = "report.csv"
SUMMARY_FILE = "summary.json"
MANIFEST_FILE = "manifest.json"

_ROW_GROUP = 131_072
_INTEGER_TABLE_FIELDS = ("step", "stop_code", "enabled", "pecks")  # in program and step results


def _arrow_type(name: str):
    import pyarrow as pa

    return {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us"),
    }[name]


def _struct_type(fields: tuple[str, ...]):
    import pyarrow as pa

    return pa.list_(pa.struct([(f, pa.int64() if f in _INTEGER_TABLE_FIELDS else pa.float64()) for f in fields]))


def holes_schema():
    import pyarrow as pa

    fields = [(name, _arrow_type(kind)) for name, kind in META_FIELDS.items()]
    fields += [
        ("status", pa.string()),
        ("issues", pa.list_(pa.struct([("level", pa.string()), ("reason", pa.string())]))),
        ("signal_columns", pa.list_(pa.string())),
        ("program", _struct_type(PROGRAM_FIELDS)),
        ("step_results", _struct_type(STEP_RESULT_FIELDS)),
        ("raw_metadata", pa.string()),  # every name/value pair of the file, as JSON
    ]
    return pa.schema(fields)


# --- what can be stored -----------------------------------------------------------------------


def unwritable(hole: Hole) -> str | None:
    """Why the cache or the dataset could not store `hole`, naming the value; None when they can.
    Integers go to Parquet as int64 and to the cache as JSON (64-bit), text as UTF-8."""
    for name in META_FIELDS:
        if problem := _unfit(hole.meta.get(name)):
            return f"{name} {problem}"
    for table, rows in (("program", hole.program), ("step results", hole.step_results)):
        for number, row in enumerate(rows, 1):
            for name, value in row.items():
                if problem := _unfit(value):
                    return f"{table} row {number}, {name} {problem}"
    if found := _first_unfit(hole.raw_metadata, ()):
        where, problem = found
        return f"header value {' / '.join(where)!r} {problem}"
    for name, column in hole.signals.items():
        if np.asarray(column).dtype.kind not in "biuf":
            return f"signal {name} is not numeric ({np.asarray(column).dtype})"
    return None


def _first_unfit(value: Any, where: tuple[str, ...]) -> tuple[tuple[str, ...], str] | None:
    """The first value (or key) in nested raw metadata that cannot be stored, with its path."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None:
        return (where, problem) if (problem := _unfit(value)) else None
    for key, item in items:
        if problem := _unfit(key):
            return (*where, str(key)), problem
        if found := _first_unfit(item, (*where, str(key))):
            return found
    return None


def _unfit(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return f"= {value} does not fit a 64-bit integer: cannot be stored"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"= {value.encode('utf-8', 'backslashreplace').decode()!r} is not valid text: cannot be stored"
    return None


# --- replacing a dataset as a whole ------------------------------------------------------------

_OURS = {HOLES_FILE, SIGNALS_DIR, REPORT_FILE, SUMMARY_FILE, MANIFEST_FILE}
_CARRIED = (".gitignore",)  # not ours, but kept: a tool (DVC) may have put it there


def _backup_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.old")


@contextlib.contextmanager
def writing_dataset(out: Path) -> Iterator[None]:
    """Hold the dataset at `out` for writing: a second `uos parse` into it waits (an exclusive
    lock on a file beside it, released by the system when a process dies, even by kill -9)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle = open(out.with_name(f".{out.name}.lock"), "a")  # noqa: SIM115 - held for the block
    except OSError as exc:
        raise UosError(f"cannot write the dataset at {out}: {exc.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting: another uos parse is writing {out}", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def staging_dir(out: Path) -> Path:
    """An empty folder beside `out` to write the next dataset in (on the same file system, to
    be renamed into place), holding what `out` carries over."""
    staging = out.with_name(f".{out.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in _CARRIED:
        if (out / name).is_file():
            shutil.copy2(out / name, staging / name)
    return staging


def _refuse_foreign(out: Path) -> None:
    """Files `uos parse` did not write would not survive the replacement: refused up front."""
    if not out.is_dir():
        return
    foreign = sorted(
        p.name for p in out.iterdir() if p.name not in _OURS and p.name not in _CARRIED and not _our_leftover(p.name)
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UosError(f"{out} holds files uos parse did not write ({shown}): give --out a new or empty folder")


def _our_leftover(name: str) -> bool:
    """Temporary files of versions that replaced the dataset file by file."""
    return name.startswith(".") and name.endswith(".tmp") and name[1:-4] in _OURS


def replace_dataset(out: Path, staging: Path) -> None:
    """Put the complete dataset in `staging` at `out`: the old one is renamed aside, the new one
    renamed into place, then the old one removed. A crash between the steps is finished by
    `recover_dataset`; at no point can the manifest of one dataset sit beside another's files."""
    backup = _backup_dir(out)
    if out.exists():
        os.rename(out, backup)
    os.rename(staging, out)
    shutil.rmtree(backup, ignore_errors=True)


def recover_dataset(out: Path) -> None:
    """Finish what a crash in `replace_dataset` left: the old dataset put back when it was
    renamed aside but not replaced, the leftovers (a half-written new one, the old one after the
    new was in place) removed. Raises UosError when `out` holds files that are not a dataset's."""
    backup = _backup_dir(out)
    if backup.exists() and not out.exists():
        os.rename(backup, out)
    shutil.rmtree(backup, ignore_errors=True)
    shutil.rmtree(out.with_name(f".{out.name}.new"), ignore_errors=True)
    _refuse_foreign(out)


# --- writing -------------------------------------------------------------------------------------


def write_holes(path: Path, rows: list[dict[str, Any]]) -> None:
    """The holes table, built by Arrow's JSON reader against an explicit schema (nested program
    and step results included) rather than from Python objects."""
    import orjson
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    lines = []
    for r in sorted(rows, key=lambda r: r["meta"]["hole_id"]):
        record = {name: r["meta"].get(name) for name in META_FIELDS}
        if record["date"] is not None:
            record["date"] = record["date"].isoformat()
        record.update(
            status=r["status"],
            issues=[{"level": i.level, "reason": i.reason} for i in r["issues"]],
            signal_columns=r["meta"].get("signal_columns") or [],
            program=r["program"],
            step_results=r["step_results"],
            raw_metadata=orjson.dumps(r["raw_metadata"]).decode(),
        )
        lines.append(orjson.dumps(record))
    schema = holes_schema()
    if lines:
        table = pj.read_json(
            pa.py_buffer(b"\n".join(lines)),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, sum(map(len, lines)) + 1)),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
        ).select(schema.names)
    else:
        table = schema.empty_table()
    pq.write_table(table, path, compression="lz4", row_group_size=_ROW_GROUP)


def signal_column_order(names: set[str]) -> list[str]:
    known_extras = list(dict.fromkeys(EXTRA_SIGNALS.values()))
    ordered = [n for n in REQUIRED_SIGNALS if n in names] + [n for n in known_extras if n in names]
    return ordered + sorted(names - set(ordered))


def write_signals(directory: Path, holes: list[tuple[str, dict[str, np.ndarray]]], parts: int = 2) -> int:
    """Every hole's samples as one long table, in `parts` Parquet files encoded in parallel
    threads (Parquet encoding is single-threaded and releases the GIL). Returns the sample count.
    """
    from concurrent.futures import ThreadPoolExecutor

    holes = sorted(holes, key=lambda h: h[0])
    names = signal_column_order({n for _, signals in holes for n in signals} | set(REQUIRED_SIGNALS))
    sizes = np.cumsum([len(signals["depth_mm"]) for _, signals in holes])
    total = int(sizes[-1]) if len(holes) else 0
    # Cut where the running sample count crosses each 1/parts of the total.
    cuts = [
        0,
        *np.searchsorted(sizes, [total * k / parts for k in range(1, parts)]).tolist(),
        len(holes),
    ]
    groups = [holes[a:b] for a, b in itertools.pairwise(cuts) if b > a] or [[]]
    directory.mkdir(parents=True)
    with ThreadPoolExecutor(len(groups)) as pool:
        jobs = [
            pool.submit(_write_part, directory / f"part-{i}.parquet", group, names) for i, group in enumerate(groups)
        ]
        for job in jobs:
            job.result()
    return total


_CHUNK_ROWS = 8 * _ROW_GROUP  # rows converted at a time: a bounded copy whatever the hole sizes

Chunk = list[tuple[int, int, int]]  # (hole index, first sample, end) pieces of consecutive rows


def _write_part(path: Path, holes: list[tuple[str, dict[str, np.ndarray]]], names: list[str]) -> None:
    """One part, converted and written `_CHUNK_ROWS` rows at a time, so that the copy it takes
    stays small beside the signals (a 300 MB file's hole is 5 M rows)."""
    import pyarrow.parquet as pq

    from uos.arrays import string_array

    ids = string_array([h for h, _ in holes])
    counts = [len(signals["depth_mm"]) for _, signals in holes]
    writer = None
    try:
        for chunk in _row_chunks(counts, _CHUNK_ROWS):
            table = _chunk_table(chunk, holes, names, ids)
            writer = writer or pq.ParquetWriter(path, table.schema, compression="lz4")
            writer.write_table(table, row_group_size=_ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()


def _row_chunks(counts: list[int], size: int) -> Iterator[Chunk]:
    """The rows of holes of `counts` samples, cut in chunks of `size` rows (at least one chunk)."""
    chunk: Chunk = []
    room = size
    for index, count in enumerate(counts):
        start = 0
        while start < count:
            take = min(room, count - start)
            chunk.append((index, start, start + take))
            start += take
            room -= take
            if room == 0:
                yield chunk
                chunk, room = [], size
    if chunk or not any(counts):
        yield chunk


def _chunk_table(chunk: Chunk, holes: list[tuple[str, dict[str, np.ndarray]]], names: list[str], ids: Any) -> Any:
    """The rows of one chunk as a table. A hole without some column gets nulls there; integer
    columns stay integer (an error hole's non-finite step numbers become nulls)."""
    import pyarrow as pa

    from uos.arrays import numeric_array

    lengths = np.array([end - start for _, start, end in chunk], dtype=np.int64)
    total = int(lengths.sum())
    hole_index = np.repeat(np.array([i for i, _, _ in chunk], dtype=np.int32), lengths)
    samples = [np.arange(start, end, dtype=np.int32) for _, start, end in chunk]
    columns: dict[str, Any] = {
        "hole_id": pa.DictionaryArray.from_arrays(numeric_array(hole_index), ids),
        "sample": numeric_array(np.concatenate(samples) if samples else np.empty(0, np.int32)),
    }
    for name in names:
        integer = name in INTEGER_SIGNALS
        dtype = np.int64 if integer else np.float64
        pieces = [(holes[i][1].get(name), start, end) for i, start, end in chunk]
        if all(p is not None and (not integer or p.dtype.kind == "i") for p, _, _ in pieces):
            # The common case: every hole has the column, with the right type.
            values = np.concatenate([p[a:b] for p, a, b in pieces]) if pieces else np.empty(0, dtype)
            columns[name] = numeric_array(values.astype(dtype, copy=False))
            continue
        values = np.zeros(total, dtype=dtype)
        missing = np.ones(total, dtype=bool)
        at = 0
        for column, a, b in pieces:
            if column is not None:
                part = column[a:b]
                finite = np.isfinite(part) if integer and part.dtype.kind == "f" else np.ones(b - a, dtype=bool)
                values[at : at + b - a] = np.where(finite, part, 0)
                missing[at : at + b - a] = ~finite
            at += b - a
        columns[name] = numeric_array(values, missing)
    return pa.table(columns)


def write_report(path: Path, outcomes: list[Any]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "hole_id", "status", "reasons"])
        for o in outcomes:
            writer.writerow([o.source, o.hole_id or "", o.status, "; ".join(o.reasons)])


def read_report(path: Path) -> list[Any]:
    with path.open(newline="") as handle:
        return [
            InputOutcome(
                r["source"],
                None,
                r["hole_id"] or None,
                r["status"],
                [x for x in r["reasons"].split("; ") if x],
            )
            for r in csv.DictReader(handle)
        ]


# --- reading --------------------------------------------------------------------------------


def _require(directory: Path, name: str) -> Path:
    path = Path(directory) / name
    if not path.exists():
        raise UosError(f"{path} not found: run `uos parse INPUT... --out {directory}` first")
    return path


def read_holes(directory: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The holes table (one row per hole) as a DataFrame."""
    import pyarrow.parquet as pq

    return pq.read_table(_require(Path(directory), HOLES_FILE), columns=columns).to_pandas()


def read_signals(
    directory: str | Path, hole_ids: list[str] | None = None, columns: list[str] | None = None
) -> pd.DataFrame:
    """Samples of some or all holes; `columns` None reads them all."""
    import pyarrow.parquet as pq

    wanted = None if columns is None else list(dict.fromkeys(["hole_id", "sample", *columns]))
    filters = [("hole_id", "in", list(hole_ids))] if hole_ids is not None else None
    table = pq.read_table(_require(Path(directory), SIGNALS_DIR), columns=wanted, filters=filters)
    frame = table.to_pandas()
    frame["hole_id"] = frame["hole_id"].astype(str)
    return frame


def _hole_from_row(row: dict[str, Any], signals: dict[str, np.ndarray], raw: bool = True) -> Hole:
    meta = {k: row[k] for k in META_FIELDS}
    meta["signal_columns"] = row["signal_columns"]
    return Hole(
        meta=meta,
        signals=signals,
        program=row["program"],
        step_results=row["step_results"],
        raw_metadata=json.loads(row["raw_metadata"]) if raw else {},
        issues=[Issue(i["level"], i["reason"]) for i in row["issues"]],
    )


def _its_own(name: str, values: np.ndarray) -> bool:
    """Whether a column of the signals table is one of this hole's: the table holds every column
    any hole has, null where a hole has none. The measured signals are every hole's, even all NaN
    (a recording whose positions are all unreadable is still that hole's, and its reason)."""
    return name in MEASURED_SIGNALS or not np.all(np.isnan(values.astype(float)))


def load_holes(
    directory: str | Path, columns: list[str] | None = None, hole_ids: list[str] | None = None
) -> list[Hole]:
    """Holes of the dataset with their signals (only `columns`, default all), read in bulk."""
    import pyarrow.parquet as pq

    directory = Path(directory)
    filters = [("hole_id", "in", list(hole_ids))] if hole_ids is not None else None
    rows = pq.read_table(_require(directory, HOLES_FILE), filters=filters).to_pylist()
    wanted = None if columns is None else ["hole_id", *columns]
    table = pq.read_table(_require(directory, SIGNALS_DIR), columns=wanted, filters=filters)
    import pyarrow as pa

    ids = table.column("hole_id").combine_chunks()
    if isinstance(ids, pa.DictionaryArray):
        codes = ids.indices.to_numpy(zero_copy_only=False)
        names = ids.dictionary.to_pylist()
    else:
        names, codes = np.unique(np.asarray(ids.to_pylist(), dtype=object), return_inverse=True)
        names = list(names)
    # Rows of one hole are contiguous: cut each column where the hole changes.
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(codes)]])
    arrays = {}
    for name in table.column_names:
        if name in ("hole_id", "sample"):
            continue
        column = table.column(name)
        values = column.to_numpy()
        if name in INTEGER_SIGNALS and column.null_count == 0:
            values = values.astype(np.int64)
        arrays[name] = values[order]
    by_id: dict[str, dict[str, np.ndarray]] = {}
    for start, end in zip(starts, ends, strict=True):
        hole_id = names[sorted_codes[start]]
        by_id[hole_id] = {n: v[start:end] for n, v in arrays.items() if _its_own(n, v[start:end])}
    return [_hole_from_row(row, by_id.get(row["hole_id"], {}), raw=False) for row in rows]


def load_hole(directory: str | Path, hole_id: str) -> Hole:
    """One hole back from the dataset, as the parser built it."""
    import pyarrow.parquet as pq

    table = pq.read_table(_require(Path(directory), HOLES_FILE), filters=[("hole_id", "==", hole_id)])
    if table.num_rows == 0:
        raise UosError(f"no hole {hole_id!r} in {directory}")
    row = table.slice(0, 1).to_pylist()[0]
    frame = read_signals(directory, [hole_id])
    signals = {}
    for name in frame.columns.drop(["hole_id", "sample"]):
        column = frame[name]
        if not _its_own(name, column.to_numpy(dtype=np.float64)):
            continue
        signals[name] = column.to_numpy(
            dtype=np.int64 if name in INTEGER_SIGNALS and not column.isna().any() else np.float64
        )
    return _hole_from_row(row, signals)
