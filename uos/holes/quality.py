"""Quality checks on one hole: what makes it unusable (error) or worth a look (warning).

Checks that compare holes with each other (duplicates, id collisions) live with the dataset,
in `uos.dataset.build`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from uos.holes.record import MEASURED_SIGNALS, REQUIRED_SIGNALS, Hole, Issue
from uos.numeric import median

# How each canonical column is called in a Setitec file, for messages users recognise.
FILE_COLUMN_NAMES = {
    "depth_mm": "Position (mm)",
    "torque_a": "I Torque (A)",
    "thrust_a": "I Thrust (A)",
    "torque_empty_a": "I Torque Empty (A)",
    "thrust_empty_a": "I Thrust Empty (A)",
    "step": "Step (nb)",
    "stop_code": "Stop code",
}

# <tag or serial>_<head name>_ST_<global>_<local>[_<re-drill>].xls, and converter re-exports.
_UNIT_NAME = re.compile(r"^(?P<prefix>.+)_ST_(?P<global>\d+)_(?P<local>\d+)(?:_\d+)?$")
_EXPORT_NAME = re.compile(r"^MQTT_to_XLS_(?P<head>[^_]+)_(?P<global>\d+)[A-Za-z]?$")


@dataclass(frozen=True)
class QualityRules:
    """Thresholds, from `[parse]` in params.toml (the model keeps the ones it was trained with)."""

    min_samples: int = 50  # fewer: error (not a usable recording)
    few_samples: int = 150  # fewer: warning
    air_cut_torque_a: float = 0.5  # torque (A above the air level) that means the drill is cutting
    air_cut_contact_mm: float = 2.5  # cutting over less depth than this: air cut
    min_span_mm: float = 3.0  # the drill travels less than this: too short to hold a stack


AIR_MM = 0.8  # the first travel of a recording, in air: its torque is the unit's air level

# Beyond these no Setitec unit records anything (real files: torque -3 to 68 A, thrust -0.2 to
# 5.2 A, depth 0.5 to 50 mm): a value outside is a corrupt file or a unit in another scale.
PHYSICAL_RANGE = {"depth_mm": (-50.0, 500.0), "torque_a": (-20.0, 200.0), "thrust_a": (-20.0, 100.0)}


def in_physical_range(values: np.ndarray, name: str) -> np.ndarray:
    """Which samples of signal `name` a unit could have measured: finite and inside its physical
    range (what a plot can scale to: a position of -1e308 overflows a plotting library)."""
    low, high = PHYSICAL_RANGE[name]
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (values >= low) & (values <= high)


def answerability(signals: Mapping[str, np.ndarray], rules: QualityRules) -> list[Issue]:
    """Why no keypoint can be estimated for a hole, first reason first; empty when one can.

    The one gate of `uos parse`, `label`, `train`, `predict` and `serve`. Errors: a recording that
    cannot hold a stack (missing or too few samples, non-finite or impossible values, depth that
    does not advance far enough); a warning for parse, and no answer everywhere else: an air cut
    (the drill never cut material)."""
    missing = [FILE_COLUMN_NAMES[n] for n in MEASURED_SIGNALS if n not in signals]
    if missing:
        return [Issue("error", f"missing signals: {', '.join(missing)}")]
    depth, torque = (np.asarray(signals[n]) for n in ("depth_mm", "torque_a"))
    n = len(depth)
    if n < rules.min_samples:
        return [Issue("error", f"too few samples: {n} (at least {rules.min_samples} needed)")]
    for name in MEASURED_SIGNALS:
        column = np.asarray(signals[name], dtype=np.float64)
        smallest, largest = float(column.min()), float(column.max())  # NaN and inf show in these
        if not (math.isfinite(smallest) and math.isfinite(largest)):
            bad = int(np.count_nonzero(~np.isfinite(column)))
            return [Issue("error", f"non-finite values in {FILE_COLUMN_NAMES[name]}: {bad} of {n} samples")]
        low, high = PHYSICAL_RANGE[name]
        if smallest < low or largest > high:
            return [
                Issue(
                    "error",
                    f"{FILE_COLUMN_NAMES[name]} outside the physical range {low:g} to {high:g} "
                    f"({smallest:g} to {largest:g})",
                )
            ]
    travel = float(np.max(depth) - depth[0])
    if travel < 0.1:
        return [Issue("error", f"depth does not advance (the drill travels {travel:.2f} mm)")]
    if travel < rules.min_span_mm:
        return [
            Issue(
                "error",
                f"the drill travels {travel:.2f} mm: too short to hold a stack (at least {rules.min_span_mm:g} mm)",
            )
        ]
    # Air cut: the drill cut (torque above the threshold) over less depth than any stack has. The
    # threshold is above the air level where a unit reads below zero in air (offsets to -0.4 A seen).
    air = min(0.0, median(torque[depth <= depth[0] + AIR_MM]))
    advance = np.diff(depth).clip(min=0)
    contact = float(advance[torque[1:] >= air + rules.air_cut_torque_a].sum())
    if contact < rules.air_cut_contact_mm:
        return [
            Issue(
                "warning",
                f"air cut or too little cutting: torque {rules.air_cut_torque_a:g} A above air "
                f"over only {contact:.1f} mm "
                f"(a stack needs {rules.air_cut_contact_mm:g} mm)",
            )
        ]
    return []


def unanswerable(signals: Mapping[str, np.ndarray], rules: QualityRules) -> str | None:
    """The one-line reason no keypoint can be estimated for a hole, or None."""
    issues = answerability(signals, rules)
    return issues[0].reason if issues else None


def check_hole(hole: Hole, rules: QualityRules) -> list[Issue]:
    """Every finding about this hole's content, parse-time warnings included."""
    issues = list(hole.issues)
    kind = hole.meta.get("source_kind", "setitec")
    required = REQUIRED_SIGNALS if kind.startswith("setitec") else MEASURED_SIGNALS
    missing = [name for name in required if name not in hole.signals]
    if missing:
        shown = ", ".join(FILE_COLUMN_NAMES.get(n, n) for n in missing)
        issues.append(Issue("error", f"missing required columns: {shown}"))
    n = hole.n_samples
    if rules.min_samples <= n < rules.few_samples:
        issues.append(Issue("warning", f"few samples: {n} (fewer than {rules.few_samples})"))
    told = {issue.reason.split(":")[0] for issue in issues}  # columns the reader already gave a reason for
    for name in dict.fromkeys((*required, "step")):
        if name in MEASURED_SIGNALS or FILE_COLUMN_NAMES.get(name, name) in told:
            continue  # answerability() checks the measured signals
        column = hole.signals.get(name)
        bad = int(np.count_nonzero(~np.isfinite(column))) if column is not None and column.dtype.kind == "f" else 0
        if bad:
            issues.append(
                Issue("error", f"non-finite values in {FILE_COLUMN_NAMES.get(name, name)}: {bad} of {n} samples")
            )
    stop_code = hole.signals.get("stop_code")
    if stop_code is not None and (negative := int(np.count_nonzero(stop_code < 0))):
        issues.append(Issue("warning", f"Stop code: {negative} negative values (stop codes are bit flags)"))
    if all(name in hole.signals for name in MEASURED_SIGNALS):
        issues.extend(answerability(hole.signals, rules))
    return issues


def check_source(hole: Hole, rules: QualityRules) -> list[Issue]:
    """`check_hole`, plus what the input's name says (the same bytes may sit under two names)."""
    issues = check_hole(hole, rules)
    if mismatch := counters_vs_name(hole.meta):
        issues.append(Issue("warning", mismatch))
    return issues


def counters_vs_name(meta: dict) -> str | None:
    """A reason when the file name's counters disagree with the header's."""
    if not meta.get("source_kind", "").startswith("setitec"):
        return None
    stem = PurePath(meta.get("source", "")).stem
    header_global = meta.get("global_counter")
    header_local = meta.get("tool_age")
    if match := _UNIT_NAME.match(stem):
        name_global, name_local = int(match["global"]), int(match["local"])
        if (header_global, header_local) != (name_global, name_local):
            return (
                f"counters disagree with the file name: name says global {name_global}, local {name_local}; "
                f"header says global {header_global}, local {header_local}"
            )
    elif match := _EXPORT_NAME.match(stem):
        name_global, name_head = int(match["global"]), match["head"]
        if header_global != name_global or name_head not in (
            meta.get("head_name"),
            meta.get("head_id"),
        ):
            return (
                f"counters disagree with the file name: name says head {name_head}, global {name_global}; "
                f"header says head {meta.get('head_name')}, global {header_global}"
            )
    return None


def status_of(issues: list[Issue]) -> str:
    if any(i.level == "error" for i in issues):
        return "error"
    return "warning" if issues else "ok"
