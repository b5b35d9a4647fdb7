"""The parsed dataset on disk, and how later stages read it back column by column.

<dir>/holes.parquet    one row per hole: metadata, program, step results, status, issues
<dir>/signals/         one row per sample: hole_id, sample, depth_mm, torque_a, ...: a Parquet
                       dataset of a few parts written in parallel, rows sorted by hole_id so
                       that reading one hole skips most row groups
<dir>/report.csv       one row per input: source, hole_id, status (ok/warning/error), reasons
<dir>/summary.json     counts (a DVC metric)
<dir>/manifest.json    what the dataset was built from (parser digest, inputs and hashes)
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from uos.errors import UosError
from uos.holes.record import (
    EXTRA_SIGNALS,
    INTEGER_SIGNALS,
    META_FIELDS,
    PROGRAM_FIELDS,
    REQUIRED_SIGNALS,
    STEP_RESULT_FIELDS,
    Hole,
    Issue,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

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


def _atomic_parquet(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="lz4", row_group_size=_ROW_GROUP)
    os.replace(tmp, path)


def write_holes(path: Path, rows: list[dict[str, Any]]) -> None:
    """The holes table, built by Arrow's JSON reader against an explicit schema (nested program
    and step results included) rather than from Python objects."""
    import orjson
    import pyarrow as pa
    import pyarrow.json as pj

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
    _atomic_parquet(table, path)


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
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with ThreadPoolExecutor(len(groups)) as pool:
        jobs = [pool.submit(_write_part, tmp / f"part-{i}.parquet", group, names) for i, group in enumerate(groups)]
        for job in jobs:
            job.result()
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    return total


def _write_part(path: Path, holes: list[tuple[str, dict[str, np.ndarray]]], names: list[str]) -> None:
    """One part. A hole without some column gets nulls there; integer columns stay integer (an
    error hole's non-finite step numbers become nulls)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from uos.arrays import numeric_array, string_array

    counts = np.array([len(signals["depth_mm"]) for _, signals in holes], dtype=np.int64)
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    hole_index = np.repeat(np.arange(len(holes), dtype=np.int32), counts)
    columns: dict[str, Any] = {
        "hole_id": pa.DictionaryArray.from_arrays(numeric_array(hole_index), string_array([h for h, _ in holes])),
        "sample": numeric_array((np.arange(total, dtype=np.int64) - np.repeat(starts, counts)).astype(np.int32)),
    }
    for name in names:
        integer = name in INTEGER_SIGNALS
        dtype = np.int64 if integer else np.float64
        pieces = [signals.get(name) for _, signals in holes]
        if all(p is not None and (not integer or p.dtype.kind == "i") for p in pieces):
            # The common case: every hole has the column, with the right type.
            columns[name] = numeric_array(
                np.concatenate(pieces).astype(dtype, copy=False) if pieces else np.empty(0, dtype)
            )
            continue
        values = np.zeros(total, dtype=dtype)
        missing = np.ones(total, dtype=bool)
        for column, start, n in zip(pieces, starts, counts, strict=True):
            if column is None:
                continue
            finite = np.isfinite(column) if integer and column.dtype.kind == "f" else np.ones(n, dtype=bool)
            values[start : start + n] = np.where(finite, column, 0)
            missing[start : start + n] = ~finite
        columns[name] = numeric_array(values, missing)
    pq.write_table(pa.table(columns), path, compression="lz4", row_group_size=_ROW_GROUP)


def write_report(path: Path, outcomes: list[Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "hole_id", "status", "reasons"])
        for o in outcomes:
            writer.writerow([o.source, o.hole_id or "", o.status, "; ".join(o.reasons)])
    os.replace(tmp, path)


def read_report(path: Path) -> list[Any]:
    from uos.dataset.build import InputOutcome

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
        by_id[hole_id] = {
            n: v[start:end] for n, v in arrays.items() if not np.all(np.isnan(v[start:end].astype(float)))
        }
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
        if column.isna().all():
            continue
        signals[name] = column.to_numpy(
            dtype=np.int64 if name in INTEGER_SIGNALS and not column.isna().any() else np.float64
        )
    return _hole_from_row(row, signals)
