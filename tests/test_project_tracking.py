"""MLflow tied to the project, not the shell, on one tiny DVC project trained once: a queued DVC
experiment tracks into the project's store and leaves `candidate` alone; a named data version
trains into a named experiment; a moved project keeps its artifacts readable.

The tests share the project and run in file order: the data version's, last, commits new data."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from uos.labels.annotations import ensure_folder
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams

PROJECT_FILES = ["dvc.yaml", "params.toml", ".dvcignore", ".gitignore"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """A command as a user runs it in the project: the project's own store, no experiment chosen."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.update(GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com")
    env.update(GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "DVC_ROOT", "UOS_DATA_VERSION"):
        env.pop(name, None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _tiny_params(path: Path) -> None:
    """Two folds, one epoch, small batches: the quickest pipeline that still trains."""
    text = path.read_text()
    for old, new in (
        ("\nk = 5 ", "\nk = 2 "),
        ("\nlife_block = 20 ", "\nlife_block = 0 "),
        ("\nepochs = 40", "\nepochs = 1"),
        ("\nbatch_size = 32", "\nbatch_size = 16"),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text)


def _client(project: Path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_store_is_at_the_project_root_from_any_folder_of_it(tmp_path, monkeypatch):
    from uos.training import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (tmp_path / "project" / "build" / "model").mkdir(parents=True)
    (tmp_path / "project" / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path / "project" / "build" / "model")
    assert tracking.tracking_uri() == f"sqlite:///{(tmp_path / 'project').resolve() / 'mlflow.db'}"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "elsewhere"))  # as DVC sets it for a queued experiment
    assert tracking.project_root() == (tmp_path / "elsewhere").resolve()
    monkeypatch.delenv("DVC_ROOT")
    monkeypatch.chdir(tmp_path)  # no project here: the current folder
    assert tracking.project_root() == tmp_path.resolve()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC project with 16 synthetic holes, committed, `dvc repro`-ed and committed again,
    that commit tagged v1 (its data)."""
    root = tmp_path_factory.mktemp("project")
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "uos", root / "uos", ignore=shutil.ignore_patterns("__pycache__"))
    _tiny_params(root / "params.toml")
    synthesize(root / "data" / "raw", SynthParams(holes=16, seed=3, production_tool_life=4, lab_tool_life=4))
    ensure_folder(root / "data" / "annotations")
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "add", "-q", "data"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "data"],
        ["dvc", "repro"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "trained"],
        ["git", "tag", "v1"],
    ):
        _ok(_run(command, root))
    return root


def test_repro_ran_every_stage_into_the_project_store_with_lineage_then_is_a_no_op(project):
    for output in ("parsed/holes.parquet", "labels/labels.parquet", "folds/folds.parquet", "model/weights.pt"):
        assert (project / "build" / output).exists(), output
    details = json.loads((project / "build/model/details.json").read_text())
    assert "model" not in details  # the run id and version are MLflow's: nothing volatile in a DVC output
    metrics = json.loads((project / "metrics/train.json").read_text())
    assert set(metrics["cv_mae"]) == {"entry", "transition", "exit", "thickness"} and "baseline_mae" in metrics
    assert (project / "mlflow.db").is_file()

    # The registered model records the data it came from, as DVC hashed it.
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    labels_md5 = next(o["md5"] for o in lock["label"]["outs"] if o["path"] == "build/labels/labels.parquet")
    data_md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    tags = _client(project).get_model_version_by_alias("uos-depth", "candidate").tags
    assert tags["labels_md5"] == labels_md5 and tags["data_md5"] == data_md5
    assert tags["git_commit"] and tags["parsed_md5"]

    started = time.perf_counter()
    again = _ok(_run(["dvc", "repro"], project))
    elapsed = time.perf_counter() - started
    assert "Data and pipelines are up to date." in again
    assert elapsed < 4.0, f"no-op dvc repro took {elapsed:.1f} s"


def _wait_for_queue(project: Path, name: str, timeout: float = 240) -> str:
    """`dvc queue status` once nothing is queued or running, asked when the experiment's git ref
    is there (checked each second: git is quick) or every 10 s (DVC starts slowly)."""
    deadline = time.monotonic() + timeout
    for second in range(int(timeout)):
        if second % 10 == 9 or _ok(_run(["git", "for-each-ref", f"refs/exps/**/{name}"], project)).strip():
            status = _ok(_run(["dvc", "queue", "status"], project))
            if "Queued" not in status and "Running" not in status:
                return status
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    _run(["dvc", "queue", "stop", "--kill"], project)
    pytest.fail(f"the queued experiment did not finish in {timeout} s")


def test_a_queued_experiment_tracks_into_the_project_and_leaves_candidate(project):
    client = _client(project)
    first = client.get_model_version_by_alias("uos-depth", "candidate")
    plain = client.get_run(first.run_id).data.tags
    head, before = _ok(_run(["git", "rev-parse", "HEAD", "HEAD~1"], project)).split()
    # A plain `dvc repro`: the standard commit tag, the data's md5 as its version (no tag yet).
    assert plain["mlflow.source.git.commit"] == before and "dvc_experiment" not in plain
    # A clean tree: the metrics DVC removes before it runs a stage, and dvc.lock, are no changes.
    assert plain["git_commit"] == before
    assert (
        plain["data_version"]
        == plain["data_md5"]
        == yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    )

    _ok(_run(["dvc", "exp", "run", "--queue", "--name", "trial-one", "-S", "params.toml:train.epochs=2"], project))
    _ok(_run(["dvc", "queue", "start"], project))
    status = _wait_for_queue(project, "trial-one")
    assert "Success" in status, status + _run(["dvc", "queue", "logs", "trial-one"], project).stdout

    # The run lives in the project's store (the temporary copy it trained in is gone), and its
    # version is registered, tagged with the experiment, without moving candidate.
    assert client.get_model_version_by_alias("uos-depth", "candidate").version == first.version
    versions = client.search_model_versions("name = 'uos-depth' AND tag.dvc_experiment = 'trial-one'")
    assert len(versions) == 1
    run = client.get_run(versions[0].run_id)
    assert run.data.params["epochs"] == "2"
    assert run.data.tags["dvc_experiment"] == "trial-one" and run.data.tags["dvc_baseline_rev"] == head
    assert run.data.tags["mlflow.source.git.commit"] == head
    assert run.data.tags["data_version"] == "v1"  # the project's tag of the same data.dvc
    assert run.info.artifact_uri.startswith((project / "mlruns").as_uri())
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"


def _artifact_paths(db: Path) -> list[str]:
    from uos.training.relocate import ARTIFACT_COLUMNS

    with sqlite3.connect(db) as connection:
        return [
            value
            for table, column, _ in ARTIFACT_COLUMNS
            for (value,) in connection.execute(f"SELECT {column} FROM {table}")
            if value
        ]


def _dvc_scratch(folder: str, names: list[str]) -> list[str]:
    """DVC's scratch space (.dvc/tmp), left out of a copy: the queue's worker may still be tidying it."""
    return ["tmp"] if Path(folder).name == ".dvc" else []


def test_a_moved_project_keeps_its_artifacts_readable(project, tmp_path):
    from mlflow.artifacts import download_artifacts

    from uos.training.relocate import follow_moved_project

    shutil.copytree(project, tmp_path / "before", symlinks=True, ignore=_dvc_scratch)
    moved = Path(shutil.move(tmp_path / "before", tmp_path / "after"))
    hole = sorted((moved / "data" / "raw").glob("*.xls"))[0]
    answer = _run(["uos", "predict", str(hole), "--model", "models:/uos-depth@candidate"], moved)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["status"] in ("ok", "review")  # the model loaded and answered
    assert answer.stderr.count("MLflow store: the project moved") == 1, answer.stderr
    assert all(str(tmp_path / "before") not in value for value in _artifact_paths(moved / "mlflow.db"))
    assert all(
        str(moved) in value for value in _artifact_paths(moved / "mlflow.db") if not value.startswith("models:/")
    )

    version = _client(moved).get_model_version_by_alias("uos-depth", "candidate")
    curve = download_artifacts(
        run_id=version.run_id,
        artifact_path="plots/learning_curve_mean.csv",
        tracking_uri=f"sqlite:///{moved / 'mlflow.db'}",
        dst_path=str(tmp_path / "got"),
    )
    assert Path(curve).read_text().startswith("epoch,")
    assert follow_moved_project(moved / "mlflow.db", moved / "mlruns") == 0  # done once


def test_a_named_data_version_trains_into_a_named_experiment(project):
    client = _client(project)
    v1 = client.get_run(client.get_model_version_by_alias("uos-depth", "candidate").run_id)
    # The team moves on: a hole less, committed.
    (sorted((project / "data" / "raw").glob("*.xls"))[0]).unlink()
    for command in (["dvc", "add", "-q", "data"], ["git", "commit", "-qam", "a hole less"]):
        _ok(_run(command, project))
    data_file = (project / "data.dvc").read_text()
    files = sorted(p.name for p in (project / "data" / "raw").iterdir())

    ran = _run(["uos", "train-data-version", "v1", "--experiment", "drilling_v1", "-S", "train.epochs=2"], project)
    assert ran.returncode == 0, ran.stderr
    facts = json.loads(ran.stdout)
    run = client.get_run(facts["run_id"])
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "drilling_v1" and experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.data.tags["data_version"] == "v1" and run.data.tags["data_md5"] == v1.data.tags["data_md5"]
    assert run.data.params["holes"] == v1.data.params["holes"] and run.data.params["epochs"] == "2"
    assert client.get_model_version_by_alias("uos-depth", "candidate").run_id == v1.info.run_id
    # The workspace is as it was.
    assert (project / "data.dvc").read_text() == data_file
    assert sorted(p.name for p in (project / "data" / "raw").iterdir()) == files
    assert _ok(_run(["dvc", "status", "--json", "data.dvc"], project)).strip() == "{}"

    unknown = _run(["uos", "train-data-version", "v9", "--experiment", "drilling_v9"], project)
    assert unknown.returncode == 1 and "Error: no git tag or commit 'v9'" in unknown.stderr

    # A revision is recorded by what lasts: its tag, or that of the same data, else its commit.
    from uos.training.data_version import version_name

    assert version_name(project, "HEAD~1", _ok(_run(["git", "show", "HEAD~1:data.dvc"], project))) == "v1"
    short = _ok(_run(["git", "rev-parse", "--short", "HEAD"], project)).strip()
    assert version_name(project, "HEAD", data_file) == short


def test_a_data_version_run_stopped_by_a_hangup_puts_the_workspace_back(project):
    """A closed terminal or a dropped SSH connection (SIGHUP) while the data of another version is
    checked out: the workspace's data.dvc and data/ are put back, as after Ctrl-C."""
    import signal

    data_file = (project / "data.dvc").read_text()
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen(
        ["uos", "train-data-version", "v1", "--experiment", "hangup"],
        cwd=project,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in process.stderr:  # until the other version's data is checked out and DVC runs
        seen.append(line)
        if "checked out; running the pipeline" in line:
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGHUP)
    seen += process.stderr.readlines()
    assert process.wait(timeout=120) == 1, "".join(seen)
    assert seen[-1].startswith("Error: stopped (SIGHUP): the workspace's data.dvc and data/ are as they were"), seen
    assert (project / "data.dvc").read_text() == data_file
    assert _ok(_run(["dvc", "status", "--json", "data.dvc"], project)).strip() == "{}"
