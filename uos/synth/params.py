"""`[synth]` in params.toml: the demo fleet, and the physics its holes follow.

Defaults were calibrated on the real files of ../shared/setitec (levels, ramps, noise, kinematics
per program family; see the README's "Synthetic data" section for what is and is not modelled).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MaterialParams:
    """Cutting behaviour of one material. Currents follow feed per revolution and speed:
    level = machine gain x coefficient x (feed_rev / 0.04)^feed_exponent x (rpm / 1000)^rpm_exponent."""

    torque: float
    thrust: float
    torque_rpm_exponent: float
    thrust_rpm_exponent: float
    wear_sensitivity: float = 1.0  # how much tool wear raises this material's currents
    feed_exponent: float = 0.75  # Kienzle-like: cutting force grows less than feed


@dataclass(frozen=True)
class MachineParams:
    """One kind of drilling unit with its tool: gains, geometry, kinematics, noise."""

    format_version: int  # the file layout it writes (9 production, 4 lab)
    torque_gain: float  # spindle current (A) per unit of material torque coefficient
    thrust_gain: float
    tip_length_mm: float  # drill point: torque and thrust ramp over it at every surface
    start_depth_mm: float  # depth of the first sample (the unit's home offset)
    end_of_travel_mm: float  # hard stop: the cycle ends there on thrust limit (0x8)
    back_step_mm: list[float]  # retract at each step change, in order
    wear_per_hole: float  # relative rise of cutting currents per hole of tool age
    noise_q: float  # flicker, in quantisation steps (std)
    smooth_rows: int  # moving average over this many rows (lab units log smoothed currents)
    baseline_q: int  # air-cutting torque offset, in quantisation steps
    oscillation: float  # torque oscillation at 1.5 x spindle frequency, as a share of the level, below 600 rpm
    power_torque: float  # power_w = power_torque*T*rpm + power_noload*Te*rpm
    power_noload: float
    noload: list[list[float]]  # [rpm, no-load torque A, no-load thrust A], re-measured each step
    noload_jitter: float  # relative spread of the no-load torque from one measurement to the next


def _materials() -> dict[str, MaterialParams]:
    return {
        "cfrp": MaterialParams(
            torque=1.0,
            thrust=1.0,
            torque_rpm_exponent=0.35,
            thrust_rpm_exponent=0.0,
            wear_sensitivity=0.3,
        ),
        "ti": MaterialParams(
            torque=8.4,
            thrust=3.7,
            torque_rpm_exponent=-0.5,
            thrust_rpm_exponent=-0.8,
            wear_sensitivity=1.0,
        ),
        "al": MaterialParams(
            torque=4.2,
            thrust=1.9,
            torque_rpm_exponent=-0.5,
            thrust_rpm_exponent=-0.8,
            wear_sensitivity=0.7,
        ),
    }


def _machines() -> dict[str, MachineParams]:
    return {
        # Production unit, torque-triggered program (like setitec/mql): format 9.
        "production": MachineParams(
            format_version=9,
            torque_gain=0.72,
            thrust_gain=0.055,
            tip_length_mm=1.25,
            start_depth_mm=0.556,
            end_of_travel_mm=36.5,
            back_step_mm=[0.289, 0.247],
            wear_per_hole=0.0024,
            noise_q=0.45,
            smooth_rows=1,
            baseline_q=-1,
            oscillation=0.19,
            power_torque=0.01732,
            power_noload=0.01378,
            noload=[[320, 2.100, 0.047], [1500, 4.834, 0.141], [4000, 5.370, 0.363]],
            noload_jitter=0.012,
        ),
        # Lab unit, stroke-triggered program (like setitec/tuhh P1): format 4.
        "lab": MachineParams(
            format_version=4,
            torque_gain=2.05,
            thrust_gain=0.19,
            tip_length_mm=2.0,
            start_depth_mm=0.665,
            end_of_travel_mm=25.0,
            back_step_mm=[0.24],
            wear_per_hole=0.0072,
            noise_q=0.5,
            smooth_rows=5,
            baseline_q=-2,
            oscillation=0.0,
            power_torque=0.0057,
            power_noload=0.0057,
            noload=[[1000, 2.490, 0.176], [4000, 5.370, 0.363], [4500, 5.200, 0.457]],
            noload_jitter=0.045,
        ),
    }


@dataclass(frozen=True)
class SynthParams:
    """The demo fleet: how many holes, from which units, through which stacks."""

    holes: int = 240
    seed: int = 7
    lab_share: float = 0.35  # share of holes from the lab unit (stroke-triggered, format 4)
    holes_per_part: int = 12  # a part's layer thicknesses are drawn once for its holes
    production_tool_life: int = 40  # holes per cutting tool before a change
    lab_tool_life: int = 300
    production_heads: int = 2
    entry_mm: list[float] = field(default_factory=lambda: [4.9, 5.6])  # production stack top surface
    lab_entry_mm: list[float] = field(default_factory=lambda: [6.2, 6.8])
    cfrp_mm: list[float] = field(default_factory=lambda: [4.5, 15.5])  # production CFRP thickness range
    metal_mm: list[float] = field(default_factory=lambda: [5.0, 12.0])
    max_stack_mm: float = 24.0  # production CFRP + metal
    lab_cfrp_mm: list[float] = field(default_factory=lambda: [9.0, 10.2])
    lab_metal_mm: list[float] = field(default_factory=lambda: [5.0, 6.6])
    metals: list[str] = field(default_factory=lambda: ["ti", "al"])  # metal drawn per production part
    thickness_jitter_mm: float = 0.04  # hole-to-hole variation within a part
    single_layer_rate: float = 0.03  # CFRP only (no transition)
    air_cut_rate: float = 0.01  # no material at all
    abort_rate: float = 0.015  # operator abort mid-cycle (0x400)
    cfrp_ply_step_rate: float = 0.7  # production CFRP torque steps up (~+20 %) part-way through
    pecking_rate: float = 0.15  # share of production parts whose metal is drilled with micro-pecks
    materials: dict[str, MaterialParams] = field(default_factory=_materials)
    machines: dict[str, MachineParams] = field(default_factory=_machines)
