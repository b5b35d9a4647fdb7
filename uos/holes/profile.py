"""A hole's torque and thrust as functions of depth, on a regular grid, from fresh cutting only.

The drill retracts at step changes and micro-pecks, then feeds back through air it has already
cut: those samples say nothing about the material, so only samples at a new maximum depth are
kept. They are averaged into bins of `GRID_MM` (which also averages out the 8 Hz ring of slow
metal cutting), gaps between samples are interpolated, and a short moving average takes the
quantisation flicker off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uos.holes.quality import AIR_MM

GRID_MM = 0.02
SMOOTH_MM = 0.1


@dataclass(frozen=True)
class Profile:
    depth: np.ndarray  # grid, ascending
    torque: np.ndarray  # smoothed
    thrust: np.ndarray
    noise: float  # torque flicker (A) in air at the start
    reentries: np.ndarray  # depths where the drill came back to fresh material after a retract

    def index(self, depth: float) -> int:
        return int(np.clip(np.searchsorted(self.depth, depth), 0, len(self.depth) - 1))

    def window(self, start: float, end: float) -> slice:
        return slice(self.index(start), max(self.index(end), self.index(start) + 1))

    def level(self, start: float, end: float) -> float:
        """Median torque over a depth window."""
        values = self.torque[self.window(start, end)]
        return float(np.median(values)) if len(values) else float("nan")


def fresh_cut(depth: np.ndarray, tolerance: float = 0.01) -> np.ndarray:
    """Samples at a new maximum depth (within `tolerance`): the drill is cutting new material. A
    missing (NaN) depth is not fresh, and does not hide the samples after it."""
    deepest = np.fmax.accumulate(depth)  # fmax: NaN skipped, where maximum would carry it to the end
    previous = np.concatenate([[-np.inf], deepest[:-1]])
    return depth >= previous - tolerance


def _moving_average(values: np.ndarray, rows: int) -> np.ndarray:
    if rows <= 1 or len(values) <= rows:
        return values
    left, right = rows // 2, rows - 1 - rows // 2
    padded = np.concatenate([np.full(left, values[0]), values, np.full(right, values[-1])])
    return np.convolve(padded, np.ones(rows) / rows, mode="valid")


def build_profile(depth: np.ndarray, torque: np.ndarray, thrust: np.ndarray) -> Profile | None:
    """The profile of one hole; None when it has too little travel to say anything."""
    keep = fresh_cut(depth) & np.isfinite(depth) & np.isfinite(torque)
    # A retract (step change, micro-peck) shows as kept samples that were not consecutive; the
    # spindle speed, hence the torque level, may change there.
    kept = np.flatnonzero(keep)
    retracted = np.concatenate([[False], np.diff(kept) > 3])
    depth, torque, thrust = depth[keep], torque[keep], np.nan_to_num(thrust[keep])
    reentries = depth[retracted]
    if len(depth) < 10 or depth[-1] - depth[0] < 10 * GRID_MM:
        return None
    # (A fresh sample may lie up to the fresh-cut tolerance behind the first one.)
    start = float(depth.min())
    bins = np.floor((depth - start) / GRID_MM).astype(np.int64)
    n = int(bins.max()) + 1
    counts = np.bincount(bins, minlength=n)
    # Torque and thrust summed per bin in one pass: thrust's bins follow torque's.
    sums = np.bincount(np.concatenate([bins, bins + n]), weights=np.concatenate([torque, thrust]), minlength=2 * n)
    filled = counts > 0
    grid = start + (np.arange(n) + 0.5) * GRID_MM
    if filled.all():
        binned = sums.reshape(2, n) / counts
    else:  # gaps (a fast feed skips bins): interpolated
        means = sums.reshape(2, n)[:, filled] / counts[filled]
        binned = np.stack([np.interp(grid, grid[filled], m) for m in means])
    rows = max(1, round(SMOOTH_MM / GRID_MM))
    smooth_torque = _moving_average(binned[0], rows)
    smooth_thrust = _moving_average(binned[1], rows)
    air = binned[0][: max(10, int(AIR_MM / GRID_MM))]
    noise = float(np.std(air - _moving_average(air, rows)) + 1e-3)
    return Profile(grid, smooth_torque, smooth_thrust, noise, reentries)
