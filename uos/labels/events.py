"""Keypoints from the machine's own events: the stop codes that ended torque-triggered steps.

A step that ends on torque max (0x1) with a real threshold ended because the drill met a harder
layer: a transition event (a contact step with a tiny threshold, ~0.3 A, marks the entry instead).
A step that ends on torque min (0x800) ended at breakthrough, after the program's gap. Neither
event sits on the keypoint: the unit fires part-way up the torque ramp, and 0x800 only after the
drill has travelled the gap past the drop. So each event says where to look, and the keypoint is
the start of the ramp found there (`edges.fit_ramp`), the unit's detection lag corrected by what
the signals show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from uos.holes import stopcodes
from uos.holes.profile import Profile
from uos.holes.record import Hole
from uos.labels.detect import Keypoint, signal_confidence, thrust_witness
from uos.labels.edges import Edge, fit_ramp

CONTACT_THRESHOLD_A = 0.6  # a torque-max step below this is contact detection: an entry event


@dataclass(frozen=True)
class Event:
    keypoint: str  # entry | transition | exit
    step: int
    depth_mm: float
    code: int
    gap_mm: float = 0.0


def step_events(hole: Hole) -> list[Event]:
    """The events that say something about the material, in the order they happened."""
    signals = hole.signals
    step, code, depth = signals.get("step"), signals.get("stop_code"), signals["depth_mm"]
    if step is None or code is None or len(step) == 0:
        return []
    program: dict[int, dict[str, Any]] = {int(p["step"]): p for p in hole.program if p.get("step") is not None}
    changes = np.flatnonzero(np.diff(step) != 0) + 1
    starts, ends = np.concatenate([[0], changes]), np.concatenate([changes, [len(step)]])
    events = []
    for start, end in zip(starts, ends, strict=True):
        tail = code[max(start, end - 6) : end]
        flags = int(np.bitwise_or.reduce(tail.astype(np.int64))) if len(tail) else 0
        coded = np.flatnonzero(code[start:end])
        at = float(depth[start + coded[0]] if len(coded) else depth[end - 1])
        number = int(step[start])
        settings = program.get(number, {})
        if flags & stopcodes.TORQUE_MAX:
            threshold = settings.get("torque_max_a") or 0.0
            kind = "entry" if 0 < threshold <= CONTACT_THRESHOLD_A else "transition"
            events.append(Event(kind, number, at, flags))
        if flags & stopcodes.TORQUE_MIN:
            events.append(Event("exit", number, at, flags, float(settings.get("gap_mm") or 0.0)))
    return events


def refine(
    event: Event, profile: Profile, lower_mm: float = -np.inf, baseline_a: float = 0.0, cutting_a: float = 0.5
) -> tuple[Keypoint, Edge | None]:
    """The keypoint an event points at: the start of the torque ramp around it."""
    if event.keypoint == "exit":
        drop = event.depth_mm - event.gap_mm  # where the torque went below the threshold
        edge = fit_ramp(profile, max(drop - 3.5, lower_mm), drop + 1.5, rising=False)
        expected = (drop - 3.5, drop + 0.3)
        verb = "falls"
    else:
        edge = fit_ramp(profile, max(event.depth_mm - 3.5, lower_mm), event.depth_mm + 2.0, rising=True)
        expected = (event.depth_mm - 3.5, event.depth_mm + 0.05)
        verb = "rises"
    name = stopcodes.describe(event.code)
    if edge is None or not expected[0] <= edge.depth_mm <= expected[1]:
        return Keypoint(
            event.depth_mm,
            "event",
            0.4,
            f"step {event.step} ended on {name} at {event.depth_mm:.2f} mm; no torque ramp found to correct it",
        ), None
    if event.keypoint == "transition" and edge.before_a < baseline_a + cutting_a:
        # The torque rose from air, not from inside a layer: the countersink or the nose piece
        # meeting the part after breakthrough, not a second material.
        return Keypoint(
            None,
            "event",
            0.7,
            f"step {event.step} ended on {name} at {event.depth_mm:.2f} mm, "
            "but the torque rose from air: no second material",
        ), None
    confidence = 0.75 + 0.24 * signal_confidence(
        edge, profile.noise, thrust_witness(profile, edge, event.keypoint != "exit")
    )
    reason = (
        f"step {event.step} ended on {name} at {event.depth_mm:.2f} mm"
        + (f" ({event.gap_mm:g} mm gap)" if event.gap_mm else "")
        + f"; torque {verb} from {edge.before_a:.2f} to {edge.after_a:.2f} A"
    )
    return Keypoint(edge.depth_mm, "event", float(confidence), reason), edge
