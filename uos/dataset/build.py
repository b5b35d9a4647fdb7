"""`uos parse`: many inputs in, one clean Parquet dataset and a quality report out.

Inputs are hashed first; anything whose content the cache already holds is not parsed again, and
when neither the inputs nor the parser changed since the last run, nothing is written at all.
New inputs are parsed on every core in worker processes, which write their results to the cache;
the dataset is then assembled from the cache.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from uos.dataset.cache import ParseCache, default_cache_root
from uos.dataset.layout import (
    HOLES_FILE,
    MANIFEST_FILE,
    REPORT_FILE,
    SIGNALS_DIR,
    SUMMARY_FILE,
    write_holes,
    write_report,
    write_signals,
)
from uos.errors import InputError, UosError
from uos.holes.quality import QualityRules, check_hole, counters_vs_name, status_of
from uos.holes.record import Issue

SETITEC_SUFFIXES = (".xls",)


@dataclass(frozen=True)
class ParseParams:
    """`[parse]` in params.toml."""

    min_samples: int = 50
    few_samples: int = 150
    air_cut_torque_a: float = 0.5
    air_cut_contact_mm: float = 2.5
    min_span_mm: float = 3.0
    workers: int = 0  # 0: one per core
    allow_errors: bool = False  # exit 0 even when some inputs failed (they are still reported)

    def rules(self) -> QualityRules:
        return QualityRules(**{f.name: getattr(self, f.name) for f in dataclasses.fields(QualityRules)})


@dataclass
class InputOutcome:
    """One line of the quality report: what became of one input."""

    source: str
    sha256: str | None = None
    hole_id: str | None = None
    status: str = "error"  # ok | warning | error
    reasons: list[str] = field(default_factory=list)


@dataclass
class ParseSummary:
    out_dir: Path
    outcomes: list[InputOutcome]
    n_holes: int = 0
    n_samples: int = 0
    n_parsed: int = 0  # inputs parsed in this run (the rest came from the cache)
    seconds: float = 0.0
    up_to_date: bool = False

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[InputOutcome]:
        return [o for o in self.outcomes if o.status == "error"]


# --- finding inputs ---------------------------------------------------------------------------


def _display(path: Path, cwd: str) -> str:
    """Paths relative to the working directory when inside it, so datasets do not depend on
    where the project is checked out."""
    absolute = os.path.abspath(path)
    if absolute.startswith(cwd + os.sep):
        return Path(absolute[len(cwd) + 1 :]).as_posix()
    return Path(absolute).as_posix()


def discover(inputs: Iterable[str]) -> tuple[list[Path], list[InputOutcome]]:
    """Files, folders (recursively: Setitec `.xls` files and MQTT capture folders) and globs."""
    from uos.holes.mqtt import is_capture_folder

    found: dict[str, Path] = {}
    problems: list[InputOutcome] = []
    cwd = os.getcwd()

    def add(path: Path) -> None:
        found.setdefault(_display(path, cwd), path)

    def walk(folder: Path) -> None:
        if is_capture_folder(folder):
            add(folder)
            return
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                walk(entry)
            elif entry.suffix.lower() in SETITEC_SUFFIXES:
                add(entry)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            walk(path)
        elif path.is_file():
            add(path)
        elif glob.has_magic(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                problems.append(InputOutcome(item, reasons=["no file matches this pattern"]))
            for match in matches:
                (walk if Path(match).is_dir() else add)(Path(match))
        else:
            problems.append(InputOutcome(item, reasons=["no such file or directory"]))
    return [found[k] for k in sorted(found)], problems


def content_digest(path: Path) -> str:
    if path.is_dir():
        from uos.holes.mqtt import capture_digest

        return capture_digest(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- parsing in worker processes --------------------------------------------------------------


Batch = tuple[list[tuple[str, str]], Path, QualityRules]  # (path, sha256) pairs, cache dir, rules


def _parse_batch(batch: Batch) -> tuple[Path | None, dict[str, str]]:
    """Worker: parse a batch of inputs into one cache pack.

    Returns the pack and the inputs that crashed the parser (not cached: a fixed parser has
    another digest anyway)."""
    from uos.dataset.cache import write_pack
    from uos.holes.read import read_source

    items, cache_dir, rules = batch
    results: dict[str, Any] = {}
    crashes: dict[str, str] = {}
    for path, sha256 in items:
        try:
            hole = read_source(path)
        except InputError as exc:
            results[sha256] = exc.reason
            continue
        except Exception as exc:
            crashes[sha256] = f"internal error while parsing ({type(exc).__name__}: {exc}); please report it"
            continue
        results[sha256] = (hole, check_hole(hole, rules))
    return (write_pack(cache_dir, results) if results else None), crashes


def _batches(jobs: list[tuple[str, str]], workers: int, cache_dir: Path, rules: QualityRules) -> list[Batch]:
    """Largest inputs first, in batches of similar cost, so that no worker is left with a tail of
    big files while the other idles; few enough batches that creating pack files stays cheap."""
    jobs = sorted(jobs, key=lambda job: _size(job[0]), reverse=True)
    target = max(1, min(32, len(jobs) // (workers * 6)))
    return [(jobs[i : i + target], cache_dir, rules) for i in range(0, len(jobs), target)]


def _run_jobs(
    jobs: list[tuple[str, str]],
    workers: int,
    cache: ParseCache,
    rules: QualityRules,
    progress: Callable[[int], None],
) -> dict[str, str]:
    """Parse `(path, sha256)` jobs on `workers` processes into the cache; returns crash reasons."""
    crashes: dict[str, str] = {}
    batches = _batches(jobs, workers, cache.dir, rules)

    def collect(batch: Batch, pack: Path | None, crashed: dict[str, str]) -> None:
        if pack is not None:
            cache.add_pack(pack)
        crashes.update(crashed)
        progress(len(batch[0]))

    if workers <= 1 or len(batches) == 1:
        for batch in batches:
            collect(batch, *_parse_batch(batch))
        return crashes
    # fork: workers start at once with everything above already imported.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        for batch, (pack, crashed) in zip(batches, pool.map(_parse_batch, batches), strict=True):
            collect(batch, pack, crashed)
    return crashes


def _preload() -> None:
    import pyarrow.csv
    import pyarrow.json
    import pyarrow.parquet  # noqa: F401

    import uos.holes.read  # noqa: F401


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# --- the whole run ----------------------------------------------------------------------------


def parse_dataset(
    inputs: Iterable[str],
    out_dir: str | Path,
    params: ParseParams | None = None,
    *,
    strict: bool = False,
    cache_root: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ParseSummary:
    """Parse `inputs` into the dataset at `out_dir` (see `uos.dataset.layout`).

    A bad input never stops the run: it gets its reason in the report. With `strict`, the first
    failure raises `UosError` and nothing is written.
    """
    started = time.perf_counter()
    params = params or ParseParams()
    rules = params.rules()
    out = Path(out_dir)
    cache = ParseCache(cache_root or default_cache_root(), rules)

    paths, problems = discover(inputs)
    if not paths and problems:
        raise UosError(f"{problems[0].source}: {problems[0].reasons[0]}")
    if strict and problems:
        raise UosError(f"{problems[0].source}: {problems[0].reasons[0]}")
    # Import what parsing and writing need while the inputs are hashed (hashing and file reads
    # run outside the GIL); workers forked afterwards inherit the imports for free.
    preload = threading.Thread(target=_preload, daemon=True)
    preload.start()
    cwd = os.getcwd()
    sources = [(_display(p, cwd), p, content_digest(p)) for p in paths]

    manifest = {
        "parser": cache.dir.name,
        "inputs": [[source, sha] for source, _, sha in sources],
        "problems": [[p.source, p.reasons] for p in problems],
    }
    if _up_to_date(out, manifest):
        summary = _summary_from_report(out)
        summary.seconds = time.perf_counter() - started
        return summary

    jobs: dict[str, str] = {}  # sha256 -> path; the same content under two names is parsed once
    for _, path, sha in sources:
        if sha not in jobs and sha not in cache.entries():
            jobs[sha] = str(path)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, len(jobs))

    workers = params.workers or os.cpu_count() or 1
    preload.join()
    crashes = _run_jobs([(path, sha) for sha, path in jobs.items()], workers, cache, rules, advance) if jobs else {}
    records = {sha: crashes.get(sha) or cache.lookup(sha) for _, _, sha in sources}

    outcomes, rows = _assemble(sources, records)
    outcomes.extend(problems)
    outcomes.sort(key=lambda o: o.source)
    if strict and (failed := [o for o in outcomes if o.status == "error"]):
        raise UosError(f"{failed[0].source}: {'; '.join(failed[0].reasons)}")

    out.mkdir(parents=True, exist_ok=True)
    signals = cache.signals([row["sha256"] for row in rows])
    n_samples = write_signals(out / SIGNALS_DIR, [(row["meta"]["hole_id"], signals[row["sha256"]]) for row in rows])
    write_holes(out / HOLES_FILE, rows)
    write_report(out / REPORT_FILE, outcomes)
    summary = ParseSummary(out, outcomes, n_holes=len(rows), n_samples=n_samples, n_parsed=len(jobs))
    _write_json(
        out / SUMMARY_FILE,
        {
            "inputs": len(outcomes),
            "holes": summary.n_holes,
            "samples": n_samples,
            "ok": summary.count("ok"),
            "warning": summary.count("warning"),
            "error": summary.count("error"),
        },
    )
    _write_json(out / MANIFEST_FILE, manifest)  # last: its presence means the rest is complete
    summary.seconds = time.perf_counter() - started
    return summary


def _assemble(
    sources: list[tuple[str, Path, str]], records: dict[str, Any]
) -> tuple[list[InputOutcome], list[dict[str, Any]]]:
    """Cross-hole checks (duplicates, id collisions) and the dataset rows, in source order."""
    outcomes: list[InputOutcome] = []
    rows: list[dict[str, Any]] = []
    first_by_sha: dict[str, str] = {}
    first_by_signals: dict[str, str] = {}
    for source, _, sha in sources:
        record = records.get(sha)
        if record is None or isinstance(record, str):
            outcomes.append(InputOutcome(source, sha, reasons=[record or "could not be parsed"]))
            continue
        meta = dict(record["meta"], source=source)
        issues = list(record["issues"])
        if sha in first_by_sha:
            outcomes.append(
                InputOutcome(
                    source,
                    sha,
                    meta["hole_id"],
                    "warning",
                    [f"duplicate of {first_by_sha[sha]} (same bytes): not added again"],
                )
            )
            continue
        first_by_sha[sha] = source
        signals_key = meta.get("signals_hash")
        if signals_key and signals_key in first_by_signals:
            issues.append(Issue("warning", f"duplicate of {first_by_signals[signals_key]} (same signals)"))
        elif signals_key:
            first_by_signals[signals_key] = source
        row = dict(record, meta=meta, sha256=sha, issues=issues)
        row["meta"]["sha256"] = sha
        rows.append(row)

    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["meta"]["hole_id"], []).append(row)
    for base, claimants in by_id.items():
        if len(claimants) < 2:
            continue
        for row in claimants:
            row["meta"]["hole_id"] = f"{base}~{row['sha256'][:8]}"
            row["issues"].append(
                Issue(
                    "warning",
                    f"hole id {base} is claimed by {len(claimants)} inputs: this one is {row['meta']['hole_id']}",
                )
            )

    for row in rows:
        # The file name belongs to the input, not to the cached content: checked here.
        if mismatch := counters_vs_name(row["meta"]):
            row["issues"].append(Issue("warning", mismatch))
        row["status"] = status_of(row["issues"])
        outcomes.append(
            InputOutcome(
                row["meta"]["source"],
                row["sha256"],
                row["meta"]["hole_id"],
                row["status"],
                [i.reason for i in row["issues"]],
            )
        )
    return outcomes, rows


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _up_to_date(out: Path, manifest: dict[str, Any]) -> bool:
    files = (HOLES_FILE, SIGNALS_DIR, REPORT_FILE, SUMMARY_FILE, MANIFEST_FILE)
    if not all((out / name).exists() for name in files):
        return False
    try:
        return json.loads((out / MANIFEST_FILE).read_text()) == manifest
    except (OSError, ValueError):
        return False


def _summary_from_report(out: Path) -> ParseSummary:
    from uos.dataset.layout import read_report

    outcomes = read_report(out / REPORT_FILE)
    numbers = json.loads((out / SUMMARY_FILE).read_text())
    return ParseSummary(out, outcomes, n_holes=numbers["holes"], n_samples=numbers["samples"], up_to_date=True)
