"""Where MLflow keeps runs, and stores that cannot be used: a tracking server or database that is
down, a scheme MLflow has no store for, a deleted experiment. Each is one `Error:` line at once
(left to MLflow: four minutes of retries, then a traceback), and a relative SQLite URI is the
project's store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uos.serve.broker import free_port


def _uos(*args: str, cwd: Path, uri: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    full = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    full.update(MLFLOW_TRACKING_URI=uri, **env)
    started = time.perf_counter()
    result = subprocess.run(["uos", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)
    return result, time.perf_counter() - started


DOWN = {  # a store that does not answer -> the start of its one error line
    "server": ("http://127.0.0.1:{port}", "Error: the MLflow tracking server http://127.0.0.1:{port} does not answer"),
    "database": (
        "postgresql://mlflow:s3cret@127.0.0.1:{port}/mlflow",
        "Error: the MLflow database postgresql://mlflow:***@127.0.0.1:{port}/mlflow cannot be reached",
    ),
    "scheme": ("foo://bar", "Error: MLFLOW_TRACKING_URI foo://bar: MLflow has no store for foo:// URIs"),
}


@pytest.mark.parametrize("store", sorted(DOWN))
@pytest.mark.parametrize("command", [["promote"], ["report"], ["predict", "x.xls"]])
def test_a_store_that_cannot_be_used_is_one_error_line_at_once(tmp_path, store, command):
    port = free_port()  # nothing listens there
    uri, expected = (text.format(port=port) for text in DOWN[store])
    result, seconds = _uos(*command, cwd=tmp_path, uri=uri)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(expected) and "s3cret" not in result.stderr, lines
    assert seconds < 20, seconds


def test_summary_with_a_server_that_is_down_says_so_and_shows_the_rest(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    result, seconds = _uos("summary", cwd=tmp_path, uri=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 0 and seconds < 20, result.stderr
    (model,) = [line for line in result.stdout.splitlines() if line.startswith("Model")]
    assert "does not answer" in model and len(model) < 250, model


def test_a_deleted_experiment_stops_training_with_the_fix_and_nothing_else(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from uos.errors import UosError
    from uos.training import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment("gone"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "gone")
    with pytest.raises(UosError, match=r"^the MLflow experiment 'gone' was deleted: restore it"):
        tracking.configure_runs()
    # Reading the registry needs no experiment: promote, report and predict are not stopped by it.
    result, _ = _uos("promote", cwd=tmp_path, uri=uri, MLFLOW_EXPERIMENT_NAME="gone")
    assert result.returncode == 1 and result.stderr.startswith("Error: no candidate version of uos-depth"), (
        result.stderr
    )


def test_a_relative_sqlite_uri_is_the_project_s_store(tmp_path, monkeypatch):
    """MLflow's docs write `sqlite:///mlflow.db`: in a queued or --temp DVC experiment, relative to
    the temporary copy, its runs were deleted with it."""
    from uos.training import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///stores/mlflow.db")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "project"))
    assert tracking.tracking_uri() == f"sqlite:///{(tmp_path / 'project').resolve() / 'stores/mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'elsewhere.db'}"


def test_promote_names_the_figures_that_regress():
    from uos.training.tracking import _regressions

    new = {"cv_entry_mae_mean": 0.823, "cv_thickness_mae_mean": 0.05}
    old = {"cv_entry_mae_mean": 0.008, "cv_thickness_mae_mean": 0.077}
    assert _regressions(new, old) == ["entry 0.823 > 0.008 mm"]


def test_mlflow_ui_never_prints_a_password_and_names_the_server_to_tunnel_to():
    import servers

    env = servers.venv_env(MLFLOW_TRACKING_URI="http://team:s3cret@10.0.0.5:5000")
    result = subprocess.run(servers.just("mlflow-ui"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "s3cret" not in result.stdout + result.stderr, result.stdout
    assert "ssh -L 5000:127.0.0.1:5000 10.0.0.5, then open http://localhost:5000" in result.stdout
