"""An annotation session ends versioned and tracked: DVC adds `data/` (annotations inside), and
one MLflow run in its own experiment has the counts, the time, the mean shift of the moved
keypoints and the md5 that DVC recorded. Real git, DVC and MLflow (a SQLite store in tmp)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import labelled_project
from uos.annotate.app import make_app
from uos.annotate.session import AnnotationSession, open_session
from uos.annotate.tracking import EXPERIMENT, finish_session
from uos.labels import annotations as human


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return labelled_project(tmp_path_factory.mktemp("tracked"))


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A throwaway MLflow store, and a client on it."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri, uri)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _dvc(args: list[str], cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _dvc_repo(root: Path) -> Path:
    """A git + DVC repo whose data/ (a raw file and the annotations folder) data.dvc tracks."""
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(["init", "-q"], root)
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "one.txt").write_text("a raw file\n")
    human.ensure_folder(root / "data" / "annotations")
    _dvc(["add", "-q", "data"], root)
    return root


def _md5_of_dvc_add(folder: Path, root: Path) -> str:
    """What `dvc add` records for a copy of `folder` tracked on its own."""
    root.mkdir()
    _dvc(["init", "-q", "--no-scm"], root)
    shutil.copytree(folder, root / folder.name)
    _dvc(["add", "-q", folder.name], root)
    return _recorded_md5(root / f"{folder.name}.dvc")


def _recorded_md5(dvc_file: Path) -> str:
    return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]


def _session(project: Path, notes: Path) -> AnnotationSession:
    session = open_session(project / "parsed", project / "labels", notes, "alice", None)
    session.clock = FakeClock()
    session.started = session.clock()
    return session


def test_a_session_is_one_mlflow_run_with_its_counts_shift_and_dvc_md5(project, tmp_path, store):
    repo = _dvc_repo(tmp_path / "repo")
    before = _recorded_md5(repo / "data.dvc")
    notes = repo / "data" / "annotations"
    session = _session(project, notes)
    entry, transition = (session.points()[k].depth_mm for k in ("entry", "transition"))
    target = round(entry + min(0.25, (transition - entry) / 2), 3)

    async def script(pilot):
        session.set_cursor(target)
        await pilot.press("e", "n")  # the first hole: its entry moved
        session.clock.now += 30
        await pilot.press("a", "n")  # the second: accepted as shown
        session.clock.now += 60
        await pilot.press("r", *"broken tool", "enter")  # the third: rejected
        await pilot.pause()

    async def go():
        async with make_app(session).run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            await script(pilot)

    asyncio.run(go())
    lines = finish_session(session.stats(), project / "parsed", notes)
    print("\n".join(lines))

    (run,) = store.search_runs([store.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert f"run {run.info.run_id}" in lines[-1], lines
    metrics = run.data.metrics
    assert {k: metrics[k] for k in ("holes_reviewed", "holes_changed", "holes_accepted", "holes_rejected")} == {
        "holes_reviewed": 3,
        "holes_changed": 1,
        "holes_accepted": 1,
        "holes_rejected": 1,
    }
    assert metrics["keypoints_moved"] == 1 and metrics["mean_shift_mm"] == pytest.approx(target - entry, abs=2e-3)
    assert metrics["session_minutes"] == 1.5 and metrics["holes_per_minute"] == 2.0
    assert run.info.end_time - run.info.start_time == pytest.approx(90_000, abs=5)  # the UI's duration
    assert run.data.tags["annotator"] == run.data.tags["mlflow.user"] == "alice"
    assert run.data.tags["dataset"] == str(project / "parsed")
    # The md5s are those DVC recorded: data.dvc's, and what `dvc add` of the annotations records.
    assert run.data.tags["data_md5"] == _recorded_md5(repo / "data.dvc") != before
    assert run.data.params["annotations_md5"] == _md5_of_dvc_add(notes, tmp_path / "alone")
    assert store.get_experiment_by_name(EXPERIMENT).tags["mlflow.experimentKind"] == "custom_model_development"
    everywhere = store.search_runs([e.experiment_id for e in store.search_experiments()])
    assert [r.info.run_id for r in everywhere] == [run.info.run_id]  # none among the training runs


def test_undone_changes_are_not_reviewed_and_an_empty_session_logs_nothing(project, tmp_path, store):
    notes = tmp_path / "notes"
    session = _session(project, notes)
    session.set_cursor(session.points()["exit"].depth_mm)
    session.set_point("exit")
    assert (notes / human.file_name(session.hole_id)).exists()
    session.undo()
    assert session.stats().reviewed == 0
    assert finish_session(session.stats(), project / "parsed", notes) == [
        "Nothing reviewed in this session: nothing versioned, no MLflow run."
    ]
    assert store.get_experiment_by_name(EXPERIMENT) is None
    session.next()
    session.clear_point("exit")  # marked absent: a change, no keypoint moved
    stats = session.stats()
    assert (stats.reviewed, stats.changed, stats.moved, stats.mean_shift_mm) == (1, 1, 0, None)
    assert "mean_shift_mm" not in stats.metrics()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_tracking_server_costs_one_warning_and_no_annotation(project, tmp_path, monkeypatch):
    uri = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    notes = tmp_path / "notes"  # in no DVC repo: nothing to version
    session = _session(project, notes)
    session.reject("not a stack")
    started = time.monotonic()
    lines = finish_session(session.stats(), project / "parsed", notes)
    assert time.monotonic() - started < 30  # (MLflow's own retries take minutes)
    print(lines[0])
    assert len(lines) == 1 and lines[0].startswith(f"Warning: this session was not tracked in MLflow ({uri}: ")
    assert lines[0].endswith("your annotations are saved.")
    assert human.load(notes)[session.hole_id].rejected == "not a stack"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the quick settings do not outlive the call


def test_the_default_annotator_is_the_login_name(monkeypatch):
    monkeypatch.delenv("UOS_ANNOTATOR", raising=False)
    monkeypatch.setenv("LOGNAME", "zoe")
    assert human.default_annotator() == "zoe"
    monkeypatch.setenv("UOS_ANNOTATOR", "alice")
    assert human.default_annotator() == "alice"


def test_the_command_logs_the_session_it_ran_and_says_so_on_stderr(project, tmp_path, store, monkeypatch):
    """`uos annotate` from the command line: the app (a stand-in here, which rejects the first
    hole as a user would with `r`) returns, and the run is in MLflow under --annotator."""
    from click.testing import CliRunner

    import uos.annotate.app
    from uos.cli import main

    class OneRejection:
        def __init__(self, session: AnnotationSession):
            self.session = session

        def run(self) -> None:
            self.session.reject("broken tool")

    monkeypatch.setattr(uos.annotate.app, "make_app", OneRejection)
    monkeypatch.chdir(tmp_path)  # (the resume state goes to ./.uos)
    args = ["--data", str(project / "parsed"), "--labels", str(project / "labels"), "--annotations", "notes"]
    result = CliRunner().invoke(main, ["annotate", *args, "--annotator", "bob"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # messages on stderr
    (run,) = store.search_runs([store.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert run.data.tags["annotator"] == "bob" and run.data.metrics["holes_rejected"] == 1
    assert f"Session logged in MLflow (experiment {EXPERIMENT}, run {run.info.run_id})" in result.stderr


def test_the_session_and_its_tracking_import_no_ui_and_no_mlflow():
    """The domain modules stay headless: Textual, MLflow and DVC load only when needed."""
    code = "import sys, uos.annotate.session, uos.annotate.tracking; print(*{m.split('.')[0] for m in sys.modules})"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not {"textual", "mlflow", "dvc"} & set(loaded.split()), loaded
