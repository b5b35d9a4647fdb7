"""The team's tracking server: `just mlflow-server` on a throwaway PostgreSQL with the artifact
proxy, and `uos train`, `promote`, `predict` and `report` through it, the model loaded from the
proxied artifacts; `just mlflow-ui` with a server URI. And deploy/: the stack's healthchecks on
the real servers, its mosquitto configuration and `uos serve` environment answering a hole with
the champion, the systemd unit."""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import servers
from conftest import ROOT
from uos.dataset.build import parse_dataset
from uos.labels.label import label_dataset
from uos.serve.broker import find_mosquitto, free_port, listening
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams
from uos.training.folds import SplitParams, split_dataset


@pytest.fixture(scope="module")
def tracking_server(postgres_cluster, tmp_path_factory):
    home = tmp_path_factory.mktemp("tracking-server")
    with servers.mlflow_server(servers.database(postgres_cluster, "mlflow_server"), home / "artifacts") as server:
        yield server


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """24 synthetic holes, parsed, labelled and split in 2 folds."""
    root = tmp_path_factory.mktemp("team-project")
    synth = dataclasses.replace(SynthParams(), holes=24, seed=3, production_tool_life=6, lab_tool_life=6)
    synthesize(root / "raw", synth)
    parse_dataset([str(root / "raw")], root / "parsed", cache_root=root / "cache")
    label_dataset(root / "parsed", root / "labels")
    split_dataset(root / "parsed", root / "labels", root / "folds", SplitParams(k=2, life_block=0))
    return root


def _uos(server, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = servers.venv_env(MLFLOW_TRACKING_URI=server.url)
    return subprocess.run(["uos", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tracking_server, project):
    args = ["train", "parsed", "labels", "folds", "--out", "model", "--profile", "ci"]
    args += ["--params", str(ROOT / "params.toml")]
    result = _uos(tracking_server, project, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # MLflow's "View run ... at" links are not data
    return result


def _query(server, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(server.backend_uri) as connection:
        return connection.execute(sql).fetchall()


def test_training_through_the_server_lands_in_postgresql_and_behind_the_artifact_proxy(
    trained, tracking_server, project
):
    runs = _query(tracking_server, "SELECT run_uuid, artifact_uri, status FROM runs")
    assert runs and all(status == "FINISHED" for _, _, status in runs)
    assert all(uri.startswith("mlflow-artifacts:/") for _, uri, _ in runs), runs  # uploaded through the server
    aliases = _query(tracking_server, "SELECT name, alias, version FROM registered_model_aliases")
    assert aliases == [("uos-depth", "candidate", 1)]
    # The proxy wrote the model's files on the server's side; the project holds no store of its own.
    assert list(tracking_server.artifacts.rglob("MLmodel")) and list(tracking_server.artifacts.rglob("*.png"))
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()


@pytest.fixture(scope="module")
def promoted(trained, tracking_server, project):
    return _uos(tracking_server, project, "promote")


def test_promote_predict_and_report_go_through_the_server(promoted, tracking_server, project):
    assert promoted.returncode == 0 and "version 1 is now the champion" in promoted.stderr, promoted.stderr
    aliases = _query(tracking_server, "SELECT name, alias, version FROM registered_model_aliases")
    assert ("uos-depth", "champion", 1) in aliases

    files = sorted((project / "raw").glob("*.xls"))[:4]
    logged_before = len(tracking_server.log.read_text())
    predicted = _uos(tracking_server, project, "predict", *map(str, files))  # the default: the champion
    assert predicted.returncode == 0, predicted.stderr
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(records) == len(files)
    assert all(r["entry_mm"] is not None and r["status"] in ("ok", "review") for r in records), records
    # The weights came from the proxied artifacts: the server logged the downloads.
    assert '"GET /api/2.0/mlflow-artifacts/artifacts/' in tracking_server.log.read_text()[logged_before:]

    report = _uos(tracking_server, project, "report", "--width", "100")
    assert report.returncode == 0, report.stderr
    assert "champion v1" in report.stdout and "learning curve" in report.stdout


def test_mlflow_ui_with_a_server_uri_says_where_the_ui_is(tracking_server):
    env = servers.venv_env(MLFLOW_TRACKING_URI=tracking_server.url)
    result = subprocess.run(servers.just("mlflow-ui"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    port = tracking_server.url.rsplit(":", 1)[1]
    assert f"The tracking server {tracking_server.url} serves the MLflow UI" in result.stdout
    assert f"ssh -L {port}:127.0.0.1:{port} " in result.stdout
    with urllib.request.urlopen(tracking_server.url, timeout=10) as page:  # and it does
        assert page.status == 200 and b"<html" in page.read().lower()


def test_mlflow_server_without_a_database_is_a_clear_error():
    env = servers.venv_env()
    env.pop("UOS_MLFLOW_BACKEND_URI", None)
    result = subprocess.run(servers.just("mlflow-server", "5999"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.startswith("Error: set UOS_MLFLOW_BACKEND_URI to the team's database")


# --- deploy/: the team's stack and the systemd unit ---------------------------------------------

DEPLOY = ROOT / "deploy"


def _compose() -> dict:
    import yaml

    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _interpolated(value) -> str:
    """As compose reads a value without a .env file: ${VAR:-default} is the default, $$ a dollar."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value)).replace("$$", "$")


def _healthcheck(service: str, replace: tuple[str, str]) -> list[str]:
    """A service's healthcheck command, pointed at the servers of this test."""
    kind, *command = _compose()["services"][service]["healthcheck"]["test"]
    command = [_interpolated(part).replace(*replace) for part in command]
    return ["sh", "-c", command[0]] if kind == "CMD-SHELL" else command


def test_the_stack_s_healthchecks_pass_on_running_servers(tracking_server):
    database = urllib.parse.urlparse(tracking_server.backend_uri)
    postgres = _healthcheck("postgres", ("", ""))
    postgres = [str(servers.postgres_bin() / postgres[0]), *postgres[1:], "--host=127.0.0.1", f"--port={database.port}"]
    mlflow = _healthcheck("mlflow", ("http://127.0.0.1:5000", tracking_server.url))
    for command in (postgres, mlflow):
        result = subprocess.run(command, env=servers.venv_env(), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, (command, result.stdout, result.stderr)


@pytest.fixture
def stack_broker(tmp_path):
    """mosquitto with deploy/mosquitto.conf on a free port of 127.0.0.1, its files in tmp_path, and
    the user uos in its password file; yields (port, the file with uos's password)."""
    tools = [find_mosquitto(), shutil.which("mosquitto_passwd"), shutil.which("mosquitto_sub")]
    if None in tools:
        message = "mosquitto, mosquitto_passwd or mosquitto_sub is missing (Debian: mosquitto, mosquitto-clients)"
        if os.environ.get("UOS_REQUIRE_MOSQUITTO"):
            pytest.fail(message)
        pytest.skip(message)
    port, password = free_port(), "a pass phrase"
    (tmp_path / "mqtt_password").write_text(password + "\n")
    subprocess.run([tools[1], "-c", "-b", str(tmp_path / "passwd"), "uos", password], check=True, capture_output=True)
    config = (DEPLOY / "mosquitto.conf").read_text()
    for old, new in (
        ("listener 1883", f"listener {port} 127.0.0.1"),
        ("/run/secrets/mosquitto_passwd", str(tmp_path / "passwd")),
        ("/mosquitto/data/", f"{tmp_path}/"),
    ):
        assert old in config, old
        config = config.replace(old, new)
    # Started as root, mosquitto would hand over to a `mosquitto` user, who cannot read tmp_path.
    (tmp_path / "mosquitto.conf").write_text(f"{config}\nuser {getpass.getuser()}\n")
    with (tmp_path / "mosquitto.log").open("w") as log:
        process = subprocess.Popen([tools[0], "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while not listening("127.0.0.1", port):
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "mosquitto.log").read_text()
        time.sleep(0.05)
    yield port, tmp_path / "mqtt_password"
    process.terminate()
    process.wait(timeout=10)


def test_the_stack_s_serve_answers_a_hole_with_the_champion(promoted, tracking_server, project, stack_broker):
    """mosquitto as the stack configures it (refusing anonymous clients: its healthcheck), then
    `uos serve` with the stack's environment (its password from a file) answers a replayed hole
    with the champion from the tracking server, and exits 0 on SIGTERM."""
    port, password_file = stack_broker
    assert (
        subprocess.run(_healthcheck("mosquitto", ("-h 127.0.0.1", f"-h 127.0.0.1 -p {port}")), timeout=30).returncode
        == 0
    )
    service = _compose()["services"]["serve"]
    env = {name: _interpolated(value) for name, value in service["environment"].items()}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["UOS_MQTT_HOST"] == "mosquitto"
    env.update(
        MLFLOW_TRACKING_URI=tracking_server.url,
        UOS_MQTT_HOST="127.0.0.1",
        UOS_MQTT_PORT=str(port),
        UOS_MQTT_PASSWORD_FILE=str(password_file),
    )
    serve = subprocess.Popen(service["command"], env=servers.venv_env(**env), stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(serve.stderr), daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not any('"subscribed"' in line for line in list(lines)):
            assert serve.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        hole = sorted((project / "raw").glob("*.xls"))[0]
        replay_env = {k: v for k, v in env.items() if k != "UOS_MQTT_CLIENT_ID"}
        replay = subprocess.run(
            ["uos", "replay", str(hole)],
            env=servers.venv_env(**replay_env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replay.returncode == 0, replay.stderr + "".join(lines)
        answer = json.loads(replay.stdout.splitlines()[0])
        assert answer["model_version"] == "1" and answer["entry_mm"] is not None, answer
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=60)
    assert code == 0, "".join(lines)
    assert any('"model"' in line and '"version": "1"' in line for line in lines), "".join(lines)


def test_the_deploy_files_name_only_variables_serve_reads():
    from click.testing import CliRunner

    from uos.cli import main

    documented = set(re.findall(r"\[(UOS_[A-Z_]+)\]", CliRunner().invoke(main, ["serve", "--help"]).output))
    assert {"UOS_MQTT_HOST", "UOS_MQTT_PASSWORD_FILE", "UOS_MQTT_CLIENT_ID"} <= documented
    used = set(_compose()["services"]["serve"]["environment"])
    for name in ("uos-serve.env", "uos-serve.service"):
        used |= set(re.findall(r"^(?:Environment=)?(UOS_[A-Z_]+)=", (DEPLOY / name).read_text(), re.MULTILINE))
    assert "UOS_MQTT_PASSWORD_FILE" in used and {n for n in used if n.startswith("UOS_")} <= documented, used


def test_the_systemd_unit_is_valid():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (DEPLOY / "uos-serve.service").read_text()
    assert "ExecStart=/opt/uos/.venv/bin/uos serve" in unit and "Restart=on-failure" in unit
    # verify checks that ExecStart exists: point it at this environment's uos.
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "uos-serve.service"
        copy.write_text(unit.replace("/opt/uos/.venv/bin/uos", str(Path(sys.executable).parent / "uos")))
        result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
