"""How good the answers are, as a user would judge them: per status, with gross errors.

A mean error hides the holes that matter: a grip code picked from a thickness 4 mm off is a wrong
fastener, however small the mean. So every figure here comes with the count of **gross errors**:
holes where an answer is more than `GROSS_MM` off on any keypoint or on the thickness, gives a
keypoint (or a thickness) the labels say does not exist, or misses one they have (a single layer
given for two). A keypoint the labeller could not place (confidence 0) is not judged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from uos.labels import KEYPOINTS

GROSS_MM = 1.0
STATUSES = ("ok", "review", "error")


def hole_table(hole_ids, answers, expected: np.ndarray, judged: np.ndarray, groups: dict[str, Any] | None = None):
    """One row per hole: its answer, its errors against the labels and whether any is gross.

    `expected` (holes, 3) holds the labels (NaN: absent), `judged` (holes, 3) which of them to
    judge; `groups` adds columns (e.g. folder, family)."""
    import pandas as pd

    positions = np.array([a.positions for a in answers], dtype=float).reshape(-1, 3)
    frame = pd.DataFrame({"hole_id": list(hole_ids)})
    for name, values in (groups or {}).items():
        frame[name] = list(values)
    frame["status"] = [a.status for a in answers]
    frame["min_confidence"] = [float(np.min(a.confidence)) if a.error is None else 0.0 for a in answers]
    gross = np.zeros(len(frame), dtype=bool)
    for j, name in enumerate(KEYPOINTS):
        frame[f"{name}_mm"] = positions[:, j]
        frame[f"{name}_label_mm"] = np.where(judged[:, j], expected[:, j], np.nan)
        frame[f"{name}_judged"] = judged[:, j]
        frame[f"{name}_confidence"] = [float(a.confidence[j]) for a in answers]
        error = np.abs(positions[:, j] - expected[:, j])
        frame[f"{name}_error_mm"] = np.where(judged[:, j], error, np.nan)
        gross |= judged[:, j] & _wrong(positions[:, j], expected[:, j])
    thickness = positions[:, 2] - positions[:, 0]
    label_thickness = expected[:, 2] - expected[:, 0]
    both = judged[:, 0] & judged[:, 2]
    frame["thickness_mm"] = thickness
    frame["thickness_error_mm"] = np.where(both, np.abs(thickness - label_thickness), np.nan)
    gross |= both & _wrong(thickness, label_thickness)
    frame["gross"] = gross
    frame["review_reasons"] = ["; ".join(a.reasons) for a in answers]
    frame["error"] = [a.error for a in answers]
    return frame


def _wrong(given: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """More than GROSS_MM off, or a number where none is expected, or none where one is."""
    with np.errstate(invalid="ignore"):
        off = np.abs(given - expected) > GROSS_MM
    return off | (np.isfinite(given) != np.isfinite(expected))


def summarize(frame) -> dict[str, Any]:
    """Holes, MAE per keypoint and thickness, and gross errors: overall and for each status."""
    result: dict[str, Any] = {"holes": len(frame), "gross": int(frame["gross"].sum())}
    for status in STATUSES:
        part = frame[frame["status"] == status]
        if not len(part):
            continue
        entry: dict[str, Any] = {"holes": len(part), "share": round(len(part) / max(len(frame), 1), 4)}
        for name in (*KEYPOINTS, "thickness"):
            errors = part[f"{name}_error_mm"].dropna()
            entry[f"{name}_mae_mm"] = round(float(errors.mean()), 4) if len(errors) else None
        entry["gross"] = int(part["gross"].sum())
        result[status] = entry
    return result


def by_group(frame, column: str) -> dict[str, Any]:
    """`summarize` for each value of `column` (a folder, a program family)."""
    return {str(key): summarize(part) for key, part in frame.groupby(column, sort=True, dropna=False)}


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The few figures worth a column in `dvc metrics show`."""
    ok, review = summary.get("ok", {}), summary.get("review", {})
    return {
        "holes": summary["holes"],
        "ok": ok.get("holes", 0),
        "ok_gross": ok.get("gross", 0),
        "ok_thickness_mae_mm": ok.get("thickness_mae_mm"),
        "review_share": review.get("share", 0.0),
        "review_gross": review.get("gross", 0),
        "all_gross": summary["gross"],
    }


def format_table(groups: dict[str, dict[str, Any]], title: str) -> str:
    """A plain text table: per group and status, holes, MAE (thickness) and gross errors."""
    lines = [
        title,
        f"  {'':<28}{'holes':>6}{'ok':>6}{'gross':>6}{'thick MAE':>10}{'review':>8}{'gross':>6}{'thick MAE':>10}",
    ]
    for name, summary in groups.items():
        ok, review = summary.get("ok", {}), summary.get("review", {})

        def mae(part: dict[str, Any]) -> str:
            value = part.get("thickness_mae_mm")
            return f"{value:>10.3f}" if value is not None else f"{'-':>10}"

        lines.append(
            f"  {name[:28]:<28}{summary['holes']:>6}{ok.get('holes', 0):>6}{ok.get('gross', 0):>6}{mae(ok)}"
            f"{review.get('holes', 0):>8}{review.get('gross', 0):>6}{mae(review)}"
        )
    return "\n".join(lines)
