"""`truth.csv`, the exact keypoints of synthetic holes: written by `uos synth`, read wherever
accuracy is measured against it (`uos label --truth`, `uos train --truth`, the benchmarks)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from uos.outputs import write_atomic

TRUTH_FILE = "truth.csv"
TRUTH_COLUMNS = [
    "file",
    "hole_id",
    "unit",
    "program",
    "kind",
    "entry_mm",
    "transition_mm",
    "exit_mm",
    "thickness_mm",
    "top_material",
    "top_thickness_mm",
    "bottom_material",
    "bottom_thickness_mm",
    "tool_age",
    "pecking",
    "max_depth_mm",
]


def write_truth(path: Path, rows: list[dict[str, Any]]) -> None:
    with write_atomic(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TRUTH_COLUMNS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: r["file"]):
            writer.writerow({k: "" if row[k] is None else row[k] for k in TRUTH_COLUMNS})


def read_truth(path: str | Path, by_hole: bool = False):
    """The ground-truth table as a DataFrame (empty cells as NaN), indexed by hole id when `by_hole`."""
    import pandas as pd

    truth = pd.read_csv(path, dtype={"file": str, "hole_id": str})
    return truth.set_index("hole_id") if by_hole else truth
