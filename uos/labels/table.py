"""The labels table (`labels.parquet`): one row per hole, what `uos label` writes and the
stages after it read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uos.errors import UosError
from uos.outputs import write_atomic

LABELS_FILE = "labels.parquet"


def write_labels(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows).sort_values("hole_id")
    with write_atomic(path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_labels(directory: str | Path):
    """The labels table as a DataFrame."""
    import pandas as pd

    path = Path(directory) / LABELS_FILE
    if not path.exists():
        raise UosError(f"{path} not found: run `uos label` first (or `dvc repro`)")
    return pd.read_parquet(path)
