"""The team's tracking server: `just mlflow-server` on a throwaway PostgreSQL with the artifact
proxy, and `uos train`, `promote`, `predict` and `report` through it, the model loaded from the
proxied artifacts; `just mlflow-ui` with a server URI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

import servers
from conftest import ROOT
from uos.dataset.build import parse_dataset
from uos.labels.label import label_dataset
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams
from uos.training.folds import SplitParams, split_dataset


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    servers.require_postgres()
    home = tmp_path_factory.mktemp("tracking-server")
    with servers.postgres() as database, servers.mlflow_server(database, home / "artifacts") as server:
        yield server


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """24 synthetic holes, parsed, labelled and split in 3 folds."""
    root = tmp_path_factory.mktemp("team-project")
    synth = dataclasses.replace(SynthParams(), holes=24, seed=3, production_tool_life=6, lab_tool_life=6)
    synthesize(root / "raw", synth)
    parse_dataset([str(root / "raw")], root / "parsed", cache_root=root / "cache")
    label_dataset(root / "parsed", root / "labels")
    split_dataset(root / "parsed", root / "labels", root / "folds", SplitParams(k=3, life_block=0))
    return root


def _uos(server, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = servers.venv_env(MLFLOW_TRACKING_URI=server.url)
    return subprocess.run(["uos", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tracking_server, project):
    args = [
        "train",
        "parsed",
        "labels",
        "folds",
        "--out",
        "model",
        "--profile",
        "ci",
        "--params",
        str(ROOT / "params.toml"),
    ]
    result = _uos(tracking_server, project, *args)
    assert result.returncode == 0, result.stderr
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


def test_promote_predict_and_report_go_through_the_server(trained, tracking_server, project):
    promoted = _uos(tracking_server, project, "promote")
    assert promoted.returncode == 0 and "version 1 is now the champion" in promoted.stderr, promoted.stderr
    assert ("uos-depth", "champion", 1) in _query(
        tracking_server, "SELECT name, alias, version FROM registered_model_aliases"
    )

    files = sorted((project / "raw").glob("*.xls"))[:4]
    predicted = _uos(tracking_server, project, "predict", *map(str, files))  # the default: the champion
    assert predicted.returncode == 0, predicted.stderr
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(records) == len(files) and all(
        r["entry_mm"] is not None and r["status"] in ("ok", "review") for r in records
    )
    # The weights came from the proxied artifacts: the server logged the downloads.
    assert "/api/2.0/mlflow-artifacts/artifacts/" in tracking_server.log.read_text()

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
