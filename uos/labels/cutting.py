"""What a keypoint means: a change of cutting state.

The torque is spindle current above no-load. In air it sits on a baseline that may wander or
shift by a few tenths of an amp (no-load re-measured at a step change, a speed change); cutting
material lifts it to a level of its own. A keypoint is where that state changes:

- **entry**: a rise from air to a level that reaches cutting level (`cutting_a` above the hole's
  own air baseline) within one drill point's length: the lips engage the top surface and the
  torque ramps over the drill point. A shift of the air baseline that stays below cutting level
  is not an entry;
- **transition**: from a cutting level, a rise to a clearly higher one (a harder layer);
- **exit**: from a cutting level, a fall most of the way back to air within one drill point's
  length (breakthrough), over the drill point: at a step change the unit re-measures its no-load
  current and the torque drops to zero from one sample to the next while the drill is still in
  the layer, which is not a breakthrough.

And each is where its change starts: within `lead_mm` the torque has moved by half the cutting
level (a point placed well before a ramp, on a flat stretch, is not where anything changes).

`CuttingState` evaluates the rule at every point of a hole's profile at once, so that the
labeller can check a candidate, the refinement an edge it fitted, and the model's decoding
restrict each keypoint to where it may lie, all with the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import maximum_filter1d, median_filter, minimum_filter1d

from uos.holes.profile import Profile
from uos.holes.quality import AIR_MM
from uos.numeric import median

BEFORE_MM = 1.0  # the level before a point: median over this much travel ...
BEFORE_GAP_MM = 0.05  # ... ending this far before it (a step change's short dip does not move a median)


@dataclass(frozen=True)
class CuttingRule:
    """The thresholds of the rule: `cutting_a` and `drill_point_mm` from `[label]` in
    params.toml, the rest fixed here; a model keeps the copy it was trained with."""

    cutting_a: float = 0.5  # torque above the air baseline that means the drill is cutting
    drill_point_mm: float = 3.0  # the longest drill point: a ramp at a surface is no longer than this
    clear_rise: float = 0.5  # a transition rises by at least this share of its level above air
    exit_share: float = 0.35  # an exit falls below this share of its level above air
    lead_mm: float = 1.0  # ... and the change has started (half the cutting level) within this
    instant_mm: float = 0.15  # an exit does not lose half its level within this (a step change does)


def air_baseline(profile: Profile, channel: str = "torque") -> float:
    """The torque (or thrust) in air before the stack, learnt from the hole itself: its first
    `AIR_MM` of travel."""
    step = profile.depth[1] - profile.depth[0]
    return median(getattr(profile, channel)[: max(int(AIR_MM / step), 5)])


@dataclass
class CuttingState:
    """The rule evaluated along one hole's profile."""

    profile: Profile
    rule: CuttingRule
    baseline_a: float
    before_a: np.ndarray  # level before each point (median over BEFORE_MM)
    ahead_max_a: np.ndarray  # highest torque within one drill point after each point
    ahead_min_a: np.ndarray  # lowest
    lead_max_a: np.ndarray  # highest torque within `lead_mm` after each point
    lead_min_a: np.ndarray  # lowest
    _allowed: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, profile: Profile, rule: CuttingRule | None = None) -> CuttingState:
        rule = rule or CuttingRule()
        torque = profile.torque
        step = profile.depth[1] - profile.depth[0]
        width = max(round(BEFORE_MM / step), 1)
        gap = max(round(BEFORE_GAP_MM / step), 1)
        # Median over [i - gap - width, i - gap): a forward window on a series padded at the start.
        padded = np.concatenate([np.full(width + gap, torque[0]), torque])
        forward = median_filter(padded, size=width, mode="nearest", origin=-(width // 2))
        before = forward[: len(torque)]
        base = air_baseline(profile)
        return cls(
            profile,
            rule,
            base,
            before,
            _ahead(torque, rule.drill_point_mm / step),
            _ahead(torque, rule.drill_point_mm / step, largest=False),
            _ahead(torque, rule.lead_mm / step),
            _ahead(torque, rule.lead_mm / step, largest=False),
        )

    @property
    def cutting_level_a(self) -> float:
        return self.baseline_a + self.rule.cutting_a

    def allowed(self, name: str) -> np.ndarray:
        """Where on the profile's grid the keypoint `name` may lie."""
        if name not in self._allowed:
            self._allowed[name] = self._where(name)
        return self._allowed[name]

    def _where(self, name: str) -> np.ndarray:
        cutting = self.cutting_level_a
        # Where the change starts, the torque moves away from its value there (after a step
        # change's dip that value is the dip, not the layer's level before it) ...
        here, moved = self.profile.torque, self.rule.cutting_a / 2
        # ... and the level it changes from is the higher of the two (a point half-way up a ramp
        # is not the start of another).
        level = np.maximum(self.before_a, here)
        above_air = level - self.baseline_a
        if name == "entry":
            starts = self.lead_max_a >= here + moved
            return (self.before_a < cutting) & (self.ahead_max_a >= cutting) & starts
        if name == "transition":
            higher = level + np.maximum(self.rule.cutting_a, self.rule.clear_rise * above_air)
            starts = self.lead_max_a >= here + moved
            return (self.before_a >= cutting) & (self.ahead_max_a >= higher) & starts
        if name == "exit":
            back = self.baseline_a + self.rule.exit_share * above_air
            starts = self.lead_min_a <= here - moved
            falls = (self.before_a >= cutting) & (self.ahead_min_a <= back) & starts
            return falls & self._not_instant(level)
        raise ValueError(f"unknown keypoint {name!r}")

    def _not_instant(self, level: np.ndarray) -> np.ndarray:
        """Where the torque does not drop by half of `level` (above air) within `instant_mm`
        anywhere from `BEFORE_MM` behind to one drill point ahead: a breakthrough ramps down over
        the drill point, a step change drops at once (and the points just after such a drop,
        still on a high level before them, are no breakthrough either).

        The whole drill point ahead is looked at, because a step change's drop may come up to a
        drill point after the layer's torque starts to sag. The price: an exit followed within a
        drill point by a drop as sudden (a countersink letting go) is not taken for one, and the
        hole goes to review without an exit rather than risk a step change taken for a breakthrough."""
        torque, step = self.profile.torque, self.profile.depth[1] - self.profile.depth[0]
        soon_min = _ahead(torque, self.rule.instant_mm / step, largest=False)
        behind, ahead = round(BEFORE_MM / step), max(round(self.rule.drill_point_mm / step), 1)
        size = behind + ahead + 1
        drop = maximum_filter1d(torque - soon_min, size=size, mode="nearest", origin=behind - size // 2)
        return drop < 0.5 * (level - self.baseline_a)

    def check(self, name: str, depth_mm: float) -> str | None:
        """None when a keypoint at `depth_mm` is a change of cutting state, else why it is not."""
        depth = self.profile.depth
        if not depth[0] - 0.05 <= depth_mm <= depth[-1] + 0.05:
            return f"{depth_mm:.2f} mm is outside the recording ({depth[0]:.2f}-{depth[-1]:.2f} mm)"
        i = self.profile.index(depth_mm)
        if self.allowed(name)[i]:
            return None
        before, base, cutting = self.before_a[i], self.baseline_a, self.rule.cutting_a
        reach, lead = self.rule.drill_point_mm, self.rule.lead_mm
        if name == "entry" and before >= base + cutting:
            return f"already cutting before it ({before - base:.2f} A above air)"
        if name != "entry" and before < base + cutting:
            return f"not cutting before it ({before - base:.2f} A above air, cutting is {cutting:g} A)"
        if name == "entry" and self.ahead_max_a[i] < base + cutting:
            return (
                f"the torque does not reach cutting level ({cutting:g} A above air) within {reach:g} mm "
                f"(at most {self.ahead_max_a[i] - base:.2f} A): not an entry"
            )
        here = self.profile.torque[i]
        level = max(before, here)
        if name == "transition" and self.lead_max_a[i] >= here + cutting / 2:
            return f"no clear rise from {level - base:.2f} A above air within {reach:g} mm"
        if name == "exit" and self.ahead_min_a[i] > base + self.rule.exit_share * (level - base):
            return f"the torque does not fall back towards air within {reach:g} mm"
        if name == "exit" and self.lead_min_a[i] <= here - cutting / 2:
            return "the torque drops at once (a step change), not over the drill point"
        return f"nothing changes within {lead:g} mm after it: the {name} is where the torque starts to move"

    def check_all(self, points: dict[str, float | None]) -> dict[str, str]:
        """The keypoints of `points` that break the rule, with why."""
        broken = {}
        for name, depth_mm in points.items():
            if depth_mm is not None and np.isfinite(depth_mm):
                reason = self.check(name, float(depth_mm))
                if reason is not None:
                    broken[name] = reason
        return broken


def _ahead(values: np.ndarray, points: float, largest: bool = True) -> np.ndarray:
    """The highest (or lowest) value over [i, i + points] for every i."""
    size = max(round(points), 1) + 1
    extreme = maximum_filter1d if largest else minimum_filter1d
    return extreme(values, size=size, mode="nearest", origin=-(size // 2))
