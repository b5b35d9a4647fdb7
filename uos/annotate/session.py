"""The state of an annotation session, with no user interface: the queue of holes, the cursor,
the zoom, the keypoints, undo and redo, and saving every change at once.

`uos annotate` (app.py) is a thin Textual layer over this; tests drive it directly too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from uos.holes.record import Hole
from uos.labels import annotations as human
from uos.labels.detect import KEYPOINTS

FILTERS = ("review", "all", "rejected")


@dataclass(frozen=True)
class Point:
    """One keypoint as shown: where it is (None: absent), and whose call it is."""

    depth_mm: float | None
    human: bool
    source: str  # human | event | signal | none
    confidence: float


@dataclass
class _Change:
    hole_id: str
    before: human.Annotation | None
    after: human.Annotation | None


@dataclass
class AnnotationSession:
    holes: dict[str, Hole]
    labels: dict[str, dict[str, Any]]  # hole id -> labels row (automatic keypoints)
    directory: Path  # data/annotations
    annotator: str = field(default_factory=human.default_annotator)
    clock: Callable[[], float] = time.monotonic
    state_file: Path | None = None
    filter: str = "review"
    queue: list[str] = field(default_factory=list)
    position: int = 0
    cursor_mm: float = 0.0
    view: tuple[float, float] = (0.0, 1.0)
    notes: dict[str, human.Annotation] = field(default_factory=dict)
    undo_stack: list[_Change] = field(default_factory=list)
    redo_stack: list[_Change] = field(default_factory=list)
    annotated: set[str] = field(default_factory=set)  # holes changed in this session
    started: float = 0.0
    message: str = ""
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # hole id -> the model's answer (status, reasons)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.notes = {k: v for k, v in human.load(self.directory, problems=[]).items() if k in self.holes}
        saved = self._read_state()
        self.set_filter(saved.get("filter", self.filter), remember=False)
        if saved.get("hole_id") in self.queue:
            self.go_to(self.queue.index(saved["hole_id"]))

    # --- the queue --------------------------------------------------------------------------

    def _confidence(self, hole_id: str) -> float:
        row = self.labels.get(hole_id)
        return float(row["min_confidence"]) if row is not None and row.get("min_confidence") is not None else 0.0

    def review_reasons(self, hole_id: str | None) -> str | None:
        """Why the model's answer for this hole is `review` (None: it is not, or there is none)."""
        answer = self.answers.get(hole_id) if hole_id else None
        if not answer or answer.get("status") != "review":
            return None
        return str(answer.get("review_reasons") or "the model is not sure")

    def set_filter(self, name: str, remember: bool = True) -> None:
        """review: holes nobody has annotated yet; all; rejected; head:TEXT or folder:TEXT.

        Human effort goes where the model is unsure: holes whose answer is `review` come first,
        then the rest, each lowest label confidence first."""
        ids = sorted(self.holes, key=lambda h: (self.review_reasons(h) is None, self._confidence(h), h))
        if name == "review":
            ids = [h for h in ids if h not in self.notes]
        elif name == "rejected":
            ids = [h for h in ids if h in self.notes and self.notes[h].rejected is not None]
        elif name.startswith("head:"):
            ids = [h for h in ids if name[5:] in str(self.holes[h].meta.get("head_id"))]
        elif name.startswith("folder:"):
            ids = [h for h in ids if name[7:] in str(self.holes[h].meta.get("source"))]
        elif name != "all":
            raise ValueError(f"unknown filter {name!r}")
        self.filter = name
        self.queue = ids
        self.go_to(0, remember=remember)

    def cycle_filter(self) -> None:
        current = self.filter if self.filter in FILTERS else FILTERS[-1]
        self.set_filter(FILTERS[(FILTERS.index(current) + 1) % len(FILTERS)])

    @property
    def hole_id(self) -> str | None:
        return self.queue[self.position] if self.queue else None

    @property
    def hole(self) -> Hole | None:
        return self.holes[self.hole_id] if self.hole_id else None

    def go_to(self, position: int, remember: bool = True) -> None:
        self.position = int(np.clip(position, 0, max(len(self.queue) - 1, 0)))
        hole = self.hole
        if hole is not None:
            depth = hole.signals["depth_mm"]
            self.view = (float(np.min(depth)), float(np.max(depth)))
            present = [p for p in self.points().values() if p.depth_mm is not None]
            weakest = min(present, key=lambda p: p.confidence) if present else None
            self.cursor_mm = weakest.depth_mm if weakest else float(np.mean(self.view))
        if remember:
            self._write_state()

    def next(self) -> None:
        self.go_to(self.position + 1)

    def previous(self) -> None:
        self.go_to(self.position - 1)

    def progress(self) -> tuple[int, int, float]:
        """(holes of the queue annotated, holes in the queue, holes annotated per minute)."""
        done = sum(1 for h in self.queue if h in self.notes)
        minutes = max((self.clock() - self.started) / 60.0, 1e-9)
        return done, len(self.queue), len(self.annotated) / minutes

    # --- the keypoints ----------------------------------------------------------------------

    def points(self) -> dict[str, Point]:
        """The current hole's keypoints: the annotator's calls where made, else the automatic."""
        hole_id = self.hole_id
        note = self.notes.get(hole_id) if hole_id else None
        row = self.labels.get(hole_id, {}) if hole_id else {}
        points = {}
        for name in KEYPOINTS:
            if note is not None and name in note.points:
                points[name] = Point(note.points[name], True, "human", 1.0)
            else:
                value = row.get(f"{name}_mm")
                automatic = None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)
                source = row.get(f"{name}_source") or "none"
                # A label from an earlier annotation that is no longer there is automatic again.
                points[name] = Point(automatic, False, source if source != "human" else "signal",
                                     float(row.get(f"{name}_confidence") or 0.0))  # fmt: skip
        return points

    def _change(self, update: Callable[[human.Annotation], None], what: str) -> None:
        hole_id = self.hole_id
        if hole_id is None:
            return
        before = self.notes.get(hole_id)
        after = replace(before, points=dict(before.points)) if before else human.Annotation(hole_id)
        update(after)
        after.signals_hash = self.holes[hole_id].meta.get("signals_hash")
        after.annotator = self.annotator
        after.time = human.now()
        self._store(hole_id, after)
        self.undo_stack.append(_Change(hole_id, before, after))
        self.redo_stack.clear()
        self.annotated.add(hole_id)
        self.message = what

    def _store(self, hole_id: str, annotation: human.Annotation | None) -> None:
        if annotation is None or annotation.empty:
            self.notes.pop(hole_id, None)
            human.save(self.directory, annotation or human.Annotation(hole_id))
        else:
            self.notes[hole_id] = annotation
            human.save(self.directory, annotation)

    def set_point(self, name: str) -> None:
        depth = round(self.cursor_mm, 3)
        self._change(lambda a: a.points.__setitem__(name, depth), f"{name} set at {depth:.2f} mm")

    def clear_point(self, name: str) -> None:
        self._change(lambda a: a.points.__setitem__(name, None), f"{name} marked absent")

    def accept(self) -> None:
        """The automatic keypoints are right: record them as the annotator's."""
        current = self.points()
        self._change(
            lambda a: a.points.update({k: p.depth_mm for k, p in current.items()}), "automatic labels accepted"
        )

    def reject(self, reason: str) -> None:
        self._change(lambda a: setattr(a, "rejected", reason or "rejected"), f"rejected: {reason}")

    def unreject(self) -> None:
        self._change(lambda a: setattr(a, "rejected", None), "no longer rejected")

    def undo(self) -> None:
        if not self.undo_stack:
            self.message = "nothing to undo"
            return
        change = self.undo_stack.pop()
        self._store(change.hole_id, change.before)
        self.redo_stack.append(change)
        self._show(change.hole_id)
        self.message = "undone"

    def redo(self) -> None:
        if not self.redo_stack:
            self.message = "nothing to redo"
            return
        change = self.redo_stack.pop()
        self._store(change.hole_id, change.after)
        self.undo_stack.append(change)
        self._show(change.hole_id)
        self.message = "redone"

    def _show(self, hole_id: str) -> None:
        if hole_id != self.hole_id and hole_id in self.queue:
            self.go_to(self.queue.index(hole_id))

    # --- cursor and zoom --------------------------------------------------------------------

    def move(self, fraction: float) -> None:
        """Move the cursor by `fraction` of the visible width; the view follows the cursor."""
        lo, hi = self.view
        hole = self.hole
        if hole is None:
            return
        depth = hole.signals["depth_mm"]
        self.cursor_mm = float(np.clip(self.cursor_mm + fraction * (hi - lo), np.min(depth), np.max(depth)))
        if not lo <= self.cursor_mm <= hi:
            width = hi - lo
            lo = min(max(self.cursor_mm - width / 2, float(np.min(depth))), float(np.max(depth)) - width)
            self.view = (lo, lo + width)

    def jump(self, direction: int) -> None:
        """To the next (+1) or previous (-1) keypoint from the cursor."""
        depths = sorted(p.depth_mm for p in self.points().values() if p.depth_mm is not None)
        ahead = [d for d in depths if (d - self.cursor_mm) * direction > 1e-6]
        if ahead:
            self.cursor_mm = ahead[0] if direction > 0 else ahead[-1]
            self._keep_cursor_in_view()

    def zoom(self, factor: float) -> None:
        """Zoom around the cursor: factor < 1 in, > 1 out."""
        hole = self.hole
        if hole is None:
            return
        depth = hole.signals["depth_mm"]
        full = (float(np.min(depth)), float(np.max(depth)))
        width = float(np.clip((self.view[1] - self.view[0]) * factor, 0.2, full[1] - full[0]))
        lo = float(np.clip(self.cursor_mm - width / 2, full[0], full[1] - width))
        self.view = (lo, lo + width)

    def reset_zoom(self) -> None:
        hole = self.hole
        if hole is not None:
            depth = hole.signals["depth_mm"]
            self.view = (float(np.min(depth)), float(np.max(depth)))

    def set_cursor(self, depth_mm: float) -> None:
        self.cursor_mm = float(np.clip(depth_mm, *self.view))

    def _keep_cursor_in_view(self) -> None:
        lo, hi = self.view
        if not lo <= self.cursor_mm <= hi:
            width = hi - lo
            self.view = (self.cursor_mm - width / 2, self.cursor_mm + width / 2)
            self.zoom(1.0)

    # --- resuming ---------------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self) -> None:
        if self.state_file is None:
            return
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_name(self.state_file.name + ".tmp")
            tmp.write_text(json.dumps({"filter": self.filter, "hole_id": self.hole_id}))
            tmp.replace(self.state_file)
        except OSError:
            pass  # resuming is a convenience; never fail an annotation over it


def open_session(
    parsed_dir: Path,
    labels_dir: Path,
    annotations_dir: Path,
    annotator: str | None = None,
    state_file: Path | None = None,
    filter: str | None = None,
    answers_file: Path | None = None,
) -> AnnotationSession:
    """Load the holes (signals in memory, so that the next hole shows at once), their labels and,
    when `answers_file` exists (the model's out-of-fold answers, build/model/plots/out_of_fold.csv),
    the status of the model's answer for each."""
    from uos.dataset.layout import load_holes
    from uos.labels.label import read_labels

    holes = {h.hole_id: h for h in load_holes(parsed_dir, ["depth_mm", "torque_a", "thrust_a", "step"]) if h.signals}
    labels = {row["hole_id"]: row for row in read_labels(labels_dir).to_dict("records")}
    answers = {}
    if answers_file is not None and Path(answers_file).exists():
        import pandas as pd

        table = pd.read_csv(answers_file, dtype={"hole_id": str}, usecols=["hole_id", "status", "review_reasons"])
        answers = {row["hole_id"]: row for row in table.fillna("").to_dict("records")}
    session = AnnotationSession(
        holes,
        labels,
        Path(annotations_dir),
        annotator or human.default_annotator(),
        state_file=state_file,
        answers=answers,
    )
    if filter is not None:
        session.set_filter(filter)
    return session
