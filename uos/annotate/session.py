"""The state of an annotation session, with no user interface: the queue of holes, the cursor,
the zoom, the keypoints, undo and redo, and saving every change at once.

`uos annotate` (app.py) is a thin Textual layer over this; tests drive it directly too.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from uos.annotate.tracking import SessionStats
from uos.errors import ConfigError, UosError, gist
from uos.holes.quality import in_physical_range
from uos.holes.record import Hole
from uos.labels import KEYPOINTS
from uos.labels import annotations as human
from uos.outputs import write_atomic

FILTERS = ("review", "all", "rejected")
FINISHED = ("done", "rejected")  # a hole in either state needs nobody any more
MIN_VIEW_MM = 0.2  # the narrowest view: zooming stops there


@dataclass(frozen=True)
class Point:
    """One keypoint as shown: where it is (None: absent), and whose call it is."""

    depth_mm: float | None
    human: bool
    source: str  # human | event | signal | none
    confidence: float
    reason: str = ""  # why it is there (labels.parquet's reason, or who set it)
    stale: bool = False  # the annotator's call, made on signals that have changed since


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
    opening_notes: dict[str, human.Annotation] = field(default_factory=dict)  # as they were on opening
    started: float = 0.0
    message: str = ""
    refused: str | None = None  # why the last change was refused, until the next one or a move
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # hole id -> the model's answer (status, reasons)

    def __post_init__(self) -> None:
        self.started = self.clock()
        problems: list[str] = []
        self.notes = {k: v for k, v in human.load(self.directory, problems).items() if k in self.holes}
        self.opening_notes = dict(self.notes)  # (a change replaces an annotation, never edits it)
        if problems:
            self.message = f"{len(problems)} unreadable annotation file(s) skipped (uos label names them)"
        saved = self._read_state()
        filter_ = saved.get("filter")
        self.set_filter(filter_ if valid_filter(filter_) else self.filter, remember=False)
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
        """review: holes not done yet; all; rejected; head:TEXT (name or RFID) or folder:TEXT.

        Human effort goes where the model is unsure: holes whose answer is `review` come first,
        then the rest, each lowest label confidence first."""
        ids = sorted(self.holes, key=lambda h: (self.review_reasons(h) is None, self._confidence(h), h))
        if name == "review":
            ids = [h for h in ids if self.status(h) not in FINISHED]
        elif name == "rejected":
            ids = [h for h in ids if h in self.notes and self.notes[h].rejected is not None]
        elif name.startswith("head:"):  # the name on screen or the RFID tag
            ids = [h for h in ids if any(name[5:] in str(self.holes[h].meta.get(k)) for k in ("head_name", "head_id"))]
        elif name.startswith("folder:"):
            ids = [h for h in ids if name[7:] in str(self.holes[h].meta.get("source"))]
        elif name != "all":
            raise ConfigError(f"unknown filter {name!r}: review, all, rejected, head:TEXT or folder:TEXT")
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
        self.refused = None
        hole = self.hole
        if hole is not None:
            self.view = extent(hole)
            present = [p for p in self.points().values() if p.depth_mm is not None]
            weakest = min(present, key=lambda p: p.confidence) if present else None
            self.cursor_mm = weakest.depth_mm if weakest else float(np.mean(self.view))
        if remember:
            self._write_state()

    def next(self) -> None:
        self.go_to(self.position + 1)

    def previous(self) -> None:
        self.go_to(self.position - 1)

    def status(self, hole_id: str) -> str:
        """new (nothing decided), partial (some keypoints decided), done (all three decided or
        accepted), rejected, or stale (annotated on signals that have changed since: `uos label`
        does not use it, so it needs doing again)."""
        note = self.notes.get(hole_id)
        if note is None:
            return "new"
        if self._is_stale(hole_id, note):
            return "stale"
        if note.rejected is not None:
            return "rejected"
        return "done" if all(name in note.points for name in KEYPOINTS) else "partial"

    def _is_stale(self, hole_id: str, note: human.Annotation) -> bool:
        """The same test as `uos label`, which sets such an annotation aside."""
        current = self.holes[hole_id].meta.get("signals_hash")
        return bool(note.signals_hash and current and note.signals_hash != current)

    def _fresh(self, hole_id: str, note: human.Annotation | None) -> human.Annotation | None:
        """The annotation `uos label` would use: None for a stale one (the automatic labels stand)."""
        return note if note is not None and not self._is_stale(hole_id, note) else None

    def progress(self) -> tuple[int, int, float]:
        """(holes of the queue done or rejected, holes in the queue, holes annotated per minute)."""
        done = sum(1 for h in self.queue if self.status(h) in FINISHED)
        minutes = max((self.clock() - self.started) / 60.0, 1e-9)
        return done, len(self.queue), len(self.annotated) / minutes

    def stats(self) -> SessionStats:
        """What this session did to each hole it touched, against what the hole showed when the
        session opened: rejected; changed (a keypoint moved, marked absent, or set where there was
        none); else accepted as shown. A hole whose changes were all undone is left out."""
        changed = accepted = rejected = 0
        shifts: list[float] = []
        for hole_id in sorted(self.annotated):
            before, after = self.opening_notes.get(hole_id), self.notes.get(hole_id)
            if after == before:
                continue
            if after is not None and after.rejected is not None:
                rejected += 1  # (its keypoints are used by nobody: their shifts do not count)
                continue
            shown = self._points(hole_id, self._fresh(hole_id, before))
            differs, moved = _differences(shown, self._points(hole_id, after))
            if differs:
                changed += 1
                shifts += moved
            else:
                accepted += 1
        seconds = self.clock() - self.started
        return SessionStats(self.annotator, self.filter, changed, accepted, rejected, seconds, tuple(shifts))

    # --- the keypoints ----------------------------------------------------------------------

    def points(self) -> dict[str, Point]:
        """The current hole's keypoints: the annotator's calls where made, else the automatic."""
        hole_id = self.hole_id
        return self._points(hole_id, self.notes.get(hole_id)) if hole_id else {}

    def _points(self, hole_id: str, note: human.Annotation | None) -> dict[str, Point]:
        row = self.labels.get(hole_id, {})
        stale = note is not None and self._is_stale(hole_id, note)
        points = {}
        for name in KEYPOINTS:
            if note is not None and name in note.points:
                depth = note.points[name]
                who = f"{'set' if depth is not None else 'marked absent'} by {note.annotator or 'someone'}"
                reason = f"{who} on {note.time or 'an unknown date'}"
                if stale:
                    reason = f"stale: {reason}, on signals that have changed since; uos label ignores it"
                points[name] = Point(depth, True, "human", 1.0, reason, stale)
            else:
                points[name] = _automatic(row, name)
        return points

    def _why_not(self, hole_id: str, annotation: human.Annotation) -> str | None:
        """Why these calls cannot be this hole's (see `human.impossible`): among themselves, or
        against an automatic keypoint they would cross (which `uos label` would then drop)."""
        low, high = recorded(self.holes[hole_id])
        points = self._points(hole_id, annotation)
        decided = {k: p.depth_mm for k, p in points.items() if p.human}
        why = human.impossible(decided, low, high)
        for name, point in points.items():
            if why is None and not point.human:
                why = human.impossible({**decided, name: point.depth_mm}, low, high, automatic={name})
        return why

    def _change(self, update: Callable[[human.Annotation], None], what: str) -> bool:
        """Apply one change to the current hole's annotation and save it; refuse it (saying why,
        in `refused`) when the calls it leaves cannot be the hole's. A stale annotation (made on
        other signals) is started afresh. False when refused."""
        hole_id = self.hole_id
        if hole_id is None:
            return False
        before = self.notes.get(hole_id)
        if before is not None and not self._is_stale(hole_id, before):
            after = replace(before, points=dict(before.points))
        else:
            after = human.Annotation(hole_id)
        decided = dict(after.points)
        update(after)
        after.signals_hash = self.holes[hole_id].meta.get("signals_hash")
        # (A rejection or an undecided hole changes no keypoint: always allowed.)
        why = self._why_not(hole_id, after) if after.points != decided else None
        if why is not None:
            self.refused = f"refused: {why}"  # (nothing saved)
            return False
        after.annotator = self.annotator
        after.time = human.now()
        if not self._saved(hole_id, after):
            return False
        self.undo_stack.append(_Change(hole_id, before, after))
        self.redo_stack.clear()
        self.annotated.add(hole_id)
        self.message, self.refused = what, None
        return True

    def _saved(self, hole_id: str, annotation: human.Annotation | None) -> bool:
        """Store the annotation; False, saying why in `refused`, when it cannot be written (the
        folder cannot be made, the disk is full): the change is not made."""
        try:
            self._store(hole_id, annotation)
        except OSError as exc:
            self.refused = f"not saved: {exc.strerror}: {exc.filename}" if exc.strerror else f"not saved: {exc}"
            return False
        return True

    def _store(self, hole_id: str, annotation: human.Annotation | None) -> None:
        # (Saved first: what the session holds is what is on disk, when the disk refuses too.)
        human.save(self.directory, annotation or human.Annotation(hole_id))
        if annotation is None or annotation.empty:
            self.notes.pop(hole_id, None)
        else:
            self.notes[hole_id] = annotation

    def set_point(self, name: str) -> None:
        depth = round(self.cursor_mm, 3)
        self._change(lambda a: a.points.__setitem__(name, depth), f"{name} set at {depth:.2f} mm")

    def clear_point(self, name: str) -> None:
        self._change(lambda a: a.points.__setitem__(name, None), f"{name} marked absent")

    def accept(self) -> bool:
        """The keypoints as shown are right: record the automatic ones as the annotator's too (a
        stale call is shown, not accepted: the automatic keypoint takes its place)."""
        hole_id = self.hole_id
        if hole_id is None:
            return False
        current = self._points(hole_id, self._fresh(hole_id, self.notes.get(hole_id)))
        return self._change(
            lambda a: a.points.update({k: p.depth_mm for k, p in current.items()}), "automatic labels accepted"
        )

    def accept_and_next(self) -> None:
        """Accept, then on to the next hole (staying when the accept is refused)."""
        if self.accept():
            self.next()

    def reject(self, reason: str) -> None:
        self._change(lambda a: setattr(a, "rejected", reason or "rejected"), f"rejected: {reason}")

    def unreject(self) -> None:
        self._change(lambda a: setattr(a, "rejected", None), "no longer rejected")

    def undo(self) -> None:
        if not self.undo_stack:
            self.message = "nothing to undo"
            return
        change = self.undo_stack[-1]
        if not self._saved(change.hole_id, change.before):
            return
        self.redo_stack.append(self.undo_stack.pop())
        self._show(change.hole_id)
        self.message = "undone"

    def redo(self) -> None:
        if not self.redo_stack:
            self.message = "nothing to redo"
            return
        change = self.redo_stack[-1]
        if not self._saved(change.hole_id, change.after):
            return
        self.undo_stack.append(self.redo_stack.pop())
        self._show(change.hole_id)
        self.message = "redone"

    def _show(self, hole_id: str) -> None:
        if hole_id != self.hole_id and hole_id in self.queue:
            self.go_to(self.queue.index(hole_id))

    # --- cursor and zoom --------------------------------------------------------------------

    def move(self, fraction: float) -> None:
        """Move the cursor by `fraction` of the visible width; the view follows the cursor."""
        self.refused = None
        lo, hi = self.view
        hole = self.hole
        if hole is None:
            return
        low, high = extent(hole)
        self.cursor_mm = float(np.clip(self.cursor_mm + fraction * (hi - lo), low, high))
        if not lo <= self.cursor_mm <= hi:
            width = hi - lo
            lo = min(max(self.cursor_mm - width / 2, low), high - width)
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
        full = extent(hole)
        width = float(np.clip((self.view[1] - self.view[0]) * factor, MIN_VIEW_MM, full[1] - full[0]))
        lo = float(np.clip(self.cursor_mm - width / 2, full[0], full[1] - width))
        self.view = (lo, lo + width)

    def reset_zoom(self) -> None:
        hole = self.hole
        if hole is not None:
            self.view = extent(hole)

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
            saved = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return saved if isinstance(saved, dict) else {}  # (not a state: resuming is a convenience)

    def _write_state(self) -> None:
        if self.state_file is None:
            return
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            with write_atomic(self.state_file) as tmp:
                tmp.write_text(json.dumps({"filter": self.filter, "hole_id": self.hole_id}))
        except OSError:
            pass  # resuming is a convenience; never fail an annotation over it


def recorded(hole: Hole) -> tuple[float, float]:
    """The shallowest and deepest depth of a hole (a NaN or a -1e308 sample is no depth)."""
    depth = hole.signals["depth_mm"]
    finite = depth[in_physical_range(depth, "depth_mm")]
    return float(finite.min()), float(finite.max())


def extent(hole: Hole) -> tuple[float, float]:
    """The depths a view of the hole can cover: those recorded, or a millimetre around a depth
    that never moves (a view needs a width)."""
    low, high = recorded(hole)
    if high - low < MIN_VIEW_MM:
        middle = (low + high) / 2
        return middle - 0.5, middle + 0.5
    return low, high


def valid_filter(name: object) -> bool:
    return isinstance(name, str) and (name in FILTERS or name.startswith(("head:", "folder:")))


def _automatic(row: dict[str, Any], name: str) -> Point:
    """One keypoint of a labels row."""
    value = row.get(f"{name}_mm")
    depth = None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)
    source = row.get(f"{name}_source") or "none"
    # A label from an earlier annotation that is no longer there is automatic again.
    source = source if source != "human" else "signal"
    return Point(
        depth, False, source, float(row.get(f"{name}_confidence") or 0.0), str(row.get(f"{name}_reason") or "")
    )


def _differences(shown: dict[str, Point], final: dict[str, Point]) -> tuple[bool, list[float]]:
    """Whether any keypoint differs between two views of a hole, and how far (mm) each keypoint
    present in both has moved (saved depths are rounded to a micrometre: no move below that)."""
    differs, moved = False, []
    for name in KEYPOINTS:
        before, after = shown[name].depth_mm, final[name].depth_mm
        if before is None or after is None:
            differs = differs or (before is None) != (after is None)
        elif abs(after - before) > human.TOLERANCE_MM:
            differs = True
            moved.append(abs(after - before))
    return differs, moved


def state_path(parsed_dir: str | Path, annotator: str | None, root: Path = Path(".uos")) -> Path:
    """Where a session saves its filter and hole to resume from: one file per annotator and
    dataset (its resolved path), so that a filter saved on one dataset never applies to another."""
    who = annotator or "default"
    key = hashlib.sha256(f"{Path(parsed_dir).resolve()}\0{who}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return root / f"annotate-{human.file_name(who)[:-5][:40]}-{key}.json"


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
    from uos.labels.table import read_labels

    columns = ["depth_mm", "torque_a", "thrust_a", "step"]
    # (A hole with no finite depth at all has nothing to show or to annotate.)
    holes = {
        h.hole_id: h
        for h in load_holes(parsed_dir, columns)
        if h.signals and in_physical_range(h.signals["depth_mm"], "depth_mm").any()
    }
    labels = {row["hole_id"]: row for row in read_labels(labels_dir).to_dict("records")}
    answers = read_answers(answers_file) if answers_file is not None and Path(answers_file).exists() else {}
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


def read_answers(path: Path) -> dict[str, dict[str, Any]]:
    """The model's answer for each hole (status, review_reasons) from its out-of-fold answers."""
    import pandas as pd

    wanted = ["hole_id", "status", "review_reasons"]
    not_answers = f"{path} is not the model's answers (uos train's out_of_fold.csv)"
    try:
        table = pd.read_csv(path, dtype={"hole_id": str})
    except (OSError, ValueError) as exc:  # (pandas' parser and empty-file errors are ValueErrors)
        raise UosError(f"{not_answers}: {gist(exc)}") from None
    missing = sorted(set(wanted) - set(table.columns))
    if missing:
        raise UosError(f"{not_answers}: no column {', '.join(missing)}")
    return {row["hole_id"]: row for row in table[wanted].fillna("").to_dict("records")}
