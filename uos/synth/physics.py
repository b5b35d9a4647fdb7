"""What the spindle and feed motors feel as the drill point crosses a stack of layers.

Keypoints are where the drill *point* crosses a surface: entry (top of the stack), transition
(interface), exit (bottom). Around each, currents ramp over the point's length as the cutting
lips engage or leave a layer; the stack thickness is exit - entry exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uos.synth.params import MachineParams, MaterialParams

TORQUE_Q = 50 / 1024  # A: the units' torque current quantum (0.049 in the files)
THRUST_Q = 12 / 1024  # A: thrust current quantum (0.012)
POSITION_Q = 0.0038012  # mm: feed encoder quantum
FEED_RATIO = 0.976  # actual / programmed feed, the same on every unit measured
REFERENCE_FEED_REV = 0.04  # mm/rev at which material coefficients are stated


@dataclass(frozen=True)
class Layer:
    material: str
    top_mm: float
    bottom_mm: float


def cutting_levels(
    material: MaterialParams,
    machine: MachineParams,
    rpm: float,
    feed_mm_s: float,
    tool_age: int,
    tool_factor: float,
) -> tuple[float, float]:
    """Torque and thrust currents (A above no-load) when the whole point cuts `material`."""
    feed_rev = feed_mm_s * 60.0 / rpm
    feed = (feed_rev / REFERENCE_FEED_REV) ** material.feed_exponent
    wear = tool_factor * (1.0 + machine.wear_per_hole * material.wear_sensitivity * tool_age)
    torque = machine.torque_gain * material.torque * feed * (rpm / 1000.0) ** material.torque_rpm_exponent * wear
    thrust = machine.thrust_gain * material.thrust * feed * (rpm / 1000.0) ** material.thrust_rpm_exponent * wear
    return torque, thrust


def engagement(depth: np.ndarray, layer: Layer, tip_length: float) -> np.ndarray:
    """Share of the cutting lips in `layer` with the point at `depth`: 0 before the point reaches
    the top, rising linearly over the point's length, falling likewise once the point is out."""
    into = np.clip((depth - layer.top_mm) / tip_length, 0.0, 1.0)
    out = np.clip((depth - layer.bottom_mm) / tip_length, 0.0, 1.0)
    return into - out


def point_inside(depth: np.ndarray, layer: Layer, width: float = 0.4) -> np.ndarray:
    """How much of the drill's chisel edge (at the point, `width` long) is inside the layer: it
    carries part of the thrust, and leaves the layer before the lips do."""
    return np.clip((depth - layer.top_mm) / width, 0.0, 1.0) - np.clip((depth - layer.bottom_mm) / width, 0.0, 1.0)


def quantise(values: np.ndarray, quantum: float) -> np.ndarray:
    return np.round(values / quantum) * quantum


def smooth(values: np.ndarray, rows: int) -> np.ndarray:
    """Centred moving average (the lab unit logs low-pass filtered currents)."""
    if rows <= 1 or len(values) < rows:
        return values
    kernel = np.ones(rows) / rows
    padded = np.pad(values, (rows // 2, rows - 1 - rows // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def slow_wander(rng: np.random.Generator, n: int, scale: float, rows: int = 60) -> np.ndarray:
    """Smooth random variation (std ~ `scale`) of a cutting level along a layer."""
    if n == 0 or scale == 0:
        return np.zeros(n)
    noise = smooth(rng.normal(0.0, 1.0, n + rows), rows)[:n]
    return noise / max(noise.std(), 1e-9) * scale


def noload(machine: MachineParams, rpm: float) -> tuple[float, float]:
    """No-load torque and thrust currents at `rpm`, interpolated on the machine's table."""
    table = np.array(sorted(machine.noload))
    log_rpm = np.log(table[:, 0])
    torque = float(np.interp(np.log(rpm), log_rpm, table[:, 1]))
    thrust = float(np.interp(np.log(rpm), log_rpm, table[:, 2]))
    return torque, thrust
