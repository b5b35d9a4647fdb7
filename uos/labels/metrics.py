"""The figures of a labelling run (`metrics.json`, a DVC metric): counts by source and
confidence, holes whose keypoints break the cutting rule, accuracy against synthetic truth and of
the signals alone against the machine's events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from uos.labels import KEYPOINTS

BUCKETS = [(0.0, 0.5), (0.5, 0.8), (0.8, 0.9), (0.9, 1.01)]


def _bucket(confidence: float) -> str:
    for low, high in BUCKETS:
        if low <= confidence < high:
            return f"{low:.1f}-{min(high, 1.0):.1f}"
    return "unknown"


def _errors_by_bucket(errors: list[tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Mean absolute error and count per confidence bucket, from (confidence, error) pairs."""
    table: dict[str, list[float]] = {}
    for confidence, error in errors:
        table.setdefault(_bucket(confidence), []).append(abs(error))
    return {b: {"holes": len(v), "mae_mm": round(float(np.mean(v)), 3)} for b, v in sorted(table.items())}


def label_metrics(rows: list[dict[str, Any]], truth_path: str | Path | None) -> dict[str, Any]:
    """Counts by source and confidence; accuracy against exact truth (synthetic holes) and of
    the signals alone against the machine's events (holes that have them)."""
    metrics: dict[str, Any] = {
        "holes": len(rows),
        "reviewed": sum(r["status"] == "reviewed" for r in rows),
        "rejected": sum(r["status"] == "rejected" for r in rows),
        "no_keypoints": sum(r["error"] is not None for r in rows),
        "by_source": {},
        "by_confidence": {},
    }
    for name in KEYPOINTS:
        sources: dict[str, int] = {}
        buckets: dict[str, int] = {}
        for r in rows:
            kind = r[f"{name}_source"] if r[f"{name}_mm"] is not None else f"{r[f'{name}_source']} (absent)"
            sources[kind] = sources.get(kind, 0) + 1
            buckets[_bucket(r[f"{name}_confidence"])] = buckets.get(_bucket(r[f"{name}_confidence"]), 0) + 1
        metrics["by_source"][name] = dict(sorted(sources.items()))
        metrics["by_confidence"][name] = dict(sorted(buckets.items()))

    metrics["cutting_rule"] = _rule_report(rows)

    # The signals alone against the (lag-corrected) machine events, where holes have them.
    events: dict[str, Any] = {}
    for name in ("transition", "exit"):
        pairs = [
            (r[f"{name}_signal_confidence"], r[f"{name}_signal_mm"] - r[f"{name}_mm"])
            for r in rows
            if r[f"{name}_source"] == "event" and r[f"{name}_mm"] is not None and r[f"{name}_signal_mm"] is not None
        ]
        if pairs:
            errors = np.abs([e for _, e in pairs])
            events[name] = {
                "holes": len(pairs),
                "mae_mm": round(float(errors.mean()), 3),
                "by_confidence": _errors_by_bucket(pairs),
            }
    if events:
        metrics["signal_vs_events"] = events

    if truth_path is not None and Path(truth_path).exists():
        metrics["synthetic"] = _truth_metrics(rows, Path(truth_path))
    return metrics


def _rule_report(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per source folder: holes; holes with a keypoint that breaks the cutting rule (an automatic
    one was dropped from the labels, a human's is kept and counted here for review); and holes
    whose machine event was set aside because it points at no change of cutting state (the
    signals' keypoint is the label there)."""
    report: dict[str, dict[str, int]] = {}
    for r in rows:
        folder = Path(str(r.get("source") or "?")).parent.name or "."
        entry = report.setdefault(folder, {"holes": 0, "breaking": 0, "events_set_aside": 0})
        entry["holes"] += 1
        entry["breaking"] += int(bool(r.get("rule_broken")))
        entry["events_set_aside"] += int(bool(r.get("events_set_aside")))
    return dict(sorted(report.items()))


def _truth_metrics(rows: list[dict[str, Any]], truth_path: Path) -> dict[str, Any]:
    import pandas as pd

    from uos.synth.truth import read_truth

    truth = read_truth(truth_path, by_hole=True)
    result: dict[str, Any] = {"holes": 0}
    matched = [r for r in rows if r["hole_id"] in truth.index]
    result["holes"] = len(matched)
    for name in KEYPOINTS:
        pairs, signal_pairs, wrong_null = [], [], 0
        for r in matched:
            expected = truth.at[r["hole_id"], f"{name}_mm"]
            value = r[f"{name}_mm"]
            if pd.isna(expected) or value is None:
                wrong_null += int(pd.isna(expected) != (value is None))
                continue
            pairs.append((r[f"{name}_confidence"], value - float(expected)))
            if r[f"{name}_signal_mm"] is not None:
                signal_pairs.append((r[f"{name}_signal_confidence"], r[f"{name}_signal_mm"] - float(expected)))
        errors = np.abs([e for _, e in pairs]) if pairs else np.array([np.nan])
        result[name] = {
            "holes": len(pairs),
            "mae_mm": round(float(np.mean(errors)), 3),
            "p95_abs_error_mm": round(float(np.percentile(errors, 95)), 3),
            "wrong_presence": wrong_null,
            "signal_only_mae_mm": round(float(np.mean(np.abs([e for _, e in signal_pairs]))), 3)
            if signal_pairs
            else None,
            "by_confidence": _errors_by_bucket(pairs),
        }
    return result
