"""Broker and topic options shared by `uos serve` and `uos replay` (each also from UOS_MQTT_*)."""

from __future__ import annotations

import click


def connection_options(function=None, *, client_id_env: str | None = None):
    """The broker and topic options; `client_id_env` only for `uos serve` (replay taking serve's
    id would take over its session)."""
    if function is None:
        return lambda f: connection_options(f, client_id_env=client_id_env)
    for option in reversed([*_broker_options(client_id_env), *TOPIC_OPTIONS]):
        function = option(function)
    return function


def _broker_options(client_id_env: str | None) -> list:
    env_help = f" [{client_id_env}]" if client_id_env else ""
    return [
        click.option(
            "--host",
            envvar="UOS_MQTT_HOST",
            default="127.0.0.1",
            show_default=True,
            help="Broker host [UOS_MQTT_HOST].",
        ),
        click.option(
            "--port",
            envvar="UOS_MQTT_PORT",
            type=int,
            default=1883,
            show_default=True,
            help="Broker port [UOS_MQTT_PORT].",
        ),
        click.option("--client-id", envvar=client_id_env, default=None, help=f"MQTT client id{env_help}."),
        click.option("--username", envvar="UOS_MQTT_USERNAME", default=None, help="[UOS_MQTT_USERNAME]"),
        click.option(
            "--password",
            envvar="UOS_MQTT_PASSWORD",
            default=None,
            show_default=False,
            help="[UOS_MQTT_PASSWORD] Better from the variable or --password-file: a command line shows in `ps`.",
        ),
        click.option(
            "--password-file",
            envvar="UOS_MQTT_PASSWORD_FILE",
            default=None,
            type=click.Path(exists=True, dir_okay=False),
            help="A file whose first line is the password [UOS_MQTT_PASSWORD_FILE].",
        ),
        click.option(
            "--tls-ca",
            envvar="UOS_MQTT_CA",
            default=None,
            type=click.Path(exists=True, dir_okay=False),
            help="CA certificate: connect with TLS [UOS_MQTT_CA].",
        ),
        click.option(
            "--mqtt-version",
            envvar="UOS_MQTT_VERSION",
            type=click.Choice(["5", "3.1.1"]),
            default="5",
            show_default=True,
            help="MQTT protocol version [UOS_MQTT_VERSION].",
        ),
    ]


TOPIC_OPTIONS = [
    click.option("--root", default="OPCPUBSUB", show_default=True, help="Topic root the units publish under."),
    click.option(
        "--result-topic", default="uos/keypoints/{toolbox}/{tool}", show_default=True, help="Where answers go."
    ),
    click.option("--error-topic", default="uos/errors/{toolbox}/{tool}", show_default=True, help="Where errors go."),
]


def build_connection(values: dict, **extra):
    from uos.serve.connection import Connection

    password = _password(values)
    return Connection.from_env(
        host=values["host"],
        port=values["port"],
        client_id=values["client_id"],
        username=values["username"],
        password=password,
        tls_ca=values["tls_ca"],
        version=values["mqtt_version"],
        **extra,
    )


def _password(values: dict) -> str | None:
    """The password: from --password-file, else --password / UOS_MQTT_PASSWORD. Given on the
    command line it is visible to every user of the machine (`ps`, /proc): a warning says so."""
    from click.core import ParameterSource

    from uos.commands.common import warn
    from uos.errors import UosError

    if values.get("password_file"):
        if values.get("password"):
            raise UosError("--password-file and --password (or UOS_MQTT_PASSWORD): give one")
        try:
            with open(values["password_file"], encoding="utf-8") as file:
                password = file.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise UosError(f"cannot read --password-file {values['password_file']}: {exc}") from None
        if not password:  # an empty file would log in without a password: refused by the broker, or worse, not
            raise UosError(f"--password-file {values['password_file']} is empty: its first line is the password")
        return password
    context = click.get_current_context(silent=True)
    if values.get("password") and context and context.get_parameter_source("password") == ParameterSource.COMMANDLINE:
        warn(
            "--password on the command line shows in `ps` to every user of this machine: "
            "use UOS_MQTT_PASSWORD or --password-file"
        )
    return values.get("password")
