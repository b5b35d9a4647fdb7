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

import getpass
import hashlib
import json
import math
import os
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from uos.errors import InputError, UosError
from uos.labels import KEYPOINTS
from uos.outputs import write_atomic

TOLERANCE_MM = 0.001  # saved depths are rounded to a micrometre


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
            raise InputError("not an annotation (no hole_id)")
        points = {}
        for name in KEYPOINTS:
            if f"{name}_mm" in data:
                value = data[f"{name}_mm"]
                if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                    raise InputError(f"{name}_mm must be a number or null")
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


def impossible(
    points: dict[str, float | None], low_mm: float, high_mm: float, automatic: Collection[str] = ()
) -> str | None:
    """Why these keypoints cannot be those of a hole recorded from `low_mm` to `high_mm` deep, or
    None: each one inside the recording, and entry <= transition <= exit among those present. The
    names in `automatic` are called so in the reason."""
    present = [(name, points[name]) for name in KEYPOINTS if points.get(name) is not None]
    called = {name: f"automatic {name}" if name in automatic else name for name in KEYPOINTS}
    for name, depth in present:
        if not math.isfinite(depth):
            return f"{called[name]} {depth} mm is not a depth"
        if not low_mm - TOLERANCE_MM <= depth <= high_mm + TOLERANCE_MM:
            return f"{called[name]} {depth:.2f} mm is outside the recording ({low_mm:.2f} to {high_mm:.2f} mm)"
    for (first, a), (second, b) in pairwise(present):
        if a > b:
            return f"{called[first]} {a:.2f} mm is deeper than {called[second]} {b:.2f} mm"
    return None


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-")
NAME_MAX = 255  # bytes in a file name, on the usual file systems
MAX_STEM = 200  # room left for ".json" and the temporary name beside it


def file_name(hole_id: str) -> str:
    """The file of one hole's annotation: the id, with every other byte escaped as %XX (so two ids
    never share a file, and a leading dot cannot hide it); a long id keeps a readable prefix and
    a hash after a `+` (escaped everywhere else). The full id is inside the file and wins on load."""
    stem = "".join(c if c in _SAFE else _escape(c) for c in hole_id) or "+"
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if len(stem) > MAX_STEM:
        digest = hashlib.sha256(hole_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        stem = f"{stem[: MAX_STEM - 50]}+{digest}"
    return stem + ".json"


def _escape(character: str) -> str:
    return "".join(f"%{byte:02X}" for byte in character.encode("utf-8", "surrogatepass"))


def _legacy_file_name(hole_id: str) -> str:
    """The name before escaping: unsafe runs became `_`, a leading dot stayed (and hid the file)."""
    return re.sub(r"[^A-Za-z0-9._~-]+", "_", hole_id) + ".json"


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def default_annotator() -> str:
    """$UOS_ANNOTATOR, else the login name."""
    if name := os.environ.get("UOS_ANNOTATOR"):
        return name
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container user with no passwd entry)
        return "annotator"


def save(directory: Path, annotation: Annotation) -> Path:
    """Write (or, when it holds nothing any more, remove) one hole's annotation, atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(annotation.hole_id)
    if annotation.empty:
        path.unlink(missing_ok=True)
    else:
        with write_atomic(path, durable=True) as tmp:
            tmp.write_text(annotation.to_json())
    _drop_legacy(directory, annotation.hole_id, path)
    return path


def _drop_legacy(directory: Path, hole_id: str, path: Path) -> None:
    """Remove this hole's file under its name from before escaping, once the new one holds its
    annotation (or none is left): else it would come back on the next load. Another id can own
    that name (`a/b` and `a_b` shared one), so only a file holding this very id goes."""
    legacy = directory / _legacy_file_name(hole_id)
    if legacy == path or len(legacy.name) > NAME_MAX or not legacy.is_file():
        return
    try:
        if Annotation.from_json(legacy.read_text()).hole_id == hole_id:
            legacy.unlink()
    except (OSError, ValueError, InputError):
        pass  # not a readable annotation of this hole: not ours to remove


def iter_files(directory: Path) -> Iterator[Path]:
    """Every annotation file, dot files included: the names before escaping (ids starting with a
    dot) are still read back."""
    if directory.is_dir():
        yield from sorted(p for p in directory.glob("*.json") if p.is_file())


def load(directory: str | Path, problems: list[str] | None = None) -> dict[str, Annotation]:
    """Every annotation in `directory`, by hole id. Unreadable files are reported in `problems`
    (or raise when `problems` is None) and skipped. The id comes from inside the file; where two
    files hold one id, the one under the current name wins."""
    annotations: dict[str, Annotation] = {}
    for path in iter_files(Path(directory)):
        try:
            annotation = Annotation.from_json(path.read_text())
        except (OSError, ValueError, InputError) as exc:
            message = f"{path}: not a valid annotation ({exc})"
            if problems is None:
                raise UosError(message) from None
            problems.append(message)
            continue
        if annotation.hole_id in annotations and path.name != file_name(annotation.hole_id):
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
