"""One drilling cycle, sample by sample at 100 Hz: the program's steps, their end events, the signals.

Each step advances the drill at its feed in whole encoder quanta, computes the currents the stack
produces, and ends on its trigger as the unit does: torque rise (0x1, a step that drills until
the next layer), torque drop followed by the program's gap (0x800, breakthrough), programmed
stroke (0x40), end of travel (0x8), or an operator abort (0x400). The step's last logged row is
repeated as the units repeat it, with the stop code on the last rows; the next step starts with
a small retract, and cuts nothing until the drill is back on fresh material.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uos.holes import stopcodes
from uos.synth.params import MachineParams, SynthParams
from uos.synth.physics import (
    FEED_RATIO,
    POSITION_Q,
    THRUST_Q,
    TORQUE_Q,
    Layer,
    cutting_levels,
    engagement,
    noload,
    point_inside,
    quantise,
    slow_wander,
    smooth,
)


@dataclass(frozen=True)
class StepSpec:
    number: int
    rpm: float
    feed_mm_s: float
    stroke_mm: float  # cumulative from depth 0, as the units count it
    trigger: str = "stroke"  # stroke | torque_max | torque_min
    threshold_a: float = 0.0
    gap_mm: float = 0.0  # torque_min: travel on after the drop before stopping
    peck_mm: float = 0.0  # micro-pecks: retract `peck_back_mm` after every `peck_mm` of advance
    peck_back_mm: float = 0.2


@dataclass(frozen=True)
class Program:
    name: str
    machine: str
    steps: tuple[StepSpec, ...]
    pset: int = 0


def _production(name: str, pset: int, rise_a: float, peck_mm: float = 0.0) -> Program:
    """Torque-triggered production program: drill the CFRP until the torque rises at the metal
    (`rise_a` set between the two materials' levels), the metal at low speed (with micro-pecks
    every `peck_mm` if set) until the torque drops at breakthrough, then clear to the end of
    travel, where the countersink meets the part."""
    return Program(
        name,
        "production",
        (
            StepSpec(1, 1500, 1.0, 50.0, "torque_max", threshold_a=rise_a),
            StepSpec(2, 320, 0.16, 50.0, "torque_min", threshold_a=1.0, gap_mm=2.0, peck_mm=peck_mm),
            StepSpec(3, 1500, 1.0, 50.0),
        ),
        pset=pset,
    )


PROGRAMS = {
    "production-ti": _production("production-ti", 0, 3.0),
    "production-al": _production("production-al", 1, 1.8),
    "production-ti-pecking": _production("production-ti-pecking", 4, 3.0, peck_mm=1.5),
    "production-al-pecking": _production("production-al-pecking", 5, 1.8, peck_mm=1.5),
    # Stroke-triggered lab program: fast approach and first layer, slow through the rest.
    "lab": Program("lab", "lab", (StepSpec(2, 4000, 3.0, 15.7), StepSpec(3, 1000, 0.75, 25.0)), pset=2),
    "lab-short": Program("lab-short", "lab", (StepSpec(2, 4000, 3.0, 15.7), StepSpec(3, 1000, 0.75, 22.5)), pset=3),
}


@dataclass
class HoleSpec:
    """Everything that makes one hole what it is (drawn by the fleet plan)."""

    program: Program
    layers: list[Layer]
    tool_age: int
    tool_factor: float = 1.0  # this cutting tool's sharpness (regrinds differ)
    abort_mm: float | None = None  # the operator stops the cycle at this depth
    ply_step_mm: float | None = None  # production CFRP: torque steps up here (ply orientation)
    seed: int = 0


@dataclass
class Cycle:
    """The simulated recording."""

    signals: dict[str, np.ndarray]
    step_results: list[dict[str, Any]] = field(default_factory=list)
    aborted: bool = False


_CODE_ROWS = {"torque_min": (4, 5)}  # rows carrying the stop code; 2 for every other trigger


def _increments(rng: np.random.Generator, per_sample: float, n: int, jitter: float) -> np.ndarray:
    """Encoder quanta advanced per sample: floor/ceil of the mean, dithered; at slow feeds the
    encoder also flickers back one quantum now and then (and catches up the next sample)."""
    phase = rng.random()
    steps = np.diff(np.floor(phase + per_sample * np.arange(n + 1))).astype(np.int64)
    if jitter > 0 and n > 2:
        flicker = np.flatnonzero(rng.random(n - 1) < jitter)
        steps[flicker] -= 1
        steps[flicker + 1] += 1
    return steps


def _with_pecks(steps: np.ndarray, per_sample: float, peck_mm: float, back_mm: float, rows: int = 4) -> np.ndarray:
    """Insert a quick retract of `back_mm` (over `rows` samples) after every `peck_mm` of advance;
    the drill then feeds back through the air it just left before it cuts again."""
    peck_q, back_q = round(peck_mm / POSITION_Q), round(back_mm / POSITION_Q)
    advanced = np.cumsum(steps)
    cuts = np.searchsorted(advanced, peck_q * np.arange(1, int(advanced[-1] // peck_q) + 1))
    retract = -np.diff(np.round(np.linspace(0, back_q, rows + 1))).astype(np.int64)
    pieces, start = [], 0
    for cut in cuts:
        pieces += [steps[start : cut + 1], retract]
        start = cut + 1
    pieces.append(steps[start:])
    return np.concatenate(pieces)[: len(steps)]


def _currents(
    depth: np.ndarray,
    cutting: np.ndarray,
    step: StepSpec,
    spec: HoleSpec,
    machine: MachineParams,
    params: SynthParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Clean torque and thrust (A above no-load) along `depth`; zero where nothing is cut."""
    torque = np.zeros(len(depth))
    thrust = np.zeros(len(depth))
    tip = machine.tip_length_mm
    last = len(spec.layers) - 1
    for index, layer in enumerate(spec.layers):
        level_t, level_f = cutting_levels(
            params.materials[layer.material],
            machine,
            step.rpm,
            step.feed_mm_s,
            spec.tool_age,
            spec.tool_factor,
        )
        share = engagement(depth, layer, tip)
        shape = np.ones(len(depth))
        if layer.material == "cfrp":
            if spec.ply_step_mm is not None:  # a change of ply orientation: the torque steps up
                shape = shape + 0.2 * np.clip((depth - spec.ply_step_mm) / 0.6, 0.0, 1.0)
            if machine.smooth_rows > 1:  # lab: torque creeps up through the first layer
                shape = shape + 0.06 * np.clip((depth - layer.top_mm) / max(layer.bottom_mm - layer.top_mm, 1e-6), 0, 1)
        elif machine.smooth_rows > 1:
            # Lab metal: a hump, the torque easing off (heat, chip flow) once the point is through.
            shape = shape * (1.0 - 0.06 * np.clip(depth - layer.top_mm - tip, 0.0, None))
        if index == last and layer.material != "cfrp":
            # Just before breakthrough the last layer bulges under the thrust: the torque bumps up
            # until the point breaks through.
            shape = shape * (
                1.0 + 0.07 * np.exp(-(((np.minimum(depth, layer.bottom_mm) - layer.bottom_mm) / 0.6) ** 2))
            )
        torque += level_t * share * shape
        # Thrust: mostly from the lips (ramps like torque), partly from the chisel edge at the point.
        thrust += level_f * shape * (0.7 * share + 0.3 * point_inside(depth, layer))
    wander = slow_wander(rng, len(depth), 0.03) if len(depth) else 0.0
    torque = torque * (1.0 + wander)
    if machine.oscillation and step.rpm < 600 and len(depth):
        # Low-speed cutting of metal rings at 1.5 x the spindle frequency.
        t = np.arange(len(depth)) / 100.0
        phase = (
            2 * np.pi * 1.508 * step.rpm / 60.0 * t + rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.02, len(t)))
        )
        metal = torque > 2.0
        torque = torque + np.where(metal, machine.oscillation * torque * np.sin(phase), 0.0)
        thrust = thrust + np.where(metal, 1.1 * machine.oscillation * thrust * np.sin(phase + 0.3), 0.0)
    return np.where(cutting, torque, 0.0), np.where(cutting, thrust, 0.0)


def _end_of_travel(depth: np.ndarray, machine: MachineParams, torque: np.ndarray, thrust: np.ndarray) -> None:
    """Near the hard stop the nose piece meets the part: contact torque, then a thrust spike."""
    eot = machine.end_of_travel_mm
    if machine.format_version >= 7:
        torque += 1.8 * np.clip((depth - (eot - 1.7)) / 1.7, 0.0, 1.0) ** 1.3
    thrust += 2.0 * np.clip((depth - (eot - 0.08)) / 0.08, 0.0, 1.0)


def _stop_index(
    step: StepSpec,
    depth: np.ndarray,
    torque_q: np.ndarray,
    cutting: np.ndarray,
    machine: MachineParams,
    abort_mm: float | None,
    rng: np.random.Generator,
) -> tuple[int, int, str]:
    """Index of the step's last logged row, its stop code and the trigger that fired."""
    n = len(depth)
    candidates: list[tuple[int, int, str]] = []

    def first(mask: np.ndarray) -> int | None:
        hits = np.flatnonzero(mask)
        return int(hits[0]) if len(hits) else None

    eot = first(depth >= machine.end_of_travel_mm - 0.01)
    stroke = first(depth >= step.stroke_mm - 0.01)
    if stroke is not None:
        candidates.append((stroke, stopcodes.STROKE, "stroke"))
    if eot is not None:
        # At the hard stop the unit ends on thrust limit, unless the stroke ended the step there.
        code = (
            stopcodes.STROKE if stroke is not None and stroke <= eot and rng.random() < 0.85 else stopcodes.THRUST_LIMIT
        )
        candidates.append((eot, code, "end of travel"))
    if step.trigger == "torque_max":
        # The unit compares its own, unlogged current: the step ends 0-2 samples after the log
        # reads 2-3 quanta below the threshold, and never later than when it reads 1-2 below.
        near = first(cutting & (torque_q >= step.threshold_a - 2.5 * TORQUE_Q))
        close = first(cutting & (torque_q >= step.threshold_a - 1.5 * TORQUE_Q))
        if near is not None:
            hit = near + int(rng.choice([0, 1, 1, 2]))
            candidates.append(
                (
                    min(hit, close if close is not None else hit, n - 1),
                    stopcodes.TORQUE_MAX,
                    "torque_max",
                )
            )
    elif step.trigger == "torque_min":
        above = torque_q >= step.threshold_a
        armed = first(above)
        if armed is not None:
            last_above = np.maximum.accumulate(np.where(above, np.arange(n), -1))
            since = depth - depth[np.maximum(last_above, 0)]
            hit = first((np.arange(n) > armed) & ~above & (since >= step.gap_mm))
            if hit is not None:
                candidates.append((hit, stopcodes.TORQUE_MIN, "torque_min"))
    if abort_mm is not None:
        hit = first(depth >= abort_mm)
        if hit is not None:
            candidates.append((hit, stopcodes.ABORT, "abort"))
    if not candidates:
        return n - 1, stopcodes.STROKE, "stroke"
    return min(candidates, key=lambda c: c[0])


def _measure(
    torque: np.ndarray,
    thrust: np.ndarray,
    step: StepSpec,
    machine: MachineParams,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """What the unit logs: flicker noise, the air baseline offset, smoothing, quantisation."""
    noise_t = rng.normal(0.0, machine.noise_q * TORQUE_Q, len(torque))
    noise_f = rng.normal(0.0, machine.noise_q * THRUST_Q, len(thrust))
    baseline = machine.baseline_q * TORQUE_Q * (1 if step.rpm >= 600 else 2)
    torque_q = quantise(smooth(torque + noise_t, machine.smooth_rows) + baseline, TORQUE_Q)
    thrust_q = quantise(smooth(thrust + noise_f, machine.smooth_rows), THRUST_Q)
    torque_q[0] = thrust_q[0] = 0.0  # each step starts from a fresh zero
    return torque_q, thrust_q


def _repeat_last(values: np.ndarray, last: int, repeats: int) -> np.ndarray:
    """The step's rows up to `last`, then the last row logged `repeats` more times."""
    kept = values[: last + 1]
    return np.concatenate([kept, np.repeat(kept[-1:], repeats)])


def _advance(
    step: StepSpec, position: int, reached: float, machine: MachineParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The depth of every sample the step may log, from encoder `position` on (to past the end of
    travel), and where the drill cuts: `reached` is the deepest depth cut before the step."""
    # Slow feeds lag their programmed value a little more.
    per_sample = (FEED_RATIO if step.feed_mm_s >= 0.5 else 0.974) * step.feed_mm_s / 100.0 / POSITION_Q
    travel = machine.end_of_travel_mm + 0.1 - position * POSITION_Q
    n_max = int(np.ceil(max(travel, 0.05) / (per_sample * POSITION_Q))) + 5
    if step.peck_mm:  # room for the retracts and for feeding back through them
        n_max += int(travel / step.peck_mm + 1) * int(5 + step.peck_back_mm / (per_sample * POSITION_Q))
    steps = _increments(rng, per_sample, n_max, jitter=0.017 if per_sample < 1 else 0.0)
    if step.peck_mm:
        steps = _with_pecks(steps, per_sample, step.peck_mm, step.peck_back_mm)
    depth = (position + np.concatenate([[0], np.cumsum(steps[:-1])])) * POSITION_Q
    # Cutting only where the drill is on fresh material (not after a retract, until it is back).
    deepest = np.maximum.accumulate(np.concatenate([[reached], depth]))[:-1]
    cutting = depth >= deepest - 2 * POSITION_Q
    return depth, cutting


def _measured_noload(machine: MachineParams, rpm: float, rng: np.random.Generator) -> tuple[float, float]:
    """The no-load torque and thrust currents the unit measures for a step at `rpm`, in quanta."""
    torque_empty, thrust_empty = noload(machine, rpm)
    torque_empty = round(torque_empty * (1 + rng.normal(0, machine.noload_jitter)) / TORQUE_Q) * TORQUE_Q
    thrust_empty = max(round(thrust_empty / THRUST_Q + rng.normal(0, 0.7)), 1) * THRUST_Q
    return torque_empty, thrust_empty


def _simulate_step(
    step: StepSpec,
    position: int,
    reached: float,
    spec: HoleSpec,
    machine: MachineParams,
    params: SynthParams,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """One step from encoder `position`: its logged columns, its step result, the trigger that ended it."""
    depth, cutting = _advance(step, position, reached, machine, rng)
    torque, thrust = _currents(depth, cutting, step, spec, machine, params, rng)
    _end_of_travel(depth, machine, torque, thrust)
    torque_q, thrust_q = _measure(torque, thrust, step, machine, rng)
    torque_empty, thrust_empty = _measured_noload(machine, step.rpm, rng)

    last, code, trigger = _stop_index(step, depth, torque_q, cutting, machine, spec.abort_mm, rng)
    repeats = int(rng.integers(2, 4))  # the last row is logged 3-4 times
    rows = last + 1 + repeats
    stop = np.zeros(rows, dtype=np.int64)
    stop[-int(rng.choice(_CODE_ROWS.get(trigger, (2,)))) :] = code
    logged_torque = _repeat_last(torque_q, last, repeats)
    columns = {
        "depth_mm": _repeat_last(depth, last, repeats),
        "torque_a": logged_torque,
        "thrust_a": _repeat_last(thrust_q, last, repeats),
        "torque_empty_a": np.full(rows, torque_empty),
        "thrust_empty_a": np.full(rows, thrust_empty),
        "step": np.full(rows, step.number, dtype=np.int64),
        "stop_code": stop,
        "rpm": np.round((step.rpm - 0.7 * logged_torque + rng.normal(0, 6.0, rows)) / 1.055) * 1.055,
        "nominal_rpm": np.full(rows, float(step.rpm)),
        "feed_mm_s": np.round(step.feed_mm_s * 0.995 + rng.normal(0, 0.006, rows), 3),
    }
    result = {
        "step": step.number,
        "stop_code": int(code),
        "duration_s": round(rows / 100.0, 2),
        "distance_m1_mm": 0.0,
        "distance_m2_mm": round(float(depth[last] - depth[0]), 3),
        "m1_max_a": round(float(np.max(torque[: last + 1])), 3),
        "m2_max_a": round(float(np.max(thrust_q[: last + 1])), 3),
        "m1_no_load_a": round(torque_empty, 3),
        "m2_no_load_a": round(thrust_empty, 3),
        "gap_max_mm": 0.0,
    }
    return columns, result, trigger


def simulate(spec: HoleSpec, params: SynthParams) -> Cycle:
    """Simulate one hole's cycle; deterministic for `spec.seed`."""
    rng = np.random.default_rng(spec.seed)
    machine = params.machines[spec.program.machine]
    logged: list[dict[str, np.ndarray]] = []
    results: list[dict[str, Any]] = []
    position = round((machine.start_depth_mm + rng.normal(0.0, 0.004)) / POSITION_Q)  # encoder quanta
    reached = -np.inf  # deepest depth cut so far
    trigger = ""
    for index, step in enumerate(spec.program.steps):
        columns, result, trigger = _simulate_step(step, position, reached, spec, machine, params, rng)
        logged.append(columns)
        results.append(result)
        depth = columns["depth_mm"]
        reached = max(reached, float(depth.max()))
        if trigger in ("abort", "end of travel"):
            break
        back = machine.back_step_mm[min(index, len(machine.back_step_mm) - 1)]
        position = round(depth[-1] / POSITION_Q) - round((back + rng.normal(0, 0.004)) / POSITION_Q)

    signals = {name: np.concatenate([c[name] for c in logged]) for name in logged[0]}
    nominal = signals.pop("nominal_rpm")
    torque, empty = signals["torque_a"], signals["torque_empty_a"]
    if machine.smooth_rows > 1:
        # The lab unit computes power from its measured speed, and logs it a couple of rows late.
        power = (machine.power_torque * torque + machine.power_noload * empty) * np.abs(signals["rpm"])
        power = np.concatenate([power[:1], power[:1], power[:-2]])
    else:
        power = (machine.power_torque * torque + machine.power_noload * empty) * nominal
    signals["power_w"] = np.round(power + 0.7)
    signals["gap_mm"] = np.zeros(len(torque))
    return Cycle(signals=signals, step_results=results, aborted=trigger == "abort")
