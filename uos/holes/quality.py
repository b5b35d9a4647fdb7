"""Quality checks on one hole: what makes it unusable (error) or worth a look (warning).

Checks that compare holes with each other (duplicates, id collisions) live with the dataset,
in `uos.dataset.build`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from uos.holes.record import MEASURED_SIGNALS, REQUIRED_SIGNALS, Hole, Issue

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
    """Thresholds, from `[parse]` in params.toml."""

    min_samples: int = 50  # fewer: error (not a usable recording)
    few_samples: int = 150  # fewer: warning
    air_cut_torque_a: float = 0.5  # torque (A above no-load) that means the drill is cutting
    air_cut_contact_mm: float = 2.5  # cutting over less depth than this: air cut


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
    if n < rules.min_samples:
        issues.append(Issue("error", f"too few samples: {n} (at least {rules.min_samples} needed)"))
    elif n < rules.few_samples:
        issues.append(Issue("warning", f"few samples: {n} (fewer than {rules.few_samples})"))

    for name in (*required, "step"):
        column = hole.signals.get(name)
        if column is not None and column.dtype.kind == "f" and n:
            bad = int(np.count_nonzero(~np.isfinite(column)))
            if bad:
                issues.append(
                    Issue(
                        "error",
                        f"non-finite values in {FILE_COLUMN_NAMES.get(name, name)}: {bad} of {n} samples",
                    )
                )

    torque, depth = hole.signals.get("torque_a"), hole.signals.get("depth_mm")
    if torque is not None and depth is not None and n >= rules.min_samples:
        # Air cut: the drill cut (torque above the threshold) over less depth than any stack has.
        advance = np.diff(depth, prepend=depth[0]).clip(min=0)
        contact = float(advance[torque >= rules.air_cut_torque_a].sum())
        if contact < rules.air_cut_contact_mm:
            issues.append(
                Issue(
                    "warning",
                    f"air cut: torque above {rules.air_cut_torque_a:g} A over only {contact:.1f} mm (no material contact)",
                )
            )

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
