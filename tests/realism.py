"""Statistics that say whether a drilling recording looks real, measured the same way on real
and synthetic holes (used by test_synth_realism.py).

Two program families: `production` (torque-triggered steps, like setitec/mql: 1500 rpm until a
torque rise, 320 rpm until a torque drop, 1500 rpm to the end of travel) and `lab` (stroke-
triggered, like setitec/tuhh P1: 4000 rpm to 15.7 mm, then 1000 rpm). Windows are placed from
machine events or fixed depths, never from ground truth, so both sides are measured alike.
"""

from __future__ import annotations

import numpy as np

from uos.holes.record import Hole

TORQUE_Q = 50 / 1024


def family(hole: Hole) -> str | None:
    steps = [(p["rpm"], p["torque_max_a"] or 0, p["torque_min_a"] or 0) for p in hole.program if p.get("enabled")]
    rpms = [round(s[0]) for s in steps]
    if rpms == [1500, 320, 1500] and steps[0][1] > 0 and steps[1][2] > 0:
        return "production"
    if rpms == [4000, 1000] and all(s[1] == s[2] == 0 for s in steps):
        return "lab"
    return None


def _moving(values: np.ndarray, rows: int) -> np.ndarray:
    kernel = np.ones(rows) / rows
    return np.convolve(np.pad(values, rows // 2, mode="edge"), kernel, mode="valid")[: len(values)]


def _step_bounds(step: np.ndarray) -> list[tuple[int, int, int]]:
    """(step number, first row, last row) in order."""
    changes = np.flatnonzero(np.diff(step) != 0) + 1
    starts = np.concatenate([[0], changes])
    ends = np.concatenate([changes - 1, [len(step) - 1]])
    return [(int(step[a]), int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _trailing_identical(hole: Hole, last: int) -> int:
    """How many rows at the end of a step repeat the last one (all columns but the stop code)."""
    s = hole.signals
    count = 1
    while last - count >= 0 and all(s[c][last - count] == s[c][last] for c in ("depth_mm", "torque_a", "thrust_a")):
        count += 1
    return count


def common_stats(hole: Hole) -> dict[str, float]:
    s = hole.signals
    stats: dict[str, float] = {"n_samples": hole.n_samples}
    torque_grid = np.abs(s["torque_a"] / TORQUE_Q - np.round(s["torque_a"] / TORQUE_Q)) * TORQUE_Q
    stats["torque_on_grid"] = float(np.mean(torque_grid <= 0.0011))
    bounds = _step_bounds(s["step"])
    stats["code_rows_first_step"] = float(np.count_nonzero(s["stop_code"][bounds[0][1] : bounds[0][2] + 1]))
    stats["trailing_rows_first_step"] = float(_trailing_identical(hole, bounds[0][2]))
    if len(bounds) > 1:
        stats["back_step_mm"] = float(s["depth_mm"][bounds[0][2]] - s["depth_mm"][bounds[1][1]])
    return stats


def production_stats(hole: Hole) -> dict[str, float]:
    s = hole.signals
    depth, torque, thrust, step, code = (s[k] for k in ("depth_mm", "torque_a", "thrust_a", "step", "stop_code"))
    stats = common_stats(hole)
    bounds = {n: (a, b) for n, a, b in _step_bounds(step)}
    if set(bounds) != {1, 2, 3}:
        return stats
    (a1, b1), (a2, b2), (_a3, b3) = bounds[1], bounds[2], bounds[3]
    stats["codes"] = float(code[b1] * 1e8 + code[b2] * 1e3 + code[b3])  # 0x1, 0x800, 0x8 -> one number
    air = (depth >= 1.0) & (depth <= 4.0) & (step == 1)
    stats["air_torque_median_a"] = float(np.median(torque[air]))
    stats["air_torque_std_a"] = float(np.std(torque[air]))
    stats["air_thrust_std_a"] = float(np.std(thrust[air]))
    event = depth[b1]
    cfrp = (step == 1) & (depth >= event - 3.5) & (depth <= event - 1.5)
    stats["cfrp_torque_a"] = float(np.median(torque[cfrp]))
    stats["cfrp_thrust_a"] = float(np.median(thrust[cfrp]))
    stats["cfrp_power_w"] = float(np.median(s["power_w"][cfrp]))
    stats["step1_max_torque_a"] = float(torque[a1 : b1 + 1].max())
    start2 = depth[a2]
    metal = (step == 2) & (depth >= start2 + 1.2) & (depth <= start2 + 3.5)
    stats["metal_torque_a"] = float(np.median(torque[metal]))
    stats["metal_thrust_a"] = float(np.median(thrust[metal]))
    stats["metal_power_w"] = float(np.median(s["power_w"][metal]))
    stats["metal_oscillation_std_a"] = float(np.std(torque[metal] - _moving(torque, 19)[metal]))
    window = torque[metal] - torque[metal].mean()
    spectrum = np.abs(np.fft.rfft(window))
    stats["metal_oscillation_hz"] = float(np.fft.rfftfreq(len(window), 0.01)[np.argmax(spectrum[1:]) + 1])
    above = np.flatnonzero((step == 2) & (torque >= 1.0))
    stats["exit_event_after_last_1a_mm"] = float(depth[b2] - depth[above[-1]]) if len(above) else np.nan
    stats["samples_per_mm_step1"] = float((b1 - a1) / max(depth[b1] - depth[a1], 1e-9))
    stats["samples_per_mm_step2"] = float((b2 - a2) / max(depth[b2] - depth[a2], 1e-9))
    stats["noload_torque_step1_a"] = float(s["torque_empty_a"][a1])
    stats["noload_torque_step2_a"] = float(s["torque_empty_a"][a2])
    stats["end_depth_mm"] = float(depth[-1])
    stats["final_thrust_a"] = float(thrust[-1])
    return stats


def lab_stats(hole: Hole) -> dict[str, float]:
    s = hole.signals
    depth, torque, thrust, step, code = (s[k] for k in ("depth_mm", "torque_a", "thrust_a", "step", "stop_code"))
    stats = common_stats(hole)
    bounds = {n: (a, b) for n, a, b in _step_bounds(step)}
    if set(bounds) != {2, 3}:
        return stats
    (a2, b2), (a3, b3) = bounds[2], bounds[3]
    stats["first_code"] = float(code[b2])
    layer1 = (step == 2) & (depth >= 9.0) & (depth <= 14.5)
    stats["layer1_torque_a"] = float(np.median(torque[layer1]))
    stats["layer1_thrust_a"] = float(np.median(thrust[layer1]))
    last = step == 3
    stats["layer2_peak_torque_a"] = float(np.percentile(_moving(torque, 5)[last], 98))
    stats["layer2_peak_thrust_a"] = float(np.percentile(_moving(thrust, 9)[last], 98))
    stats["smoothness_q"] = float(np.max(np.abs(torque - _median5(torque))) / TORQUE_Q)
    stats["samples_per_mm_step2"] = float((b2 - a2) / max(depth[b2] - depth[a2], 1e-9))
    stats["samples_per_mm_step3"] = float((b3 - a3) / max(depth[b3] - depth[a3], 1e-9))
    stats["noload_torque_step2_a"] = float(s["torque_empty_a"][a2])
    stats["noload_torque_step3_a"] = float(s["torque_empty_a"][a3])
    # Entry: where the 5-row mean torque first reaches half the first layer's level.
    level = stats["layer1_torque_a"]
    half = np.flatnonzero((step == 2) & (_moving(torque, 5) >= level / 2))
    stats["entry50_mm"] = float(depth[half[0]]) if len(half) else np.nan
    return stats


def _median5(values: np.ndarray) -> np.ndarray:
    padded = np.pad(values, 2, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 5), axis=1)


def stats_of(hole: Hole) -> tuple[str | None, dict[str, float]]:
    kind = family(hole)
    if kind == "production":
        return kind, production_stats(hole)
    if kind == "lab":
        return kind, lab_stats(hole)
    return None, {}
