"""Text views of one hole for the terminal (users work over SSH): a summary and a plotext plot."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from typing import Any

import numpy as np

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
    changes = np.flatnonzero(np.diff(step) != 0) + 1
    return [(int(step[i]), float(depth[i])) for i in changes]


def render_summary(hole: Hole) -> str:
    m = hole.meta
    depth = hole.signals.get("depth_mm", np.empty(0))
    lines = [
        f"Hole {m['hole_id']}  ({m.get('source')})",
        f"  status        {status_of_hole(hole)}",
        f"  date          {_fmt(m.get('date'))}    format {_fmt(m.get('format_version'))} ({m.get('source_kind')})",
        f"  controller    {_fmt(m.get('controller_name'))} (SN {_fmt(m.get('controller_sn'))}, firmware {_fmt(m.get('controller_firmware'))})",
        f"  motor         {_fmt(m.get('motor_name'))} (SN {_fmt(m.get('motor_sn'))})",
        f"  head          {_fmt(m.get('head_name'))} (tag {_fmt(m.get('head_tag'))}), global counter {_fmt(m.get('global_counter'))}, "
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


def render_plot(hole: Hole, width: int | None = None, height: int | None = None) -> str:
    """Torque (left axis) and thrust (right axis) against depth, step starts as vertical lines."""
    import plotext as plt

    columns, _ = shutil.get_terminal_size((100, 30))
    depth = hole.signals["depth_mm"]
    plt.clear_figure()
    plt.plotsize(width or min(columns, 160), height or 20)
    plt.theme("clear")
    plt.plot(
        depth.tolist(),
        hole.signals["torque_a"].tolist(),
        label="torque (A)",
        color="blue",
        marker="braille",
    )
    plt.plot(
        depth.tolist(),
        hole.signals["thrust_a"].tolist(),
        label="thrust (A)",
        color="red",
        marker="braille",
        yside="right",
    )
    for step, start in step_boundaries(hole):
        plt.vline(start, color="gray")
        plt.text(f"s{step}", x=start, y=float(np.nanmax(hole.signals["torque_a"])), color="gray")
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
