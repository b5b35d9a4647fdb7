"""The pairing rules of `uos serve`, without a broker (the serve tests cover them over MQTT)."""

from uos.serve.acks import Acknowledgements, hole_key
from uos.serve.pairing import Pairer, Part, Problem


def _part(kind: str, result_id: str | None, at: float, timestamp: str | None = "t1", tool: str = "box/1") -> Part:
    return Part(kind, tool, result_id, timestamp, {"kind": kind}, at)


def test_result_and_trace_pair_by_tool_and_result_id_in_any_order():
    pairer = Pairer(heads_wait_s=0)
    assert pairer.add(_part("trace", "7", 0.0)) == []
    assert pairer.add(_part("result", "8", 0.1)) == []  # another hole of the same tool
    assert pairer.add(_part("trace", "7", 0.2, tool="box/2")) == []  # same id, another tool
    (pair,) = pairer.add(_part("result", "7", 0.3))
    assert (pair.tool, pair.result_id, pair.first_arrived) == ("box/1", "7", 0.0)


def test_without_a_result_id_the_source_timestamp_pairs():
    pairer = Pairer(heads_wait_s=0)
    pairer.add(_part("result", "9", 0.0, timestamp="t9"))
    pairer.add(_part("result", "10", 0.0, timestamp="t10"))
    (pair,) = pairer.add(_part("trace", None, 0.5, timestamp="t10"))
    assert pair.result_id == "10"


def test_a_resent_hole_is_answered_once_but_a_reused_result_id_is_a_new_hole():
    pairer = Pairer(heads_wait_s=0)
    pairer.add(_part("result", "5", 0.0))
    (pair,) = pairer.add(_part("trace", "5", 0.1))
    pairer.mark_answered(pair.tool, pair.result_id, pair.timestamp)
    assert pairer.add(_part("result", "5", 1.0)) == [] and pairer.add(_part("trace", "5", 1.1)) == []
    assert pairer.duplicates == 2 and not pairer.pending
    # The unit's counter was reset: ResultId 5 again, for a hole drilled later.
    pairer.add(_part("result", "5", 2.0, timestamp="t2"))
    assert len(pairer.add(_part("trace", "5", 2.1, timestamp="t2"))) == 1


def test_a_part_whose_partner_never_comes_is_a_problem_with_its_reason():
    pairer = Pairer(pair_timeout_s=1.0)
    pairer.add(_part("result", "3", 0.0))
    assert pairer.expire(0.5) == ([], [])
    pairs, (problem,) = pairer.expire(1.5)
    assert pairs == [] and (problem.tool, problem.result_id) == ("box/1", "3")
    assert problem.reason.startswith("Result without its Trace")


def test_in_a_share_group_a_lone_result_expires_quietly_but_a_lone_trace_does_not():
    pairer = Pairer(pair_timeout_s=1.0, lone_results_are_errors=False)
    pairer.add(_part("result", "3", 0.0))
    pairer.add(_part("trace", "4", 0.0))
    _, problems = pairer.expire(2.0)
    assert [p.result_id for p in problems] == ["4"] and pairer.expired_quietly == 1


def test_a_tool_that_publishes_heads_waits_for_them_briefly():
    pairer = Pairer(heads_wait_s=0.15)
    pairer.add_asset("heads", "box/1", "t0", {"head": 0}, 0.0)  # an earlier hole's
    pairer.add(_part("result", "6", 1.0))
    assert pairer.add(_part("trace", "6", 1.01)) == []  # its Heads may still come
    (pair,) = pairer.add_asset("heads", "box/1", "t1", {"head": 1}, 1.05)
    assert pair.heads == {"head": 1}
    pairer.add(_part("result", "7", 2.0, timestamp="t7"))
    pairer.add(_part("trace", "7", 2.0, timestamp="t7"))
    assert pairer.poll(2.1) == [] and pairer.poll(2.2)[0].heads is None  # no Heads came: go without


def test_a_part_resent_after_its_hole_was_handed_over_waits_for_that_holes_answer():
    """A redelivery (after a reconnect) of a hole still being answered: acknowledging it at once
    would lose the hole if serve died before its answer reached the broker."""
    pairer, acks = Pairer(heads_wait_s=0), Acknowledgements()
    pairer.add(Part("result", "box/1", "5", "t1", {}, 0.0, ["result-1"]))
    (pair,) = pairer.add(Part("trace", "box/1", "5", "t1", {}, 0.1, ["trace-1"]))
    pairer.mark_answered(pair.tool, pair.result_id, pair.timestamp)
    key = hole_key(pair.tool, pair.result_id, pair.timestamp)
    acks.owe(key, pair.tickets)
    assert pairer.add(Part("trace", "box/1", "5", "t1", {}, 1.0, ["trace-2"])) == []
    assert pairer.released == [] and pairer.resent == [(key, "trace-2")]
    assert acks.resent(key, "trace-2") == []  # held: the answer is not at the broker yet
    assert acks.sent(41, key, pair.tickets) == []
    assert acks.resent(key, "trace-3") == []  # published, not yet acknowledged by the broker
    assert acks.confirmed(41) == ["result-1", "trace-1", "trace-2", "trace-3"]
    assert acks.resent(key, "trace-4") == ["trace-4"]  # answered: nothing to wait for


def test_an_answer_acknowledged_before_publish_returns_releases_its_tickets_once():
    acks = Acknowledgements()
    key = hole_key("box/1", "6", None)
    acks.owe(key, ["result-1"])
    assert acks.confirmed(7) == []  # paho's callback came first
    assert acks.sent(7, key, ["result-1"]) == ["result-1"]
    assert acks.resent(key, "result-2") == ["result-2"]


def _unreadable(pairer: Pairer, kind: str, at: float, result_id: str | None = None, tool: str = "box/1") -> None:
    problem = Problem(f"{kind} is not valid JSON", tool, result_id, [f"{kind}-ticket"], answer_id="digest")
    pairer.unreadable(kind, problem, at)


def test_an_unreadable_trace_that_names_no_result_id_answers_the_result_that_comes_after_it():
    """Arrival order is not guaranteed: the Trace, cut short before its ResultId, may come first.
    Its error then answers the Result that comes on the tool within the window: one error for
    the hole, with the Result's ResultId, never a second one for the Result left alone."""
    pairer = Pairer(pair_timeout_s=1.0, window_s=2.0)
    _unreadable(pairer, "trace", 0.0)
    assert pairer.problems == [] and pairer.expire(0.5) == ([], [])  # waits for its Result
    assert pairer.add(Part("result", "box/1", "42", "t1", {}, 0.8, ["result-ticket"])) == []
    (problem,) = pairer.problems
    assert (problem.result_id, problem.answer_id) == ("42", None)
    assert problem.tickets == ["trace-ticket", "result-ticket"]
    assert pairer.expire(5.0) == ([], []) and not pairer.pending
    # A copy of the Result delivered again is a duplicate, not a new lone Result.
    assert pairer.add(Part("result", "box/1", "42", "t1", {}, 6.0)) == [] and pairer.duplicates == 1


def test_an_unreadable_part_alone_is_its_own_error_after_the_window():
    pairer = Pairer(pair_timeout_s=1.0, window_s=2.0)
    _unreadable(pairer, "trace", 0.0)
    _, problems = pairer.expire(2.5)
    assert [(p.result_id, p.answer_id) for p in problems] == [(None, "digest")]
    pairer.add(Part("result", "box/1", "43", "t1", {}, 3.0))  # too late: a hole of its own
    assert pairer.problems == [] and pairer.pending


def test_an_unreadable_part_answers_its_waiting_partner_at_once():
    pairer = Pairer()
    pairer.add(Part("result", "box/1", "44", "t1", {}, 0.0, ["result-ticket"]))
    _unreadable(pairer, "trace", 0.1)  # no ResultId in its bytes: the one Result waiting on the tool
    _unreadable(pairer, "result", 0.2, result_id="45", tool="box/2")  # its ResultId read from its bytes
    assert [(p.tool, p.result_id, p.tickets) for p in pairer.problems] == [
        ("box/1", "44", ["trace-ticket", "result-ticket"]),
        ("box/2", "45", ["result-ticket"]),
    ]
    assert not pairer.pending and not pairer.unreadable_parts


def test_a_hole_whose_two_parts_are_unreadable_gets_one_error():
    pairer = Pairer(window_s=2.0)
    _unreadable(pairer, "result", 0.0)
    _unreadable(pairer, "trace", 0.5)
    _, (problem,) = pairer.expire(3.0)
    assert problem.reason == "result is not valid JSON; trace is not valid JSON"
    assert problem.tickets == ["result-ticket", "trace-ticket"]
