"""How `uos serve` and `uos replay` reach the broker: one place for host, port, identity, TLS and
the MQTT version, read from options or `UOS_MQTT_*` environment variables.

Sessions are persistent (MQTT 5 session expiry, or clean_session off on 3.1.1) and subscriptions
QoS 1, so that what a unit publishes while a client is away waits for it at the broker. Nagle's
algorithm is off on the socket: left on, it delays every small message by 40-90 ms.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass, field, replace
from typing import Any

from uos.errors import UosError

SESSION_EXPIRY_S = 24 * 3600


@dataclass(frozen=True)
class Connection:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed: see describe()
    tls_ca: str | None = None
    version: str = "5"  # 5 or 3.1.1 (the in-process fallback broker speaks 3.1.1 only)
    keepalive: int = 15
    session_expiry_s: int = SESSION_EXPIRY_S  # how long the broker keeps a session (and queues for it) while away

    @classmethod
    def from_env(cls, **overrides: Any) -> Connection:
        """Defaults, then UOS_MQTT_* variables, then the given (non-None) overrides."""
        env = os.environ
        values: dict[str, Any] = {
            "host": env.get("UOS_MQTT_HOST"),
            "port": int(env["UOS_MQTT_PORT"]) if env.get("UOS_MQTT_PORT") else None,
            "username": env.get("UOS_MQTT_USERNAME"),
            "password": env.get("UOS_MQTT_PASSWORD"),
            "tls_ca": env.get("UOS_MQTT_CA"),
            "version": env.get("UOS_MQTT_VERSION"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        connection = replace(cls(), **{k: v for k, v in values.items() if v is not None})
        if connection.password and not connection.username:
            raise UosError("a password needs a username (--username or UOS_MQTT_USERNAME)")
        if connection.version not in ("5", "3.1.1"):
            raise UosError(f"MQTT version must be 5 or 3.1.1, not {connection.version!r}")
        return connection

    def describe(self) -> str:
        """For logs: where, as whom, how; never the password."""
        who = f"{self.username}@" if self.username else ""
        tls = " (TLS)" if self.tls_ca else ""
        return f"mqtt://{who}{self.host}:{self.port}{tls} MQTT {self.version}"

    def client(self, default_id: str, clean: bool = False):
        """A paho client for this connection (not yet connected), as `client_id` or else
        `default_id`. `clean`: a session that ends with the connection."""
        import paho.mqtt.client as mqtt

        client_id = self.client_id or default_id
        protocol = mqtt.MQTTv5 if self.version == "5" else mqtt.MQTTv311
        kwargs: dict[str, Any] = {"client_id": client_id, "protocol": protocol}
        if protocol == mqtt.MQTTv311:
            kwargs["clean_session"] = clean or self.session_expiry_s == 0
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls_ca:
            client.tls_set(ca_certs=self.tls_ca)
        client.reconnect_delay_set(min_delay=0.2, max_delay=5)
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)  # unlimited: nothing is dropped while the broker is away

        def no_delay(_client, _userdata, sock) -> None:
            with contextlib.suppress(OSError, AttributeError):  # not a TCP socket (e.g. a websocket)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        client.on_socket_open = no_delay
        client.uos_client_id = client_id
        client.uos_clean = clean
        return client

    def connect(self, client, clean: bool | None = None) -> None:
        """Start connecting (asynchronously: paho's loop retries with backoff until it succeeds)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        clean = client.uos_clean if clean is None else clean
        if self.version == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 0 if clean else self.session_expiry_s
            client.connect_async(self.host, self.port, self.keepalive, clean_start=clean, properties=properties)
        else:
            client.connect_async(self.host, self.port, self.keepalive)
        del mqtt


def wait_connected(client, timeout_s: float, what: str, connection: Connection) -> None:
    """Block until the client is connected, or raise a clear error."""
    import time

    deadline = time.monotonic() + timeout_s
    while not client.is_connected():
        if time.monotonic() > deadline:
            raise UosError(
                f"{what}: cannot reach the broker at {connection.describe()} within {timeout_s:g} s "
                "(is one running? `uos broker` starts one)"
            )
        time.sleep(0.02)
