"""The demo fleet: which unit drills which hole, in which part, with which tool.

Everything is drawn from one seeded generator in a fixed order, so the same seed gives the same
fleet, and each hole gets its own seed for its signals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from uos.synth.cycle import PROGRAMS, HoleSpec, Program
from uos.synth.params import SynthParams
from uos.synth.physics import Layer


@dataclass
class PlannedHole:
    spec: HoleSpec
    meta: dict[str, Any]  # identity and counters the file will carry
    file_name: str
    kind: str  # normal | single-layer | air-cut | aborted
    layers: list[Layer] = field(default_factory=list)


@dataclass
class _Unit:
    """A drilling unit with its head and current cutting tool."""

    machine: str
    controller_name: str
    controller_sn: str
    firmware: str
    motor_name: str
    motor_sn: str
    head_name: str
    head_tag: str
    global_counter: int
    tool_life: int
    tool_serial: int
    tool_age: int = 0
    tool_factor: float = 1.0
    clock: datetime = datetime(2025, 3, 3, 7, 30, 0)

    def next_hole(self, rng: np.random.Generator) -> None:
        self.global_counter += 1
        self.tool_age += 1
        if self.tool_age > self.tool_life:  # tool change: a new tool, new sharpness
            self.tool_age = 1
            self.tool_serial += 1
            self.tool_factor = float(np.exp(rng.normal(0.0, 0.08)))
        self.clock += timedelta(seconds=int(rng.integers(90, 420)))


def _units(params: SynthParams, rng: np.random.Generator) -> dict[str, list[_Unit]]:
    production = []
    for i in range(params.production_heads):
        tag = "E0040100" + "".join(rng.choice(list("0123456789ABCDEF"), 8))
        production.append(
            _Unit(
                "production",
                "MQL",
                f"01FEC0{i:02X}",
                "V 3.2.2.1",
                "M_EDU",
                "0",
                f"114-V3-{i + 1:03d}-MQ",
                tag,
                global_counter=int(rng.integers(800, 2500)),
                tool_life=params.production_tool_life,
                tool_serial=92900 + 10 * i,
                tool_age=int(rng.integers(0, params.production_tool_life)),
            )
        )
    lab = [
        _Unit(
            "lab",
            "NI-sbRIO-9607-01e60d78",
            "01E60D78",
            "V 3.1.2",
            "SRA",
            "17070152",
            "116-V3-012",
            "Light",
            global_counter=int(rng.integers(150, 400)),
            tool_life=params.lab_tool_life,
            tool_serial=17070152,
            tool_age=int(rng.integers(0, params.lab_tool_life)),
            clock=datetime(2024, 11, 11, 13, 0, 0),
        )
    ]
    return {"production": production, "lab": lab}


Stack = tuple[float, float, float, str]  # a part's entry depth, CFRP and metal thickness, metal


def _stack(params: SynthParams, machine: str, rng: np.random.Generator) -> Stack:
    """A part's stack: entry depth, CFRP and metal thickness, metal."""
    if machine == "lab":
        return (
            float(rng.uniform(*params.lab_entry_mm)),
            float(rng.uniform(*params.lab_cfrp_mm)),
            float(rng.uniform(*params.lab_metal_mm)),
            "ti",
        )
    while True:
        cfrp, metal = float(rng.uniform(*params.cfrp_mm)), float(rng.uniform(*params.metal_mm))
        if cfrp + metal <= params.max_stack_mm:
            return float(rng.uniform(*params.entry_mm)), cfrp, metal, str(rng.choice(params.metals))


def plan_fleet(params: SynthParams) -> list[PlannedHole]:
    """Every hole of the demo fleet, drawn from `params.seed` in a fixed order."""
    rng = np.random.default_rng(params.seed)
    units = _units(params, rng)
    n_lab = round(params.holes * params.lab_share)
    machines = ["lab"] * n_lab + ["production"] * (params.holes - n_lab)
    holes: list[PlannedHole] = []
    parts: dict[str, tuple[int, Stack]] = {}  # per machine: holes drilled in its current part, its stack
    pecking_parts: dict[Stack, bool] = {}
    for number, machine in enumerate(machines):
        fleet = units[machine]
        # Units take turns, a part's worth of holes at a time.
        unit = fleet[(number // params.holes_per_part) % len(fleet)]
        unit.next_hole(rng)
        stack = _part_stack(parts, machine, params, rng)
        holes.append(_plan_hole(unit, machine, stack, pecking_parts, params, rng))
    return holes


def _part_stack(
    parts: dict[str, tuple[int, Stack]], machine: str, params: SynthParams, rng: np.random.Generator
) -> Stack:
    """The stack of the part `machine` drills next: the current part's until it has all its holes."""
    count, stack = parts.get(machine, (params.holes_per_part, None))
    if count >= params.holes_per_part or stack is None:
        count, stack = 0, _stack(params, machine, rng)
    parts[machine] = (count + 1, stack)
    return stack


def _plan_hole(
    unit: _Unit,
    machine: str,
    stack: Stack,
    pecking_parts: dict[Stack, bool],
    params: SynthParams,
    rng: np.random.Generator,
) -> PlannedHole:
    """One hole in a part of `stack`; the draws keep the fleet's order (same seed, same fleet)."""
    entry, cfrp, metal, metal_name = stack
    entry += rng.normal(0.0, 0.12)
    cfrp += rng.normal(0.0, params.thickness_jitter_mm)
    metal += rng.normal(0.0, params.thickness_jitter_mm)
    kind = _draw_kind(params, rng)
    layers: list[Layer] = []
    if kind != "air-cut":
        layers.append(Layer("cfrp", entry, entry + cfrp))
        if kind != "single-layer":
            layers.append(Layer(metal_name, entry + cfrp, entry + cfrp + metal))
    abort = float(rng.uniform(entry + 1.0, entry + cfrp + metal - 0.5)) if kind == "aborted" else None
    ply = None
    if machine == "production" and layers and rng.random() < params.cfrp_ply_step_rate and cfrp > 4.0:
        ply = float(rng.uniform(entry + 2.5, min(entry + 5.5, entry + cfrp - 1.0)))
    program = _program(machine, stack, pecking_parts, params, rng)
    spec = HoleSpec(
        program,
        layers,
        unit.tool_age,
        unit.tool_factor,
        abort,
        ply,
        seed=int(rng.integers(2**31)),
    )
    meta = _hole_meta(unit, machine, program, rng)
    prefix = unit.head_tag if unit.head_tag != "Light" else unit.motor_sn
    name = f"{prefix}_{unit.head_name}_ST_{unit.global_counter}_{unit.tool_age}.xls"
    return PlannedHole(spec, meta, name, kind, layers)


def _draw_kind(params: SynthParams, rng: np.random.Generator) -> str:
    """normal, or one of the rarer holes at its rate: air-cut, single-layer, aborted."""
    draw = rng.random()
    if draw < params.air_cut_rate:
        return "air-cut"
    if draw < params.air_cut_rate + params.single_layer_rate:
        return "single-layer"
    if draw < params.air_cut_rate + params.single_layer_rate + params.abort_rate:
        return "aborted"
    return "normal"


def _program(
    machine: str, stack: Stack, pecking_parts: dict[Stack, bool], params: SynthParams, rng: np.random.Generator
) -> Program:
    if machine == "lab":
        return PROGRAMS["lab-short" if rng.random() < 0.12 else "lab"]
    # The part's program is set for its metal; some parts are drilled with micro-pecks. The draw
    # is made for every hole, even when the part already has its answer: it keeps the fleet's order.
    pecking = "-pecking" if pecking_parts.setdefault(stack, rng.random() < params.pecking_rate) else ""
    return PROGRAMS[f"production-{stack[3]}{pecking}"]


def _hole_meta(unit: _Unit, machine: str, program: Program, rng: np.random.Generator) -> dict[str, Any]:
    """Identity and counters the file will carry."""
    return {
        "controller_name": unit.controller_name,
        "controller_sn": unit.controller_sn,
        "controller_firmware": unit.firmware,
        "motor_name": unit.motor_name,
        "motor_sn": unit.motor_sn,
        "head_name": unit.head_name,
        "head_tag": unit.head_tag,
        "global_counter": unit.global_counter,
        "tool_age": unit.tool_age,
        "cutting_tool": f"ST{unit.tool_serial:08d}" if machine == "production" else str(unit.tool_serial),
        "pset": program.pset,
        "cycle_id": str(int(rng.integers(10**9, 4 * 10**9))),
        "date": unit.clock,
        "micropeck_osc": 3 if machine == "production" else 0,
        "micropeck_amplitude": 10 if machine == "production" else 0,
    }
