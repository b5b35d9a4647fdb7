"""Every real Setitec file parses, and a handful match what the files say, value by value."""

from __future__ import annotations

import numpy as np
import pytest

from uos.dataset.layout import read_holes
from uos.holes import read_source


def test_every_real_file_parses_without_error(real_dataset, setitec_dir):
    setitec = [o for o in real_dataset.outcomes if "/setitec/" in o.source]
    assert len(setitec) == 838
    errors = [(o.source, o.reasons) for o in setitec if o.status == "error"]
    assert errors == []
    holes = read_holes(real_dataset.out_dir)
    assert set(holes["format_version"].dropna().astype(int)) == {4, 7, 8, 9, 11}


def test_known_oddities_are_reported(real_dataset):
    by_name = {o.source.rsplit("/", 1)[-1]: o for o in real_dataset.outcomes}
    assert any("air cut" in r for r in by_name["V5_10.xls"].reasons)
    assert any("counters disagree with the file name" in r for r in by_name["17070141_17070141_ST_59_55.xls"].reasons)
    assert any("same signals" in r for r in by_name["MQTT_to_XLS_17070141_798.xls"].reasons)


# Expected values read off the files with awk/grep, independently of the parser.
CASES = {
    "mql/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls": dict(
        n=8366,
        first=0.551,
        last=36.651,
        version=9,
        head_id="E00401009F45C395",
        global_counter=1874,
        tool_age=1,
        steps=[1, 2, 3],
        step_stop={1: 0x1, 2: 0x800, 3: 0x8},
        program_rpm={1: 1500, 2: 320, 3: 1500},
    ),
    "tuhh/001_V1/V1_001.xls": dict(
        n=3345,
        first=0.544,
        last=25.0,
        version=4,
        head_id="116-V3-012",
        global_counter=203,
        tool_age=1,
        steps=[2],
        step_stop={2: 0x40},
        program_rpm={1: 1500, 2: 1000},
    ),
    "misc/23120040_23120040_ST_2412_60.xls": dict(
        n=135,
        first=0.718,
        last=4.977,
        version=11,
        head_id="23120040",
        global_counter=2412,
        tool_age=60,
        steps=[1],
        step_stop={1: 0x40},
        program_rpm={1: 2000},
    ),
    "unk/MQTT_to_XLS_17070141_798.xls": dict(  # ';' separator, dot decimals in the data
        n=1924,
        first=0.654,
        last=32.029,
        version=8,
        head_id="17070141",
        global_counter=798,
        tool_age=0,
        steps=[0, 1, 2, 3],
        step_stop={0: 0x1, 1: 0x40, 2: 0x800, 3: 0x8},
        program_rpm={0: 4000, 1: 4000},
    ),
    "mdb/17070141_17070141_ST_753_55.xls": dict(  # a NUL byte in the motor name
        n=2039,
        first=0.673,
        last=32.029,
        version=9,
        head_id="17070141",
        global_counter=753,
        tool_age=55,
        steps=[0, 1, 2, 3],
        step_stop={0: 0x1, 1: 0x40, 2: 0x800, 3: 0x8},
        program_rpm={0: 4000, 1: 4000},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_match_the_file(setitec_dir, name):
    expected = CASES[name]
    hole = read_source(setitec_dir / name)
    depth = hole.signals["depth_mm"]
    assert hole.n_samples == expected["n"]
    assert depth[0] == pytest.approx(expected["first"], abs=1e-9)
    assert depth[-1] == pytest.approx(expected["last"], abs=1e-9)
    assert hole.meta["format_version"] == expected["version"]
    assert hole.meta["head_id"] == expected["head_id"]
    assert hole.meta["global_counter"] == expected["global_counter"]
    assert hole.meta["tool_age"] == expected["tool_age"]
    assert hole.hole_id == f"{expected['head_id']}-{expected['global_counter']}"
    assert sorted(set(hole.signals["step"].tolist())) == expected["steps"]
    stop = hole.signals["stop_code"]
    for step, code in expected["step_stop"].items():
        codes = set(stop[(hole.signals["step"] == step) & (stop != 0)].tolist())
        assert codes == {code}, f"step {step}"
    rpm = {p["step"]: p["rpm"] for p in hole.program}
    for step, value in expected["program_rpm"].items():
        assert rpm[step] == value


def test_nul_byte_and_replacement_character_are_harmless(setitec_dir):
    nul = read_source(setitec_dir / "mdb/17070141_17070141_ST_753_55.xls")
    assert nul.meta["motor_name"] == "Light_EDU"
    fffd = read_source(setitec_dir / "misc/20110019_20110019_ST_490_3.xls")  # 'Pset n\ufffd' header
    assert fffd.meta["pset"] == 0
    assert fffd.meta["format_version"] == 4


def test_split_version_4_header_is_joined(setitec_dir):
    hole = read_source(setitec_dir / "tuhh/001_V1/V1_001.xls")
    box = hole.raw_metadata["control box datas"]
    assert box["BOX Name"] == "NI-sbRIO-9607-01e60d78"
    assert box["BOX Operation Time"] == "373"  # the name after the repeated one gets its value
    assert hole.meta["controller_sn"] == "01E60D78"


def test_version_11_repeated_column_is_dropped(setitec_dir):
    hole = read_source(setitec_dir / "misc/23120040_23120040_ST_2409_59.xls")
    assert list(hole.signals) == [
        "depth_mm",
        "torque_a",
        "thrust_a",
        "torque_empty_a",
        "thrust_empty_a",
        "step",
        "stop_code",
        "power_w",
        "gap_mm",
    ]
    assert np.isfinite(hole.signals["gap_mm"]).all()


def test_glued_program_header_names_are_split(setitec_dir):
    hole = read_source(setitec_dir / "unk/MQTT_to_XLS_17070141_798.xls")
    program = {p["step"]: p for p in hole.program}
    assert program[0]["stroke_mm"] == 5.0
    assert program[0]["material"] == 0.0
    assert "Thrust Limit (A)" in hole.raw_metadata["program"][0]
