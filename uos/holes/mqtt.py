"""Holes from the OPC UA PubSub JSON messages live units publish (Result + Trace [+ Heads ...]).

The same `Hole` as a Setitec file gives, so `uos parse` (capture folders) and `uos serve` (live
messages) share one model of a hole. Node ids differ between units in their device part, so
values are looked up by the tail of the node id (see DOMAIN.md section 4).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from uos.errors import InputError
from uos.holes.files import read_regular
from uos.holes.record import STEP_RESULT_FIELDS, Hole, head_identity, make_hole_id
from uos.holes.setitec import finish_signals, to_bool, to_date, to_int, to_number

_ROOTS = (".ResultManagement.", ".AssetManagement.")

# Trace arrays, by the name of their trace node.
TRACE_SIGNALS = {
    "PositionTrace": "position",
    "IntensityTorqueTrace": "torque_a",
    "IntensityThrustTrace": "thrust_a",
    "StepNumberTrace": "step",
    "PowerTrace": "power_w",
    "GapLengthTrace": "gap_mm",
}
# The older one-message schema carries the samples among the step result values.
LEGACY_SIGNALS = {
    "Position": "position",
    "Torque": "torque_a",
    "Thrust": "thrust_a",
    "TorqueEmpty": "torque_empty_a",
    "ThrustEmpty": "thrust_empty_a",
    "TorquePower": "power_w",
    "GapLength": "gap_mm",
}
STEP_RESULT_VALUES = {
    "StepNumber": "step",
    "StopCode": "stop_code",
    "Duration": "duration_s",
    "M1Distance": "distance_m1_mm",
    "M2Distance": "distance_m2_mm",
    "M1MaxAmperage": "m1_max_a",
    "M2MaxAmperage": "m2_max_a",
    "IntensityTorqueEmpty": "m1_no_load_a",
    "IntensityThrustEmpty": "m2_no_load_a",
    "GapMax": "gap_max_mm",
}


def decode_message(data: bytes | str, what: str, source: str) -> dict[str, Any]:
    """Parse one message's JSON, with a one-line reason when it is not a valid message."""
    if not data:
        raise InputError(f"{what} is empty (no bytes)", source)
    try:
        message = orjson.loads(data)  # several times faster than json on the large Trace arrays
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{what} {_json_problem(data, exc)}", source) from None
    if not isinstance(message, dict) or not isinstance(message.get("Messages"), dict):
        raise InputError(f"{what} is not an OPC UA PubSub message (no 'Messages' object)", source)
    if not isinstance(message["Messages"].get("Payload") or {}, dict):
        raise InputError(f"{what} is not an OPC UA PubSub message ('Payload' is not an object of nodes)", source)
    if _an_id_lost_its_digits(message["Messages"].get("Payload") or {}):
        import json

        message = json.loads(data)  # Python's own decoder keeps integers of any size (and it parsed above)
    return message


_EXACT_INTEGERS = 2**63  # orjson reads an integer beyond 64 bits as a float


def _an_id_lost_its_digits(nodes: dict[str, Any]) -> bool:
    """Whether the decoder turned a ResultId into a float: ResultIds 10**20 + 5 and 10**20 + 6
    would both read 1e+20, one hole taken for a re-sent copy of the other."""
    for key, node in nodes.items():
        if key.endswith("ResultId") and isinstance(node, dict):
            value = node.get("Value")
            if isinstance(value, float) and math.isfinite(value) and abs(value) >= _EXACT_INTEGERS:
                return True
    return False


_NOT_JSON_NUMBERS = (b"NaN", b"Infinity", b"-Infinity")


def _json_problem(data: bytes | str, exc: Exception) -> str:
    """Why a message is not JSON, in a unit's terms: NaN or Infinity (which JSON has no words
    for), bytes that are not UTF-8, cut short, or else where it breaks."""
    raw = data.encode() if isinstance(data, str) else data
    at = getattr(exc, "pos", None)
    if at is not None and raw[at : at + 9].startswith(_NOT_JSON_NUMBERS):
        token = next(t for t in sorted(_NOT_JSON_NUMBERS, key=len, reverse=True) if raw[at:].startswith(t))
        return (
            f"is not valid JSON: {token.decode()} at byte {at} (JSON has no NaN or Infinity; a unit sends "
            "null for a missing value)"
        )
    if "utf-8" in str(exc).lower():
        return "is not valid JSON: its bytes are not UTF-8 text"
    if at is not None and at >= len(raw.rstrip()) - 1:
        return f"is not valid JSON: it ends after {len(raw)} bytes, in the middle of a value (cut short?)"
    where = f" at byte {at}" if at is not None else ""
    return f"is not valid JSON{where}: {str(exc).split(':')[0]}"


def payload(message: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Values keyed by the node id's tail after the device (`Results.0.ResultMetaData.ResultId`),
    with any `.MeasuredValue` suffix removed; and the device name."""
    values: dict[str, Any] = {}
    device = None
    body = message.get("Messages") or {}
    for node, entry in (body.get("Payload") or {}).items():
        node_path = node.split(";s=", 1)[-1]
        for root in _ROOTS:
            at = node_path.find(root)
            if at >= 0:
                device = device or node_path[:at].removeprefix("Objects.DeviceSet.")
                tail = node_path[at + len(root) :]
                break
        else:
            tail = node_path
        tail = tail.removesuffix(".MeasuredValue")
        values[tail] = entry.get("Value") if isinstance(entry, dict) else entry
    return values, device


def _find(values: dict[str, Any], suffix: str) -> Any:
    for key, value in values.items():
        if key.endswith(suffix):
            return value
    return None


def find_text(values: dict[str, Any], suffix: str) -> str | None:
    """The value of the node ending in `suffix`, as text (None when absent or empty): the ids
    `uos serve` and `uos replay` read before a hole is built."""
    value = _find(values, suffix)
    if isinstance(value, dict | list):
        raise InputError(f"{suffix.rsplit('.', 1)[-1]} is {_kind(value)}, not a text or a number")
    return _text(value)


def _kind(value: Any) -> str:
    """What a JSON value is, in JSON's words (for reasons a unit's maker understands)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:20]!r}"
    return "null" if value is None else f"the single number {value:g}"


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


def _array(values: Any, name: str = "values") -> np.ndarray | None:
    """A numeric array, null entries as NaN; None when absent or when every entry is null. A
    value that is not a list of numbers is an InputError naming `name` and what it holds."""
    if values is None:
        return None
    if not isinstance(values, list):
        raise InputError(f"{name} is {_kind(values)}, not a list of numbers")
    try:
        array = np.array(values, dtype=np.float64)  # null becomes NaN, in C: ~10x faster than a loop
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1:
        bad = next((v for v in values if v is not None and not isinstance(v, int | float)), None)
        if isinstance(bad, str):  # numbers written as text are read; other text is not
            bad = next((v for v in values if isinstance(v, str) and to_number(v) is None), None)
        what = _kind(bad) if bad is not None else "something else"
        raise InputError(f"{name} must be a list of numbers, but holds {what}")
    if not np.isfinite(array).any() and all(v is None for v in values):
        return None
    return array


def _trace_arrays(trace: dict[str, Any], legacy: dict[str, Any], source: str) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for node, name in TRACE_SIGNALS.items():
        array = _array(_find(trace, f"{node}.StepTraceContent[0].Values"), f"Trace {node}")
        if array is not None:
            arrays[name] = array
    legacy_used = not arrays
    if legacy_used:
        for node, name in LEGACY_SIGNALS.items():
            raw = _find(legacy, f"StepResultValues.{node}")
            array = _array(raw if isinstance(raw, list) else None, f"Result {node}")
            if array is not None:
                arrays[name] = array
    for required, label in (
        ("position", "PositionTrace"),
        ("torque_a", "IntensityTorqueTrace"),
        ("thrust_a", "IntensityThrustTrace"),
    ):
        if required not in arrays:
            raise InputError(f"Trace has no {label} values", source)
    nodes = LEGACY_SIGNALS if legacy_used else TRACE_SIGNALS
    node_of = {name: node for node, name in nodes.items()}
    lengths = {node_of[name]: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise InputError(f"Trace arrays differ in length ({shown})", source)
    return arrays


def _step_results(result: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    columns = {field: _as_list(_find(result, f"StepResultValues.{node}")) for node, field in STEP_RESULT_VALUES.items()}
    columns = {k: v for k, v in columns.items() if v is not None}
    if not columns:
        return [], None
    lengths = {k: len(v) for k, v in columns.items()}
    n_steps = len(columns["step"]) if "step" in columns else max(lengths.values())
    note = None
    if len(set(lengths.values())) > 1:
        note = "Result per-step arrays disagree in length (" + ", ".join(f"{k} {n}" for k, n in lengths.items()) + ")"
    node_of = {field: node for node, field in STEP_RESULT_VALUES.items()}
    arrays = {field: _array(values, f"Result {node_of[field]}") for field, values in columns.items()}
    records = []
    for i in range(n_steps):
        record: dict[str, Any] = dict.fromkeys(STEP_RESULT_FIELDS)
        for field, values in arrays.items():
            if values is not None and i < len(values) and math.isfinite(values[i]):
                whole = field in ("step", "stop_code")
                record[field] = _step_int(values[i], node_of[field]) if whole else float(values[i])
        records.append(record)
    return records, note


def _step_int(value: float, node: str) -> int:
    """A step number or stop code: a whole number a 64-bit column holds."""
    if abs(value) >= 2**63:
        raise InputError(
            f"Result {node} {value:g} is too large for a {'step number' if node == 'StepNumber' else 'code'}"
        )
    return int(value)


def _empty_currents(step: np.ndarray, step_results: list[dict[str, Any]], field: str) -> np.ndarray:
    """Per-sample no-load current from the per-step values, by step number."""
    by_step = {r["step"]: r[field] for r in step_results if r.get("step") is not None and r.get(field) is not None}
    out = np.full(len(step), np.nan)
    for number, value in by_step.items():
        out[step == number] = value
    return out


def hole_from_messages(
    result_message: dict[str, Any],
    trace_message: dict[str, Any],
    heads_message: dict[str, Any] | None = None,
    cutting_tools_message: dict[str, Any] | None = None,
    *,
    source: str,
    tool: str | None = None,
) -> Hole:
    """Build the hole a Result + Trace pair (and optional asset messages) describe; an InputError
    (naming `source`) when they hold something else than a hole."""
    try:
        return _hole_from_messages(result_message, trace_message, heads_message, cutting_tools_message, source, tool)
    except InputError as exc:
        if exc.source is None:
            raise InputError(exc.reason, source) from None
        raise


@dataclass(frozen=True)
class _Payloads:
    """The values of one hole's messages, keyed by the tails of their node ids (see `payload`)."""

    result: dict[str, Any]
    trace: dict[str, Any]
    heads: dict[str, Any]  # empty without a Heads message
    tools: dict[str, Any]  # empty without a CuttingTools message
    device: str | None  # the device the Result message names
    trace_device: str | None


def _hole_from_messages(
    result_message: dict[str, Any],
    trace_message: dict[str, Any],
    heads_message: dict[str, Any] | None,
    cutting_tools_message: dict[str, Any] | None,
    source: str,
    tool: str | None,
) -> Hole:
    result, device = payload(result_message)
    trace, trace_device = payload(trace_message)
    heads = payload(heads_message)[0] if heads_message else {}
    tools = payload(cutting_tools_message)[0] if cutting_tools_message else {}
    values = _Payloads(result, trace, heads, tools, device, trace_device)

    result_id = _result_id(values, source)
    arrays = _trace_arrays(trace, result, source)
    step_results, note = _step_results(result)
    signals = _signals(arrays, step_results)
    hole = Hole(
        meta=_meta(values, result_id, tool, sorted(signals)),
        signals=finish_signals(signals),
        step_results=step_results,
        raw_metadata={
            "result": _plain(result),
            "heads": _plain(heads),
            "cutting_tools": _plain(tools),
        },
    )
    if note:
        hole.warn(note)
    if "step" not in signals:
        hole.warn("no step trace: step boundaries unknown")
    return hole


def _result_id(values: _Payloads, source: str) -> int | None:
    """The Result's ResultId; an InputError when the Trace names another (not the same hole)."""
    result_id = to_int(str(_find(values.result, "ResultMetaData.ResultId")))
    trace_id = to_int(str(_find(values.trace, "PositionTrace.StepResultId")))
    if result_id is not None and trace_id is not None and result_id != trace_id:
        raise InputError(f"Trace is for ResultId {trace_id} but the Result is ResultId {result_id}", source)
    return result_id


def _signals(arrays: dict[str, np.ndarray], step_results: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The trace arrays as signals, in the order a Setitec file gives them: position, torque,
    thrust, step, no-load currents, then the rest. A trace without no-load currents gets them from
    the per-step values (when every sample's step is known). Takes the arrays out of `arrays`."""
    signals: dict[str, np.ndarray] = {"position_mm": arrays.pop("position")}
    signals["torque_a"] = arrays.pop("torque_a")
    signals["thrust_a"] = arrays.pop("thrust_a")
    if "step" in arrays:
        step = arrays.pop("step")
        signals["step"] = step
        if np.isfinite(step).all():
            for name, field in (
                ("torque_empty_a", "m1_no_load_a"),
                ("thrust_empty_a", "m2_no_load_a"),
            ):
                if name not in arrays:
                    arrays[name] = _empty_currents(np.rint(step), step_results, field)
    for name in ("torque_empty_a", "thrust_empty_a"):
        if name in arrays:
            signals[name] = arrays.pop(name)
    signals.update(arrays)
    return signals


def _meta(values: _Payloads, result_id: int | None, tool: str | None, signal_columns: list[str]) -> dict[str, Any]:
    """The hole's metadata, in the fields a Setitec file fills (those the messages lack: None)."""
    result, trace, heads, tools = values.result, values.trace, values.heads, values.tools
    tag = _find(heads, "Identification.SerialNumber")
    head_name = _find(heads, "Identification.DefaultInstanceBrowseName")
    serial = _find(result, "ResultMetaData.SerialNumber")
    head_id = (
        head_identity(tag and str(tag), head_name and str(head_name), serial and str(serial)) or tool or values.device
    )
    global_counter = to_int(str(_find(heads, "LifeTimeCycleCounter"))) or result_id
    created = _find(result, "ResultMetaData.CreationTime")
    return {
        "hole_id": make_hole_id(head_id, global_counter),
        "format_version": to_int(str(_find(result, "ResultMetaData.Version"))),
        "date": _message_date(created),
        "sample_rate_hz": to_number(
            str(_find(trace, "PositionTrace.SamplingInterval") or _find(result, "ResultMetaData.SampleRate"))
        ),
        "cycle_id": _text(_find(result, "ResultMetaData.JobId")),
        "controller_name": None,
        "controller_sn": None,
        "controller_firmware": None,
        "motor_name": None,
        "motor_sn": None,
        "head_id": head_id,
        "head_name": _text(head_name),
        "head_tag": _text(tag),
        "cutting_tool": _text(
            _find(heads, "Identification.CustomerInformation") or _find(result, "ResultMetaData.CustomerInformation")
        ),
        "global_counter": global_counter,
        "tool_age": to_int(str(_find(tools, "OperationCycleCounter"))),
        "local_counter_2": to_int(str(_find(tools, "OperationCycleCounter2"))),
        "pset": to_int(str(_find(result, "ResultMetaData.InternalRecipeId"))),
        "cycle_time_s": to_number(str(_find(result, "OverallResultValues.CycleTime"))),
        "distance_mm": to_number(str(_find(result, "ResultMetaData.Distance"))),
        "cycle_ok": to_bool(str(_find(result, "ResultMetaData.ResultEvaluation"))),
        "result_id": result_id,
        "tool": tool or values.device or values.trace_device,
        "signal_columns": signal_columns,
    }


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _message_date(value: Any):
    """ISO time (`2024-12-11T09:24:49Z`), or epoch seconds in the legacy schema; kept naive UTC."""
    if value is None:
        return None
    text = str(value)
    if text.isdigit():
        from datetime import UTC, datetime

        return datetime.fromtimestamp(int(text), tz=UTC).replace(tzinfo=None)
    return to_date(text)


def _plain(values: dict[str, Any]) -> dict[str, str]:
    """Scalar metadata as text (arrays of samples are the signals, not metadata)."""
    return {k: str(v) for k, v in values.items() if not (isinstance(v, list) and len(v) > 64)}


# --- capture folders --------------------------------------------------------------------------

RESULT_FILES = ("Result.json", "ResultManagement.json")


def is_capture_folder(path: Path) -> bool:
    return path.is_dir() and (
        ((path / "Trace.json").is_file() and any((path / n).is_file() for n in RESULT_FILES))
        or (path / "data.json").is_file()
    )


def capture_digest(folder: Path, source: str | None = None) -> str:
    """sha256 over the folder's message files (name and bytes), the content key of a capture.
    Raises InputError for a message file that is not a regular file (a FIFO would never end)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.json")):
        try:
            raw = read_regular(path)
        except InputError as exc:
            raise InputError(f"{path.name}: {exc.reason}", source) from None
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
    return digest.hexdigest()


def read_capture(folder: Path, source: str | None = None) -> Hole:
    """Read a folder of captured messages (Result + Trace [+ Heads, CuttingTools], or a legacy
    single-message `data.json`)."""
    source = source or str(folder)

    def read(name: str) -> bytes | None:
        path = folder / name
        return path.read_bytes() if path.is_file() else None

    if not (folder / "Trace.json").is_file() and (legacy := read("data.json")) is not None:
        message = decode_message(legacy, "data.json", source)
        return hole_from_messages(message, message, source=source)
    result_bytes = next((b for b in (read(n) for n in RESULT_FILES) if b is not None), None)
    trace_bytes = read("Trace.json")
    if result_bytes is None:
        raise InputError("capture folder without Result.json or ResultManagement.json", source)
    if trace_bytes is None:
        raise InputError("capture folder without Trace.json", source)
    result = decode_message(result_bytes, "Result", source)
    trace = decode_message(trace_bytes, "Trace.json", source)
    heads_bytes = read("Heads.json")
    tools_bytes = read("CuttingTools.json")
    heads = decode_message(heads_bytes, "Heads.json", source) if heads_bytes else None
    tools = decode_message(tools_bytes, "CuttingTools.json", source) if tools_bytes else None
    return hole_from_messages(result, trace, heads, tools, source=source)
