"""The hole record: one drilled hole, the same whether it came from a file or from MQTT."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# Canonical signal columns, in the order every Setitec Datas table has them.
REQUIRED_SIGNALS = (
    "depth_mm",  # = -Position (mm): positive, growing as the drill advances
    "torque_a",  # spindle current above no-load
    "thrust_a",  # feed current above no-load
    "torque_empty_a",  # no-load currents, re-measured each step
    "thrust_empty_a",
    "step",  # program step being executed
    "stop_code",  # bit flags that ended the step, on its last samples; 0 otherwise
)
# What every source must give. MQTT traces carry no per-sample stop code (stop codes come per
# step in the Result) and the oldest message schema has no step trace.
MEASURED_SIGNALS = ("depth_mm", "torque_a", "thrust_a")
INTEGER_SIGNALS = frozenset({"step", "stop_code"})
# The columns that place a sample in the dataset's signal table; no signal may take their names.
SIGNAL_KEY_COLUMNS = ("hole_id", "sample")

# Optional extras, by the names the files give them.
EXTRA_SIGNALS = {
    "mem torque min (a)": "torque_min_a",
    "mem thrust min (a)": "thrust_min_a",
    "rotation speed (rpm)": "rpm",
    "feed speed (mm/s)": "feed_mm_s",
    "torque power (w)": "power_w",
    "power (w)": "power_w",
    "gap length (mm)": "gap_mm",
    "gap max (mm)": "gap_max_mm",
}

PROGRAM_FIELDS = (
    "step",
    "enabled",
    "stroke_mm",
    "rpm",
    "feed_mm_s",
    "feed_mm_rev",
    "thrust_max_a",
    "torque_max_a",
    "thrust_min_a",
    "torque_min_a",
    "thrust_safety_a",
    "torque_safety_a",
    "gap_mm",
    "pecks",
    "delay_ms",
    "stroke_limit_a",
    "thrust_limit_a",
    "torque_limit_a",
    "lub_air",
    "lub_flow",
    "vacuum",
    "material",
)
STEP_RESULT_FIELDS = (
    "step",
    "stop_code",
    "duration_s",
    "distance_m1_mm",
    "distance_m2_mm",
    "m1_max_a",
    "m2_max_a",
    "m1_no_load_a",
    "m2_no_load_a",
    "gap_max_mm",
)

# Scalar metadata of a hole, with the Arrow type each is stored as.
META_FIELDS: dict[str, str] = {
    "hole_id": "string",
    "source": "string",
    "source_kind": "string",  # setitec | setitec-xls | mqtt
    "sha256": "string",
    "signals_hash": "string",
    "format_version": "int64",
    "date": "timestamp",
    "sample_rate_hz": "float64",
    "cycle_id": "string",
    "controller_name": "string",
    "controller_sn": "string",
    "controller_firmware": "string",
    "motor_name": "string",
    "motor_sn": "string",
    "head_id": "string",  # RFID tag when the head has one, else the head name
    "head_name": "string",
    "head_tag": "string",
    "cutting_tool": "string",
    "global_counter": "int64",
    "tool_age": "int64",  # holes since the tool was changed (local counter)
    "local_counter_2": "int64",
    "pset": "int64",
    "cycle_time_s": "float64",
    "distance_mm": "float64",
    "cycle_ok": "bool",
    "result_id": "int64",  # MQTT ResultId (= global counter on the units seen)
    "tool": "string",  # MQTT tool (topic levels or device name)
    "n_samples": "int64",
    "depth_start_mm": "float64",
    "depth_end_mm": "float64",
}

Level = Literal["warning", "error"]


@dataclass(frozen=True)
class Issue:
    """A quality finding about one hole: `error` makes it unusable, `warning` is worth a look."""

    level: Level
    reason: str


@dataclass
class Hole:
    """One drilled hole: its metadata, program, step results and signals."""

    meta: dict[str, Any]
    signals: dict[str, np.ndarray]
    program: list[dict[str, Any]] = field(default_factory=list)
    step_results: list[dict[str, Any]] = field(default_factory=list)
    raw_metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    @property
    def hole_id(self) -> str:
        return self.meta["hole_id"]

    @property
    def n_samples(self) -> int:
        return len(self.signals["depth_mm"])

    def warn(self, reason: str) -> None:
        self.issues.append(Issue("warning", reason))


_NO_TAG = {"", "0", "light", "none", "null"}


def head_identity(tag: str | None, name: str | None, fallback: str | None = None) -> str | None:
    """The head's identity: its RFID tag when it has one, else its name (Light heads)."""
    for candidate in (tag, name, fallback):
        if candidate is not None and str(candidate).strip().lower() not in _NO_TAG:
            return str(candidate).strip()
    return None


def make_hole_id(head_id: str | None, global_counter: int | None) -> str | None:
    """`<head>-<global counter>`: what identifies a hole on the shop floor, file or MQTT alike."""
    if head_id is None or global_counter is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", head_id)
    return f"{safe}-{int(global_counter)}"


def signals_hash(signals: dict[str, np.ndarray]) -> str:
    """Hash of the measured signals, comparable across file formats and MQTT."""
    digest = hashlib.sha256()
    for name in ("depth_mm", "torque_a", "thrust_a"):
        digest.update(np.ascontiguousarray(signals[name], dtype="<f8").data)  # no copy of the bytes
    return digest.hexdigest()
