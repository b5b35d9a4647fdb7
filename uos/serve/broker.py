"""`uos broker`: a local MQTT broker for trying things out, bound to 127.0.0.1.

Mosquitto when it is installed (persistent sessions, MQTT 5, shared subscriptions, Nagle off),
else amqtt in this process (MQTT 3.1.1 only: run serve and replay with --mqtt-version 3.1.1).
A shop runs its own broker; this is for a laptop, the demo and a first look.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from uos.errors import UosError

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if Path(p).is_file()), None)


def listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.3)
        return probe.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mosquitto_config(port: int, data_dir: Path, bind: str = "127.0.0.1") -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    return "\n".join(
        [
            f"listener {port} {bind}",
            "allow_anonymous true",
            f"user {getpass.getuser()}",  # started as root, mosquitto would switch to a user who cannot write here
            "set_tcp_nodelay true",  # else every small message waits 40-90 ms (Nagle)
            "persistence true",  # sessions and queued QoS 1 messages survive a restart
            f"persistence_location {data_dir}/",
            "autosave_interval 1",
            "max_queued_messages 0",  # a client away for a while gets everything when back
            "max_inflight_messages 100",
            "log_dest stderr",
            "log_type error",
            "",
        ]
    )


def start_mosquitto(port: int, data_dir: Path, stderr=None) -> subprocess.Popen:
    """Mosquitto in the background (tests, the demo); the caller stops it."""
    binary = find_mosquitto()
    if binary is None:
        raise UosError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    config = data_dir / "mosquitto.conf"
    data_dir.mkdir(parents=True, exist_ok=True)
    config.write_text(mosquitto_config(port, data_dir))
    process = subprocess.Popen([binary, "-c", str(config)], stderr=stderr, stdout=subprocess.DEVNULL)
    import time

    deadline = time.monotonic() + 10
    while not listening("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise UosError(f"mosquitto did not start on 127.0.0.1:{port}")
        time.sleep(0.02)
    return process


def run_broker(port: int, data_dir: Path, engine: str = "auto", say=print) -> int:
    """Run a broker in the foreground until Ctrl-C or SIGTERM."""
    if listening("127.0.0.1", port):
        raise UosError(f"something already listens on 127.0.0.1:{port} (a broker?): use it, or --port another")
    if engine in ("auto", "mosquitto") and find_mosquitto():
        process = start_mosquitto(port, data_dir)
        say(f"mosquitto on 127.0.0.1:{port} (MQTT 5 and 3.1.1; data in {data_dir}); Ctrl-C stops it")

        def stop(*_):
            process.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        return process.wait()
    if engine == "mosquitto":
        raise UosError("mosquitto is not installed (Debian: apt-get install mosquitto)")
    return _run_amqtt(port, say)


def _run_amqtt(port: int, say) -> int:
    import asyncio
    import logging

    from amqtt.broker import Broker

    logging.getLogger("amqtt").setLevel(logging.WARNING)
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}}

    async def main() -> None:
        broker = Broker(config)
        await broker.start()
        say(f"amqtt (in-process, MQTT 3.1.1 only: use --mqtt-version 3.1.1) on 127.0.0.1:{port}; Ctrl-C stops it")
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stopped.set)
        await stopped.wait()
        await broker.shutdown()

    asyncio.run(main())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_broker(int(sys.argv[1]), Path(sys.argv[2])))
