"""Stop codes: bit flags a unit writes on the last samples of a step (DOMAIN.md section 3).

Decode with masks, never by equality: 131074 is motor 1 killed (0x20000) + torque limit (0x2).
"""

from __future__ import annotations

TORQUE_MAX = 0x1  # torque rose past the step's threshold: a harder layer
TORQUE_LIMIT = 0x2
THRUST_MAX = 0x4
THRUST_LIMIT = 0x8  # hard stop / end of travel
STROKE = 0x40  # the programmed stroke was reached: a position, not a material event
ABORT = 0x400  # the operator aborted the cycle
TORQUE_MIN = 0x800  # torque fell below the threshold: breakthrough
STROKE_MAX = 0x2000  # retract

NAMES = {
    0x1: "torque max",
    0x2: "torque limit",
    0x4: "thrust max",
    0x8: "thrust limit",
    0x10: "safety",
    0x40: "stroke",
    0x80: "stop button",
    0x200: "tool break",
    0x400: "abort",
    0x800: "torque min",
    0x2000: "stroke max",
    0x20000: "motor 1 killed",
    0x80000: "delay",
    0x100000: "over temperature",
    0x200000: "over temperature",
    0x400000: "overload",
    0x800000: "overload",
}


def describe(code: int | None) -> str:
    """`0x801 (torque max + torque min)`; `0` for none."""
    if not code:
        return "0"
    code = int(code)
    names = [name for bit, name in NAMES.items() if code & bit]
    unknown = code & ~sum(NAMES)
    if unknown:
        names.append(f"unknown 0x{unknown:x}")
    return f"0x{code:x} ({' + '.join(dict.fromkeys(names))})"
