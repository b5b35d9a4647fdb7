"""`uos synth`: a folder of genuine Setitec files with exact ground truth, from a seed.

Writes one `.xls` file per hole (the format 9 or 4 layout of the unit that drilled it) and
`truth.csv`: for each hole its entry, transition and exit depths (where the drill point crosses
the top surface, the interface and the bottom surface; empty where the recording has no such
point), the layers' materials and thicknesses, and what kind of hole it is. Same seed, same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from uos.cores import choose_workers
from uos.errors import UosError
from uos.holes.record import PROGRAM_FIELDS, Hole
from uos.outputs import write_atomic
from uos.synth.cycle import Program, simulate
from uos.synth.params import SynthParams
from uos.synth.plan import PlannedHole, plan_fleet
from uos.synth.setitec_file import render
from uos.synth.truth import TRUTH_FILE, write_truth


@dataclass
class SynthSummary:
    out_dir: Path
    holes: int
    by_kind: dict[str, int]


def program_table(program: Program, machine: str) -> list[dict[str, Any]]:
    """The Program section: disabled placeholder steps first, as the units list them."""
    rows = [dict.fromkeys(PROGRAM_FIELDS, 0.0) | {"step": 0, "enabled": 0, "feed_mm_rev": None}]
    if machine == "lab":
        rows.append(
            dict.fromkeys(PROGRAM_FIELDS, 0.0)
            | {
                "step": 1,
                "enabled": 0,
                "stroke_mm": 10.0,
                "rpm": 1500.0,
                "feed_mm_s": 2.5,
                "feed_mm_rev": 0.1,
                "lub_air": 4.0,
                "lub_flow": 2.0,
            }
        )
    previous = 0.0
    for step in program.steps:
        row = dict.fromkeys(PROGRAM_FIELDS, 0.0)
        row.update(
            step=step.number,
            enabled=1,
            rpm=step.rpm,
            feed_mm_s=step.feed_mm_s,
            feed_mm_rev=round(step.feed_mm_s * 60 / step.rpm, 3),
        )
        if machine == "lab":  # lab strokes are listed per step, counted from depth 0 by the unit
            row.update(
                stroke_mm=round(step.stroke_mm - previous, 3),
                lub_air=6.0 if step.rpm < 2000 else 4.0,
                lub_flow=4.0 if step.rpm < 2000 else 2.0,
            )
            previous = step.stroke_mm
        else:
            row.update(
                stroke_mm=step.stroke_mm,
                lub_air=8.0,
                lub_flow=8.0,
                vacuum=1.0,
                gap_mm=step.gap_mm,
                pecks=round(20 / step.peck_mm) if step.peck_mm else 0,
            )
            if step.trigger == "torque_max":
                row["torque_max_a"] = step.threshold_a
            elif step.trigger == "torque_min":
                row["torque_min_a"] = step.threshold_a
        rows.append(row)
    return rows


def build_hole(planned: PlannedHole, params: SynthParams) -> tuple[Hole, dict[str, Any]]:
    """Simulate a planned hole: the record to write and its ground-truth row."""
    machine = planned.spec.program.machine
    cycle = simulate(planned.spec, params)
    depth = cycle.signals["depth_mm"]
    meta = dict(planned.meta)
    meta.update(
        cycle_time_s=round(len(depth) / 100.0, 2),
        distance_mm=round(float(depth[0]), 3),
        cycle_ok=not cycle.aborted,
    )
    hole = Hole(
        meta=meta,
        signals=cycle.signals,
        program=program_table(planned.spec.program, machine),
        step_results=cycle.step_results,
    )
    reached = float(depth.max())
    layers = planned.layers

    def crossed(value: float | None) -> float | None:
        return round(value, 4) if value is not None and value <= reached else None

    entry = crossed(layers[0].top_mm) if layers else None
    transition = crossed(layers[1].top_mm) if len(layers) > 1 else None
    exit_ = crossed(layers[-1].bottom_mm) if layers else None
    tag = meta["head_tag"] if meta["head_tag"] != "Light" else meta["head_name"]
    truth = {
        "file": planned.file_name,
        "hole_id": f"{tag}-{meta['global_counter']}",
        "unit": machine,
        "program": planned.spec.program.name,
        "kind": planned.kind,
        "entry_mm": entry,
        "transition_mm": transition,
        "exit_mm": exit_,
        "thickness_mm": round(exit_ - entry, 4) if entry is not None and exit_ is not None else None,
        "top_material": layers[0].material if layers else None,
        "top_thickness_mm": round(layers[0].bottom_mm - layers[0].top_mm, 4) if layers else None,
        "bottom_material": layers[1].material if len(layers) > 1 else None,
        "bottom_thickness_mm": round(layers[1].bottom_mm - layers[1].top_mm, 4) if len(layers) > 1 else None,
        "tool_age": meta["tool_age"],
        "pecking": any(step.peck_mm for step in planned.spec.program.steps),
        "max_depth_mm": round(reached, 4),
    }
    return hole, truth


def _write_one(job: tuple[PlannedHole, SynthParams, Path]) -> dict[str, Any]:
    planned, params, out = job
    hole, truth = build_hole(planned, params)
    version = params.machines[planned.spec.program.machine].format_version
    with write_atomic(out / planned.file_name) as tmp:
        tmp.write_bytes(render(hole, version))
    return truth


def synthesize(
    out_dir: str | Path,
    params: SynthParams | None = None,
    *,
    overwrite: bool = False,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Write `params.holes` synthetic Setitec files and `truth.csv` into `out_dir`.

    Refuses a folder that already holds files, unless `overwrite` (which replaces files of the
    same names and never deletes others).
    """
    params = params or SynthParams()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UosError(f"{out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UosError(f"{out} is not empty: choose an empty folder, or --overwrite to replace the generated files")
    out.mkdir(parents=True, exist_ok=True)
    planned = plan_fleet(params)
    jobs = [(hole, params, out) for hole in planned]
    truths: list[dict[str, Any]] = []
    workers, _ = choose_workers(workers, len(jobs))
    if workers <= 1 or len(jobs) < 8:
        for i, job in enumerate(jobs, 1):
            truths.append(_write_one(job))
            if progress:
                progress(i, len(jobs))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            for i, truth in enumerate(pool.map(_write_one, jobs, chunksize=4), 1):
                truths.append(truth)
                if progress:
                    progress(i, len(jobs))
    write_truth(out / TRUTH_FILE, truths)
    kinds: dict[str, int] = {}
    for truth in truths:
        kinds[truth["kind"]] = kinds.get(truth["kind"], 0) + 1
    return SynthSummary(out, len(truths), kinds)
