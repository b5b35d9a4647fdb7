"""Train on a named data version: the data that `data.dvc` records at a git tag or commit, run
through the pipeline as a DVC experiment in a temporary copy of the project, tracked in a named
MLflow experiment with the version on the run (`data_version`). The workspace's `data.dvc` and
`data/` are left as they were."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


def version_name(root: Path, rev: str, data_file: str) -> str:
    """What the run calls the data of `rev`: `rev` when it is a tag, else the oldest tag whose
    data.dvc records the same data, else the commit's short hash (`HEAD~1` or a branch name would
    mean something else tomorrow)."""
    import yaml

    if tracking.git_output(root, "show-ref", "--verify", "--quiet", f"refs/tags/{rev}") is not None:
        return rev
    outs = (yaml.safe_load(data_file) or {}).get("outs") or [{}]
    md5 = outs[0].get("md5")
    tag = tracking.tag_of_data(md5, root) if md5 else None
    return tag or tracking.git_output(root, "rev-parse", "--short", f"{rev}^{{commit}}") or rev


def _workspace_problem(root: Path) -> str | None:
    """Why data/ is not what data.dvc records, or None: not there at all (a fresh clone, before
    `dvc pull`), or changed since."""
    status = _dvc(root, "status", "--json", DATA_FILE)
    if status.returncode == 0 and status.stdout.strip() in ("", "{}"):
        return None
    try:
        changes = json.loads(status.stdout or "{}").get(DATA_FILE, [])
        states = {state for change in changes for state in change.get("changed outs", {}).values()}
    except (ValueError, AttributeError):
        states = set()
    if states and states <= {"not in cache", "deleted"}:
        return f"data/ is not here: `dvc pull` (or `dvc checkout {DATA_FILE}`) first"
    return (
        f"data/ has changes that {DATA_FILE} does not record: `dvc add data` first "
        f"(or `dvc checkout {DATA_FILE}` to drop them)"
    )


class Stopped(Exception):
    """SIGTERM or SIGHUP (a closed terminal, a dropped SSH connection) while the data was switched."""


@contextmanager
def _stops_are_exceptions() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Stopped`, as Ctrl-C raises KeyboardInterrupt: either way the
    workspace's data.dvc and data/ are put back before the process ends."""

    def stop(number, _frame):
        raise Stopped(signal.Signals(number).name)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _run_of(experiment: str, data_version: str) -> DataVersionRun:
    """The latest run of the experiment that trained on the data version, and its model version."""
    tracking.configure()
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
    into the MLflow experiment `experiment`, with `data_version` (`version_name` of `rev`) on the run. `settings`
    are `dvc exp run -S` overrides (e.g. `train.epochs=60`)."""
    root = tracking.project_root(root)
    data_file = root / DATA_FILE
    if not data_file.is_file():
        raise UosError(f"no {DATA_FILE} in {root}: the data is not versioned with DVC here")
    if problem := _workspace_problem(root):
        raise UosError(problem)
    wanted = _data_file_at(root, rev)
    name = version_name(root, rev, wanted)
    saved = data_file.read_text()
    env = dict(os.environ, MLFLOW_EXPERIMENT_NAME=experiment, **{tracking.DATA_VERSION_ENV: name})
    try:
        with _stops_are_exceptions():
            data_file.write_text(wanted)
            say(f"data of {rev} ({name}) checked out; running the pipeline as a DVC experiment in a temporary copy")
            _check_out_data(root, rev)
            overrides = [arg for setting in settings for arg in ("-S", setting)]
            ran = _dvc(root, "exp", "run", "--temp", "--force", *overrides, env=env, show=True)
    except Stopped as stopped:
        raise UosError(f"stopped ({stopped}): the workspace's {DATA_FILE} and data/ are as they were") from None
    finally:
        data_file.write_text(saved)
        restored = _dvc(root, "checkout", "--quiet", DATA_FILE)
        if restored.returncode != 0:
            say(f"could not restore data/ to {DATA_FILE} ({_first_error(restored)}): run `dvc checkout {DATA_FILE}`")
    if ran.returncode != 0:
        raise UosError(f"the DVC experiment on the data of {rev} failed (dvc exp run exit {ran.returncode}, see above)")
    return _run_of(experiment, name)
