"""`uos serve`: the headless MQTT service that answers every drilled hole with its keypoints.

Threads, and why:
- paho's network loop receives; its callback only queues the raw bytes. The queue has a byte
  budget: when the service falls behind, the callback waits, paho stops reading the socket, and
  the broker holds the rest (QoS 1). A message is acknowledged (manual acks) only once what
  answers it (the hole's answer or error) has been acknowledged by the broker, so that a serve
  killed at any moment loses nothing: the broker delivers again whatever it had not answered;
- one dispatcher decodes the JSON and pairs Result, Trace and Heads (`pairing.Pairer`), and ages
  out what never pairs;
- workers build the hole as `uos parse` does, batch the holes, run the model (torch releases the
  GIL, so two workers use both cores) and publish the answers, QoS 1;
- a status line (JSON) on stderr and the status topic every few seconds; a registry check that
  swaps in a new champion without a restart.
SIGTERM or SIGINT: stop acknowledging (no new work: what the broker sends from then on is
delivered again to this client's next session), answer what is held, wait for the broker to
acknowledge every answer, exit 0. The session, and with it the subscriptions, stay at the broker,
so what units publish while serve is down waits for it; in a share group the member leaves the
group instead (unsubscribes), so that the others take the new holes.
"""

from __future__ import annotations

import gc
import json
import queue
import signal
import socket
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
from uos.serve.acks import Acknowledgements, Key, hole_key
from uos.serve.connection import Connection
from uos.serve.pairing import Pair, Pairer, Part, Problem
from uos.training.infer import context_of

SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason code


SWITCH_INTERVAL_S = 0.0005  # how long a thread may hold the GIL before it must let another run


@dataclass(frozen=True)
class ServeOptions:
    model_uri: str = "models:/uos-depth@champion"
    refine: bool | None = False  # the network's own positions: ~2 ms per hole instead of ~80
    runtime: str = "torch"  # or onnx: ONNX Runtime, torch not loaded (runtimes.py)
    workers: int = 2
    batch: int = 16  # holes per model call: larger is cheaper per hole, smaller answers sooner
    inbound_mb: float = 32.0  # raw messages held before back-pressure (a large Trace is ~0.3 MB)
    max_message_mb: float = 2.0  # larger messages are refused unread (the largest real Trace is 0.32 MB)
    pair_timeout_s: float = 10.0
    heads_wait_s: float = 0.15
    status_every_s: float = 10.0
    reload_every_s: float = 30.0
    drain_timeout_s: float = 30.0


@dataclass(frozen=True)
class _Received:
    """What _on_message keeps of a paho message."""

    topic: str
    payload: bytes | Oversized
    mid: int
    qos: int


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


@dataclass(frozen=True)
class Oversized:
    """A message larger than --max-message-mb, in the queue instead of its bytes (but the first
    few KB, where its ResultId is)."""

    size: int
    head: bytes

    def __len__(self) -> int:
        return 0  # nothing held against the inbound budget


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Service:
    def __init__(
        self,
        connection: Connection,
        topics: messages.Topics,
        options: ServeOptions,
        log: Callable[[str], None] | None = None,
    ):
        self.connection = connection
        self.topics = topics
        self.options = options
        self._write = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.counters = Counters()
        self.inbound: queue.Queue = queue.Queue()  # bounded in bytes: see _on_message
        self._intake = threading.Condition()
        self._inbound_bytes = 0
        self._inbound_limit = int(options.inbound_mb * 1e6)
        self._closed = False  # set at shutdown: nothing more is taken (nor acknowledged)
        # At shutdown, first only the partners of the holes half-received: (tool, ResultId).
        self._awaiting: set[tuple[str, str]] | None = None
        self._draining = False
        # Decoded holes are ~4x their JSON: a few batches per worker, then the dispatcher waits.
        self.work: queue.Queue = queue.Queue(maxsize=options.workers * options.batch * 2)
        self.pairer = Pairer(
            pair_timeout_s=options.pair_timeout_s,
            heads_wait_s=options.heads_wait_s,
            lone_results_are_errors=topics.share is None,
        )
        self.stopping = threading.Event()  # no new work
        self.finished = threading.Event()  # the dispatcher has handed over everything
        self._unacked = 0
        self._unacked_lock = threading.Lock()
        # (connection generation, message mid, QoS) of the messages it answers.
        self.acks = Acknowledgements()  # what may be acknowledged: only what has been answered
        self._generation = 0  # a message's mid means something only on the connection it came by
        self._started = time.monotonic()
        self._unsubscribed = threading.Event()
        self._connected_at: float | None = None
        self._quick_drops: list[float] = []
        self.exit_code = 0
        self.model = None
        self.client = None

    # --- logging -----------------------------------------------------------------------------

    def log(self, **event: Any) -> None:
        self._write(json.dumps({"time": _now_iso(), **event}, default=str))

    def status(self) -> dict[str, Any]:
        counts = self.counters.snapshot()
        elapsed = max(time.monotonic() - self._started, 1e-9)
        loaded = self.model.current if self.model else None
        return {
            "event": "status",
            **counts,
            "expired_elsewhere": self.pairer.expired_quietly,
            "queued": self.inbound.qsize() + self.work.qsize(),
            "waiting": len(self.pairer.pending),
            "holes_per_s": round(counts["published"] / elapsed, 2),
            "connected": bool(self.client and self.client.is_connected()),
            "model": loaded.name if loaded else None,
            "model_version": loaded.version if loaded else None,
        }

    # --- MQTT callbacks (network thread: nothing slow here) ---------------------------------------

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:
        if reason_code.is_failure:
            self.log(event="connect-failed", broker=self.connection.describe(), reason=str(reason_code))
            return
        self._connected_at = time.monotonic()
        with self._unacked_lock:
            self._generation += 1
        if self.stopping.is_set():
            return
        # Subscribe on every connect: a broker restarted without persistence has forgotten us.
        client.subscribe([(topic, 1) for topic in self.topics.subscriptions()])
        self.log(event="subscribed", broker=self.connection.describe(), topics=self.topics.subscriptions())

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties=None) -> None:
        # Two processes with one client id take the session from each other forever. MQTT 5
        # brokers may say so (reason 142); mosquitto 2.0 just closes the older connection, so
        # a connection closed thrice within seconds of being made is taken for the same.
        if self.stopping.is_set():
            return  # our own disconnect, at the end of _shutdown
        now = time.monotonic()
        quick = self._connected_at is not None and now - self._connected_at < 2.0
        self._connected_at = None  # lone parts' waits stop until the reconnect (see _expire)
        self._quick_drops = [t for t in self._quick_drops if now - t < 15.0] + ([now] if quick else [])
        if getattr(reason_code, "value", None) == SESSION_TAKEN_OVER or len(self._quick_drops) >= 3:
            self.log(
                event="error",
                reason=f"the broker keeps closing the connection right after it is made: most likely "
                f"another client uses client id {self.client.uos_client_id}; give each "
                "uos serve its own --client-id",
            )
            self.exit_code = 1
            self.stopping.set()
            self.client.disconnect()  # and no reconnect: it would take the session back
        else:
            self.log(event="disconnected", reason=str(reason_code), note="reconnecting with backoff")

    def _on_unsubscribe(self, *_args) -> None:
        self._unsubscribed.set()

    def _on_message(self, client, _userdata, message) -> None:
        size = len(message.payload)
        if size > self.options.max_message_mb * 1e6:  # let go of it now: not decoded, not held
            message = _Received(message.topic, Oversized(size, message.payload[:20_000]), message.mid, message.qos)
            size = 0
        with self._intake:
            # Back-pressure: over budget, wait for the dispatcher; meanwhile paho reads no more
            # and the broker keeps the rest (QoS 1). One message is always let in.
            while not self._closed and self._inbound_bytes and self._inbound_bytes + size > self._inbound_limit:
                self._intake.wait(0.1)
            if self._closed or (self._draining and not self._awaited(message.topic, message.payload)):
                # Not acknowledged: the broker delivers it again to this client's next session.
                self.counters.add("dropped")
                return
            self._inbound_bytes += size
            ticket = (self._generation, message.mid, message.qos)
            self.inbound.put((message.topic, message.payload, time.monotonic(), ticket))
        self.counters.add("received")  # acknowledged once answered: see _publish

    def _awaited(self, topic: str, payload: bytes) -> bool:
        """Stopping: is this the Result or Trace a half-received hole waits for?"""
        kind, tool = messages.classify(topic, self.topics.root)
        head = payload.head if isinstance(payload, Oversized) else payload[:200_000]
        found = messages.RESULT_ID_BYTES.search(head) if kind in ("result", "trace") else None
        return found is not None and (tool, found.group(1).decode()) in (self._awaiting or ())

    def _on_publish(self, _client, _userdata, _mid, reason_code=None, _properties=None) -> None:
        if getattr(reason_code, "is_failure", False):  # the broker refused it (MQTT 5), e.g. not authorised
            self.log(event="publish-refused", reason=str(reason_code))
        with self._unacked_lock:
            self._unacked -= 1
        self._ack(self.acks.confirmed(_mid))

    def _ack(self, tickets: list[tuple[int, int, int]]) -> None:
        """Acknowledge messages received on the current connection; one from an earlier
        connection is delivered again by the broker (and recognised as a duplicate then)."""
        for generation, mid, qos in tickets:
            if generation == self._generation and qos > 0:
                self.client.ack(mid, qos)

    # --- publishing ------------------------------------------------------------------------------

    def _publish(
        self, topic: str, payload: dict[str, Any], tickets: list[tuple[int, int, int]] = (), key: Key | None = None
    ) -> None:
        """QoS 1; every publish is counted until the broker acknowledges it (see _shutdown), and
        then the messages it answers (`tickets`, and those of hole `key` re-sent meanwhile) are
        acknowledged."""
        with self._unacked_lock:
            self._unacked += 1
        info = self.client.publish(topic, orjson.dumps(payload), qos=1)
        self._ack(self.acks.sent(info.mid, key, list(tickets)))

    def _publish_error(
        self,
        reason: str,
        tool: str | None,
        result_id: Any,
        topic: str | None = None,
        tickets: list[tuple[int, int, int]] = (),
        answer_id: str | None = None,
        key: Key | None = None,
    ) -> None:
        self.counters.add("errors")
        answer_id = answer_id or messages.answer_id(tool, result_id, None)
        self._publish(
            self.topics.answer(self.topics.error, tool),
            messages.error_payload(reason, tool=tool, result_id=result_id, topic=topic, answer_id=answer_id),
            tickets,
            key,
        )

    def _release(self) -> None:
        """Acknowledge what the pairer let go without an answer (unused assets); a re-sent part of
        a hole already handed over waits for that hole's answer."""
        if self.pairer.released:
            released, self.pairer.released = self.pairer.released, []
            self._ack(released)
        if self.pairer.resent:
            resent, self.pairer.resent = self.pairer.resent, []
            for key, ticket in resent:
                self._ack(self.acks.resent(key, ticket))

    # --- dispatcher: decode and pair ----------------------------------------------------------------

    def _dispatch_one(self, topic: str, data: bytes, arrived: float, ticket: tuple[int, int, int]) -> None:
        kind, tool = messages.classify(topic, self.topics.root)
        if kind is None:
            self._ack([ticket])
            return
        try:
            self._take(kind, tool, topic, data, arrived, ticket)
        except InputError as exc:  # unreadable, or not what a unit sends: the reason, on the error topic
            head = data.head if isinstance(data, Oversized) else data[:200_000]
            found = messages.RESULT_ID_BYTES.search(head)
            answer_id = messages.answer_id(tool, None, None, data=head, topic=topic)
            # Its hole's one error: with its partner, found by the ResultId in its bytes or waiting (see unreadable).
            problem = Problem(exc.reason, tool, found.group(1).decode() if found else None, [ticket], topic, answer_id)
            self.pairer.unreadable(kind, problem, arrived)
        self._report(self.pairer.problems)
        self.pairer.problems = []

    def _take(
        self, kind: str, tool: str, topic: str, data: bytes, arrived: float, ticket: tuple[int, int, int]
    ) -> None:
        if isinstance(data, Oversized):
            raise InputError(
                f"{kind.capitalize()} of {data.size / 1e6:.1f} MB is larger than serve takes "
                f"(--max-message-mb {self.options.max_message_mb:g}): not read"
            )
        message = unit.decode_message(data, kind.capitalize(), f"mqtt:{topic}")
        timestamp = messages.source_timestamp(message)
        if kind in ("heads", "cutting_tools"):
            self._hand_over(self.pairer.add_asset(kind, tool, timestamp, message, arrived, [ticket]))
            return
        values, _ = unit.payload(message)
        if kind == "result" and any(k.endswith("StepResultValues.Position") for k in values):
            # The older one-message schema: the Result carries the samples itself.
            result_id = unit.find_text(values, "ResultMetaData.ResultId")
            if self.pairer.was_answered(tool, result_id, timestamp):
                self.pairer.duplicates += 1
                self._ack(self.acks.resent(hole_key(tool, result_id, timestamp), ticket))
                return
            self._hand_over(
                [Pair(tool, result_id, message, message, None, None, timestamp, arrived, arrived, [ticket])]
            )
            return
        node = "ResultMetaData.ResultId" if kind == "result" else "PositionTrace.StepResultId"
        result_id = unit.find_text(values, node)
        if kind == "trace" and result_id is None:
            result_id = unit.find_text(values, "StepResultId")
        self._hand_over(self.pairer.add(Part(kind, tool, result_id, timestamp, message, arrived, [ticket])))

    def _hand_over(self, pairs: list[Pair]) -> None:
        for pair in pairs:
            self.pairer.mark_answered(pair.tool, pair.result_id, pair.timestamp)
            self.acks.owe(hole_key(pair.tool, pair.result_id, pair.timestamp), pair.tickets)
            self.counters.add("paired")
            self.work.put(pair)

    def _report(self, problems: list[Problem]) -> None:
        for p in problems:
            self._publish_error(p.reason, p.tool, p.result_id, p.topic, p.tickets, p.answer_id)

    def _dispatcher(self) -> None:
        last_expiry = 0.0
        duplicates = 0
        while True:
            try:
                item = self.inbound.get(timeout=0.02)
            except queue.Empty:
                item = None
                with self._intake:
                    if self._closed and self.inbound.empty():
                        break
            if item is not None:
                with self._intake:
                    self._inbound_bytes -= len(item[1])
                    self._intake.notify_all()
                try:
                    self._dispatch_one(*item)
                except Exception as exc:  # one bad message must not stop the service
                    tool = messages.classify(item[0], self.topics.root)[1]
                    self._publish_error(
                        f"could not read the message: {exc}",
                        tool,
                        None,
                        item[0],
                        [item[3]],
                        messages.answer_id(tool, None, None, data=item[1], topic=item[0]),
                    )
                self._release()
            now = time.monotonic()
            if now - last_expiry > 0.02:
                last_expiry = now
                pairs, problems = self._expire(now)
                self._hand_over(pairs)
                self._report(problems)
                self._release()
            if self.stopping.is_set():
                awaiting = self.pairer.awaiting()
                with self._intake:
                    self._awaiting = awaiting
            if self.pairer.duplicates != duplicates:
                self.counters.add("duplicates", self.pairer.duplicates - duplicates)
                duplicates = self.pairer.duplicates
        pairs, problems = self.pairer.drain()
        self._hand_over(pairs)
        self._report(self.pairer.problems)
        self._report(
            [
                Problem(p.reason.split(":")[0] + ": serve stopped before it came", p.tool, p.result_id, p.tickets)
                for p in problems
            ]
        )
        self._release()
        self.finished.set()

    def _expire(self, now: float) -> tuple[list[Pair], list[Problem]]:
        """The pairer's timeouts, counted while connected only: a Result whose Trace was on its
        way when the broker went down is not an error; it is paired once the broker is back."""
        connected_at = self._connected_at
        return self.pairer.expire(now, waits_from=now if connected_at is None else connected_at)

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
            try:
                self._answer(batch)
            except Exception as exc:  # a bug, not the input's fault: say so, keep serving
                self.log(event="error", reason=f"answering {len(batch)} holes failed: {exc!r}")

    def _answer(self, batch: list[Pair]) -> None:
        """Every hole of the batch gets exactly one message: its answer or an error."""
        holes, ready = [], []
        for pair in batch:
            try:
                hole = unit.hole_from_messages(
                    pair.result,
                    pair.trace,
                    pair.heads,
                    pair.cutting_tools,
                    source=f"mqtt:{pair.tool}/{pair.result_id}",
                    tool=pair.tool,
                )
            except InputError as exc:
                self._pair_error(exc.reason, pair)
                continue
            holes.append(hole)
            ready.append(pair)
        if not ready:
            return
        try:
            loaded, answers = self._predict(holes)
        except Exception:  # whatever the model raised, for one hole or all: each alone, so that only it fails
            for pair, hole in zip(ready, holes, strict=True):
                try:
                    loaded, (answer,) = self._predict([hole])
                except Exception as exc:
                    self._pair_error(f"the model could not answer this hole ({type(exc).__name__}: {exc})", pair)
                    continue
                self._send_answer(pair, hole, loaded, answer)
            return
        for pair, hole, answer in zip(ready, holes, answers, strict=True):
            self._send_answer(pair, hole, loaded, answer)

    def _predict(self, holes: list) -> tuple[Any, list]:
        return self.model.predict(
            [(h.signals["depth_mm"], h.signals["torque_a"], h.signals["thrust_a"]) for h in holes],
            [context_of(h) for h in holes],
        )

    def _pair_error(self, reason: str, pair: Pair) -> None:
        self._publish_error(
            reason,
            pair.tool,
            pair.result_id,
            tickets=pair.tickets,
            answer_id=messages.answer_id(pair.tool, pair.result_id, pair.timestamp),
            key=hole_key(pair.tool, pair.result_id, pair.timestamp),
        )

    def _send_answer(self, pair: Pair, hole, loaded, answer) -> None:
        if answer.error:  # a hole that cannot have keypoints: on the error topic, never as an answer
            self._pair_error(answer.error, pair)
            return
        payload = messages.answer_payload(
            answer.record(),
            tool=pair.tool,
            result_id=pair.result_id,
            hole_id=hole.hole_id,
            source_timestamp=pair.timestamp,
            model=loaded.name,
            model_version=loaded.version,
            latency_ms=(time.monotonic() - pair.completed) * 1000,
        )
        key = hole_key(pair.tool, pair.result_id, pair.timestamp)
        self._publish(self.topics.answer(self.topics.result, pair.tool), payload, pair.tickets, key)
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
            self._publish(self.topics.status.format(client_id=self.client.uos_client_id), status)

    def _check_model(self) -> None:
        if self.model.check():
            # The old model was frozen out of the collector's reach (gc.freeze in run): let it go.
            gc.unfreeze()
            gc.collect()
            gc.freeze()

    # --- run --------------------------------------------------------------------------------------

    def run(self, install_signals: bool = True) -> int:
        # Threads here take turns at the GIL: the MQTT network loop, the dispatcher (JSON) and the
        # workers (many short numpy calls). At CPython's default 5 ms a worker keeps the others
        # waiting for up to 5 ms at a time; at 0.5 ms they interleave (bench/serve_bench.py,
        # one round each, 1,500 holes: 269 -> 307 holes/s, p99 at 200 holes/s 470 -> 64 ms).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        from uos.serve.model import ModelHolder
        from uos.training import tracking

        if install_signals:  # first: a stop during the model's loading is a clean stop too
            for number in (signal.SIGTERM, signal.SIGINT):
                signal.signal(number, lambda *_: self.stopping.set())
        self.topics.check()
        tracking.configure()
        self.model = ModelHolder(
            self.options.model_uri,
            self.options.refine,
            log=self.log,
            warm_batches=self.options.batch,
            runtime=self.options.runtime,
        )
        self._warm_up_reading()
        self._announce_model()
        if self.stopping.is_set():
            self.log(event="stopped", unacknowledged=0)
            return 0
        self._connect()
        threads = self._start_threads()
        if not self.stopping.wait(5) and not self.client.is_connected():
            self.log(
                event="waiting-for-broker",
                broker=self.connection.describe(),
                note="cannot reach it yet; retrying with backoff (is one running? `uos broker` starts one)",
            )
        self.stopping.wait()
        return self._shutdown(threads)

    def _announce_model(self) -> None:
        """Log the model that answers, then set the collector up for serving: the model is loaded."""
        loaded = self.model.current
        self.log(
            event="model",
            model=loaded.name,
            version=loaded.version,
            uri=self.options.model_uri,
            refine=self.options.refine,
            runtime=self.options.runtime,
        )
        # Every hole allocates thousands of small objects (the decoded JSON arrays): collect the
        # young generation less often, and leave the long-lived objects (model, modules) out of it.
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)

    def _connect(self) -> None:
        """The MQTT client with our callbacks, connecting (with backoff) in paho's network thread."""
        # A stable default client id (host, share group): a restarted serve resumes its session.
        share = f"-{self.topics.share}" if self.topics.share else ""
        self.client = self.connection.client(f"uos-serve-{socket.gethostname()}{share}")
        self.client.manual_ack_set(True)  # acknowledged once queued here: see _on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_unsubscribe = self._on_unsubscribe
        self.connection.connect(self.client)
        self.client.loop_start()

    def _start_threads(self) -> list[threading.Thread]:
        """Started: the dispatcher, then the workers (the order _shutdown joins them in), then the
        status line and the registry check."""
        threads = [threading.Thread(target=self._dispatcher, name="dispatcher", daemon=True)]
        threads += [
            threading.Thread(target=self._worker, name=f"worker-{i}", daemon=True) for i in range(self.options.workers)
        ]
        threads += [
            threading.Thread(target=self._every, args=(self.options.status_every_s, self._emit_status), daemon=True),
            threading.Thread(target=self._every, args=(self.options.reload_every_s, self._check_model), daemon=True),
        ]
        for thread in threads:
            thread.start()
        return threads

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
        if self.topics.share and self.client.is_connected():
            # Leave the group, so that the other members take the new holes.
            self.client.unsubscribe(self.topics.subscriptions())
            self._unsubscribed.wait(2)
        # Holes half-received (a Result without its Trace yet, or back): take their partners for
        # a moment more, so that they are answered rather than split between two sessions.
        grace = time.monotonic() + min(2.0, self.options.pair_timeout_s)
        while self._awaiting is None and time.monotonic() < grace:
            time.sleep(0.01)
        with self._intake:
            self._draining = True
        while time.monotonic() < grace:
            with self._intake:
                if not self._awaiting and self.inbound.empty():
                    break
            time.sleep(0.01)
        with self._intake:
            self._closed = True
            self._intake.notify_all()
        deadline = time.monotonic() + self.options.drain_timeout_s
        for thread in threads[: 1 + self.options.workers]:
            thread.join(timeout=max(deadline - time.monotonic(), 0.1))
        self._emit_status()
        while time.monotonic() < deadline and self.exit_code == 0:  # (taken over: no connection to wait for)
            with self._unacked_lock:
                if self._unacked <= 0:
                    break
            time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()
        with self._unacked_lock:
            unacked = self._unacked
        self.log(event="stopped", unacknowledged=max(unacked, 0))
        return self.exit_code
