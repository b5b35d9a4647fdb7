"""Text views of one hole for the terminal (users work over SSH): a summary and a plotext plot."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from typing import Any

import numpy as np

from uos.holes.quality import PHYSICAL_RANGE, in_physical_range
from uos.holes.record import Hole
from uos.holes.stopcodes import describe


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def status_of_hole(hole: Hole) -> str:
    if any(i.level == "error" for i in hole.issues):
        return "error"
    return "warning" if hole.issues else "ok"


def step_boundaries(hole: Hole) -> list[tuple[int, float]]:
    """(step number, depth where it starts) for each step after the first."""
    step = hole.signals.get("step")
    depth = hole.signals["depth_mm"]
    if step is None or len(step) == 0:
        return []
    step = np.asarray(step, dtype=np.float64)
    changes = np.flatnonzero(np.diff(step) != 0) + 1
    return [(int(step[i]), float(depth[i])) for i in changes if np.isfinite(step[i])]


def render_summary(hole: Hole) -> str:
    m = hole.meta
    depth = hole.signals.get("depth_mm", np.empty(0))
    lines = [
        f"Hole {m['hole_id']}  ({m.get('source')})",
        f"  status        {status_of_hole(hole)}",
        f"  date          {_fmt(m.get('date'))}    format {_fmt(m.get('format_version'))} ({m.get('source_kind')})",
        f"  controller    {_fmt(m.get('controller_name'))} (SN {_fmt(m.get('controller_sn'))}, "
        f"firmware {_fmt(m.get('controller_firmware'))})",
        f"  motor         {_fmt(m.get('motor_name'))} (SN {_fmt(m.get('motor_sn'))})",
        f"  head          {_fmt(m.get('head_name'))} (tag {_fmt(m.get('head_tag'))}), "
        f"global counter {_fmt(m.get('global_counter'))}, "
        f"tool age {_fmt(m.get('tool_age'))}",
        f"  cutting tool  {_fmt(m.get('cutting_tool'))}",
        f"  results       cycle {_fmt(m.get('cycle_time_s'), ' s')}, "
        f"{'OK' if m.get('cycle_ok') else ('not OK' if m.get('cycle_ok') is False else '-')}",
        f"  samples       {len(depth)}" + (f" (depth {depth.min():.2f} to {depth.max():.2f} mm)" if len(depth) else ""),
    ]
    enabled = [p for p in hole.program if p.get("enabled")]
    if enabled:
        lines.append(f"  program       Pset {_fmt(m.get('pset'))}")
        for p in enabled:
            triggers = ", ".join(
                f"{label} {p[key]:g} A"
                for key, label in (
                    ("torque_max_a", "torque max"),
                    ("torque_min_a", "torque min"),
                    ("thrust_max_a", "thrust max"),
                    ("thrust_min_a", "thrust min"),
                )
                if p.get(key)
            )
            lines.append(
                f"    step {p['step']}: stroke {_fmt(p.get('stroke_mm'), ' mm')}, {_fmt(p.get('rpm'), ' rpm', 0)}, "
                f"feed {_fmt(p.get('feed_mm_s'), ' mm/s')}" + (f", {triggers}" if triggers else "")
            )
    boundaries = dict(step_boundaries(hole))
    for r in hole.step_results:
        start = boundaries.get(r.get("step"))
        lines.append(
            f"    step {r.get('step')} ended: {describe(r.get('stop_code'))} after {_fmt(r.get('duration_s'), ' s')}"
            + (f", started at {start:.2f} mm" if start is not None else "")
        )
    for issue in hole.issues:
        lines.append(f"  {issue.level:<13} {issue.reason}")
    return "\n".join(lines)


_MAX_STEP_LINES = 40  # real programs have a handful of steps; a broken step column is not drawn whole


def decimated(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 points per bucket of consecutive samples: each bucket's lowest and highest, in
    sample order, so that a one-sample spike stays in a plot a few hundred characters wide."""
    n = len(y)
    if n <= 2 * buckets:
        return x, y
    size = -(-n // buckets)  # samples per bucket, rounded up
    padded = np.full(buckets * size, np.nan)
    padded[:n] = y
    blocks = padded.reshape(buckets, size)
    filled = ~np.isnan(blocks).all(axis=1)  # the last buckets may hold only padding
    rows = np.flatnonzero(filled)
    lows = np.nanargmin(blocks[rows], axis=1) + rows * size
    highs = np.nanargmax(blocks[rows], axis=1) + rows * size
    picks = np.sort(np.concatenate([lows, highs]))
    return x[picks], y[picks]


def _plausible(depth: np.ndarray, values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The samples a plot can scale to: finite and inside the physical range (a position of
    -1e308 overflows the plotting library's axis arithmetic)."""
    kept = in_physical_range(depth, "depth_mm") & in_physical_range(values, name)
    return depth[kept], values[kept]


def render_plot(hole: Hole, width: int | None = None, height: int | None = None) -> str:
    """Torque (left axis) and thrust (right axis) against depth, step starts as vertical lines.

    Only samples inside the physical range are drawn (the summary says what is outside); a long
    hole is drawn from a min/max view of it."""
    import plotext as plt

    columns, _ = shutil.get_terminal_size((100, 30))
    width = width or min(columns, 160)
    depth = hole.signals["depth_mm"]
    plt.clear_figure()
    plt.plotsize(width, height or 20)
    plt.theme("clear")
    drawn = 0
    for name, label, color, side in (
        ("torque_a", "torque (A)", "blue", "left"),
        ("thrust_a", "thrust (A)", "red", "right"),
    ):
        values = hole.signals.get(name)
        if values is None:
            continue
        x, y = _plausible(depth, np.asarray(values, dtype=np.float64), name)
        x, y = decimated(x, y, 4 * width)
        if len(x):
            plt.plot(x.tolist(), y.tolist(), label=label, color=color, marker="braille", yside=side)
            drawn += 1
    if not drawn:
        return f"{hole.hole_id}: nothing to plot (no sample with a plausible depth, torque and thrust)"
    torque = hole.signals.get("torque_a", np.empty(0))
    top = float(np.max(_plausible(depth, np.asarray(torque, dtype=np.float64), "torque_a")[1], initial=0.0))
    low, high = PHYSICAL_RANGE["depth_mm"]
    for step, start in step_boundaries(hole)[:_MAX_STEP_LINES]:
        if low <= start <= high:
            plt.vline(start, color="gray")
            plt.text(f"s{step}", x=start, y=top, color="gray")
    plt.xlabel("depth (mm)")
    plt.title(f"{hole.hole_id}: torque and thrust against depth (vertical lines: step starts)")
    return plt.build()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def hole_json(hole: Hole) -> str:
    data = dict(hole.meta)
    data["status"] = status_of_hole(hole)
    data["issues"] = [{"level": i.level, "reason": i.reason} for i in hole.issues]
    data["program"] = hole.program
    data["step_results"] = hole.step_results
    return json.dumps(_jsonable(data), indent=2)
