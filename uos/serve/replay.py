"""`uos replay`: Setitec files and capture folders published as drilling units publish them.

Each hole becomes Heads, Result and Trace messages (capture folders: their own messages, as
captured, malformed ones included) on `<root>/<toolbox>/<tool>/...`, spread over K tools, at a
given rate or as fast as possible. With `answers`, it also listens to what `uos serve` answers
and reports each hole's answer and latency (Trace published -> answer received): the demo, the
tests and the benchmark all use it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from uos.errors import InputError, UosError
from uos.labels import KEYPOINTS
from uos.serve import messages
from uos.serve.connection import Connection, wait_connected

PUBLISH_ORDER = ("heads", "cutting_tools", "result", "trace")
REPLAY_SESSION_S = 300


def _end_session(connection: Connection):
    """DISCONNECT properties that end the session at once (MQTT 5), so that nothing queues for a
    replay that is gone. On 3.1.1 the caller unsubscribes instead."""
    if connection.version != "5":
        return None
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.DISCONNECT)
    properties.SessionExpiryInterval = 0
    return properties


@dataclass
class Item:
    """One hole, ready to publish."""

    source: str
    tool: str
    result_id: str | None
    hole_id: str | None
    payloads: dict[str, bytes]  # kind -> message bytes


@dataclass
class ReplayReport:
    published: int = 0
    answered: int = 0
    errors: int = 0
    unanswered: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    unacknowledged: int = 0  # messages the broker never acknowledged (QoS 1): maybe not delivered
    problems: list[tuple[str, str]] = field(default_factory=list)  # inputs that could not be read

    def summary(self) -> dict[str, Any]:
        latencies = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        return {
            "published": self.published,
            "answered": self.answered,
            "errors": self.errors,
            "unanswered": len(self.unanswered),
            "unacknowledged": self.unacknowledged,
            "seconds": round(self.seconds, 2),
            "holes_per_s": round(self.published / self.seconds, 1) if self.seconds else None,
            "latency_p50_ms": round(float(np.nanpercentile(latencies, 50)), 1),
            "latency_p99_ms": round(float(np.nanpercentile(latencies, 99)), 1),
        }


def _capture_payloads(folder: Path) -> dict[str, bytes]:
    from uos.holes.mqtt import RESULT_FILES

    payloads: dict[str, bytes] = {}
    if not (folder / "Trace.json").is_file() and (folder / "data.json").is_file():
        return {"result": (folder / "data.json").read_bytes()}  # the older one-message schema
    for name in RESULT_FILES:
        if (folder / name).is_file():
            payloads["result"] = (folder / name).read_bytes()
            break
    for kind, name in (("trace", "Trace.json"), ("heads", "Heads.json"), ("cutting_tools", "CuttingTools.json")):
        if (folder / name).is_file():
            payloads[kind] = (folder / name).read_bytes()
    return payloads


def _captured_result_id(data: bytes | None) -> str | None:
    from uos.holes.mqtt import decode_message, find_text, payload

    if data is None:
        return None
    try:
        return find_text(payload(decode_message(data, "Result", "capture"))[0], "ResultMetaData.ResultId")
    except InputError:
        return None


def prepare(
    inputs: list[str], tools: int = 1, toolbox: str = "replay", first_result_id: int | None = None, repeat: int = 1
) -> tuple[list[Item], list[tuple[str, str]]]:
    """The messages of every hole in `inputs` (files, folders, capture folders), tool by tool.

    ResultIds count up from `first_result_id` on each tool (default: from the clock, so that a
    second replay is not taken for re-sent duplicates by a running `uos serve`)."""
    from uos.holes import read_source
    from uos.holes.discover import discover
    from uos.holes.mqtt import is_capture_folder

    paths, problems = discover(inputs)
    failed = [(p.source, p.reason) for p in problems]
    base = int(time.time() * 1000) % 2_000_000_000 if first_result_id is None else first_result_id
    items: list[Item] = []
    counter = 0
    for _ in range(repeat):
        for path in paths:
            tool = f"{toolbox}/tool{counter % tools + 1}"
            result_id = base + counter
            if is_capture_folder(path):
                payloads = _capture_payloads(path)
                items.append(Item(str(path), tool, _captured_result_id(payloads.get("result")), None, payloads))
                counter += 1
                continue
            try:
                hole = read_source(path)
            except InputError as exc:
                failed.append((str(path), exc.reason))
                continue
            device = f"replay{counter % tools + 1}"
            built = messages.unit_messages(hole, device, result_id)
            payloads = {kind: json.dumps(message).encode() for kind, message in built.items()}
            items.append(Item(str(path), tool, str(result_id), hole.hole_id, payloads))
            counter += 1
    return items, failed


def _answer_filter(template: str) -> str:
    return template.format(toolbox="+", tool="+")


class Replayer:
    def __init__(self, connection: Connection, topics: messages.Topics, answers: bool = True):
        self.topics = topics
        self.answers = answers
        # Its own short-lived session: persistent across a broker restart (answers published
        # meanwhile wait for it), ended on exit (see __exit__).
        self.connection = replace(connection, session_expiry_s=REPLAY_SESSION_S)
        self.client = self.connection.client(f"uos-replay-{uuid.uuid4().hex[:8]}")
        self._lock = threading.Lock()
        self._sent_at: dict[tuple[str, str | None], float] = {}
        self._pending: dict[tuple[str, str | None], Item] = {}
        self._answered = threading.Condition(self._lock)
        self.received: list[dict[str, Any]] = []
        self.on_answer: Callable[[dict[str, Any]], None] | None = None
        self.callback_error: Exception | None = None
        self.report = ReplayReport()
        # Messages the broker has not acknowledged yet (PUBACK), for flush(). Counted rather than
        # asked of paho's receipts: a receipt of a message published while disconnected raises,
        # although paho sends the message on reconnect.
        self._unacked = 0
        self._acked = threading.Condition()
        self.client.on_publish = self._on_publish
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:
        if not reason_code.is_failure and self.answers:
            client.subscribe([(_answer_filter(self.topics.result), 1), (_answer_filter(self.topics.error), 1)])
        elif not self.answers:
            self._subscribed.set()

    def _on_message(self, _client, _userdata, message) -> None:
        arrived = time.monotonic()
        try:
            answer = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(answer, dict):
            return  # not one of serve's answers
        key = (answer.get("tool"), None if answer.get("result_id") is None else str(answer.get("result_id")))
        with self._lock:
            item = self._pending.pop(key, None)
            if item is None and key[1] is None:
                # An error about a message whose ResultId could not be read: match by tool.
                item = next(
                    (self._pending.pop(k) for k in list(self._pending) if k[0] == key[0] and k[1] is None), None
                )
            if item is None:
                return  # another replay's, or a duplicate
            sent = self._sent_at.pop((item.tool, item.result_id), None)
            if sent is not None:
                self.report.latencies_ms.append((arrived - sent) * 1000)
            if "error" in answer:
                self.report.errors += 1
            else:
                self.report.answered += 1
            record = {"source": item.source, **answer}
            self.received.append(record)
            self._answered.notify_all()
        if self.on_answer:
            try:
                self.on_answer(record)
            except Exception as exc:  # e.g. stdout closed by `| head`: keep counting, stop printing
                self.on_answer = None
                self.callback_error = exc

    def __enter__(self) -> Replayer:
        self.connection.connect(self.client)
        self.client.loop_start()
        wait_connected(self.client, 10, "uos replay", self.connection)
        if not self._subscribed.wait(10):
            raise UosError("uos replay: the broker did not confirm the answer subscriptions")
        return self

    def __exit__(self, *exc) -> None:
        self.report.unacknowledged = self.flush(30)
        if self.answers and self.connection.version != "5" and self.client.is_connected():
            self.client.unsubscribe([_answer_filter(self.topics.result), _answer_filter(self.topics.error)])
        self.client.disconnect(properties=_end_session(self.connection))
        self.client.loop_stop()

    def _on_publish(self, _client, _userdata, _mid, _reason_code=None, _properties=None) -> None:
        with self._acked:
            self._unacked -= 1
            self._acked.notify_all()

    def flush(self, timeout_s: float) -> int:
        """Until the broker has acknowledged every message published (QoS 1): a disconnect
        before that would drop what paho still holds. Returns how many are still unacknowledged."""
        deadline = time.monotonic() + timeout_s
        with self._acked:
            while self._unacked > 0 and time.monotonic() < deadline:
                self._acked.wait(min(0.2, max(deadline - time.monotonic(), 0.01)))
            return max(self._unacked, 0)

    def publish(
        self, items: list[Item], rate: float = 0.0, window: int = 0, progress: Callable[[int], None] | None = None
    ) -> None:
        """Publish every item: `rate` holes per second (0: as fast as possible), at most `window`
        holes unanswered at a time (0: no limit)."""
        started = time.monotonic()
        for index, item in enumerate(items):
            if rate > 0:
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if window and self.answers:
                with self._lock:
                    while len(self._pending) >= window:
                        self._answered.wait(0.5)
            with self._lock:
                self._pending[(item.tool, item.result_id)] = item
            for kind in PUBLISH_ORDER:
                if kind in item.payloads:
                    if kind == "trace" or (kind == "result" and "trace" not in item.payloads):
                        with self._lock:
                            self._sent_at[(item.tool, item.result_id)] = time.monotonic()
                    topic = messages.unit_topic(self.topics.root, item.tool, kind)
                    with self._acked:
                        self._unacked += 1
                    self.client.publish(topic, item.payloads[kind], qos=1)
            self.report.published += 1
            if progress:
                progress(index + 1)
        self.report.seconds = time.monotonic() - started

    def wait(self, timeout_s: float) -> None:
        """Until every hole is answered or `timeout_s` passes; the rest are reported unanswered."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._pending and time.monotonic() < deadline:
                self._answered.wait(min(0.2, max(deadline - time.monotonic(), 0.01)))
            self.report.unanswered = [item.source for item in self._pending.values()]


TABLE_HEADER = (
    f"{'hole':<28}{'entry':>8}{'transition':>12}{'exit':>8}{'thickness':>11}{'grip':>6}{'conf':>6}  {'status':<8}"
    f"{'latency':>10}"
)


def table_row(answer: dict[str, Any]) -> str:
    """One answer as a line of the table under `TABLE_HEADER` (mm, grip in 1/16 inch, the least
    keypoint confidence), with the first review reason after it."""
    if "error" in answer:
        return f"{Path(answer.get('source') or '?').name}: {answer['error']}"

    def cell(value: Any, width: int, digits: int = 2) -> str:
        return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    hole = str(answer.get("hole_id") or answer.get("result_id"))
    confidences = [answer.get(f"{k}_confidence") for k in KEYPOINTS]
    least = min((c for c in confidences if c is not None), default=None)
    reasons = answer.get("review_reasons") or []
    return (
        f"{hole:<28}{cell(answer.get('entry_mm'), 8)}{cell(answer.get('transition_mm'), 12)}"
        f"{cell(answer.get('exit_mm'), 8)}{cell(answer.get('thickness_mm'), 11)}{answer.get('grip_code') or '-'!s:>6}"
        f"{cell(least, 6)}  {answer.get('status', '?'):<8}{answer.get('latency_ms', float('nan')):>7.1f} ms"
        + (f"  {reasons[0]}" + (f" (+{len(reasons) - 1})" if len(reasons) > 1 else "") if reasons else "")
    )


def replay(
    inputs: list[str],
    connection: Connection,
    topics: messages.Topics,
    *,
    tools: int = 1,
    rate: float = 0.0,
    window: int = 0,
    answers: bool = True,
    timeout_s: float = 30.0,
    repeat: int = 1,
    on_answer: Callable[[dict[str, Any]], None] | None = None,
) -> ReplayReport:
    items, failed = prepare(inputs, tools=tools, repeat=repeat)
    if not items and failed:
        raise UosError(f"nothing to replay: {failed[0][0]}: {failed[0][1]}")
    with Replayer(connection, topics, answers=answers) as replayer:
        replayer.on_answer = on_answer
        started = time.monotonic()
        replayer.publish(items, rate=rate, window=window)
        if answers:
            replayer.wait(timeout_s)
            replayer.report.seconds = time.monotonic() - started
        report = replayer.report
    report.problems = failed
    error = replayer.callback_error
    if error is not None and not isinstance(error, BrokenPipeError):  # a closed pipe is the reader's choice
        report.problems.append(("answers", f"could not print an answer: {error}"))
    return report
