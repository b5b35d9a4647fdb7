"""`uos label`: entry, transition and exit for every hole, each with its source and confidence.

Evidence, strongest first: a human annotation (data/annotations/) always wins; then the machine's
events, corrected for the unit's detection lag by the torque ramp around them; then the signals
alone. Where a point does not exist (air cut, one layer, a recording that stops before
breakthrough) the label is null and says why.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from uos.cores import choose_workers
from uos.holes.profile import build_profile
from uos.holes.quality import QualityRules, unanswerable
from uos.holes.record import Hole
from uos.labels import KEYPOINTS
from uos.labels import annotations as human
from uos.labels.cutting import CuttingRule, CuttingState
from uos.labels.detect import Keypoint, SignalDetection, detect, null
from uos.labels.events import refine, step_events
from uos.labels.metrics import label_metrics
from uos.labels.table import LABELS_FILE, write_labels
from uos.outputs import write_json

METRICS_FILE = "metrics.json"
SIGNAL_COLUMNS = ["depth_mm", "torque_a", "thrust_a", "step", "stop_code"]


@dataclass(frozen=True)
class LabelParams:
    """`[label]` in params.toml."""

    min_contact_mm: float = 2.5  # less cutting travel than this: air cut, no keypoints
    cutting_a: float = 0.5  # torque above the air baseline that means the drill is cutting
    drill_point_mm: float = 3.0  # the longest drill point: a ramp at a surface is no longer than this
    disagreement_mm: float = 0.5  # event and signals further apart: the label is less sure
    workers: int = 0  # 0: our share of the cores (uos.cores)

    def rule(self) -> CuttingRule:
        return CuttingRule(cutting_a=self.cutting_a, drill_point_mm=self.drill_point_mm)


def _human(annotation: human.Annotation, name: str) -> Keypoint:
    value = annotation.points[name]
    who = f"{annotation.annotator or 'someone'} on {annotation.time or 'an unknown date'}"
    if value is None:
        return Keypoint(None, "human", 1.0, f"marked absent by {who}")
    return Keypoint(value, "human", 1.0, f"set by {who}")


def _with_events(
    hole: Hole, detection: SignalDetection, params: LabelParams
) -> tuple[dict[str, Keypoint], dict[str, str]]:
    """The signal-only keypoints, replaced by the machine's events (refined on the profile) where
    those are a change of cutting state; and the events set aside because they are not, with why."""
    found = dict(detection.points)
    set_aside: dict[str, str] = {}
    state = detection.state
    lower = -np.inf
    for event in step_events(hole):
        point, _ = refine(event, state.profile, lower, detection.baseline_a, params.cutting_a)
        alone = detection.points.get(event.keypoint)
        if point.depth_mm is None:
            if alone.depth_mm is None:  # both agree the point does not exist
                found[event.keypoint] = point
            continue
        if (why := state.check(event.keypoint, point.depth_mm)) is not None:
            # The event points at no change of cutting state: the signals' label stays.
            kept = found[event.keypoint]
            found[event.keypoint] = replace(kept, reason=f"{kept.reason}; set aside: {point.reason} ({why})")
            set_aside[event.keypoint] = f"{point.depth_mm:.2f} mm: {why}"
            continue
        lower = point.depth_mm + 0.3
        if alone.depth_mm is not None and abs(alone.depth_mm - point.depth_mm) > params.disagreement_mm:
            point = replace(
                point,
                confidence=point.confidence * 0.6,
                reason=f"{point.reason}; the signals alone put it at {alone.depth_mm:.2f} mm",
            )
        elif alone.depth_mm is None:
            point = replace(
                point,
                confidence=point.confidence * 0.8,
                reason=f"{point.reason}; the signals alone found none ({alone.reason})",
            )
        found[event.keypoint] = point
    return found, set_aside


def _drop_crossing_humans(found: dict[str, Keypoint]) -> None:
    """Humans win: an automatic keypoint on the wrong side of a human one (an entry below the
    human's transition, ...) is unknown, never a negative layer."""
    for i, name in enumerate(KEYPOINTS):
        point = found[name]
        if point.source == "human" or point.depth_mm is None:
            continue
        for j, other in enumerate(KEYPOINTS):
            mark = found[other]
            if mark.source != "human" or mark.depth_mm is None or i == j:
                continue
            if (i < j and point.depth_mm > mark.depth_mm) or (i > j and point.depth_mm < mark.depth_mm):
                found[name] = null(
                    f"{point.reason}; dropped: at {point.depth_mm:.2f} mm, on the wrong side of the human "
                    f"{other} at {mark.depth_mm:.2f} mm",
                    point.source,
                    confidence=0.0,
                )
                break


def _enforce_order_and_rule(found: dict[str, Keypoint], state: CuttingState | None) -> dict[str, str]:
    """Automatic keypoints out of depth order lose confidence; those that break the cutting rule
    are dropped (unknown). Returns the keypoints that break the rule, with why (a human's stay)."""
    _drop_crossing_humans(found)
    present = [found[k].depth_mm for k in KEYPOINTS if found[k].depth_mm is not None]
    if present != sorted(present):  # out of order: something is wrong with the automatic ones
        for name in KEYPOINTS:
            point = found[name]
            if point.source != "human" and point.depth_mm is not None:
                found[name] = replace(point, confidence=point.confidence * 0.3, reason=point.reason + "; out of order")
    if state is None:
        return {}
    broken = state.check_all({k: found[k].depth_mm for k in KEYPOINTS})
    for name, why in broken.items():
        point = found[name]
        if point.source != "human":
            found[name] = null(f"{point.reason}; dropped: {why}", point.source, confidence=0.0)
    return broken


def label_hole(
    hole: Hole, annotation: human.Annotation | None, params: LabelParams, rules: QualityRules | None = None
) -> dict[str, Any]:
    """One row of the labels table. A hole that cannot have keypoints (`quality.answerability`:
    too short, non-finite, an air cut, ...) gets none, status `error` and the reason."""
    row: dict[str, Any] = {
        "hole_id": hole.hole_id,
        "signals_hash": hole.meta.get("signals_hash"),
        "source": hole.meta.get("source"),
        "head_id": hole.meta.get("head_id"),
        "tool_age": hole.meta.get("tool_age"),
        "status": "auto",
        "rejected": None,
        "error": unanswerable(hole.signals, rules or QualityRules()),
    }
    signals = hole.signals
    profile = None
    if row["error"] is None:
        profile = build_profile(signals["depth_mm"], signals["torque_a"], signals["thrust_a"])
    state, set_aside = None, {}
    if profile is None:
        row["error"] = row["error"] or "too little fresh travel to measure"
        found = {k: null(f"no keypoints: {row['error']}", confidence=0.0) for k in KEYPOINTS}
        signal_found = dict(found)
        row["status"] = "error"
    else:
        detection = detect(profile, params.min_contact_mm, params.rule())
        state, signal_found = detection.state, detection.points
        found, set_aside = _with_events(hole, detection, params)
    if annotation is not None and row["error"] is None:  # (a hole with no keypoints possible has none, whoever says)
        for name in annotation.points:
            found[name] = _human(annotation, name)
        if annotation.points:
            row["status"] = "reviewed"
        if annotation.rejected is not None:
            row["status"], row["rejected"] = "rejected", annotation.rejected
    broken = _enforce_order_and_rule(found, state)
    row["rule_broken"] = "; ".join(f"{k} ({found[k].source}): {why}" for k, why in broken.items()) or None
    row["events_set_aside"] = "; ".join(f"{k} event at {why}" for k, why in set_aside.items()) or None
    for name in KEYPOINTS:
        point = found[name]
        row[f"{name}_mm"] = None if point.depth_mm is None else round(float(point.depth_mm), 3)
        row[f"{name}_source"] = point.source
        row[f"{name}_confidence"] = round(float(point.confidence), 3)
        row[f"{name}_reason"] = point.reason
        alone = signal_found.get(name)
        row[f"{name}_signal_mm"] = None if alone is None or alone.depth_mm is None else round(float(alone.depth_mm), 3)
        row[f"{name}_signal_confidence"] = None if alone is None else round(float(alone.confidence), 3)
    entry, transition, exit_ = (row[f"{k}_mm"] for k in KEYPOINTS)
    row["thickness_mm"] = round(exit_ - entry, 3) if entry is not None and exit_ is not None else None
    row["top_layer_mm"] = round(transition - entry, 3) if entry is not None and transition is not None else None
    row["bottom_layer_mm"] = round(exit_ - transition, 3) if transition is not None and exit_ is not None else None
    row["min_confidence"] = min(row[f"{k}_confidence"] for k in KEYPOINTS)
    return row


# --- the whole dataset -------------------------------------------------------------------------

_WORK: dict[str, Any] = {}  # inherited by forked workers


def _label_chunk(indices: list[int]) -> list[dict[str, Any]]:
    holes, notes, params, rules = _WORK["holes"], _WORK["annotations"], _WORK["params"], _WORK["rules"]
    return [label_hole(holes[i], notes.get(holes[i].hole_id), params, rules) for i in indices]


@dataclass
class LabelSummary:
    out_dir: Path
    rows: list[dict[str, Any]]
    metrics: dict[str, Any]
    problems: list[str]


def label_dataset(
    parsed_dir: str | Path,
    out_dir: str | Path,
    annotations_dir: str | Path | None = None,
    truth_path: str | Path | None = None,
    params: LabelParams | None = None,
    progress=None,
    rules: QualityRules | None = None,
    metrics_path: str | Path | None = None,
) -> LabelSummary:
    """Label every hole of a parsed dataset; write labels.parquet and the metrics (metrics.json
    beside it, or `metrics_path`: where the DVC stage declares them). `rules` (from `[parse]`)
    say which holes cannot have keypoints at all."""
    from uos.dataset.layout import load_holes

    params = params or LabelParams()
    out = Path(out_dir)
    problems: list[str] = []
    holes = load_holes(parsed_dir, SIGNAL_COLUMNS)
    notes: dict[str, human.Annotation] = {}
    if annotations_dir is not None:
        notes = _usable_annotations(human.load(annotations_dir, problems), holes, parsed_dir, problems)

    _WORK.update(holes=holes, annotations=notes, params=params, rules=rules or QualityRules())
    chunks = [list(range(i, min(i + 16, len(holes)))) for i in range(0, len(holes), 16)]
    workers, _ = choose_workers(params.workers, len(chunks))
    rows: list[dict[str, Any]] = []
    done = 0
    if workers <= 1:
        results = map(_label_chunk, chunks)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"))
        results = pool.map(_label_chunk, chunks)
    try:
        for chunk_rows in results:
            rows.extend(chunk_rows)
            done += len(chunk_rows)
            if progress:
                progress(done, len(holes))
    finally:
        if pool is not None:
            pool.shutdown()
        _WORK.clear()

    metrics = label_metrics(rows, truth_path)
    out.mkdir(parents=True, exist_ok=True)
    write_labels(out / LABELS_FILE, rows)
    write_json(metrics_path or out / METRICS_FILE, metrics)
    return LabelSummary(out, rows, metrics, problems)


def _usable_annotations(
    notes: dict[str, human.Annotation], holes: list[Hole], parsed_dir: str | Path, problems: list[str]
) -> dict[str, human.Annotation]:
    """The annotations that can be used, each problem with the others said in `problems`: one of
    no hole, or of signals that changed since, is not used; keypoints that cannot be (out of the
    recording, out of depth order) are not used either (the automatic ones stand), a rejection is."""
    by_id = {h.hole_id: h for h in holes}
    usable: dict[str, human.Annotation] = {}
    for hole_id, annotation in notes.items():
        hole = by_id.get(hole_id)
        signals_hash = hole.meta.get("signals_hash") if hole is not None else None
        if hole is None:
            problems.append(f"annotation for {hole_id}: no such hole in {parsed_dir} (kept, not used)")
            continue
        if annotation.signals_hash and signals_hash and annotation.signals_hash != signals_hash:
            problems.append(f"annotation for {hole_id}: the hole's signals changed since it was annotated (not used)")
            continue
        depth = hole.signals.get("depth_mm")
        finite = depth[np.isfinite(depth)] if depth is not None else np.array([])
        why = human.impossible(annotation.points, float(finite.min()), float(finite.max())) if len(finite) else None
        if why is not None:
            kept = "its rejection is kept" if annotation.rejected is not None else "automatic labels instead"
            problems.append(f"annotation for {hole_id}: {why}: keypoints not used ({kept})")
            if annotation.rejected is None:
                continue
            annotation = replace(annotation, points={})
        usable[hole_id] = annotation
    return usable
