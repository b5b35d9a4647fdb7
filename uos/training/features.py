"""From raw signals to the model's input: channels on a fixed depth grid.

The same function serves training, `uos predict` and `uos serve` (through `infer.prepare`, inside
the registered MLflow model), so that a hole is seen the same way everywhere. Only depth, torque
and thrust are used: step numbers and stop codes are the labels' evidence, not inputs.
"""

from __future__ import annotations

import numpy as np

from uos.holes.profile import Profile

GRID_MM = 0.1  # the network localises on this grid; soft-argmax and the ramp fit go finer
MAX_DEPTH_MM = 40.0
N_BINS = int(MAX_DEPTH_MM / GRID_MM)
CHANNELS = ("torque/10", "thrust", "torque shape", "thrust shape", "torque slope", "drilled")


def depth_grid() -> np.ndarray:
    return (np.arange(N_BINS) + 0.5) * GRID_MM


def recorded_bins(profile: Profile) -> np.ndarray:
    """Which bins of the grid the recording covers."""
    grid = depth_grid()
    return (grid >= profile.depth[0]) & (grid <= profile.depth[-1])


def profile_features(profile: Profile | None) -> np.ndarray:
    """(channels, bins) float32 from a hole's profile: levels, shapes (scaled to the hole's maximum),
    the torque's slope and where the drill has been; zeros beyond the recording."""
    features = np.zeros((len(CHANNELS), N_BINS), dtype=np.float32)
    if profile is None:
        return features
    grid = depth_grid()
    drilled = recorded_bins(profile)
    # NaN (a profile built by hand from raw samples) would spread through every channel's scale.
    t = np.nan_to_num(np.interp(grid, profile.depth, profile.torque) * drilled)
    f = np.nan_to_num(np.interp(grid, profile.depth, profile.thrust) * drilled)
    slope = np.gradient(t, GRID_MM)
    features[0] = t / 10.0
    features[1] = f
    features[2] = t / max(float(np.max(np.abs(t))), 0.1)
    features[3] = f / max(float(np.max(np.abs(f))), 0.02)
    features[4] = slope / max(float(np.max(np.abs(slope))), 0.1)
    features[5] = drilled
    return features
