"""Train on a named data version: the data that `data.dvc` records at a git tag or commit, run
through the pipeline as a DVC experiment in a temporary copy of the project, tracked in a named
MLflow experiment with the version on the run (`data_version`). The workspace's `data.dvc` and
`data/` are left as they were."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from uos.errors import UosError
from uos.training import tracking

DATA_FILE = "data.dvc"


@dataclass(frozen=True)
class DataVersionRun:
    data_version: str
    experiment: str
    run_id: str
    model_version: str | None


def _dvc(root: Path, *args: str, env: dict[str, str] | None = None, show: bool = False) -> subprocess.CompletedProcess:
    """A DVC command of the same environment; its output on our stderr when `show`, else kept."""
    output = {"stdout": 2, "stderr": 2} if show else {"capture_output": True, "text": True}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, check=False, **output)


def _first_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("ERROR")), lines[-1] if lines else "failed")


def _data_file_at(root: Path, rev: str) -> str:
    """The text of data.dvc at a git revision."""
    if tracking.git_output(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}") is None:
        raise UosError(f"no git tag or commit {rev!r} in {root}")
    shown = tracking.git_output(root, "show", f"{rev}:{DATA_FILE}")
    if shown is None:
        raise UosError(f"{rev} has no {DATA_FILE}: no data version there")
    return shown + "\n"  # (git_output strips the text's last newline)


def _check_out_data(root: Path, rev: str) -> None:
    """Make the data that data.dvc records present in data/ (from the cache, else the remote)."""
    if _dvc(root, "checkout", "--quiet", DATA_FILE).returncode == 0:
        return
    pulled = _dvc(root, "pull", "--quiet", DATA_FILE)
    if pulled.returncode != 0:
        raise UosError(f"the data of {rev} is neither in the DVC cache nor on a remote ({_first_error(pulled)})")


def _run_of(experiment: str, data_version: str) -> DataVersionRun:
    """The latest run of the experiment that trained on the data version, and its model version."""
    tracking.configure(experiment=experiment)
    client = tracking.client()
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=50)
    run = next((r for r in runs if r.data.tags.get("data_version") == data_version), None)
    if run is None:
        raise UosError(f"the experiment ran but no run in MLflow experiment {experiment} trained on {data_version}")
    versions = client.search_model_versions(f"name = '{tracking.MODEL_NAME}' AND run_id = '{run.info.run_id}'")
    return DataVersionRun(data_version, experiment, run.info.run_id, str(versions[0].version) if versions else None)


def train_data_version(
    rev: str,
    experiment: str,
    settings: Sequence[str] = (),
    root: Path | None = None,
    say: Callable[[str], None] = print,
) -> DataVersionRun:
    """Run the whole pipeline (forced: DVC's run cache would otherwise restore an earlier training
    instead of tracking a new run) on the data of `rev` as a DVC experiment in a temporary copy,
    into the MLflow experiment `experiment`, with `data_version` = `rev` on the run. `settings`
    are `dvc exp run -S` overrides (e.g. `train.epochs=60`)."""
    root = tracking.project_root(root)
    data_file = root / DATA_FILE
    if not data_file.is_file():
        raise UosError(f"no {DATA_FILE} in {root}: the data is not versioned with DVC here")
    status = _dvc(root, "status", "--json", DATA_FILE)
    if status.returncode != 0 or status.stdout.strip() not in ("", "{}"):
        raise UosError(
            f"data/ has changes that {DATA_FILE} does not record: `dvc add data` first "
            f"(or `dvc checkout {DATA_FILE}` to drop them)"
        )
    wanted = _data_file_at(root, rev)
    saved = data_file.read_text()
    env = dict(os.environ, MLFLOW_EXPERIMENT_NAME=experiment, **{tracking.DATA_VERSION_ENV: rev})
    try:
        data_file.write_text(wanted)
        say(f"data of {rev} checked out; running the pipeline as a DVC experiment in a temporary copy")
        _check_out_data(root, rev)
        overrides = [arg for setting in settings for arg in ("-S", setting)]
        ran = _dvc(root, "exp", "run", "--temp", "--force", *overrides, env=env, show=True)
    finally:
        data_file.write_text(saved)
        restored = _dvc(root, "checkout", "--quiet", DATA_FILE)
        if restored.returncode != 0:
            say(f"could not restore data/ to {DATA_FILE} ({_first_error(restored)}): run `dvc checkout {DATA_FILE}`")
    if ran.returncode != 0:
        raise UosError(f"the DVC experiment on the data of {rev} failed (dvc exp run exit {ran.returncode}, see above)")
    return _run_of(experiment, rev)
