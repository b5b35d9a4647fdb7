"""Write a hole as a Setitec unit writes it: the format 9 (production) and format 4 (lab) layouts.

Latin-1 text with an `.xls` name, TAB separated, rows padded with TABs as the units pad them,
comma decimals in the tables (format 4 keeps dots in some metadata, like the real units), every
section in the units' order, and the Datas table last. `uos parse` reads these files back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from uos.holes.record import PROGRAM_FIELDS, STEP_RESULT_FIELDS, Hole

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
    rows = ["\t".join(header)]
    for step in program:
        cells = []
        for key in PROGRAM_FIELDS:  # (the header's columns, in order)
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
    rows = ["\t".join(header)]
    for result in step_results:
        rows.append("\t".join(_comma(float(result.get(k) or 0)) for k in STEP_RESULT_FIELDS))
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


# --- the sections of a file, as a table per format -----------------------------------------------


@dataclass(frozen=True)
class _Page:
    """What the cells of a file's sections are drawn from."""

    hole: Hole
    version: int
    date: str  # the unit's date text, "" when the hole has none

    @property
    def meta(self) -> dict[str, Any]:
        return self.hole.meta


# A cell is a constant, or a function of the page (see `_meta`) giving the value.
Cell = Any
# A part of a section: its lines, given the page and the section's width in cells.
Part = Callable[[_Page, int], list[str]]


def _cell(value: Cell, page: _Page) -> Any:
    return value(page) if callable(value) else value


def _meta(key: str, *default: Any) -> Callable[[_Page], Any]:
    """A cell holding the hole's `meta[key]`; with a default, for a key the hole may lack."""
    if default:
        return lambda page: page.meta.get(key, default[0])
    return lambda page: page.meta[key]


def _version(page: _Page) -> int:
    return page.version


def _date(page: _Page) -> str:
    return page.date


def _fields(*fields: tuple[str, Cell], padded: bool = True) -> Part:
    """A row of headers over a row of values, one (header, value) pair per column. The units pad
    most such rows with TABs to the section's width, but not all (`padded=False`)."""
    headers = [header for header, _ in fields]

    def lines(page: _Page, width: int) -> list[str]:
        values = [_cell(value, page) for _, value in fields]
        if padded:
            return [_row(headers, width), _row(values, width)]
        return ["\t".join(headers), "\t".join(values)]

    return lines


def _split_fields(*fields: tuple[str, Cell], first: int, gap: int) -> Part:
    """Unpadded fields whose header format 4 splits over two lines, `gap` empty lines apart: the
    first `first` headers, then the rest starting again with the last header of the first line."""
    headers = [header for header, _ in fields]

    def lines(page: _Page, width: int) -> list[str]:
        values = [_cell(value, page) for _, value in fields]
        return ["\t".join(headers[:first]), *[""] * gap, "\t".join(headers[first - 1 :]), "\t".join(values)]

    return lines


def _blank_line(page: _Page, width: int) -> list[str]:
    return [_blank(width)]


def _program(page: _Page, width: int) -> list[str]:
    return _program_rows(page.hole.program, page.version)


def _step_results(page: _Page, width: int) -> list[str]:
    return _step_result_rows(page.hole.step_results)


@dataclass(frozen=True)
class _Section:
    banner: str
    width: int  # cells the unit pads the section's rows, its banner and the blank line above it to
    parts: tuple[Part, ...]


def _section(banner: str, width: int, *parts: Part) -> _Section:
    return _Section(banner, width, parts)


_CUTTING_TOOL_BREAKAGE = _fields(
    ("Cutting tool breakage On/Off", "0,000"),
    ("Cutting tool breakage DEP (mm)", "0,000"),
    ("Cutting tool breakage Thrust (A)", "0,000"),
    ("Cutting tool breakage Torque (A)", "0,000"),
    padded=False,
)

# Format 9 (production units): each section's banner, the width its rows are padded to and its
# fields, in the units' order. Values are written as these units write them (comma decimals).


def _control_box(hours: int, lub_coefficient: str) -> tuple:
    """The Control Box fields both formats share (a unit's hours of operation by default, and the
    lubrication pump's coefficient as that format writes it)."""
    return (
        ("BOX Name", _meta("controller_name")),
        ("BOX Type", "CB V2 - Standard"),
        ("BOX SN", _meta("controller_sn")),
        ("BOX STSE", ""),
        ("BOX Customer Info", ""),
        ("BOX Release", "0"),
        ("BOX Firmware Version", _meta("controller_firmware")),
        ("BOX Production Date", "01/01/2016"),
        ("BOX Maintenance Date", "01/01/2016"),
        ("BOX Operation Time", lambda page: str(page.meta.get("controller_hours", hours))),
        ("BOX Power Supply Limit", "3000"),
        ("BOX Lub Pump Coef.", lub_coefficient),
    )


_FORMAT_9 = (
    _section(
        "General Infos",
        13,
        _fields(
            ("Version", _version),
            ("Date", _date),
            ("Sample Rate (Hz)", 100),
            ("Drilling Cycle ID", _meta("cycle_id", "")),
            ("Decimal Separator separator", "Comma"),
        ),
    ),
    _section(
        "Control Box Datas",
        13,
        _fields(*_control_box(hours=1000, lub_coefficient=" 1,000"), ("Pset Default Selection", "TRUE"), padded=False),
    ),
    _section(
        "Motor Datas",
        13,
        _fields(
            ("Motor Name", _meta("motor_name")),
            ("Motor Type", _meta("motor_name")),
            ("Motor STSE", 5000),
            ("Motor SN", _meta("motor_sn")),
            ("Motor Operation Time", 140000),
            ("Motor M2 Ratio", " 21,923"),
            ("Motor M1 CW Ratio", " 0,792"),
            ("Motor M1 CCW Ratio", " 2,638"),
            ("Motor Winch Limit", 2400),
        ),
    ),
    _section(
        "Head Datas",
        13,
        _fields(
            ("Head Name", _meta("head_name")),
            ("Head Type", "Concentric Collet"),
            ("Head TAG UID", _meta("head_tag")),
            ("Head Global Counter", _meta("global_counter")),
            ("Head Local Counter 1", _meta("tool_age")),
            ("Head Local Counter 2", _meta("tool_age")),
            ("Head M1 Ratio", " 1,000"),
            ("Head M2 Ratio", " 1,000"),
            ("Customer Info", _meta("cutting_tool")),
            ("Micropeck Osc.", _meta("micropeck_osc", 0)),
            ("Micropeck Amplitude", _meta("micropeck_amplitude", 0)),
        ),
    ),
    _section(
        "Pset",
        9,
        _fields(("Pset Type", "Standard"), ("Pset Nb.", _meta("pset", 0)), ("Version", _version)),
    ),
    _section(
        "Cycle Parameters",
        9,
        _fields(
            ("Max cycles Limit 1", "60"),
            ("Max cycles Limit 2", "0"),
            ("CC Pressure", "9"),
            ("Max Stroke (mm)", "0,000"),
            ("Vacuum Delay (ms)", "0"),
            ("Vacuum Flow min (m/s)", "0,000"),
            ("Retract Rotation Speed (rpm)", "300"),
            ("Retract Feed (m/s)", "13,000"),
            ("Disable Abort", "0"),
            padded=False,
        ),
        _blank_line,
        _fields(("Comment", " " * 100)),
        _CUTTING_TOOL_BREAKAGE,
        _fields(
            ("Lub Preload Time (s)", "2,000"),
            ("Lub Preload Lub Air", "5,000"),
            ("Lub Preload Lub Flow", "30,000"),
            ("Lub Preload Timeout (s)", "0,000"),
            padded=False,
        ),
    ),
    _section("Program", 22, _program),
    _section(
        "Results",
        10,
        _fields(
            ("Cycle Time (s)", lambda page: _comma(page.meta["cycle_time_s"], 6)),
            ("Distance (mm)", lambda page: _comma(page.meta["distance_mm"])),
            ("Cycle OK", lambda page: "True" if page.meta.get("cycle_ok") else "False"),
        ),
    ),
    _section("Step Results", 10, _step_results),
    _section("Datas", 9),  # its table follows the banner (see `render`),
)

# Format 4 (the lab unit): fewer fields, narrower sections, dot decimals in some metadata.
_FORMAT_4 = (
    _section(
        "General Infos",
        12,
        _fields(("Version", _version), ("Date", _date), ("Sample Rate (Hz)", 100)),
    ),
    _section(
        "Control Box Datas",
        12,
        _split_fields(*_control_box(hours=300, lub_coefficient="1.000"), first=9, gap=45),
    ),
    _section(
        "Motor Datas",
        12,
        _fields(
            ("Motor Name", _meta("motor_name")),
            ("Motor Type", "L_EDU"),
            ("Motor STSE", 5000),
            ("Motor SN", _meta("motor_sn")),
            ("Motor Operation Time", 8000),
            ("Motor M2 Ratio", "21.923"),
            ("Motor M1 CW Ratio", "0.947"),
            ("Motor M1 CCW Ratio", "0.947"),
            ("Motor Winch Limit", 0),
        ),
    ),
    _section(
        "Head Datas",
        12,
        _fields(
            ("Head Name", _meta("head_name")),
            ("Head Type", "Concentic Collet"),  # sic: the units spell it so
            ("Head TAG UID", _meta("head_tag")),
            ("Head Global Counter", _meta("global_counter")),
            ("Head Local Counter", _meta("tool_age")),
            ("Head M1 Ratio", "1.000"),
            ("Head M2 Ratio", "1.000"),
            ("Customer Info", _meta("cutting_tool")),
        ),
    ),
    _section(
        "Pset",
        4,
        _fields(("Pset Type", "Standard"), ("Pset n\N{DEGREE SIGN}", _meta("pset", 0)), ("Version", 6)),
    ),
    _section(
        "Cycle Parameters",
        4,
        _fields(
            ("Max cycles", "300"),
            ("CC Pressure", "9"),
            ("Max Stroke (mm)", "0,000000"),
            ("Vacuum Delay (ms)", "0"),
            padded=False,
        ),
        _CUTTING_TOOL_BREAKAGE,
    ),
    _section("Program", 22, _program),
    _section(
        "Results",
        12,
        _fields(
            ("Cycle Time (s)", lambda page: _comma(page.meta["cycle_time_s"], 6)),
            ("Distance (mm)", lambda page: _comma(page.meta["distance_mm"], 6)),
        ),
    ),
    _section("Datas", 12),
)

_SECTIONS = {9: _FORMAT_9, 4: _FORMAT_4}


def render(hole: Hole, version: int = 9) -> bytes:
    """The bytes of a Setitec file for `hole` in the layout of format `version` (4 or 9)."""
    if version not in FORMATS:
        raise ValueError(f"format {version} is not written (choose from {FORMATS})")
    date = hole.meta.get("date")
    page = _Page(hole, version, date.strftime("%Y-%m-%d:%H:%M:%S") if isinstance(date, datetime) else "")
    lines: list[str] = []
    for index, section in enumerate(_SECTIONS[version]):
        if index:  # a blank line, as wide as the section it announces, separates the sections
            lines.append(_blank(section.width))
        lines.append(_banner(section.banner, section.width))
        for part in section.parts:
            lines.extend(part(page, section.width))
    names, columns, decimals = _data_columns(hole, version)
    lines.append("\t".join(names))
    text = "\n".join(lines) + "\n" + _data_rows(columns, decimals)
    return text.encode("latin-1")
