"""Keypoints from the signals alone: no step numbers, no stop codes.

On the fresh-cut torque profile: entry is the first rise out of the air-cutting baseline;
transition the largest later rise to a clearly higher level (a second, harder material); exit the
first fall after that back to near the baseline (breakthrough). Each is located on its edge by
`edges.fit_edge`. Where a point does not exist the label is null, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uos.labels.edges import Edge, fit_ramp, window_levels
from uos.labels.profile import Profile

KEYPOINTS = ("entry", "transition", "exit")


@dataclass(frozen=True)
class Keypoint:
    depth_mm: float | None
    source: str  # event | signal | human | none
    confidence: float
    reason: str


def null(reason: str, source: str = "signal", confidence: float = 0.8) -> Keypoint:
    """A point that does not exist: `confidence` says how sure we are that it does not."""
    return Keypoint(None, source, confidence, reason)


def signal_confidence(edge: Edge, noise: float, thrust: Edge | None = None) -> float:
    """How far to trust an edge found in the torque: clear over noise and misfit, a ramp as long
    as a drill point can be, and the thrust changing at the same depth (a second witness)."""
    clarity = edge.contrast_a / (3 * noise + 2 * edge.residual_a + 0.02)
    confidence = 1 - np.exp(-clarity / 6.0)
    ramp_mm = edge.points * 0.02
    if not 0.3 <= ramp_mm <= 3.6:
        confidence *= 0.6
    if thrust is not None and abs(thrust.depth_mm - edge.depth_mm) > 0.4:
        confidence *= 0.6  # (no clear thrust edge at all says nothing: CFRP barely pushes back)
    return float(np.clip(confidence, 0.05, 0.97))


def thrust_witness(profile: Profile, edge: Edge, rising: bool) -> Edge | None:
    """The same edge in the thrust, if the thrust clearly shows one near it."""
    window = (edge.depth_mm - 1.5, edge.depth_mm + edge.points * 0.02 + 1.0)
    witness = fit_ramp(profile, *window, rising=rising, channel="thrust")
    thrust_noise = float(np.std(np.diff(profile.thrust[: max(10, int(0.8 / 0.02))]))) + 1e-3
    if witness is None or witness.contrast_a < 4 * thrust_noise:
        return None
    return witness


@dataclass
class SignalDetection:
    """What the signal-only detector found, with the edges (for confidence and for events)."""

    points: dict[str, Keypoint]
    edges: dict[str, Edge]
    baseline_a: float


def detect(profile: Profile, min_contact_mm: float = 2.5, cutting_a: float = 0.5) -> SignalDetection:
    depth, torque = profile.depth, profile.torque
    step = depth[1] - depth[0]
    base = float(np.median(torque[: max(int(0.8 / step), 5)]))
    edges: dict[str, Edge] = {}
    points: dict[str, Keypoint] = {}

    cutting = torque > base + cutting_a
    if cutting.sum() * step < min_contact_mm:
        reason = "air cut: no material contact"
        return SignalDetection({k: null(reason, confidence=0.9) for k in KEYPOINTS}, edges, base)

    # Entry: the first rise out of the baseline.
    threshold = base + max(8 * profile.noise, 0.15)
    first = int(np.flatnonzero(torque > threshold)[0])
    before, after = window_levels(profile)
    contrast = np.nan_to_num(after - before)
    index = np.arange(len(torque))

    def fit(name: str, anchor: int, lo: float, hi: float, verb: str) -> float:
        """Fit the edge around `anchor`; returns where its ramp ends (for the next search)."""
        edge = fit_ramp(profile, max(lo, depth[anchor] - 3.0), min(hi, depth[anchor] + 3.0), rising=verb == "rises")
        if edge is None:
            points[name] = Keypoint(float(depth[anchor]), "signal", 0.3, f"torque {verb}, ramp not fitted")
            return float(depth[anchor]) + 0.5
        edges[name] = edge
        witness = thrust_witness(profile, edge, rising=verb == "rises")
        agree = (
            ""
            if witness is None
            else (
                "; thrust agrees"
                if abs(witness.depth_mm - edge.depth_mm) <= 0.4
                else f"; thrust says {witness.depth_mm:.2f} mm"
            )
        )
        points[name] = Keypoint(edge.depth_mm, "signal", signal_confidence(edge, profile.noise, witness),
                                f"torque {verb} from {edge.before_a:.2f} to {edge.after_a:.2f} A{agree}")  # fmt: skip
        return edge.depth_mm + edge.points * step

    if first <= 2:
        points["entry"] = null("the recording starts inside the material", confidence=0.6)
        entry_end = float(depth[first])
    else:
        # Bounded by the next big rise or fall after the entry ramp has levelled off.
        peak = first + int(np.argmax(contrast[first : first + int(4.0 / step)]))
        calm = np.flatnonzero((index > peak) & (contrast < 0.2 * contrast[peak]))
        settled = int(calm[0]) if len(calm) else len(torque) - 1
        later = np.flatnonzero((index > settled) & (np.abs(contrast) > 0.6 * np.abs(contrast[first:]).max()))
        hi = float(depth[later[0]]) - 0.8 if len(later) else np.inf
        entry_end = fit("entry", first, -np.inf, hi, "rises")

    # Transition: the largest later rise, from inside a material (not from air: a countersink
    # meeting the part after an exit) to a clearly higher level.
    level_before = np.nan_to_num(before, nan=base)
    rises = np.flatnonzero(
        (depth > entry_end + 0.3)
        & (level_before > base + cutting_a)
        & (contrast > np.maximum(0.5, 10 * profile.noise))
        & (contrast > 0.5 * (level_before - base))
    )
    # Exit: the first fall, after the last material reached, back to near the baseline.
    level_after = np.nan_to_num(after, nan=np.inf)

    def first_fall(start: float) -> int | None:
        falls = np.flatnonzero(
            (depth > start)
            & (contrast < -np.maximum(0.5, 10 * profile.noise))
            & (level_after < base + 0.35 * (level_before - base))
        )
        if not len(falls):
            return None
        breaks = np.flatnonzero(np.diff(falls) > 1)
        run = falls[: breaks[0] + 1] if len(breaks) else falls
        return int(run[np.argmin(contrast[run])])

    fall = first_fall(entry_end)
    if len(rises) and fall is not None:
        rises = rises[depth[rises] < depth[fall]]  # a rise after the breakthrough is not a layer
    material_end = entry_end
    if len(rises) == 0:
        points["transition"] = null("one layer only: no rise to a second material")
    else:
        rise = int(rises[np.argmax(contrast[rises])])
        hi = float(depth[fall]) - 0.5 if fall is not None else np.inf
        material_end = fit("transition", rise, entry_end, hi, "rises")
        fall = first_fall(material_end)
    if fall is None:
        tail = float(np.median(torque[-max(int(0.3 / step), 3) :]))
        material = torque[depth > material_end]
        level = float(np.percentile(material, 90)) if len(material) else tail
        falling = np.gradient(torque[-max(int(3.0 / step), 5) :])
        recent = torque[-max(int(0.4 / step), 3)]  # 0.4 mm before the end
        if (tail < base + 0.85 * (level - base) and recent - tail > 0.1 * (level - base)
                and falling[-max(int(0.3 / step), 3) :].mean() < 0):  # fmt: skip
            # The recording ends while the torque falls away: breakthrough under way.
            anchor = len(torque) - len(falling) + int(np.argmin(falling))
            fit("exit", anchor, material_end, np.inf, "falls")
            points["exit"] = Keypoint(points["exit"].depth_mm, "signal", 0.6 * points["exit"].confidence,
                                      points["exit"].reason + " (the recording ends during the fall)")  # fmt: skip
        elif tail > base + cutting_a:
            points["exit"] = null("the recording ends before breakthrough", confidence=0.85)
        else:
            points["exit"] = null("no fall back to the baseline found", confidence=0.4)
    else:
        fit("exit", fall, material_end, np.inf, "falls")
    return SignalDetection(points, edges, base)
