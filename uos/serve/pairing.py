"""Pairing a unit's messages into holes: a Result with its Trace (and the Heads and CuttingTools
published with them), by tool and ResultId.

No MQTT and no clock of its own here (`now` is passed in), so that every rule is easy to test:
- a Result and a Trace pair by tool (topic levels) and ResultId; when a message has no ResultId,
  by its SourceTimestamp (a unit stamps all of a hole's messages alike), else by arrival within
  `window_s` (the fallback);
- a tool that publishes Heads gets a short wait (`heads_wait_s`) for the Heads of the same hole, so
  that the hole id comes from the head (as `uos parse` makes it), not from the ResultId;
- a message whose partner does not come within `pair_timeout_s` is an error, with its reason (in
  a share group a lone Result is not: its Trace went to another process, which answers it);
- a Result or Trace that cannot be read is its hole's error: with the partner waiting for it, or,
  when it names no ResultId and none waits, with the first part of the other kind that comes on
  its tool within `window_s` (`unreadable`), so that the hole gets one error, not a second one for
  the partner left alone;
- a hole already answered (same tool, ResultId and SourceTimestamp, within `remember`) is a
  duplicate: ignored. The timestamp is part of it because a unit whose counter was reset reuses
  ResultIds for new holes; a re-sent message carries its original timestamp.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

ANY_TIME = "*"


@dataclass
class Part:
    kind: str  # result | trace
    tool: str
    result_id: str | None
    timestamp: str | None
    message: dict[str, Any]
    arrived: float
    tickets: list[Any] = field(default_factory=list)  # what acknowledges it once answered (serve's)


@dataclass
class Pair:
    """A hole's messages, ready to be answered."""

    tool: str
    result_id: str | None
    result: dict[str, Any]
    trace: dict[str, Any]
    heads: dict[str, Any] | None
    cutting_tools: dict[str, Any] | None
    timestamp: str | None
    first_arrived: float
    completed: float
    tickets: list[Any] = field(default_factory=list)  # its messages' acknowledgements, sent once it is answered


@dataclass
class Problem:
    reason: str
    tool: str | None
    result_id: str | None
    tickets: list[Any] = field(default_factory=list)
    topic: str | None = None  # the message it is about, when one message is
    answer_id: str | None = None  # when not the hole's (a message that names no ResultId)


@dataclass
class _Unreadable:
    """A Result or Trace that could not be read and named no ResultId, waiting `window_s` for the
    other part of its hole."""

    kind: str
    problem: Problem
    arrived: float


@dataclass
class _Pending:
    result: Part | None = None
    trace: Part | None = None
    complete_at: float | None = None  # when both came (waiting for the Heads since)

    @property
    def first(self) -> Part:
        return min((p for p in (self.result, self.trace) if p is not None), key=lambda p: p.arrived)


@dataclass
class Pairer:
    pair_timeout_s: float = 10.0
    heads_wait_s: float = 0.15
    window_s: float = 2.0
    remember: int = 200_000  # answered (tool, ResultId) kept to recognise re-sent duplicates
    lone_results_are_errors: bool = True  # False in a share group (see above)
    expired_quietly: int = 0
    pending: dict[tuple[str, str], _Pending] = field(default_factory=dict)
    assets: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(
        default_factory=dict
    )  # (tool, kind) -> timestamp -> msg
    asset_tools: set[tuple[str, str]] = field(default_factory=set)
    answered: OrderedDict[tuple[str, str, str], None] = field(default_factory=OrderedDict)
    duplicates: int = 0
    # Tickets of messages that need no answer (duplicates, assets no hole took, lone Results in a
    # share group): the caller acknowledges them and empties the list.
    released: list[Any] = field(default_factory=list)
    # Tickets of parts re-sent for a hole already handed over, with its key (tool, ResultId,
    # SourceTimestamp): acknowledged with that hole's answer (see acks), not at once.
    resent: list[tuple[tuple[str, str, str], Any]] = field(default_factory=list)
    asset_tickets: dict[tuple[str, str, str], tuple[float, list[Any]]] = field(default_factory=dict)
    unreadable_parts: dict[str, _Unreadable] = field(default_factory=dict)  # by tool
    # Errors found while adding parts (an unreadable part's hole): the caller publishes them and
    # empties the list.
    problems: list[Problem] = field(default_factory=list)
    _serial: int = 0

    def _key(self, part: Part) -> tuple[str, str]:
        if part.result_id is not None:
            return part.tool, f"id:{part.result_id}"
        if part.timestamp is not None:
            return part.tool, f"ts:{part.timestamp}"
        self._serial += 1
        return part.tool, f"arrival:{self._serial}"

    def _partner_key(self, part: Part) -> tuple[str, str] | None:
        """A pending counterpart on the same tool that this part matches without an equal key:
        one side lacks the ResultId, so the SourceTimestamp decides, else arrival in the window."""
        other = "trace" if part.kind == "result" else "result"
        candidates = []
        for key, entry in self.pending.items():
            counterpart = getattr(entry, other)
            if key[0] != part.tool or counterpart is None or getattr(entry, part.kind) is not None:
                continue
            if part.result_id is not None and counterpart.result_id is not None:
                continue  # both have ids and they differ: not the same hole
            if part.timestamp is not None and counterpart.timestamp is not None:
                if part.timestamp == counterpart.timestamp:
                    candidates.append((0.0, key))
            elif abs(part.arrived - counterpart.arrived) <= self.window_s:
                candidates.append((abs(part.arrived - counterpart.arrived), key))
        return min(candidates)[1] if candidates else None

    def was_answered(self, tool: str, result_id: str | None, timestamp: str | None) -> bool:
        if result_id is None:
            return False
        return (tool, result_id, timestamp or "") in self.answered or (tool, result_id, ANY_TIME) in self.answered

    def mark_answered(self, tool: str, result_id: str | None, timestamp: str | None) -> None:
        if result_id is None:
            return
        self.answered[(tool, result_id, timestamp or "")] = None
        while len(self.answered) > self.remember:
            self.answered.popitem(last=False)

    def add_asset(
        self,
        kind: str,
        tool: str,
        timestamp: str | None,
        message: dict[str, Any],
        now: float,
        tickets: list[Any] | None = None,
    ) -> list[Pair]:
        """Heads or CuttingTools: kept for the hole with the same SourceTimestamp; its tickets go
        with the first hole that takes it (or are released when it ages out unused)."""
        self.asset_tools.add((tool, kind))
        by_time = self.assets.setdefault((tool, kind), {})
        by_time[timestamp or ""] = message
        self._release_asset((tool, kind, timestamp or ""))  # a re-sent one replaces it
        self.asset_tickets[(tool, kind, timestamp or "")] = (now, list(tickets or []))
        while len(by_time) > 16:  # a few holes' worth is plenty
            oldest = next(iter(by_time))
            del by_time[oldest]
            self._release_asset((tool, kind, oldest))
        return self.poll(now, tools={tool})

    def _release_asset(self, key: tuple[str, str, str]) -> None:
        self.released += self.asset_tickets.pop(key, (0.0, []))[1]

    def _asset_tickets(self, tool: str, timestamp: str | None) -> list[Any]:
        return [
            t
            for kind in ("heads", "cutting_tools")
            for t in self.asset_tickets.pop((tool, kind, timestamp or ""), (0.0, []))[1]
        ]

    def add(self, part: Part) -> list[Pair]:
        """A Result or Trace came; the pairs it completes (maybe after their Heads wait)."""
        if self.was_answered(part.tool, part.result_id, part.timestamp):
            self.duplicates += 1
            key = (part.tool, part.result_id, part.timestamp or "")
            self.resent += [(key, ticket) for ticket in part.tickets]
            return []
        key = self._key(part)
        if key not in self.pending and (partner := self._partner_key(part)) is not None:
            key = partner
        if key not in self.pending and self._answers_unreadable(part):
            return []
        entry = self.pending.setdefault(key, _Pending())
        if (first := getattr(entry, part.kind)) is not None:
            self.duplicates += 1  # re-sent before its partner came: keep the first
            first.tickets += part.tickets  # acknowledged with it (a redelivery carries the live ticket)
            return []
        setattr(entry, part.kind, part)
        if entry.result is not None and entry.trace is not None:
            entry.complete_at = part.arrived
        return self.poll(part.arrived, tools={part.tool})

    def unreadable(self, kind: str, problem: Problem, now: float) -> None:
        """A Result or Trace that could not be read (`problem`: its error, its tickets): it answers
        the part of the other kind waiting for it (by the ResultId found in its bytes, or the one
        waiting alone on its tool), or else waits `window_s` for one to come (see add); the error
        goes to `problems`, once."""
        result_id, tickets = self.forget(problem.tool or "", problem.result_id, kind)
        if result_id is not None or kind not in ("result", "trace"):
            if result_id is not None:  # known as its hole's error
                problem.result_id, problem.answer_id = result_id, None
            problem.tickets += tickets
            self.problems.append(problem)
            return
        held = self.unreadable_parts.get(problem.tool or "")
        if held is not None and held.kind != kind and now - held.arrived <= self.window_s:
            # Both parts of the hole unreadable: one error, with both reasons.
            held.problem.reason = f"{held.problem.reason}; {problem.reason}"
            held.problem.tickets += problem.tickets
            return
        if held is not None:
            self.problems.append(held.problem)
        self.unreadable_parts[problem.tool or ""] = _Unreadable(kind, problem, now)

    def _answers_unreadable(self, part: Part) -> bool:
        """Whether `part` is the other part of a hole whose first part was unreadable: then that
        error is its hole's answer (with `part`'s ResultId), and `part` waits for nothing."""
        held = self.unreadable_parts.get(part.tool)
        if held is None or held.kind == part.kind or part.arrived - held.arrived > self.window_s:
            return False
        del self.unreadable_parts[part.tool]
        held.problem.result_id, held.problem.answer_id = part.result_id, None
        held.problem.tickets += part.tickets
        self.mark_answered(part.tool, part.result_id, ANY_TIME)  # a copy re-sent later is a duplicate
        self.problems.append(held.problem)
        return True

    def _asset(self, tool: str, kind: str, timestamp: str | None) -> dict[str, Any] | None:
        return self.assets.get((tool, kind), {}).get(timestamp or "")

    def poll(self, now: float, tools: set[str] | None = None, waits_from: float = float("-inf")) -> list[Pair]:
        """Pairs whose Heads came or whose wait for them is over (counted from `waits_from` if
        later: see expire)."""
        ready = []
        for key, entry in list(self.pending.items()):
            if entry.complete_at is None or (tools is not None and key[0] not in tools):
                continue
            tool = key[0]
            timestamp = entry.result.timestamp or entry.trace.timestamp
            heads = self._asset(tool, "heads", timestamp)
            waits_for_heads = (tool, "heads") in self.asset_tools and heads is None
            if waits_for_heads and now - max(entry.complete_at, waits_from) < self.heads_wait_s:
                continue
            del self.pending[key]
            result_id = entry.result.result_id or entry.trace.result_id
            tickets = entry.result.tickets + entry.trace.tickets + self._asset_tickets(tool, timestamp)
            ready.append(
                Pair(
                    tool,
                    result_id,
                    entry.result.message,
                    entry.trace.message,
                    heads,
                    self._asset(tool, "cutting_tools", timestamp),
                    timestamp,
                    entry.first.arrived,
                    now,
                    tickets,
                )
            )
        return ready

    def expire(self, now: float, waits_from: float = float("-inf")) -> tuple[list[Pair], list[Problem]]:
        """Pairs whose Heads wait is over, and parts whose partner never came. A lone part waits
        `pair_timeout_s` from when it came or from `waits_from`, whichever is later: the caller
        passes when its connection to the broker was last made (its partner cannot come while the
        broker is away, and the broker delivers it after the reconnect)."""
        problems = []
        for key, entry in list(self.pending.items()):
            if entry.complete_at is None and now - max(entry.first.arrived, waits_from) > self.pair_timeout_s:
                del self.pending[key]
                part = entry.first
                if part.kind == "result" and entry.trace is None and not self.lone_results_are_errors:
                    self.expired_quietly += 1
                    self.released += part.tickets
                    continue
                missing = "Trace" if part.kind == "result" else "Result"
                problems.append(
                    Problem(
                        f"{part.kind.capitalize()} without its {missing}: none came within {self.pair_timeout_s:g} s",
                        part.tool,
                        part.result_id,
                        part.tickets,
                    )
                )
        for tool, held in list(self.unreadable_parts.items()):
            if now - max(held.arrived, waits_from) > self.window_s:  # no partner came: the error alone
                del self.unreadable_parts[tool]
                problems.append(held.problem)
        for key, (arrived, _) in list(self.asset_tickets.items()):
            if now - arrived > self.pair_timeout_s:  # no hole took it: kept for pairing, acknowledged
                self._release_asset(key)
        return self.poll(now, waits_from=waits_from), problems

    def awaiting(self) -> set[tuple[str, str]]:
        """(tool, ResultId) of the holes of which one part came and the other not yet."""
        return {
            (tool, key[3:])
            for (tool, key), entry in self.pending.items()
            if entry.complete_at is None and key.startswith("id:")
        }

    def forget(self, tool: str, result_id: str | None, kind: str | None = None) -> tuple[str | None, list[Any]]:
        """Drop what waits for a hole that has already been answered with an error (its ResultId,
        and the tickets of what was dropped). An unreadable `kind` message whose ResultId could not
        be read takes the one lone part of the other kind waiting on its tool, when there is only
        one: else that part would get a second error when it times out."""
        if result_id is None and kind in ("result", "trace"):
            other = "trace" if kind == "result" else "result"
            lone = [
                e
                for (t, _), e in self.pending.items()
                if t == tool and e.complete_at is None and getattr(e, other) is not None and getattr(e, kind) is None
            ]
            if len(lone) == 1:
                result_id = getattr(lone[0], other).result_id
        if result_id is None:
            return None, []
        entry = self.pending.pop((tool, f"id:{result_id}"), None)
        self.mark_answered(tool, result_id, ANY_TIME)  # the error was about an unreadable message: no timestamp
        parts = [] if entry is None else [p for p in (entry.result, entry.trace) if p is not None]
        return result_id, [t for p in parts for t in p.tickets]

    def drain(self) -> tuple[list[Pair], list[Problem]]:
        """At shutdown: complete pairs go out now; lone parts are errors (and unreadable parts
        still waiting for their partner go to `problems`, as they are)."""
        self.problems += [held.problem for held in self.unreadable_parts.values()]
        self.unreadable_parts.clear()
        return self.expire(float("inf"))
