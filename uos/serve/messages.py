"""MQTT topics and messages of the serving loop: what units publish, what `uos serve` answers.

Units publish OPC UA PubSub JSON (DOMAIN.md section 4) on
`<root>/<toolbox>/<tool>/ResultManagement` (Result), `.../ResultManagement/Trace` (Trace) and
`.../AssetManagement/Heads|CuttingTools`. `uos replay` writes the same messages from Setitec files;
`uos serve` reads them with `uos.holes.mqtt`, the code `uos parse` reads capture folders with.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from uos.holes.record import Hole

NAMESPACE = "nsu=http://airbus.com/IJT/ADrilling;s=Objects.DeviceSet"

# A hole's ResultId read straight from a message's bytes: for a message that will not decode
# (truncated), and for the cheap checks that must not decode (the echo baseline, stopping).
RESULT_ID_BYTES = re.compile(rb'(?:\.ResultId|\.StepResultId)"\s*:\s*\{\s*"Value"\s*:\s*"?([0-9A-Za-z_-]+)')

KINDS = {
    ("ResultManagement",): "result",
    ("ResultManagement", "Trace"): "trace",
    ("AssetManagement", "Heads"): "heads",
    ("AssetManagement", "CuttingTools"): "cutting_tools",
}


@dataclass(frozen=True)
class Topics:
    """Where units publish and where `uos serve` answers. `{toolbox}` and `{tool}` in the answer
    topics are the unit's own topic levels."""

    root: str = "OPCPUBSUB"
    tools: str = "+/+"  # toolbox/tool levels to listen to (MQTT wildcards)
    result: str = "uos/keypoints/{toolbox}/{tool}"
    error: str = "uos/errors/{toolbox}/{tool}"
    status: str = "uos/status/{client_id}"
    share: str | None = None  # MQTT shared-subscription group: several `uos serve` share the load

    def subscriptions(self, heads: bool = True) -> list[str]:
        """Topic filters to subscribe to. With a share group the Traces (the large messages, where
        the work is) are shared: each goes to one process of the group. Results and Heads (a few
        KB) go to every process, so that whichever gets a Trace has its Result."""
        shared = f"$share/{self.share}/" if self.share else ""
        filters = [
            f"{self.root}/{self.tools}/ResultManagement",
            f"{shared}{self.root}/{self.tools}/ResultManagement/Trace",
        ]
        if heads:
            filters += [
                f"{self.root}/{self.tools}/AssetManagement/Heads",
                f"{self.root}/{self.tools}/AssetManagement/CuttingTools",
            ]
        return filters

    def check(self) -> None:
        """A clear error now for a topic template with a placeholder we do not fill."""
        from uos.errors import UosError

        for name, template, fields in (
            ("result", self.result, ("toolbox", "tool")),
            ("error", self.error, ("toolbox", "tool")),
            ("status", self.status, ("client_id",)),
        ):
            try:
                template.format(**dict.fromkeys(fields, "x"))
            except (KeyError, IndexError, ValueError) as exc:
                raise UosError(
                    f"--{name}-topic {template!r}: only {', '.join('{' + f + '}' for f in fields)} "
                    f"can be filled in ({exc!r})"
                ) from None

    def answer(self, template: str, tool: str | None) -> str:
        toolbox, _, name = (tool or "unknown/unknown").partition("/")
        return template.format(toolbox=toolbox, tool=name or "unknown")


def classify(topic: str, root: str) -> tuple[str | None, str | None]:
    """(kind, "toolbox/tool") of a unit's topic; kind None when it is not one we read."""
    levels = topic.split("/")
    root_levels = root.split("/")
    if levels[: len(root_levels)] != root_levels or len(levels) < len(root_levels) + 3:
        return None, None
    rest = levels[len(root_levels) :]
    tool = f"{rest[0]}/{rest[1]}"
    return KINDS.get(tuple(rest[2:])), tool


def answer_id(
    tool: str | None,
    result_id: Any,
    timestamp: str | None,
    model: str | None = None,
    data: bytes | None = None,
    topic: str | None = None,
) -> str:
    """The key a consumer deduplicates answers on (QoS 1 delivers at least once: after a crash or
    a broker restart an answer may come twice). The same for every delivery of a hole's messages:
    tool, ResultId and SourceTimestamp (a unit whose counter was reset reuses ResultIds), then
    the model version that answered (`error` for an error). A message that cannot be read and
    names no ResultId is known by a digest of its topic and bytes (the same bytes on a Result's
    and on a Heads topic are two messages, with two errors)."""
    if result_id is None and data is not None:
        digest = hashlib.sha256((topic or "").encode() + b"\0" + data).hexdigest()[:20]
        return f"{tool}|sha256:{digest}|error"
    return f"{tool}|{result_id}|{timestamp or ''}|{model or 'error'}"


def answer_payload(
    answer: dict[str, Any],
    *,
    tool: str | None,
    result_id: Any,
    hole_id: str | None,
    source_timestamp: str | None,
    model: str,
    model_version: str,
    latency_ms: float,
) -> dict[str, Any]:
    """The JSON `uos serve` publishes for one hole: where it came from, then the fields of its
    answer (`infer.Answer.record`: keypoints, confidence, status, review reasons), then the
    model that answered."""
    fields = {k: v for k, v in answer.items() if k != "error"}
    return {
        "answer_id": answer_id(tool, result_id, source_timestamp, f"{model}/{model_version}"),
        "tool": tool,
        "result_id": result_id,
        "hole_id": hole_id,
        "source_timestamp": source_timestamp,
        **fields,
        "model": model,
        "model_version": model_version,
        "latency_ms": round(latency_ms, 1),
    }


def error_payload(
    reason: str, *, tool: str | None, result_id: Any = None, topic: str | None = None, answer_id: str | None = None
) -> dict[str, Any]:
    return {
        "error": reason,
        "answer_id": answer_id,
        "tool": tool,
        "result_id": result_id,
        "topic": topic,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


# --- messages as units write them (for `uos replay`) --------------------------------------------


def _envelope(device: str, values: dict[str, Any], timestamp: str) -> dict[str, Any]:
    return {
        "MessageId": str(uuid.uuid4()),
        "MessageType": "ua-data",
        "PublisherId": "uos-replay",
        "Messages": {
            "DataSetWriterId": device,
            "Timestamp": timestamp,
            "MessageType": "ua-keyframe",
            "Payload": {
                f"{NAMESPACE}.{device}.{node}": {"Value": value, "SourceTimestamp": timestamp}
                for node, value in values.items()
            },
        },
    }


def _values(array: np.ndarray) -> list[Any]:
    return [None if not math.isfinite(v) else v for v in np.asarray(array, dtype=np.float64).tolist()]


def unit_messages(hole: Hole, device: str, result_id: int, timestamp: str | None = None) -> dict[str, dict[str, Any]]:
    """The Result, Trace and Heads messages a unit publishes for this hole."""
    timestamp = timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    meta, signals = hole.meta, hole.signals
    results = "ResultManagement.Results.0"
    created = meta.get("date")
    result: dict[str, Any] = {
        f"{results}.ResultMetaData.ResultId": str(result_id),
        f"{results}.ResultMetaData.CreationTime": created.strftime("%Y-%m-%dT%H:%M:%SZ") if created else timestamp,
        f"{results}.ResultMetaData.SerialNumber": "0",
        f"{results}.ResultMetaData.InternalRecipeId": str(meta.get("pset") or 0),
        f"{results}.ResultMetaData.ResultEvaluation": "OK" if meta.get("cycle_ok", True) else "NotOK",
    }
    if meta.get("cutting_tool"):
        result[f"{results}.ResultMetaData.CustomerInformation"] = str(meta["cutting_tool"])
    for i, step in enumerate(hole.step_results):
        values = f"{results}.ResultContent.StepResults.{i}.StepResultValues"
        for node, field in (
            ("StepNumber", "step"),
            ("StopCode", "stop_code"),
            ("IntensityTorqueEmpty", "m1_no_load_a"),
            ("IntensityThrustEmpty", "m2_no_load_a"),
        ):
            if step.get(field) is not None:
                result[f"{values}.{node}.MeasuredValue"] = step[field]
    trace: dict[str, Any] = {}
    traces = f"{results}.ResultContent.Trace.StepTraces"
    columns = {
        "PositionTrace": -np.asarray(signals["depth_mm"]) + 0.0,
        "IntensityTorqueTrace": signals["torque_a"],
        "IntensityThrustTrace": signals["thrust_a"],
    }
    if "step" in signals:
        columns["StepNumberTrace"] = signals["step"]
    for node, column in columns.items():
        trace[f"{traces}.{node}.StepResultId"] = str(result_id)
        trace[f"{traces}.{node}.SamplingInterval"] = int(meta.get("sample_rate_hz") or 100)
        trace[f"{traces}.{node}.StepTraceContent[0].Values"] = _values(column)
    messages = {"result": _envelope(device, result, timestamp), "trace": _envelope(device, trace, timestamp)}
    if meta.get("head_tag") or meta.get("head_name"):
        heads = "AssetManagement.Assets.Heads.0"
        head = {
            f"{heads}.Identification.SerialNumber": meta.get("head_tag") or "",
            f"{heads}.Identification.DefaultInstanceBrowseName": meta.get("head_name") or "",
        }
        if meta.get("global_counter") is not None:
            head[f"{heads}.LifetimeCounters.0.LifeTimeCycleCounter"] = int(meta["global_counter"])
        messages["heads"] = _envelope(device, head, timestamp)
    return messages


def unit_topic(root: str, tool: str, kind: str) -> str:
    suffix = {
        "result": "ResultManagement",
        "trace": "ResultManagement/Trace",
        "heads": "AssetManagement/Heads",
        "cutting_tools": "AssetManagement/CuttingTools",
    }[kind]
    return f"{root}/{tool}/{suffix}"


def source_timestamp(message: dict[str, Any]) -> str | None:
    """The SourceTimestamp of a message's first value (a unit stamps Result, Trace and Heads alike)."""
    body = message.get("Messages") or {}
    for entry in (body.get("Payload") or {}).values():
        if isinstance(entry, dict) and entry.get("SourceTimestamp"):
            return str(entry["SourceTimestamp"])
    return None
