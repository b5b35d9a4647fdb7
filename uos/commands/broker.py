"""`uos broker`: a local MQTT broker for trying things out."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("broker")
@click.option("--port", type=int, default=1883, show_default=True, help="Port on 127.0.0.1.")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".uos/broker"),
    show_default=True,
    help="Where mosquitto keeps its sessions and queued messages.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "mosquitto", "amqtt"]),
    default="auto",
    show_default=True,
    help="auto: mosquitto when installed, else amqtt in-process (MQTT 3.1.1 only).",
)
def broker_command(port, data_dir, engine):
    """Run a local MQTT broker on 127.0.0.1 until Ctrl-C (for a laptop, the demo, a first look).

    \b
    Mosquitto when installed (MQTT 5, persistent sessions, shared subscriptions), else an
    in-process amqtt broker (MQTT 3.1.1: pass --mqtt-version 3.1.1 to serve and replay).
    A shop points `uos serve --host` at its own broker instead.

    \b
    Example:
      uos broker --port 1883 &
      uos serve &
      uos replay data/raw --rate 5
    """
    import sys

    from uos.serve.broker import run_broker

    sys.exit(run_broker(port, data_dir, engine, say=lambda line: click.echo(line, err=True)))
