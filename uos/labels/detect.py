"""Keypoints from the signals alone: no step numbers, no stop codes.

On the fresh-cut torque profile, each keypoint is a change of cutting state (`cutting.py`):
entry where the torque rises from air to cutting level (the start of the ramp that leads to the
first sustained cutting, not a shift of the air baseline), transition the largest later rise from
inside a material to a clearly higher level (a second, harder material), exit the first fall
after that back towards air (breakthrough). Each is located on its edge by `edges.fit_ramp` and
must pass the cutting rule; where a point does not exist the label is null, with the reason, and
where one exists but cannot be located it is null with confidence 0 (unknown: not a training
target either way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uos.holes.profile import GRID_MM, Profile
from uos.holes.quality import AIR_MM
from uos.labels import KEYPOINTS
from uos.labels.cutting import CuttingRule, CuttingState
from uos.labels.edges import Edge, fit_ramp, window_levels

SUSTAINED_MM = 0.3  # cutting for at least this long: the drill is in the material, not a blip
CANDIDATES = 3  # edges tried, best first, before a keypoint is given up as unknown
WITNESS_MM = 1.0  # an exit's torque and thrust edges further apart than this: the torque fell in stages


@dataclass(frozen=True)
class Keypoint:
    depth_mm: float | None
    source: str  # event | signal | human | none
    confidence: float
    reason: str


def null(reason: str, source: str = "signal", confidence: float = 0.8) -> Keypoint:
    """A point that does not exist: `confidence` says how sure we are that it does not (0: we do
    not know whether it exists or where it is)."""
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
    thrust_noise = float(np.std(np.diff(profile.thrust[: max(10, int(AIR_MM / GRID_MM))]))) + 1e-3
    if witness is None or witness.contrast_a < 4 * thrust_noise:
        return None
    return witness


@dataclass
class SignalDetection:
    """What the signal-only detector found, with the edges (for confidence and for events)."""

    points: dict[str, Keypoint]
    edges: dict[str, Edge]
    baseline_a: float
    state: CuttingState | None = None


def first_sustained(mask: np.ndarray, points: int) -> int | None:
    """The first index that starts a run of at least `points` True values."""
    if not mask.any():
        return None
    change = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    long_enough = np.flatnonzero(ends - starts >= points)
    return int(starts[long_enough[0]]) if len(long_enough) else int(starts[0])


def _runs(indices: np.ndarray) -> list[np.ndarray]:
    """Consecutive indices grouped into runs."""
    if not len(indices):
        return []
    return np.split(indices, np.flatnonzero(np.diff(indices) > 1) + 1)


class _Detector:
    """The three keypoints of one hole, found in depth order; each search starts where the
    previous keypoint's ramp ended."""

    def __init__(self, profile: Profile, state: CuttingState):
        self.profile, self.state = profile, state
        self.depth, self.torque = profile.depth, profile.torque
        self.step = float(self.depth[1] - self.depth[0])
        self.base = state.baseline_a
        self.before, self.after = window_levels(profile)
        self.contrast = np.nan_to_num(self.after - self.before)
        self.points: dict[str, Keypoint] = {}
        self.edges: dict[str, Edge] = {}
        self.witnesses: dict[str, Edge | None] = {}

    def _accept(self, name: str, edge: Edge | None, confidence_scale: float = 1.0, note: str = "") -> bool:
        """Take `edge` as keypoint `name` if it is a change of cutting state."""
        if edge is None or self.state.check(name, edge.depth_mm) is not None:
            return False
        rising = name != "exit"
        witness = thrust_witness(self.profile, edge, rising=rising)
        agree = ""
        if witness is not None:
            agree = (
                "; thrust agrees"
                if abs(witness.depth_mm - edge.depth_mm) <= 0.4
                else f"; thrust says {witness.depth_mm:.2f} mm"
            )
        verb = "rises" if rising else "falls"
        confidence = signal_confidence(edge, self.profile.noise, witness) * confidence_scale
        reason = f"torque {verb} from {edge.before_a:.2f} to {edge.after_a:.2f} A{agree}{note}"
        self.points[name] = Keypoint(edge.depth_mm, "signal", confidence, reason)
        self.edges[name] = edge
        self.witnesses[name] = witness
        return True

    def _fit(self, lo: float, hi: float, rising: bool) -> Edge | None:
        return fit_ramp(self.profile, lo, hi, rising=rising)

    def entry(self) -> float:
        """The start of the ramp that leads from air to the first sustained cutting."""
        cutting = self.torque >= self.state.cutting_level_a
        anchor = first_sustained(cutting, max(int(SUSTAINED_MM / self.step), 1))
        if anchor is None or anchor <= 2:
            self.points["entry"] = null("the recording starts inside the material", confidence=0.6)
            return float(self.depth[0] if anchor is None else self.depth[anchor])
        at = float(self.depth[anchor])
        reach = self.state.rule.drill_point_mm
        edge = self._fit(max(at - reach - 0.5, float(self.depth[0])), at + 1.5, rising=True)
        if edge is not None and edge.depth_mm <= at and self._accept("entry", edge):
            return edge.depth_mm + edge.points * self.step
        # No clean ramp: the last air-level point before the torque reached cutting level.
        air = np.flatnonzero(self.torque[:anchor] <= self.base + self.state.rule.cutting_a / 4)
        start = float(self.depth[air[-1]]) if len(air) else at
        if self.state.check("entry", start) is None:
            self.points["entry"] = Keypoint(
                start, "signal", 0.3, "torque rises from air to cutting level; ramp not fitted"
            )
        else:
            self.points["entry"] = null("the rise from air to cutting level could not be located", confidence=0.0)
        return at

    def transition(self, entry_end: float) -> float:
        """The largest later rise from inside a material to a clearly higher level (not from air:
        a countersink meeting the part after an exit); returns where its ramp ends."""
        level_before = np.nan_to_num(self.before, nan=self.base)
        cutting_a = self.state.rule.cutting_a
        rises = np.flatnonzero(
            (self.depth > entry_end + 0.3)
            & (level_before > self.base + cutting_a)
            & (self.contrast > np.maximum(0.5, 10 * self.profile.noise))
            & (self.contrast > 0.5 * (level_before - self.base))
        )
        falls = self.falls(entry_end)
        if falls:
            rises = rises[self.depth[rises] < self.depth[falls[0][0]]]  # a rise after the breakthrough is not a layer
        if not len(rises):
            self.points["transition"] = null("one layer only: no rise to a second material")
            return entry_end
        hi = float(self.depth[falls[0][0]]) if falls else np.inf
        runs = sorted(_runs(rises), key=lambda run: -self.contrast[run].max())[:CANDIDATES]
        for run in runs:
            anchor = int(run[np.argmax(self.contrast[run])])
            at = float(self.depth[anchor])
            edge = self._fit(max(entry_end, at - 3.0), min(hi, at + 3.0), rising=True)
            if self._accept("transition", edge):
                return edge.depth_mm + edge.points * self.step
        self.points["transition"] = null(
            "a rise inside the material, but no clear change to a harder layer", confidence=0.0
        )
        return entry_end

    def falls(self, start: float) -> list[np.ndarray]:
        """The runs of places after `start` where an exit may be (cutting.py), in depth order."""
        allowed = self.state.allowed("exit") & (self.depth > start)
        return _runs(np.flatnonzero(allowed))

    def exit(self, material_end: float) -> None:
        """The first fall after the last material reached, back to air for good."""
        reach = int(self.state.rule.drill_point_mm / self.step)
        for run in self.falls(material_end)[:CANDIDATES]:
            # Anchored on the steepest fall in reach of the run, as the transition on its rise.
            zone = np.arange(run[0], min(run[-1] + reach, len(self.depth) - 1) + 1)
            at = float(self.depth[zone[np.argmin(self.contrast[zone])]])
            if self._accept("exit", self._fit(max(material_end, at - 3.0), at + 3.0, rising=False)):
                self._first_stage_of_the_fall()
                return
        self.exit_at_the_end(material_end)

    def _first_stage_of_the_fall(self) -> None:
        """At breakthrough the chisel edge leaves first: the thrust falls where the torque starts
        to. Where the thrust fell more than `WITNESS_MM` before the torque edge found, the torque
        falls in two stages and the fit took the second: fit again up to it, from the thrust's
        edge; when that does not agree with the thrust either, the exit is left unknown."""
        edge, witness = self.edges["exit"], self.witnesses.get("exit")
        if witness is None or witness.depth_mm >= edge.depth_mm - WITNESS_MM:
            return
        first = self._fit(witness.depth_mm - 1.0, edge.depth_mm + 0.1, rising=False)
        if (
            first is not None
            and abs(first.depth_mm - witness.depth_mm) <= WITNESS_MM
            and self.state.check("exit", first.depth_mm) is None
        ):
            note = f"; a fall in two stages: the first, where the thrust falls ({witness.depth_mm:.2f} mm)"
            self.points["exit"] = Keypoint(
                first.depth_mm,
                "signal",
                0.5 * self.points["exit"].confidence,
                f"torque falls from {first.before_a:.2f} to {first.after_a:.2f} A{note}",
            )
            self.edges["exit"] = first
            return
        reason = f"torque edge at {edge.depth_mm:.2f} mm, but the thrust falls at {witness.depth_mm:.2f} mm"
        self.points["exit"] = null(f"{reason}: where the breakthrough starts is unknown", confidence=0.0)
        del self.edges["exit"]

    def exit_at_the_end(self, material_end: float) -> None:
        """No complete fall: the recording ends in the material, or during the breakthrough."""
        torque, step = self.torque, self.step
        tail = float(np.median(torque[-max(int(0.3 / step), 3) :]))
        material = torque[self.depth > material_end]
        level = float(np.percentile(material, 90)) if len(material) else tail
        falling = np.gradient(torque[-max(int(3.0 / step), 5) :])
        recent = torque[-max(int(0.4 / step), 3)]  # 0.4 mm before the end
        ending_fall = (
            tail < self.base + 0.85 * (level - self.base)
            and recent - tail > 0.1 * (level - self.base)
            and falling[-max(int(0.3 / step), 3) :].mean() < 0
        )
        if ending_fall:
            anchor = len(torque) - len(falling) + int(np.argmin(falling))
            edge = self._fit(max(material_end, float(self.depth[anchor]) - 3.0), np.inf, rising=False)
            if self._accept("exit", edge, 0.6, " (the recording ends during the fall)"):
                return
            self.points["exit"] = null(
                "the recording ends during the fall: where it breaks through is unknown", confidence=0.0
            )
        elif tail > self.state.cutting_level_a:
            self.points["exit"] = null("the recording ends before breakthrough", confidence=0.85)
        else:
            self.points["exit"] = null("no fall back to the baseline found", confidence=0.4)


def detect(
    profile: Profile, min_contact_mm: float = 2.5, rule: CuttingRule | None = None, state: CuttingState | None = None
) -> SignalDetection:
    """Entry, transition and exit of one hole from its torque profile (`state`: the cutting rule
    already evaluated on this profile, else done here with `rule`)."""
    state = state or CuttingState.of(profile, rule or CuttingRule())
    step = profile.depth[1] - profile.depth[0]
    cutting = profile.torque > state.cutting_level_a
    if cutting.sum() * step < min_contact_mm:
        reason = "air cut: no material contact"
        return SignalDetection({k: null(reason, confidence=0.9) for k in KEYPOINTS}, {}, state.baseline_a, state)
    detector = _Detector(profile, state)
    entry_end = detector.entry()
    material_end = detector.transition(entry_end)
    detector.exit(material_end)
    return SignalDetection(detector.points, detector.edges, state.baseline_a, state)
