"""Which received messages serve may acknowledge, and when: only once the broker has acknowledged
what answers them, so that a serve killed at any moment loses nothing (the broker delivers again
whatever was not acknowledged).

No MQTT here, as in `pairing`: the service passes in message tickets and publish ids and sends
the acknowledgements this returns. A *ticket* is what acknowledges one received message; a hole's
*key* is (tool, ResultId, SourceTimestamp), the same as the pairer's duplicate check.
"""

from __future__ import annotations

import threading
from typing import Any

Key = tuple[str, str, str]


def hole_key(tool: str | None, result_id: str | None, timestamp: str | None) -> Key | None:
    """The key of a hole, or None when it has no ResultId (then it cannot be re-sent recognisably)."""
    if tool is None or result_id is None:
        return None
    return tool, result_id, timestamp or ""


class Acknowledgements:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owed: dict[Key, list[Any]] = {}  # holes handed over, their answer not yet at the broker
        self._holding: dict[int, tuple[Key | None, list[Any]]] = {}  # publish id -> what it answers
        self._early: set[int] = set()  # publish ids the broker acknowledged before we recorded them

    def owe(self, key: Key | None, tickets: list[Any]) -> None:
        """A hole goes to the workers: its messages are acknowledged with its answer."""
        if key is not None:
            with self._lock:
                self._owed[key] = tickets

    def resent(self, key: Key | None, ticket: Any) -> list[Any]:
        """A message of a hole already handed over came again (a redelivery after a reconnect
        carries the ticket that counts now): held with the hole while its answer is not at the
        broker; returned, to acknowledge now, when it is."""
        with self._lock:
            owed = self._owed.get(key) if key is not None else None
            if owed is not None:
                owed.append(ticket)
                return []
        return [ticket]

    def sent(self, publish_id: int, key: Key | None, tickets: list[Any]) -> list[Any]:
        """An answer or error went out as `publish_id`; what to acknowledge now (if the broker
        already acknowledged it)."""
        with self._lock:
            tickets = self._owed.get(key, tickets) if key is not None else tickets
            if publish_id not in self._early:
                self._holding[publish_id] = (key, tickets)
                return []
            self._early.discard(publish_id)
            self._owed.pop(key, None)
            return list(tickets)

    def confirmed(self, publish_id: int) -> list[Any]:
        """The broker acknowledged `publish_id`: the tickets of what it answers."""
        with self._lock:
            held = self._holding.pop(publish_id, None)
            if held is None:  # paho's callback can come before publish() returns
                self._early.add(publish_id)
                return []
            key, tickets = held
            self._owed.pop(key, None)
            return list(tickets)
