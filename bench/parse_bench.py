"""Benchmark `uos parse` over the real files, cold and warm, against a bare pandas read.

In one run, repeated and interleaved so that a noisy shared machine affects all alike:
- baseline: a fresh Python process that imports pandas and `pandas.read_csv`s every file's
  signal table (the floor for reading this data: no metadata, no checks, nothing written);
- cold: `uos parse` in a fresh process with an empty cache and no previous output;
- warm: `uos parse` again with nothing changed (the no-op a re-run should be).
Prints the medians, their ratios and the parser's peak memory (the sum over its processes).

    python bench/parse_bench.py [--repeat 5] [--data ../shared/setitec]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BARE_READ = r"""
import glob, io, sys, time
import pandas as pd
started = time.perf_counter()
rows = 0
for path in sorted(glob.glob(sys.argv[1] + "/**/*.xls", recursive=True)):
    raw = open(path, "rb").read()
    start = raw.find(b"Position (mm)")
    header_end = raw.find(b"\n", start)
    sep = ";" if b";" in raw[start:header_end] else "\t"
    first = raw[header_end + 1 : raw.find(b"\n", header_end + 1)]
    decimal = "," if b"," in first else "."
    rows += len(pd.read_csv(io.BytesIO(raw[start:]), sep=sep, decimal=decimal, index_col=False, encoding="latin-1"))
print(rows, time.perf_counter() - started)
"""


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants (from /proc), in kB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            with open(f"/proc/{current}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Wall time, peak resident memory of the process tree (kB), stdout."""
    peak = 0
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kb(process.pid))
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = process.communicate()
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{err}")
    return elapsed, peak, out


@dataclass
class Runs:
    """What the interleaved runs measured: seconds per kind of run (with `_inner`: as the process
    itself timed it, without interpreter start and imports), the cold parses' peak memory (kB)
    and the sample count the bare read found (None before any run)."""

    times: dict[str, list[float]] = field(
        default_factory=lambda: {"baseline": [], "cold": [], "warm": [], "baseline_inner": [], "cold_inner": []}
    )
    peaks: list[int] = field(default_factory=list)
    rows: str | None = None


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "setitec")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args()


def _run_all(data: Path, repeat: int) -> Runs:
    """`repeat` times: the bare read, a cold parse, a warm one; each with its own cache and output."""
    uos = [sys.executable, "-m", "uos", "parse", str(data)]
    runs = Runs()
    times = runs.times
    with tempfile.TemporaryDirectory(prefix="uos-bench-") as scratch:
        for i in range(repeat):
            env = dict(os.environ, UOS_CACHE_DIR=f"{scratch}/cache-{i}")
            out = f"{scratch}/out-{i}"
            elapsed, _, printed = timed([sys.executable, "-c", BARE_READ, str(data)], env)
            runs.rows, inner = printed.split()
            times["baseline"].append(elapsed)
            times["baseline_inner"].append(float(inner))
            elapsed, peak, printed = timed([*uos, "--out", out, "--json"], env)
            times["cold"].append(elapsed)
            times["cold_inner"].append(json.loads(printed)["seconds"])
            runs.peaks.append(peak)
            elapsed, _, _ = timed([*uos, "--out", out], env)
            times["warm"].append(elapsed)
            shutil.rmtree(out, ignore_errors=True)
            print(
                f"run {i + 1}/{repeat}: baseline {times['baseline'][-1]:.2f} s, cold {times['cold'][-1]:.2f} s, "
                f"warm {times['warm'][-1]:.2f} s, peak {peak / 1024:.0f} MB",
                file=sys.stderr,
            )
    return runs


def _figures(data: Path, repeat: int, runs: Runs) -> dict:
    """The medians over runs, their ratios and the highest peak memory."""
    median = {k: statistics.median(v) for k, v in runs.times.items()}
    return {
        "files": sum(1 for _ in data.rglob("*.xls")),
        "samples": int(runs.rows),
        "baseline_s": round(median["baseline"], 3),
        "cold_s": round(median["cold"], 3),
        "warm_s": round(median["warm"], 3),
        "cold_over_baseline": round(median["cold"] / median["baseline"], 2),
        "baseline_inner_s": round(median["baseline_inner"], 3),
        "cold_inner_s": round(median["cold_inner"], 3),
        "cold_over_baseline_inner": round(median["cold_inner"] / median["baseline_inner"], 2),
        "peak_rss_mb": round(max(runs.peaks) / 1024),
        "repeat": repeat,
        "cores": os.cpu_count(),
    }


def _print_figures(figures: dict, repeat: int) -> None:
    print(
        f"uos parse over {figures['files']} files ({figures['samples']:,} samples) on {figures['cores']} cores, "
        f"medians of {repeat} interleaved runs, each a fresh process:"
    )
    print(f"  bare pandas.read_csv of the signal tables   {figures['baseline_s']:.2f} s")
    print(
        f"  uos parse, cold (empty cache, no output)   {figures['cold_s']:.2f} s"
        f"   = {figures['cold_over_baseline']:.2f} x baseline (target <= 1.5)"
    )
    print(f"  uos parse, warm (nothing changed)          {figures['warm_s']:.2f} s   (target <= 1 s)")
    print(
        f"  without interpreter start and imports: read loop {figures['baseline_inner_s']:.2f} s, "
        f"parse_dataset {figures['cold_inner_s']:.2f} s = {figures['cold_over_baseline_inner']:.2f} x"
    )
    print(f"  peak resident memory of uos parse          {figures['peak_rss_mb']} MB (all processes; target <= 1024)")


def main() -> None:
    args = _parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"no data at {args.data}")
    runs = _run_all(args.data, args.repeat)
    figures = _figures(args.data, args.repeat, runs)
    _print_figures(figures, args.repeat)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
