"""`uos serve` under faults (issue 11): a kill -9 mid-stream, bad batch-mates, unreadable and
oversized messages, a corrupt model, answers a consumer can deduplicate, and a password kept out
of `ps`. A real mosquitto and a real model, as in test_serve.py (whose fixtures these reuse)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest
from test_serve import (  # noqa: F401 (fixtures)
    Serve,
    _collector,
    _edit_trace,
    _env,
    _messages,
    _publisher,
    _wait_until,
    broker,
    registry,
    serve,
)

from uos.serve.messages import unit_topic
from uos.serve.replay import prepare


def _send(publisher, tool: str, kind: str, payload) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    publisher.publish(unit_topic("OPCPUBSUB", tool, kind), data, qos=1).wait_for_publish(5)


def _by_tool(received: list[dict], tool: str) -> list[dict]:
    return [r for r in received if r.get("tool") == tool]


BAD_DEPTHS = {  # tool -> how the Trace's positions are spoiled
    "bad/null": lambda a: {**a, "PositionTrace": [None, *a["PositionTrace"][1:]]},
    "bad/huge": lambda a: {**a, "PositionTrace": [-1e308, *a["PositionTrace"][1:]]},
    "bad/tiny": lambda a: {**a, "PositionTrace": [1e308, *a["PositionTrace"][1:]]},
}


def test_one_bad_hole_fails_only_itself(registry, broker, serve):
    """Each bad hole among 30 on one tool, published at once (so they share batches): the bad
    one gets one error that says what is wrong with it, the 29 others their answers."""
    service = serve()
    client, received = _collector(broker.port)
    publisher = _publisher(broker.port, "test-batch-publisher")
    good = registry["files"]
    for tool, edit in BAD_DEPTHS.items():
        for number in range(30):
            result_id = 1000 * (1 + list(BAD_DEPTHS).index(tool)) + number
            items, _ = prepare([str(good[number % len(good)])], first_result_id=result_id)
            messages = {kind: json.loads(data) for kind, data in items[0].payloads.items()}
            if number == 7:
                messages = _edit_trace(messages, edit)
            for kind in ("result", "trace"):
                publisher.publish(unit_topic("OPCPUBSUB", tool, kind), json.dumps(messages[kind]).encode(), qos=1)
    _wait_until(
        lambda: all(len(_by_tool(received, t)) >= 30 for t in BAD_DEPTHS),
        60,
        lambda: f"{len(received)} answers\n{''.join(service.lines[-5:])}",
    )
    for tool in BAD_DEPTHS:
        answers = _by_tool(received, tool)
        errors = [a for a in answers if "error" in a]
        assert len(answers) == 30 and len(errors) == 1, (tool, errors)
        assert errors[0]["result_id"].endswith("007"), errors[0]
        assert "model failed" not in errors[0]["error"] and "Position" in errors[0]["error"], errors[0]
    assert service.stop() == 0
    publisher.loop_stop()
    client.loop_stop()


def test_kill_9_mid_stream_loses_no_hole(registry, broker, serve):
    """SIGKILL while serve holds holes it has not answered; restarted with the same client id
    (its session), it gets them again from the broker: every hole answered (maybe twice)."""
    from uos.serve.connection import Connection
    from uos.serve.messages import Topics
    from uos.serve.replay import Replayer

    first = serve()
    client, received = _collector(broker.port)
    items, _ = prepare([str(p) for p in registry["files"]], tools=4, repeat=-(-300 // len(registry["files"])))
    items = items[:300]
    with Replayer(Connection(port=broker.port), Topics(), answers=False) as replayer:
        publishing = __import__("threading").Thread(target=replayer.publish, args=(items,))
        publishing.start()
        _wait_until(lambda: len(received) >= 95, 60, lambda: f"only {len(received)} answers")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
        answered_before = len(received)
        publishing.join(timeout=60)
    assert answered_before < len(items), "serve answered everything before the kill: nothing was held"
    second = serve()
    keys = {(i.tool, i.result_id) for i in items}

    def missing() -> set:
        return keys - {(r["tool"], r["result_id"]) for r in received}

    _wait_until(lambda: not missing(), 60, lambda: f"{len(missing())} of {len(keys)} holes never answered")
    assert not [r for r in received if "error" in r], [r for r in received if "error" in r][:3]
    # Answered twice (by the killed serve, then again) is allowed: the answer_id says which.
    by_key: dict = {}
    for record in received:
        by_key.setdefault(record["answer_id"], set()).add((record["tool"], record["result_id"]))
    assert all(len(holes) == 1 for holes in by_key.values()) and len(by_key) == len(keys)
    assert second.stop() == 0
    client.loop_stop()
