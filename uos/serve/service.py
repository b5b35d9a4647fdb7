"""`uos serve`: the headless MQTT service that answers every drilled hole with its keypoints.

Threads, and why:
- paho's network loop receives; its callback only queues the raw bytes (a bounded queue: when the
  service falls behind, the broker holds the rest, QoS 1);
- one dispatcher decodes the JSON and pairs Result, Trace and Heads (`pairing.Pairer`), and ages
  out what never pairs;
- workers build the hole as `uos parse` does, batch the holes, run the model (torch releases the
  GIL, so two workers use both cores) and publish the answers, QoS 1;
- a status line (JSON) on stderr and the status topic every few seconds; a registry check that
  swaps in a new champion without a restart.
SIGTERM or SIGINT: unsubscribe (no new work), answer what is held, wait for the broker to
acknowledge every answer, exit 0.
"""

from __future__ import annotations

import gc
import json
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from uos.errors import InputError
from uos.holes import mqtt as unit
from uos.serve import messages
from uos.serve.connection import Connection
from uos.serve.pairing import Pair, Pairer, Part, Problem

_RESULT_ID = re.compile(rb'(?:\.ResultId|\.StepResultId)"\s*:\s*\{\s*"Value"\s*:\s*"?([0-9A-Za-z_-]+)')


@dataclass(frozen=True)
class ServeOptions:
    model_uri: str = "models:/uos-depth@champion"
    refine: bool | None = False  # the network's own positions: ~2 ms per hole instead of ~80
    workers: int = 2
    batch: int = 16  # holes per model call: larger is cheaper per hole, smaller answers sooner
    queue_size: int = 2000
    pair_timeout_s: float = 10.0
    heads_wait_s: float = 0.15
    status_every_s: float = 10.0
    reload_every_s: float = 30.0
    drain_timeout_s: float = 30.0


class Counters:
    NAMES = ("received", "paired", "published", "errors", "dropped", "duplicates")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(self.NAMES, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.values[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.values)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Service:
    def __init__(self, connection: Connection, topics: messages.Topics, options: ServeOptions,
                 log: Callable[[str], None] | None = None):  # fmt: skip
        self.connection = connection
        self.topics = topics
        self.options = options
        self._write = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.counters = Counters()
        self.inbound: queue.Queue = queue.Queue(maxsize=options.queue_size)
        self.work: queue.Queue = queue.Queue()
        self.pairer = Pairer(pair_timeout_s=options.pair_timeout_s, heads_wait_s=options.heads_wait_s,
                             lone_results_are_errors=topics.share is None)  # fmt: skip
        self.stopping = threading.Event()  # no new work
        self.finished = threading.Event()  # the dispatcher has handed over everything
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._unacked = 0
        self._unacked_lock = threading.Lock()
        self._started = time.monotonic()
        self.model = None
        self.client = None

    # --- logging -----------------------------------------------------------------------------

    def log(self, **event: Any) -> None:
        self._write(json.dumps({"time": _now_iso(), **event}, default=str))

    def status(self) -> dict[str, Any]:
        counts = self.counters.snapshot()
        elapsed = max(time.monotonic() - self._started, 1e-9)
        loaded = self.model.current if self.model else None
        return {"event": "status", **counts, "expired_elsewhere": self.pairer.expired_quietly, "queued": self.inbound.qsize() + self.work.qsize(),
                "waiting": len(self.pairer.pending), "holes_per_s": round(counts["published"] / elapsed, 2),
                "connected": bool(self.client and self.client.is_connected()),
                "model": loaded.name if loaded else None, "model_version": loaded.version if loaded else None}  # fmt: skip

    # --- MQTT callbacks (network thread: nothing slow here) ---------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:
        if reason_code.is_failure:
            self.log(event="connect-failed", broker=self.connection.describe(), reason=str(reason_code))
            return
        if self.stopping.is_set():
            return
        # Subscribe on every connect: a broker restarted without persistence has forgotten us.
        client.subscribe([(topic, 1) for topic in self.topics.subscriptions()])
        self.log(event="subscribed", broker=self.connection.describe(), topics=self.topics.subscriptions())

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties=None) -> None:
        if not self.stopping.is_set():
            self.log(event="disconnected", reason=str(reason_code), note="reconnecting with backoff")

    def _on_message(self, _client, _userdata, message) -> None:
        self.counters.add("received")
        try:
            self.inbound.put((message.topic, message.payload, time.monotonic()), timeout=5)
        except queue.Full:
            self.counters.add("dropped")
            kind, tool = messages.classify(message.topic, self.topics.root)
            self._publish_error(f"serve overloaded: {kind or 'message'} dropped", tool, None, message.topic)

    def _on_publish(self, _client, _userdata, _mid, _reason_code=None, _properties=None) -> None:
        with self._unacked_lock:
            self._unacked -= 1

    # --- publishing ------------------------------------------------------------------------------

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        with self._unacked_lock:
            self._unacked += 1
        self.client.publish(topic, orjson.dumps(payload), qos=1)

    def _publish_error(self, reason: str, tool: str | None, result_id: Any, topic: str | None = None) -> None:
        self.counters.add("errors")
        self._publish(self.topics.answer(self.topics.error, tool),
                      messages.error_payload(reason, tool=tool, result_id=result_id, topic=topic))  # fmt: skip

    # --- dispatcher: decode and pair ----------------------------------------------------------------

    def _dispatch_one(self, topic: str, data: bytes, arrived: float) -> None:
        kind, tool = messages.classify(topic, self.topics.root)
        if kind is None:
            return
        source = f"mqtt:{topic}"
        try:
            message = unit.decode_message(data, kind.capitalize(), source)
        except InputError as exc:
            found = _RESULT_ID.search(data[:200_000])
            result_id = found.group(1).decode() if found else None
            self._publish_error(exc.reason, tool, result_id, topic)
            self.pairer.forget(tool, result_id)  # its partner is answered by this error
            return
        timestamp = messages.source_timestamp(message)
        if kind in ("heads", "cutting_tools"):
            self._hand_over(self.pairer.add_asset(kind, tool, timestamp, message, arrived))
            return
        values, _ = unit.payload(message)
        if kind == "result" and any(k.endswith("StepResultValues.Position") for k in values):
            # The older one-message schema: the Result carries the samples itself.
            result_id = _text(unit.find_value(values, "ResultMetaData.ResultId"))
            if self.pairer.was_answered(tool, result_id):
                self.pairer.duplicates += 1
                return
            self._hand_over([Pair(tool, result_id, message, message, None, None, timestamp, arrived, arrived)])
            return
        node = "ResultMetaData.ResultId" if kind == "result" else "PositionTrace.StepResultId"
        result_id = _text(unit.find_value(values, node))
        if kind == "trace" and result_id is None:
            result_id = _text(unit.find_value(values, "StepResultId"))
        self._hand_over(self.pairer.add(Part(kind, tool, result_id, timestamp, message, arrived)))

    def _hand_over(self, pairs: list[Pair]) -> None:
        for pair in pairs:
            self.pairer.mark_answered(pair.tool, pair.result_id)
            self.counters.add("paired")
            self.work.put(pair)

    def _report(self, problems: list[Problem]) -> None:
        for problem in problems:
            self._publish_error(problem.reason, problem.tool, problem.result_id)

    def _dispatcher(self) -> None:
        last_expiry = 0.0
        duplicates = 0
        while True:
            try:
                item = self.inbound.get(timeout=0.02)
            except queue.Empty:
                item = None
                if self.stopping.is_set():
                    break
            if item is not None:
                try:
                    self._dispatch_one(*item)
                except Exception as exc:  # one bad message must not stop the service
                    self._publish_error(
                        f"could not read the message: {exc}",
                        messages.classify(item[0], self.topics.root)[1],
                        None,
                        item[0],
                    )
            now = time.monotonic()
            if now - last_expiry > 0.02:
                last_expiry = now
                pairs, problems = self.pairer.expire(now)
                self._hand_over(pairs)
                self._report(problems)
            if self.pairer.duplicates != duplicates:
                self.counters.add("duplicates", self.pairer.duplicates - duplicates)
                duplicates = self.pairer.duplicates
        pairs, problems = self.pairer.drain()
        self._hand_over(pairs)
        self._report(
            [Problem(p.reason.split(":")[0] + ": serve stopped before it came", p.tool, p.result_id) for p in problems]
        )
        self.finished.set()

    # --- workers: holes, model, answers --------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            try:
                first = self.work.get(timeout=0.05)
            except queue.Empty:
                if self.finished.is_set() and self.work.empty():
                    return
                continue
            batch = [first]
            while len(batch) < self.options.batch:
                try:
                    batch.append(self.work.get_nowait())
                except queue.Empty:
                    break
            with self._busy_lock:
                self._busy += 1
            try:
                self._answer(batch)
            except Exception as exc:  # answer every hole, even when the model fails
                for pair in batch:
                    self._publish_error(f"model failed: {exc}", pair.tool, pair.result_id)
            finally:
                with self._busy_lock:
                    self._busy -= 1

    def _answer(self, batch: list[Pair]) -> None:
        holes, ready = [], []
        for pair in batch:
            try:
                hole = unit.hole_from_messages(pair.result, pair.trace, pair.heads, pair.cutting_tools,
                                               source=f"mqtt:{pair.tool}/{pair.result_id}", tool=pair.tool)  # fmt: skip
            except InputError as exc:
                self._publish_error(exc.reason, pair.tool, pair.result_id)
                continue
            holes.append(hole)
            ready.append(pair)
        if not ready:
            return
        loaded, predictions = self.model.predict(
            [(h.signals["depth_mm"], h.signals["torque_a"], h.signals["thrust_a"]) for h in holes]
        )
        for pair, hole, row in zip(ready, holes, predictions, strict=True):
            answer = messages.answer_payload(
                row, tool=pair.tool, result_id=pair.result_id, hole_id=hole.hole_id, source_timestamp=pair.timestamp,
                model=loaded.name, model_version=loaded.version, latency_ms=(time.monotonic() - pair.completed) * 1000,
            )  # fmt: skip
            self._publish(self.topics.answer(self.topics.result, pair.tool), answer)
            self.counters.add("published")

    # --- periodic ---------------------------------------------------------------------------------

    def _every(self, seconds: float, action: Callable[[], None]) -> None:
        while not self.stopping.wait(seconds):
            try:
                action()
            except Exception as exc:  # a failed status or registry check is logged, not fatal
                self.log(event="warning", reason=f"{action.__name__}: {exc}")

    def _emit_status(self) -> None:
        status = self.status()
        self._write(json.dumps({"time": _now_iso(), **status}))
        if self.client and self.client.is_connected():
            client_id = getattr(self.client, "uos_client_id", "serve")
            self.client.publish(self.topics.status.format(client_id=client_id), json.dumps(status), qos=0)

    def _check_model(self) -> None:
        self.model.check()

    # --- run --------------------------------------------------------------------------------------

    def run(self, install_signals: bool = True) -> int:
        from uos.serve.model import ModelHolder
        from uos.training import tracking

        tracking.configure()
        self.model = ModelHolder(self.options.model_uri, self.options.refine, log=self.log,
                                 warm_batches=self.options.batch)  # fmt: skip
        self._warm_up_reading()
        loaded = self.model.current
        self.log(event="model", model=loaded.name, version=loaded.version, uri=self.options.model_uri,
                 refine=self.options.refine)  # fmt: skip
        # Every hole allocates thousands of small objects (the decoded JSON arrays): collect the
        # young generation less often, and leave the long-lived objects (model, modules) out of it.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        if install_signals:
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, lambda *_: self.stopping.set())
        self.client = self.connection.client("uos-serve")
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.connection.connect(self.client)
        self.client.loop_start()
        threads = [threading.Thread(target=self._dispatcher, name="dispatcher", daemon=True)]
        threads += [
            threading.Thread(target=self._worker, name=f"worker-{i}", daemon=True) for i in range(self.options.workers)
        ]
        threads += [threading.Thread(target=self._every, args=(self.options.status_every_s, self._emit_status), daemon=True),
                    threading.Thread(target=self._every, args=(self.options.reload_every_s, self._check_model), daemon=True)]  # fmt: skip
        for thread in threads:
            thread.start()
        self.stopping.wait()
        return self._shutdown(threads)

    def _warm_up_reading(self) -> None:
        """Decode one synthetic hole's messages end to end, so that the first real hole does not
        pay for lazy imports and first-call set-up."""
        built = messages.unit_messages(self.model.warm_hole, "warmup", 0)
        decoded = {
            kind: unit.decode_message(orjson.dumps(m), kind.capitalize(), "warm-up") for kind, m in built.items()
        }
        unit.hole_from_messages(decoded["result"], decoded["trace"], source="warm-up", tool="warm/up")

    def stop(self) -> None:
        self.stopping.set()

    def _shutdown(self, threads: list[threading.Thread]) -> int:
        self.log(event="stopping", note="no new work; answering what is held")
        if self.client.is_connected():
            self.client.unsubscribe(self.topics.subscriptions())
        deadline = time.monotonic() + self.options.drain_timeout_s
        for thread in threads[: 1 + self.options.workers]:
            thread.join(timeout=max(deadline - time.monotonic(), 0.1))
        while time.monotonic() < deadline:
            with self._unacked_lock:
                if self._unacked <= 0:
                    break
            time.sleep(0.02)
        self._emit_status()
        self.client.disconnect()
        self.client.loop_stop()
        with self._unacked_lock:
            unacked = self._unacked
        self.log(event="stopped", unacknowledged=max(unacked, 0))
        return 0


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
