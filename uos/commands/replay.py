"""`uos replay`: publish Setitec files or capture folders as drilling units do."""

from __future__ import annotations

import click

from uos.commands.mqtt_options import build_connection, connection_options


@click.command("replay")
@click.argument("inputs", nargs=-1, required=True)
@connection_options
@click.option("--rate", type=float, default=0.0, show_default=True, help="Holes per second (0: as fast as possible).")
@click.option(
    "--tools",
    "tool_count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Spread the holes over this many tools.",
)
@click.option(
    "--repeat", type=click.IntRange(min=1), default=1, show_default=True, help="Publish the inputs this many times."
)
@click.option(
    "--answers/--no-answers", default=True, show_default=True, help="Wait for `uos serve`'s answers and print them."
)
@click.option(
    "--window",
    type=click.IntRange(min=0),
    default=0,
    help="At most this many holes unanswered at a time (0: no limit).",
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the last answers.")
@click.option("--table", is_flag=True, help="Print the answers as a table for people instead of JSON lines.")
def replay_command(inputs, rate, tool_count, repeat, answers, window, timeout, table, **mqtt):
    """Publish holes as drilling units do: Heads, Result and Trace messages per hole.

    \b
    INPUTS are Setitec files, folders (recursively) or MQTT capture folders (published as
    captured). With --answers (the default) the answers of `uos serve` are printed as JSON lines
    on stdout, with the source file; a summary (rate, latency p50/p99) goes to stderr. Exit code
    1 when a hole got an error or no answer.

    \b
    Examples:
      uos replay data/raw --rate 20 --tools 4
      uos replay data/raw/17070152_116-V3-012_ST_356_92.xls --table
      uos replay ../shared/setitec/mql --repeat 10 --window 64 --no-answers
    """
    import json
    import sys

    from uos.serve.messages import Topics
    from uos.serve.replay import TABLE_HEADER, replay, table_row

    connection = build_connection(mqtt)
    topics = Topics(root=mqtt["root"], result=mqtt["result_topic"], error=mqtt["error_topic"])
    if table and answers:
        click.echo(TABLE_HEADER)
    show = table_row if table else json.dumps
    report = replay(
        list(inputs),
        connection,
        topics,
        tools=tool_count,
        rate=rate,
        window=window,
        answers=answers,
        timeout_s=timeout,
        repeat=repeat,
        on_answer=lambda record: click.echo(show(record)),
    )
    for source, reason in report.problems:
        click.echo(f"Error: {source}: {reason}", err=True)
    for source in report.unanswered:
        click.echo(f"Error: {source}: no answer within {timeout:g} s", err=True)
    if report.unacknowledged:
        click.echo(f"Error: the broker did not acknowledge {report.unacknowledged} messages", err=True)
    click.echo(json.dumps({"event": "replayed", **report.summary()}), err=True)
    if report.problems or report.unanswered or report.errors or report.unacknowledged:
        sys.exit(1)
