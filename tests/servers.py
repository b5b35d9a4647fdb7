"""Real servers for tests: a throwaway PostgreSQL cluster (`initdb` + `pg_ctl` on a free port) and
the team's `mlflow server` on it, started by `just mlflow-server` as a user starts it.

    with servers.postgres() as cluster, servers.mlflow_server(cluster, tmp / "artifacts") as server:
        ...  # MLFLOW_TRACKING_URI=server.url

The cluster is started once per test session (the `postgres_cluster` fixture of conftest.py);
each module that needs a tracking server gets a database of its own on it (`database`), so
that modules never see each other's registry.

PostgreSQL refuses to run as root (CI runs as root): there, its data folder belongs to `nobody`
and `initdb`/`pg_ctl` run as that user, in a folder of the system's temporary directory (pytest's
own folders are private to root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import ROOT
from uos.serve.broker import free_port

UNPRIVILEGED_USER = "nobody"


def postgres_bin() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "pg_ctl").exists():  # a link on PATH: the real folder
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: _version(p.parent.parent.name))
    return versions[-1].parent if versions else None


def require_postgres() -> None:
    """Skip without PostgreSQL, unless UOS_REQUIRE_POSTGRES is set (CI: .ci/run installs it)."""
    if postgres_bin() is None:
        message = "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run installs it)"
        if os.environ.get("UOS_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _as_owner(args: list[str]) -> list[str]:
    """The command as the unprivileged user when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", UNPRIVILEGED_USER, "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres(database: str = "mlflow", user: str = "mlflow") -> Iterator[str]:
    """A PostgreSQL cluster of its own on 127.0.0.1 and a free port, trusting local connections;
    yields the URI of `database` (owned by superuser `user`), and removes everything at the end."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    home = Path(tempfile.mkdtemp(prefix="uos-pg-"))  # short: the socket path must fit in 107 bytes
    if os.geteuid() == 0:
        owner = pwd.getpwnam(UNPRIVILEGED_USER)
        os.chown(home, owner.pw_uid, owner.pw_gid)
    data, port = home / "data", free_port()

    def run(args: list[str]) -> None:
        result = subprocess.run(_as_owner(args), cwd=home, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = (home / "postgres.log").read_text() if (home / "postgres.log").exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}{log}")

    try:
        run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(home / "postgres.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )
        try:
            uri = f"postgresql://{user}@127.0.0.1:{port}/{database}"
            run(_createdb(uri, database))
            yield uri
        finally:
            run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _createdb(uri: str, name: str) -> list[str]:
    address = urllib.parse.urlparse(uri)
    command = ["-h", str(address.hostname), "-p", str(address.port), "-U", str(address.username), name]
    return [str(postgres_bin() / "createdb"), *command]


def database(cluster_uri: str, name: str) -> str:
    """A new, empty database `name` on the cluster of `cluster_uri` (owned by its user); its URI."""
    result = subprocess.run(_as_owner(_createdb(cluster_uri, name)), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"createdb {name} failed: {result.stdout}{result.stderr}")
    return urllib.parse.urlparse(cluster_uri)._replace(path=f"/{name}").geturl()


def venv_env(**extra: str) -> dict[str, str]:
    """The environment with this interpreter's scripts (mlflow, uos, just) first on PATH."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra)


def just(recipe: str, *args: str) -> list[str]:
    """A `just` recipe of the project, run in the current environment rather than through bin/run
    (which would set up the project's .venv first)."""
    return ["just", "--justfile", str(ROOT / "justfile"), "--set", "run", "env", recipe, *args]


def wait_for_health(url: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"no answer from {url}/health within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


class TrackingServer(NamedTuple):
    url: str  # http://127.0.0.1:PORT
    backend_uri: str
    artifacts: Path  # where the proxy stores what clients upload
    log: Path  # its output, with one access line per request


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, timeout: float = 120) -> Iterator[TrackingServer]:
    """`just mlflow-server PORT` on `backend_uri` with the artifact proxy into `artifacts`,
    ready once /health answers; stopped (with the processes it started) at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    artifacts.mkdir(parents=True, exist_ok=True)
    log = artifacts.parent / f"mlflow-server-{port}.log"
    env = venv_env(UOS_MLFLOW_BACKEND_URI=backend_uri, UOS_MLFLOW_ARTIFACTS=str(artifacts))
    with log.open("w") as out:
        # A session of its own: mlflow server starts uvicorn workers, stopped with it as a group.
        process = subprocess.Popen(
            just("mlflow-server", str(port), "--workers", "1"),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_health(url, process, timeout, log)
        yield TrackingServer(url, backend_uri, artifacts, log)
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group a test started; SIGKILL to what is left once its leader exits
    (or after 20 s)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)  # also whatever it started and left behind
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
