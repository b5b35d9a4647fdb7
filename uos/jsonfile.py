"""JSON files the stages write: the figures DVC reads (`dvc metrics`, `dvc exp show`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: str | Path, data: Any) -> None:
    """Write `data` as indented JSON, whole or not at all (a reader never sees half a file);
    the folder is made when missing (a stage's metrics may go outside its --out)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
