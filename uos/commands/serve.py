"""`uos serve`: answer every hole drilling units publish over MQTT."""

from __future__ import annotations

import click

from uos.commands.common import workers_option
from uos.commands.model_options import model_option, runtime_option
from uos.commands.mqtt_options import build_connection, connection_options


@click.command("serve")
@connection_options(client_id_env="UOS_MQTT_CLIENT_ID")
@click.option(
    "--tools", default="+/+", show_default=True, help="toolbox/tool topic levels to listen to (MQTT wildcards)."
)
@click.option("--status-topic", default="uos/status/{client_id}", show_default=True)
@click.option(
    "--share",
    default=None,
    help="MQTT shared-subscription group: several `uos serve` with the same group share the holes.",
)
@model_option()
@click.option(
    "--refine/--no-refine",
    default=False,
    show_default=True,
    help="Ramp-fit refinement (~80 ms per hole) instead of the network's own positions (~2 ms).",
)
@runtime_option
@workers_option("Inference threads.", minimum=1, default=2)
@click.option(
    "--pair-timeout",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds a Result waits for its Trace (and back).",
)
@click.option(
    "--status-every",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between status lines.",
)
@click.option(
    "--reload-every",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds between checks for a new champion.",
)
@click.option(
    "--max-message-mb",
    type=click.FloatRange(min=0.001),
    default=2.0,
    show_default=True,
    help="Larger messages get an error, unread (the largest real Trace is 0.32 MB).",
)
@click.option(
    "--session-expiry",
    type=click.IntRange(min=0),
    default=86400,
    show_default=True,
    help="Seconds the broker keeps serve's session (and queues holes for it) while serve is down; 0: none.",
)
def serve_command(
    tools,
    status_topic,
    share,
    model_uri,
    refine,
    runtime,
    workers,
    pair_timeout,
    status_every,
    reload_every,
    max_message_mb,
    session_expiry,
    **mqtt,
):
    """Answer each drilled hole with its keypoints, over MQTT (headless; Ctrl-C or SIGTERM drains).

    \b
    Listens to <root>/<toolbox>/<tool>/ResultManagement (Result), .../ResultManagement/Trace and
    .../AssetManagement/Heads|CuttingTools; pairs each Result with its Trace by tool and
    ResultId; answers on the result topic (keypoints, layer and total thickness, grip code, model
    version, latency), QoS 1. Whatever cannot be answered gets a message on the error topic.
    A status line (JSON) goes to stderr and to the status topic. A new champion in the registry
    is picked up without a restart. The client id defaults to uos-serve-<host>[-<share group>]:
    a restarted serve resumes its session, and gets what was published while it was down.

    \b
    Examples:
      uos serve
      UOS_MQTT_PASSWORD=... uos serve --host broker.shop --username uos --tls-ca ca.pem
      uos serve --share uos --client-id serve-a &       # two processes share the load,
      uos serve --share uos --client-id serve-b &       # each with its own client id
      uos serve --runtime onnx                          # ONNX Runtime: lighter, no torch
    """
    import sys

    from uos.serve.messages import Topics
    from uos.serve.service import ServeOptions, Service

    connection = build_connection(mqtt, session_expiry_s=session_expiry)
    topics = Topics(
        root=mqtt["root"],
        tools=tools,
        result=mqtt["result_topic"],
        error=mqtt["error_topic"],
        status=status_topic,
        share=share,
    )
    options = ServeOptions(
        model_uri=model_uri,
        refine=refine,
        runtime=runtime,
        workers=workers,
        pair_timeout_s=pair_timeout,
        status_every_s=status_every,
        reload_every_s=reload_every,
        max_message_mb=max_message_mb,
    )
    sys.exit(Service(connection, topics, options).run())
