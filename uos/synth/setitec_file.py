"""Write a hole as a Setitec unit writes it: the format 9 (production) and format 4 (lab) layouts.

Latin-1 text with an `.xls` name, TAB separated, rows padded with TABs as the units pad them,
comma decimals in the tables (format 4 keeps dots in some metadata, like the real units), every
section in the units' order, and the Datas table last. `uos parse` reads these files back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from uos.holes.record import Hole

FORMATS = (4, 9)


def _comma(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}".replace(".", ",")


def _row(cells: list[Any], width: int) -> str:
    """A TAB-separated row padded with TABs to `width` cells."""
    cells = ["" if c is None else str(c) for c in cells]
    return "\t".join(cells + [""] * (width - len(cells)))


def _blank(width: int) -> str:
    return "\t" * (width - 1)


def _banner(name: str, width: int) -> str:
    return _row([f"*** {name} ***"], width)


def _program_rows(program: list[dict[str, Any]], version: int) -> list[str]:
    stroke, feed, feed_rev = (
        ("Stroke (mm)", "Feed (mm/s)", "Feed (mm/tr)") if version >= 7 else ("DEP (mm)", "AV (mm/s)", "AV (mm/tr)")
    )
    header = [
        "Step Nb",
        "Step On/Off",
        stroke,
        "RPM",
        feed,
        feed_rev,
        "Thrust Max (A)",
        "Torque Max (A)",
        "Thrust Min (A)",
        "Torque Min (A)",
        "Thrust Safety (A)",
        "Torque Safety (A)",
        "Gap (mm)",
        "Peck (nb)",
        "Delay (ms)",
        "Stroke Limit (A)",
        "Thrust Limit (A)",
        "Torque Limit (A)",
        "LUB AIR",
        "LUB FLOW",
        "Vacuum",
        "Material",
    ]
    keys = [
        "step",
        "enabled",
        "stroke_mm",
        "rpm",
        "feed_mm_s",
        "feed_mm_rev",
        "thrust_max_a",
        "torque_max_a",
        "thrust_min_a",
        "torque_min_a",
        "thrust_safety_a",
        "torque_safety_a",
        "gap_mm",
        "pecks",
        "delay_ms",
        "stroke_limit_a",
        "thrust_limit_a",
        "torque_limit_a",
        "lub_air",
        "lub_flow",
        "vacuum",
        "material",
    ]
    rows = ["\t".join(header)]
    for step in program:
        cells = []
        for key in keys:
            value = step.get(key)
            cells.append("Inf" if value is None and key == "feed_mm_rev" else _comma(float(value or 0)))
        rows.append("\t".join(cells))
    return rows


def _step_result_rows(step_results: list[dict[str, Any]]) -> list[str]:
    header = [
        "Step Number",
        "Stop Code",
        "Duration (s)",
        "Distance M1",
        "Distance M2",
        "M1 Max Amp",
        "M2 Max Amp",
        "M1 No Load Amp",
        "M2 No Load Amp",
        "Gap Max (mm)",
    ]
    keys = [
        "step",
        "stop_code",
        "duration_s",
        "distance_m1_mm",
        "distance_m2_mm",
        "m1_max_a",
        "m2_max_a",
        "m1_no_load_a",
        "m2_no_load_a",
        "gap_max_mm",
    ]
    rows = ["\t".join(header)]
    for result in step_results:
        rows.append("\t".join(_comma(float(result.get(k) or 0)) for k in keys))
    return rows


def _data_columns(hole: Hole, version: int) -> tuple[list[str], list[np.ndarray], list[int]]:
    """Header, columns and decimals of the Datas table."""
    s = hole.signals
    names = [
        "Position (mm)",
        "I Torque (A)",
        "I Thrust (A)",
        "I Torque Empty (A)",
        "I Thrust Empty (A)",
        "Step (nb)",
        "Stop code",
    ]
    columns = [
        -s["depth_mm"],
        s["torque_a"],
        s["thrust_a"],
        s["torque_empty_a"],
        s["thrust_empty_a"],
        s["step"],
        s["stop_code"],
    ]
    if version >= 7:
        names += ["Torque Power (W)", "Gap Length (mm)"]
        columns += [s["power_w"], s.get("gap_mm", np.zeros(len(s["depth_mm"])))]
    else:
        n = len(s["depth_mm"])
        names += [
            "Mem Torque min (A)",
            "Mem Thrust min (A)",
            "Rotation Speed (rpm)",
            "Feed Speed (mm/s)",
            "Torque Power (W)",
        ]
        columns += [np.zeros(n), np.zeros(n), -s["rpm"], s["feed_mm_s"], s["power_w"]]
    return names, columns, [3] * len(columns)


def _data_rows(columns: list[np.ndarray], decimals: list[int]) -> str:
    row = "\t".join(f"%.{d}f" for d in decimals)
    table = np.column_stack([np.asarray(c, dtype=float) for c in columns]).tolist()
    return ("\n".join(row % tuple(values) for values in table) + "\n").replace(".", ",")


def render(hole: Hole, version: int = 9) -> bytes:
    """The bytes of a Setitec file for `hole` in the layout of format `version` (4 or 9)."""
    if version not in FORMATS:
        raise ValueError(f"format {version} is not written (choose from {FORMATS})")
    m = hole.meta
    date = m["date"].strftime("%Y-%m-%d:%H:%M:%S") if isinstance(m.get("date"), datetime) else ""
    lines: list[str] = []
    add = lines.append
    if version >= 7:
        add(_banner("General Infos", 13))
        add(
            _row(
                [
                    "Version",
                    "Date",
                    "Sample Rate (Hz)",
                    "Drilling Cycle ID",
                    "Decimal Separator separator",
                ],
                13,
            )
        )
        add(_row([version, date, 100, m.get("cycle_id", ""), "Comma"], 13))
        add(_blank(13))
        add(_banner("Control Box Datas", 13))
        add(
            "\t".join(
                [
                    "BOX Name",
                    "BOX Type",
                    "BOX SN",
                    "BOX STSE",
                    "BOX Customer Info",
                    "BOX Release",
                    "BOX Firmware Version",
                    "BOX Production Date",
                    "BOX Maintenance Date",
                    "BOX Operation Time",
                    "BOX Power Supply Limit",
                    "BOX Lub Pump Coef.",
                    "Pset Default Selection",
                ]
            )
        )
        add(
            "\t".join(
                [
                    m["controller_name"],
                    "CB V2 - Standard",
                    m["controller_sn"],
                    "",
                    "",
                    "0",
                    m["controller_firmware"],
                    "01/01/2016",
                    "01/01/2016",
                    str(m.get("controller_hours", 1000)),
                    "3000",
                    " 1,000",
                    "TRUE",
                ]
            )
        )
        add(_blank(13))
        add(_banner("Motor Datas", 13))
        add(
            _row(
                [
                    "Motor Name",
                    "Motor Type",
                    "Motor STSE",
                    "Motor SN",
                    "Motor Operation Time",
                    "Motor M2 Ratio",
                    "Motor M1 CW Ratio",
                    "Motor M1 CCW Ratio",
                    "Motor Winch Limit",
                ],
                13,
            )
        )
        add(
            _row(
                [
                    m["motor_name"],
                    m["motor_name"],
                    5000,
                    m["motor_sn"],
                    140000,
                    " 21,923",
                    " 0,792",
                    " 2,638",
                    2400,
                ],
                13,
            )
        )
        add(_blank(13))
        add(_banner("Head Datas", 13))
        add(
            _row(
                [
                    "Head Name",
                    "Head Type",
                    "Head TAG UID",
                    "Head Global Counter",
                    "Head Local Counter 1",
                    "Head Local Counter 2",
                    "Head M1 Ratio",
                    "Head M2 Ratio",
                    "Customer Info",
                    "Micropeck Osc.",
                    "Micropeck Amplitude",
                ],
                13,
            )
        )
        add(
            _row(
                [
                    m["head_name"],
                    "Concentric Collet",
                    m["head_tag"],
                    m["global_counter"],
                    m["tool_age"],
                    m["tool_age"],
                    " 1,000",
                    " 1,000",
                    m["cutting_tool"],
                    m.get("micropeck_osc", 0),
                    m.get("micropeck_amplitude", 0),
                ],
                13,
            )
        )
        add(_blank(9))
        add(_banner("Pset", 9))
        add(_row(["Pset Type", "Pset Nb.", "Version"], 9))
        add(_row(["Standard", m.get("pset", 0), version], 9))
        add(_blank(9))
        add(_banner("Cycle Parameters", 9))
        add(
            "\t".join(
                [
                    "Max cycles Limit 1",
                    "Max cycles Limit 2",
                    "CC Pressure",
                    "Max Stroke (mm)",
                    "Vacuum Delay (ms)",
                    "Vacuum Flow min (m/s)",
                    "Retract Rotation Speed (rpm)",
                    "Retract Feed (m/s)",
                    "Disable Abort",
                ]
            )
        )
        add("\t".join(["60", "0", "9", "0,000", "0", "0,000", "300", "13,000", "0"]))
        add(_blank(9))
        add(_row(["Comment"], 9))
        add(_row([" " * 100], 9))
        add(
            "\t".join(
                [
                    "Cutting tool breakage On/Off",
                    "Cutting tool breakage DEP (mm)",
                    "Cutting tool breakage Thrust (A)",
                    "Cutting tool breakage Torque (A)",
                ]
            )
        )
        add("\t".join(["0,000"] * 4))
        add(
            "\t".join(
                [
                    "Lub Preload Time (s)",
                    "Lub Preload Lub Air",
                    "Lub Preload Lub Flow",
                    "Lub Preload Timeout (s)",
                ]
            )
        )
        add("\t".join(["2,000", "5,000", "30,000", "0,000"]))
        add(_blank(22))
        add(_banner("Program", 22))
        lines.extend(_program_rows(hole.program, version))
        add(_blank(10))
        add(_banner("Results", 10))
        add(_row(["Cycle Time (s)", "Distance (mm)", "Cycle OK"], 10))
        add(
            _row(
                [
                    _comma(m["cycle_time_s"], 6),
                    _comma(m["distance_mm"]),
                    "True" if m.get("cycle_ok") else "False",
                ],
                10,
            )
        )
        add(_blank(10))
        add(_banner("Step Results", 10))
        lines.extend(_step_result_rows(hole.step_results))
        add(_blank(9))
        add(_banner("Datas", 9))
    else:
        add(_banner("General Infos", 12))
        add(_row(["Version", "Date", "Sample Rate (Hz)"], 12))
        add(_row([version, date, 100], 12))
        add(_blank(12))
        add(_banner("Control Box Datas", 12))
        # Format 4 splits this header over two lines, ~45 blank lines apart, repeating a name.
        add(
            "\t".join(
                [
                    "BOX Name",
                    "BOX Type",
                    "BOX SN",
                    "BOX STSE",
                    "BOX Customer Info",
                    "BOX Release",
                    "BOX Firmware Version",
                    "BOX Production Date",
                    "BOX Maintenance Date",
                ]
            )
        )
        lines.extend([""] * 45)
        add(
            "\t".join(
                [
                    "BOX Maintenance Date",
                    "BOX Operation Time",
                    "BOX Power Supply Limit",
                    "BOX Lub Pump Coef.",
                ]
            )
        )
        add(
            "\t".join(
                [
                    m["controller_name"],
                    "CB V2 - Standard",
                    m["controller_sn"],
                    "",
                    "",
                    "0",
                    m["controller_firmware"],
                    "01/01/2016",
                    "01/01/2016",
                    str(m.get("controller_hours", 300)),
                    "3000",
                    "1.000",
                ]
            )
        )
        add(_blank(12))
        add(_banner("Motor Datas", 12))
        add(
            _row(
                [
                    "Motor Name",
                    "Motor Type",
                    "Motor STSE",
                    "Motor SN",
                    "Motor Operation Time",
                    "Motor M2 Ratio",
                    "Motor M1 CW Ratio",
                    "Motor M1 CCW Ratio",
                    "Motor Winch Limit",
                ],
                12,
            )
        )
        add(
            _row(
                [
                    m["motor_name"],
                    "L_EDU",
                    5000,
                    m["motor_sn"],
                    8000,
                    "21.923",
                    "0.947",
                    "0.947",
                    0,
                ],
                12,
            )
        )
        add(_blank(12))
        add(_banner("Head Datas", 12))
        add(
            _row(
                [
                    "Head Name",
                    "Head Type",
                    "Head TAG UID",
                    "Head Global Counter",
                    "Head Local Counter",
                    "Head M1 Ratio",
                    "Head M2 Ratio",
                    "Customer Info",
                ],
                12,
            )
        )
        add(
            _row(
                [
                    m["head_name"],
                    "Concentic Collet",
                    m["head_tag"],
                    m["global_counter"],
                    m["tool_age"],
                    "1.000",
                    "1.000",
                    m["cutting_tool"],
                ],
                12,
            )
        )
        add(_blank(4))
        add(_banner("Pset", 4))
        add(_row(["Pset Type", "Pset n\N{DEGREE SIGN}", "Version"], 4))
        add(_row(["Standard", m.get("pset", 0), 6], 4))
        add(_blank(4))
        add(_banner("Cycle Parameters", 4))
        add("\t".join(["Max cycles", "CC Pressure", "Max Stroke (mm)", "Vacuum Delay (ms)"]))
        add("\t".join(["300", "9", "0,000000", "0"]))
        add(
            "\t".join(
                [
                    "Cutting tool breakage On/Off",
                    "Cutting tool breakage DEP (mm)",
                    "Cutting tool breakage Thrust (A)",
                    "Cutting tool breakage Torque (A)",
                ]
            )
        )
        add("\t".join(["0,000"] * 4))
        add(_blank(22))
        add(_banner("Program", 22))
        lines.extend(_program_rows(hole.program, version))
        add(_blank(12))
        add(_banner("Results", 12))
        add(_row(["Cycle Time (s)", "Distance (mm)"], 12))
        add(_row([_comma(m["cycle_time_s"], 6), _comma(m["distance_mm"], 6)], 12))
        add(_blank(12))
        add(_banner("Datas", 12))
    names, columns, decimals = _data_columns(hole, version)
    add("\t".join(names))
    text = "\n".join(lines) + "\n" + _data_rows(columns, decimals)
    return text.encode("latin-1")
