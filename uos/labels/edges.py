"""Locating a keypoint on one edge of the torque profile.

Around a keypoint the torque ramps (up at entry and transition, down at exit) over the drill
point's length, linearly in depth, from the level before to the level after. The keypoint is
where that ramp starts: `fit_ramp` fits a level, a linear ramp and another level by least squares
over every ramp start and length in a window, and takes the best ramp's start. `window_levels`
gives the torque levels before and after each point, which say where edges may be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uos.holes.profile import Profile


@dataclass(frozen=True)
class Edge:
    """A located keypoint and what supports it."""

    depth_mm: float
    before_a: float  # torque level before the edge
    after_a: float  # level after it
    residual_a: float  # rms misfit of the ramp line
    points: int  # the ramp's length in profile points

    @property
    def contrast_a(self) -> float:
        return abs(self.after_a - self.before_a)


def window_levels(profile: Profile, window_mm: float = 1.0, skip_mm: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Mean torque over the `window_mm` before and after each point (`skip_mm` left out around
    it); NaN where a window is cut short by the ends of the profile."""
    torque = profile.torque
    step = profile.depth[1] - profile.depth[0]
    w, s = max(int(window_mm / step), 1), max(int(skip_mm / step), 0)
    cumulative = np.concatenate([[0.0], np.cumsum(torque)])
    n = len(torque)
    index = np.arange(n)
    a0, a1 = np.clip(index + s, 0, n), np.clip(index + s + w, 0, n)
    b0, b1 = np.clip(index - s - w, 0, n), np.clip(index - s, 0, n)
    after = (cumulative[a1] - cumulative[a0]) / np.maximum(a1 - a0, 1)
    before = (cumulative[b1] - cumulative[b0]) / np.maximum(b1 - b0, 1)
    short = (a1 - a0 < w // 2) | (b1 - b0 < w // 2)
    before[short] = after[short] = np.nan
    return before, after


def _prefix(values: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(values)])


class _PointSums:
    """Sums over runs of a window's points of 1, z, z², y and z·y, each in O(1) from prefix sums;
    z about the window's middle, so that the sums of squares lose no precision."""

    def __init__(self, z: np.ndarray, y: np.ndarray, centre: float):
        zc = z - centre
        self.prefixes = [_prefix(v) for v in (np.ones_like(z), zc, zc * zc, y, zc * y)]

    def over(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        """[Σ1, Σz, Σz², Σy, Σzy] over the points a..b-1 (index arrays that broadcast)."""
        return [prefix[b] - prefix[a] for prefix in self.prefixes]


def _normal_equations(
    z: np.ndarray, y: np.ndarray, after_jump: np.ndarray | None, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """The least-squares normal equations (gram, rhs; shapes lengths x starts x terms [x terms])
    of every ramp start k and length L, and Σy². The terms: a level before and a level after
    (1 - r and r, r = clip((z - k) / L, 0, 1)), each pair once per side of a retract, then the
    drift min(z - k, 0). r is 0 before k, linear on the ramp and 1 after it, and the drift is 0
    from k on (so r · drift = 0): every sum is a few sums of powers of z over runs of points,
    found by `searchsorted`. O(lengths x starts), where multiplying out the basis was O(points)
    more (and 4.6 times slower on real holes, for the same ramps)."""
    centre = float(z.mean())
    kc, length = starts - centre, lengths[:, None]
    sums = _PointSums(z, y, centre)
    begin = np.searchsorted(z, starts)  # the ramp's first point (r >= 0)
    end = np.searchsorted(z, starts[None, :] + length)  # the first point on the level after it (r = 1)
    jump = None if after_jump is None else int(np.argmax(after_jump))
    sides = [(0, len(z))] if jump is None else [(0, jump), (jump, len(z))]
    terms = 2 * len(sides) + 1
    gram = np.zeros((len(lengths), len(starts), terms, terms))
    rhs = np.zeros((len(lengths), len(starts), terms))
    for side, (lo, hi) in enumerate(sides):
        b, e = np.clip(begin, lo, hi), np.clip(end, lo, hi)
        n1, nz, nzz, ny, nzy = sums.over(b, e)  # the ramp: r = (z - k) / L
        flat1, _, _, flaty, _ = sums.over(e, hi)  # after it: r = 1
        r1 = (nz - kc * n1) / length + flat1
        r2 = (nzz - 2 * kc * nz + kc**2 * n1) / length**2 + flat1
        ry = (nzy - kc * ny) / length + flaty
        d1 = sums.over(lo, b)[1] - kc * sums.over(lo, b)[0]  # Σ drift on this side (with 1 - r = 1)
        before, after = 2 * side, 2 * side + 1
        gram[..., before, before] = (hi - lo) - 2 * r1 + r2
        gram[..., before, after] = gram[..., after, before] = r1 - r2
        gram[..., after, after] = r2
        gram[..., before, -1] = gram[..., -1, before] = d1
        total_y = sums.prefixes[3][hi] - sums.prefixes[3][lo]
        rhs[..., before], rhs[..., after] = total_y - ry, ry
    n1, nz, nzz, ny, nzy = sums.over(np.zeros_like(begin), begin)  # the drift: z - k before k
    gram[..., -1, -1] = nzz - 2 * kc * nz + kc**2 * n1
    rhs[..., -1] = nzy - kc * ny
    return gram, rhs, float(np.dot(y, y))


def _least_squares(
    z: np.ndarray,
    y: np.ndarray,
    after_jump: np.ndarray | None,
    starts: np.ndarray,
    lengths: np.ndarray,
    drift_limit: float,
) -> tuple[np.ndarray, np.ndarray]:
    """For every ramp length and start: the sum of squared errors and the coefficients of

        torque = A (1 - r) + B r + a min(z - k, 0),   r = clip((z - k) / L, 0, 1)

    with separate A, B after a retract (shapes: lengths x starts, and lengths x starts x terms).
    The level before the ramp may drift (a layer's torque creeps, a hump eases off before
    breakthrough), but only gently: |a| <= `drift_limit`."""
    gram, rhs, total = _normal_equations(z, y, after_jump, starts, lengths)
    ridge = np.eye(gram.shape[-1]) * 1e-6
    coefficients = np.linalg.solve(gram + ridge, rhs[..., None])[..., 0]
    sse = total - np.einsum("lsa,lsa->ls", coefficients, rhs)
    slope = coefficients[..., -1]
    over = np.abs(slope) > drift_limit
    if over.any():
        # Too steep a drift: clamp it, and fit the levels to what is left (y - a·drift).
        clamped = np.clip(slope, -drift_limit, drift_limit)
        level_rhs = rhs[..., :-1] - clamped[..., None] * gram[..., :-1, -1]
        levels = np.linalg.solve(gram[..., :-1, :-1] + ridge[:-1, :-1], level_rhs[..., None])[..., 0]
        rest = total - 2 * clamped * rhs[..., -1] + clamped**2 * gram[..., -1, -1]
        sse = np.where(over, rest - np.einsum("lsa,lsa->ls", levels, level_rhs), sse)
        coefficients[..., :-1] = np.where(over[..., None], levels, coefficients[..., :-1])
        coefficients[..., -1] = np.where(over, clamped, slope)
    return sse, coefficients


@dataclass(frozen=True)
class _RampWindow:
    """The profile points a ramp is fitted on, and what a fitted ramp must respect there."""

    z: np.ndarray  # depth
    y: np.ndarray  # the channel's values
    after_jump: np.ndarray | None  # 1.0 from the retract the window holds on (its own levels), else None
    drift_limit: float  # the steepest drift of the level before the ramp, per mm
    sign: float  # +1.0 for a rising ramp, -1.0 for a falling one
    low: float  # fitted levels outside [low, high] are an extrapolation, not a level the torque had
    high: float

    def search(self, starts: np.ndarray, lengths: np.ndarray) -> tuple[float, float, float, np.ndarray]:
        """The best ramp over these starts and lengths: its sse (inf when none is in the expected
        direction with plausible levels), start, length and coefficients."""
        z, after_jump = self.z, self.after_jump
        sse, coefficients = _least_squares(z, self.y, after_jump, starts, lengths, self.drift_limit)
        before, after = coefficients[..., 0], coefficients[..., 1]
        if after_jump is not None:
            later = (starts >= z[np.argmax(after_jump)])[None, :]
            before, after = np.where(later, coefficients[..., 2], before), np.where(later, coefficients[..., 3], after)
        plausible = (np.minimum(before, after) >= self.low) & (np.maximum(before, after) <= self.high)
        sse = np.where((self.sign * (after - before) > 0) & plausible, sse, np.inf)
        i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
        return float(sse[i, j]), float(starts[j]), float(lengths[i]), coefficients[i, j]


def _ramp_window(profile: Profile, z: np.ndarray, y: np.ndarray, rising: bool) -> _RampWindow:
    after_jump = None
    jumps = profile.reentries[(profile.reentries > z[0] + 0.1) & (profile.reentries < z[-1] - 0.1)]
    if len(jumps):
        # The retract where the level changes most, if the window holds several.
        def change(at: float) -> float:
            i = int(np.searchsorted(z, at))
            return abs(float(np.mean(y[i : i + 3]) - np.mean(y[max(i - 3, 0) : i])))

        after_jump = (z >= max(jumps, key=change)).astype(float)
    # A drift of at most 15 % of the contrast per mm: far gentler than any ramp over a drill point.
    drift_limit = 0.15 * float(np.ptp(y))
    sign = 1.0 if rising else -1.0
    # Levels far outside what the window holds are an extrapolation (a level fitted on a handful
    # of points beside a retract), not a level the torque ever had.
    low, high = float(y.min()) - 0.25 * float(np.ptp(y)), float(y.max()) + 0.25 * float(np.ptp(y))
    return _RampWindow(z, y, after_jump, drift_limit, sign, low, high)


def fit_ramp(
    profile: Profile, lo_mm: float, hi_mm: float, rising: bool, max_ramp_mm: float = 4.0, channel: str = "torque"
) -> Edge | None:
    """Fit, on the profile between `lo_mm` and `hi_mm`, a level, a linear ramp and another level:

        torque(z) = A + (B - A) * clip((z - k) / L, 0, 1)   (+ a gentle drift of the level before)

    by least squares over ramp starts k and lengths L (levels in closed form), coarse then fine,
    keeping only ramps in the expected direction. k is the keypoint. A retract inside the window
    (a step change: the spindle speed, hence the torque levels, may change there) gets its own
    levels, so that a jump does not bend the ramp."""
    window = profile.window(lo_mm, hi_mm)
    z, y = profile.depth[window], getattr(profile, channel)[window]
    if len(z) < 8:
        return None
    step = z[1] - z[0]
    ramp = _ramp_window(profile, z, y, rising)
    lengths = np.arange(max(3 * step, 0.1), max_ramp_mm + 1e-9, 0.2)
    sse, k, length, _ = ramp.search(z[:-3:4], lengths)
    if not np.isfinite(sse):
        return None
    fine_starts = z[(z >= k - 0.1) & (z <= k + 0.1)]
    fine_lengths = np.arange(max(length - 0.2, 3 * step), length + 0.2 + 1e-9, 0.02)
    sse, k, length, coefficients = ramp.search(fine_starts, fine_lengths)
    if not np.isfinite(sse):
        return None
    residual = float(np.sqrt(max(sse, 0.0) / len(z)))
    if ramp.after_jump is None:
        before, after = coefficients[0], coefficients[1]
    else:
        jump_at = float(z[np.argmax(ramp.after_jump)])
        if k >= jump_at:
            before, after = coefficients[2], coefficients[3]
        else:
            before, after = coefficients[0], coefficients[1]
            # Before the retract the fitted ramp barely rose: the ramp really starts after it,
            # and the two sets of levels only blur where. Fit again from the retract on.
            rise_before_jump = abs(after - before) * min((jump_at - k) / length, 1.0)
            if rise_before_jump < max(5 * profile.noise, 0.1 * abs(coefficients[3] - coefficients[2])):
                return fit_ramp(profile, jump_at, hi_mm, rising, max_ramp_mm, channel)
    return Edge(k, float(before), float(after), residual, round(length / step))
