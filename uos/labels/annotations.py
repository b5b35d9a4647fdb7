"""Human annotations: one small JSON file per hole under data/annotations/.

One file per hole diffs well, merges trivially (two annotators on different holes touch different
files) and is replaced atomically on every change (written aside, flushed, renamed), so killing
the annotation tool at any moment leaves every file whole. A keypoint the annotator decided is
present: a depth in mm, or null when it does not exist; a keypoint left to the automatic label is
absent. `rejected` holds the reason a hole is unusable, or null.

    {
      "hole_id": "E00401009F45C395-1874",
      "signals_hash": "9f3c...",
      "entry_mm": 5.31,
      "transition_mm": 10.31,
      "exit_mm": null,
      "rejected": null,
      "annotator": "alice",
      "time": "2026-11-27T10:04:12+00:00"
    }
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from uos.errors import UosError

KEYPOINTS = ("entry", "transition", "exit")


@dataclass
class Annotation:
    hole_id: str
    signals_hash: str | None = None
    points: dict[str, float | None] = field(default_factory=dict)  # decided keypoints only
    rejected: str | None = None
    annotator: str = ""
    time: str = ""

    def to_json(self) -> str:
        data: dict[str, Any] = {"hole_id": self.hole_id, "signals_hash": self.signals_hash}
        for name in KEYPOINTS:
            if name in self.points:
                value = self.points[name]
                data[f"{name}_mm"] = None if value is None else round(float(value), 3)
        data.update(rejected=self.rejected, annotator=self.annotator, time=self.time)
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Annotation:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("hole_id"), str):
            raise ValueError("not an annotation (no hole_id)")
        points = {}
        for name in KEYPOINTS:
            if f"{name}_mm" in data:
                value = data[f"{name}_mm"]
                if value is not None and not isinstance(value, int | float):
                    raise ValueError(f"{name}_mm must be a number or null")
                points[name] = None if value is None else float(value)
        return cls(
            hole_id=data["hole_id"],
            signals_hash=data.get("signals_hash"),
            points=points,
            rejected=data.get("rejected"),
            annotator=str(data.get("annotator") or ""),
            time=str(data.get("time") or ""),
        )

    @property
    def empty(self) -> bool:
        return not self.points and self.rejected is None


def file_name(hole_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._~-]+", "_", hole_id) + ".json"


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def default_annotator() -> str:
    return os.environ.get("UOS_ANNOTATOR") or os.environ.get("USER") or "annotator"


def save(directory: Path, annotation: Annotation) -> Path:
    """Write (or, when it holds nothing any more, remove) one hole's annotation, atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(annotation.hole_id)
    if annotation.empty:
        path.unlink(missing_ok=True)
        return path
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    with tmp.open("w") as handle:
        handle.write(annotation.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass
    return path


def iter_files(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))


def load(directory: str | Path, problems: list[str] | None = None) -> dict[str, Annotation]:
    """Every annotation in `directory`, by hole id. Unreadable files are reported in `problems`
    (or raise when `problems` is None) and skipped."""
    annotations: dict[str, Annotation] = {}
    for path in iter_files(Path(directory)):
        try:
            annotation = Annotation.from_json(path.read_text())
        except (OSError, ValueError) as exc:
            message = f"{path}: not a valid annotation ({exc})"
            if problems is None:
                raise UosError(message) from None
            problems.append(message)
            continue
        annotations[annotation.hole_id] = annotation
    return annotations


README = """# Human annotations

One JSON file per hole, written by `uos annotate` (see uos/labels/annotations.py for the format).
They always win over the automatic labels when `uos label` runs (`dvc repro`). Versioned with the
rest of data/ by DVC (`dvc add data`, or `just annotate`, which does it for you).
"""


def ensure_folder(directory: str | Path) -> None:
    """Create the annotations folder with its README (DVC versions files, not empty folders, and
    the label stage depends on the folder)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    readme = directory / "README.md"
    if not readme.exists():
        readme.write_text(README)
