"""MQTT capture folders give the same hole record as files, or a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

import oddities
from uos.errors import InputError
from uos.holes import read_source
from uos.holes.mqtt import decode_message, hole_from_messages, read_capture

CAPTURES = ["data0", "data1", "data2", "data_20250326", "data_20250623", "legacy_setitecxls"]


@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_gives_a_hole(mqtt_dir, name):
    hole = read_source(mqtt_dir / name)
    assert hole.meta["source_kind"] == "mqtt"
    assert hole.n_samples > 0
    for column in ("depth_mm", "torque_a", "thrust_a"):
        assert len(hole.signals[column]) == hole.n_samples
    assert hole.hole_id == f"{hole.meta['head_id']}-{hole.meta['global_counter']}"


def test_truncated_trace_is_a_clear_error(mqtt_dir):
    with pytest.raises(InputError) as info:
        read_source(mqtt_dir / "data_20250626")
    assert str(info.value).endswith(
        "Trace.json is not valid JSON: it ends after 20000 bytes, in the middle of a value (cut short?)"
    )


def test_capture_equals_the_file_sample_by_sample(mqtt_dir, setitec_dir):
    capture = read_source(mqtt_dir / "data0")
    file = read_source(setitec_dir / "misc/23120040_23120040_ST_2409_59.xls")
    assert capture.hole_id == file.hole_id == "23120040-2409"
    assert capture.n_samples == file.n_samples == 492
    for column in ("depth_mm", "torque_a", "thrust_a", "torque_empty_a", "thrust_empty_a", "step"):
        np.testing.assert_array_equal(capture.signals[column], file.signals[column], err_msg=column)
    assert capture.meta["signals_hash"] == file.meta["signals_hash"]
    assert capture.meta["date"] == file.meta["date"]
    assert (
        [r["stop_code"] for r in capture.step_results] == [r["stop_code"] for r in file.step_results] == [0x40, 0x2000]
    )


def test_heads_and_cutting_tools_give_identity_and_tool_age(mqtt_dir):
    hole = read_source(mqtt_dir / "data_20250326")
    assert hole.hole_id == "E00401009F45BACA-440"
    assert hole.meta["tool_age"] == 30
    assert hole.meta["head_tag"] == "E00401009F45BACA"


def _messages(mqtt_dir):
    result = decode_message((mqtt_dir / "data1/Result.json").read_bytes(), "Result", "test")
    trace = decode_message((mqtt_dir / "data1/Trace.json").read_bytes(), "Trace", "test")
    return result, trace


def test_trace_arrays_of_different_lengths_are_refused(mqtt_dir):
    result, trace = _messages(mqtt_dir)
    for key, entry in trace["Messages"]["Payload"].items():
        if key.endswith("IntensityThrustTrace.StepTraceContent[0].Values"):
            entry["Value"] = entry["Value"][:-1]
    with pytest.raises(
        InputError,
        match=r"Trace arrays differ in length \(PositionTrace 135, IntensityTorqueTrace 135, IntensityThrustTrace 134",
    ):
        hole_from_messages(result, trace, source="test")


def test_missing_trace_array_is_refused(mqtt_dir):
    result, trace = _messages(mqtt_dir)
    payload = trace["Messages"]["Payload"]
    for key in [k for k in payload if "IntensityTorqueTrace" in k]:
        del payload[key]
    with pytest.raises(InputError, match="Trace has no IntensityTorqueTrace values"):
        hole_from_messages(result, trace, source="test")


def test_trace_of_another_result_is_refused(mqtt_dir):
    result, trace = _messages(mqtt_dir)
    for key, entry in result["Messages"]["Payload"].items():
        if key.endswith("ResultMetaData.ResultId"):
            entry["Value"] = 9999
    with pytest.raises(InputError, match="Trace is for ResultId 2412 but the Result is ResultId 9999"):
        hole_from_messages(result, trace, source="test")


def test_not_a_message(tmp_path):
    with pytest.raises(InputError, match="not an OPC UA PubSub message"):
        decode_message(json.dumps({"hello": 1}), "Trace.json", "x")


def test_a_capture_with_text_values_is_an_input_error(mqtt_dir, tmp_path):
    """Text where the Trace has numbers: an InputError that says so (it was a ValueError from
    numpy, a traceback in `uos predict`; tested end to end in test_serve_faults.py)."""
    folder = oddities.capture_with_text(mqtt_dir / "data1", tmp_path / "capture")
    with pytest.raises(InputError, match=r"Trace PositionTrace must be a list of numbers, but holds the text 'n/a'"):
        read_capture(folder)
