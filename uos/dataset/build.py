"""`uos parse`: many inputs in, one clean Parquet dataset and a quality report out.

Inputs are hashed first; anything whose content the cache already holds is not parsed again, and
when neither the inputs nor the parser changed since the last run, nothing is written at all.
New inputs are parsed on every core in worker processes, which write their results to the cache;
the dataset is then assembled from the cache.
"""

from __future__ import annotations

import dataclasses
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

from uos.cores import choose_workers
from uos.dataset.cache import ParseCache, default_cache_root
from uos.dataset.layout import (
    HOLES_FILE,
    MANIFEST_FILE,
    REPORT_FILE,
    SIGNALS_DIR,
    SUMMARY_FILE,
    InputOutcome,
    recover_dataset,
    replace_dataset,
    staging_dir,
    write_holes,
    write_report,
    write_signals,
    writing_dataset,
)
from uos.errors import InputError, UosError
from uos.holes.discover import content_digest, discover, display_name
from uos.holes.files import printable
from uos.holes.quality import QualityRules, check_hole, counters_vs_name, status_of
from uos.holes.record import Issue
from uos.outputs import write_json


@dataclass(frozen=True)
class ParseParams(QualityRules):
    """`[parse]` in params.toml: the gate's thresholds (`QualityRules`), and how to run."""

    workers: int = 0  # 0: our share of the cores (uos.cores)
    allow_errors: bool = False  # exit 0 even when some inputs failed (they are still reported)

    def rules(self) -> QualityRules:
        return QualityRules(**{f.name: getattr(self, f.name) for f in dataclasses.fields(QualityRules)})


@dataclass
class ParseSummary:
    out_dir: Path
    outcomes: list[InputOutcome]
    n_holes: int = 0
    n_samples: int = 0
    n_parsed: int = 0  # inputs parsed in this run (the rest came from the cache)
    seconds: float = 0.0
    up_to_date: bool = False
    notes: list[str] = field(default_factory=list)  # warnings about the run itself (a damaged cache)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def figures(self) -> dict[str, int]:
        """The counts of summary.json (a DVC metric): inputs, holes, samples, ok, warning, error."""
        counts = {status: self.count(status) for status in ("ok", "warning", "error")}
        return {"inputs": len(self.outcomes), "holes": self.n_holes, "samples": self.n_samples, **counts}


# --- parsing in worker processes --------------------------------------------------------------


Job = tuple[str, str, str]  # path, source (its printable name), sha256 found when hashing
Batch = tuple[list[Job], Path, QualityRules]  # jobs, cache dir, rules


@dataclass
class BatchResult:
    pack: Path | None  # the cache pack holding what the batch gave
    parsed: dict[str, str]  # path -> sha256 of the bytes parsed (cached under it)
    failed: dict[str, str]  # path -> reason, not cached: a crash, or an input that could not be read


def _parse_batch(batch: Batch) -> BatchResult:
    """Worker: parse a batch of inputs into one cache pack.

    Each input is read once: its bytes are hashed and parsed, and what they gave is cached under
    their own digest, so a file rewritten since it was hashed is stored with the new bytes' hash.
    Crashes are not cached (a fixed parser has another digest anyway), nor inputs that could not
    be read."""
    from uos.dataset.cache import write_pack

    items, cache_dir, rules = batch
    results: dict[str, Any] = {}
    outcome = BatchResult(None, {}, {})
    for path, source, _ in items:
        try:
            sha256, result = _parse_one(Path(path), source, rules)
        except InputError as exc:
            outcome.failed[path] = exc.reason
            continue
        except Exception as exc:
            outcome.failed[path] = f"internal error while parsing ({type(exc).__name__}: {exc}); please report it"
            continue
        outcome.parsed[path] = sha256
        results[sha256] = result
    if results:
        outcome.pack = write_pack(cache_dir, results)
    return outcome


def _parse_one(path: Path, source: str, rules: QualityRules) -> tuple[str, Any]:
    """(sha256 of what was parsed, (hole, issues) or the reason it is not a hole). Raises
    InputError when the input cannot be read or changed while it was read."""
    import pyarrow as pa

    from uos.holes.files import read_regular
    from uos.holes.read import read_bytes, read_source

    if path.is_dir():
        # A capture is several files read one by one: hashed before and after, to be sure.
        before = content_digest(path)
        try:
            hole = read_source(path, source)
            result: Any = (hole, check_hole(hole, rules))
        except InputError as exc:
            result = exc.reason
        if content_digest(path) != before:
            raise InputError("the capture changed while it was read: run uos parse again")
        return before, result
    raw = read_regular(path, source)
    sha256 = hashlib.sha256(raw).hexdigest()
    try:
        hole = read_bytes(raw, source, sha256)
    except InputError as exc:
        return sha256, exc.reason
    finally:
        del raw  # the hole holds what it needs: the bytes go before the checks and the encoding
        # The reader's Arrow buffers are freed but kept by Arrow's allocator: 400 MB after a
        # 300 MB file, held through the cache and dataset writes unless given back here.
        pa.default_memory_pool().release_unused()
    return sha256, (hole, check_hole(hole, rules))


def _batches(jobs: list[Job], workers: int, cache_dir: Path, rules: QualityRules) -> list[Batch]:
    """Largest inputs first, in batches of similar cost, so that no worker is left with a tail of
    big files while the other idles; few enough batches that creating pack files stays cheap."""
    jobs = sorted(jobs, key=lambda job: _size(job[0]), reverse=True)
    target = max(1, min(32, len(jobs) // (workers * 6)))
    return [(jobs[i : i + target], cache_dir, rules) for i in range(0, len(jobs), target)]


def _run_jobs(
    jobs: list[Job],
    workers: int,
    cache: ParseCache,
    rules: QualityRules,
    progress: Callable[[int, int], None] | None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Parse jobs on `workers` processes (0: our share of the cores, `uos.cores`) into the cache; returns, by path, the
    sha256 of what was parsed and the reasons of the inputs that failed without a cache entry."""
    parsed: dict[str, str] = {}
    failed: dict[str, str] = {}
    if not jobs:
        return parsed, failed
    workers, _ = choose_workers(workers, len(jobs))
    batches = _batches(jobs, workers, cache.dir, rules)

    def collect(batch: Batch, result: BatchResult) -> None:
        if result.pack is not None:
            cache.add_pack(result.pack)
        parsed.update(result.parsed)
        failed.update(result.failed)
        if progress:
            progress(len(parsed) + len(failed), len(jobs))

    if workers <= 1 or len(batches) == 1:
        for batch in batches:
            collect(batch, _parse_batch(batch))
        return parsed, failed
    # fork: workers start at once with everything above already imported.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        for batch, result in zip(batches, pool.map(_parse_batch, batches), strict=True):
            collect(batch, result)
    return parsed, failed


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
    out = _out_folder(out_dir)
    cache = _usable_cache(ParseCache(cache_root or default_cache_root(), params.rules()))
    with writing_dataset(out):  # one uos parse at a time per dataset: two would mix their files
        try:
            return _parse_into(out, inputs, params, cache, strict, progress, started)
        except OSError as exc:  # the dataset's folder, not an input: nothing can be written
            raise UosError(f"cannot write the dataset at {printable(str(out))}: {exc.strerror}") from None


def _out_folder(out_dir: str | Path) -> Path:
    out = Path(os.path.abspath(out_dir))  # `.` has no name to put a sibling folder beside
    if out.is_symlink():  # the folder it points to is the dataset to replace, not the link
        out = out.resolve()
    if not out.name:
        raise UosError("--out cannot be the root folder: give a folder for the dataset")
    return out


def _usable_cache(cache: ParseCache) -> ParseCache:
    try:
        cache.dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UosError(
            f"cannot use the parse cache at {printable(str(cache.dir.parent))}: {exc.strerror} "
            "(choose another with --cache or UOS_CACHE_DIR)"
        ) from None
    return cache


def _parse_into(
    out: Path,
    inputs: Iterable[str],
    params: ParseParams,
    cache: ParseCache,
    strict: bool,
    progress: Callable[[int, int], None] | None,
    started: float,
) -> ParseSummary:
    rules = params.rules()
    paths, unreadable = discover(inputs)
    problems = [InputOutcome(p.source, reasons=[p.reason]) for p in unreadable]
    if strict and problems:
        raise UosError(f"{problems[0].source}: {problems[0].reasons[0]}")
    # Import what parsing and writing need while the inputs are hashed (hashing and file reads
    # run outside the GIL); workers forked afterwards inherit the imports for free.
    preload = threading.Thread(target=_preload, daemon=True)
    preload.start()
    sources = _hash_all(paths, problems)
    if (not sources or strict) and problems:
        raise UosError(f"{problems[0].source}: {problems[0].reasons[0]}")
    recover_dataset(out)  # what a crash in an earlier run's last step left

    if _up_to_date(out, _manifest(cache, sources, problems, {})):
        summary = _summary_from_report(out)
        summary.seconds = time.perf_counter() - started
        return summary

    jobs: dict[str, Job] = {}  # by sha256: the same content under two names is parsed once
    for source, path, sha in sources:
        if sha not in jobs and sha not in cache.entries():
            jobs[sha] = (str(path), source, sha)
    preload.join()
    parsed, failed = _run_jobs(list(jobs.values()), params.workers, cache, rules, progress)
    # Stored under the digest of the bytes parsed, which differs when the file changed meanwhile.
    sources = [(source, path, parsed.get(str(path), sha)) for source, path, sha in sources]
    records = {source: failed.get(str(path)) or cache.lookup(sha) or _CHANGED for source, path, sha in sources}

    outcomes, rows = _assemble(sources, records)
    outcomes.extend(problems)
    outcomes.sort(key=lambda o: o.source)
    if strict and (bad := [o for o in outcomes if o.status == "error"]):
        raise UosError(f"{bad[0].source}: {'; '.join(bad[0].reasons)}")

    summary = ParseSummary(out, outcomes, n_holes=len(rows), n_parsed=len(jobs), notes=cache.notes)
    retry = {source for source, path, _ in sources if str(path) in failed or records[source] is _CHANGED}
    manifest = _manifest(cache, sources, problems, retry)
    summary.n_samples = _write_dataset(out, cache, rows, summary, manifest)
    summary.seconds = time.perf_counter() - started
    return summary


# An input whose bytes are in no cache entry: it (or a file with the same bytes, parsed in its
# place) changed between hashing and parsing.
_CHANGED = "changed while uos parse read it: run uos parse again"


def _hash_all(paths: list[Path], problems: list[InputOutcome]) -> list[tuple[str, Path, str]]:
    """(source, path, sha256) of every input that can be read; a reason in `problems` for the
    others (gone since they were found, or no longer a regular file)."""
    cwd = os.getcwd()
    sources = []
    for path in paths:
        source = display_name(path, cwd)
        try:
            sources.append((source, path, content_digest(path)))
        except InputError as exc:
            problems.append(InputOutcome(source, reasons=[exc.reason]))
    return sources


def _manifest(
    cache: ParseCache, sources: list[tuple[str, Path, str]], problems: list[InputOutcome], retry: set[str]
) -> dict[str, Any]:
    """What the dataset is built from. Inputs in `retry` failed without a cache entry (unreadable
    for a moment, a crash): they have no digest, so that the next run tries them again."""
    return {
        "parser": cache.dir.name,
        "inputs": [[source, None if source in retry else sha] for source, _, sha in sources],
        "problems": [[p.source, p.reasons] for p in problems],
    }


def _write_dataset(
    out: Path, cache: ParseCache, rows: list[dict[str, Any]], summary: ParseSummary, manifest: dict[str, Any]
) -> int:
    """Write the whole dataset beside `out`, then put it in place with renames: a crash at any
    point leaves the old dataset or the new one. Returns the sample count."""
    staging = staging_dir(out)
    signals = cache.signals([row["sha256"] for row in rows])
    holes = [(row["meta"]["hole_id"], signals.pop(row["sha256"])) for row in rows]
    summary.n_samples = write_signals(staging / SIGNALS_DIR, holes)
    del holes, signals  # views of the cache packs: released before the rest is written
    write_holes(staging / HOLES_FILE, rows)
    write_report(staging / REPORT_FILE, summary.outcomes)
    write_json(staging / SUMMARY_FILE, summary.figures())
    write_json(staging / MANIFEST_FILE, manifest)
    replace_dataset(out, staging)
    return summary.n_samples


def _assemble(
    sources: list[tuple[str, Path, str]], records: dict[str, Any]
) -> tuple[list[InputOutcome], list[dict[str, Any]]]:
    """Cross-hole checks (duplicates, id collisions) and the dataset rows, in source order."""
    outcomes, rows = _distinct_rows(sources, records)
    _rename_shared_ids(rows)
    outcomes.extend(_checked_outcome(row) for row in rows)
    return outcomes, rows


def _distinct_rows(
    sources: list[tuple[str, Path, str]], records: dict[str, Any]
) -> tuple[list[InputOutcome], list[dict[str, Any]]]:
    """A row for each input whose bytes no earlier input had, in source order, and the outcome of
    each input that gives no row (not parsed, or a byte-for-byte duplicate). Rows whose signals an
    earlier row has (a re-export: other bytes, the same recording) get a warning, and stay."""
    outcomes: list[InputOutcome] = []
    rows: list[dict[str, Any]] = []
    first_by_sha: dict[str, str] = {}
    first_by_signals: dict[str, str] = {}
    for source, _, sha in sources:
        record = records.get(source)
        if record is None or isinstance(record, str):
            outcomes.append(InputOutcome(source, sha, reasons=[record or "could not be parsed"]))
            continue
        meta = dict(record["meta"], source=source)
        issues = list(record["issues"])
        if sha in first_by_sha:
            reason = f"duplicate of {first_by_sha[sha]} (same bytes): not added again"
            outcomes.append(InputOutcome(source, sha, meta["hole_id"], "warning", [reason]))
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
    return outcomes, rows


def _rename_shared_ids(rows: list[dict[str, Any]]) -> None:
    """A hole id claimed by several rows becomes `id~<first 8 of sha256>` in each, with a warning:
    ids stay unique in the dataset, and none of the claimants is silently preferred."""
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


def _checked_outcome(row: dict[str, Any]) -> InputOutcome:
    """The row's last check and its status (both set on the row), as the input's outcome."""
    # The file name belongs to the input, not to the cached content: checked here.
    if mismatch := counters_vs_name(row["meta"]):
        row["issues"].append(Issue("warning", mismatch))
    row["status"] = status_of(row["issues"])
    return InputOutcome(
        row["meta"]["source"],
        row["sha256"],
        row["meta"]["hole_id"],
        row["status"],
        [i.reason for i in row["issues"]],
    )


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
