"""Folds and the final model trained in worker processes: the same numbers whatever the number of
workers, the worker count chosen from the cores and the load, and Ctrl-C, kill -9 and a dead
worker handled, on a small synthetic set with real PyTorch and a real MLflow store."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from uos import cores
from uos.dataset.build import parse_dataset
from uos.labels.label import label_dataset
from uos.params import load_params
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams
from uos.training.folds import SplitParams, split_dataset
from uos.training.train import TrainParams

QUICK = load_params(TrainParams, "train", ROOT / "params.toml").with_profile("ci")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """36 synthetic holes parsed, labelled and split in 3 folds, and a params.toml beside them."""
    root = tmp_path_factory.mktemp("parallel")
    synthesize(root / "raw", dataclasses.replace(SynthParams(), holes=36, seed=5, production_tool_life=6))
    parse_dataset([str(root / "raw")], root / "parsed", cache_root=root / "cache")
    label_dataset(root / "parsed", root / "labels")
    split_dataset(root / "parsed", root / "labels", root / "folds", SplitParams(k=3, life_block=0))
    (root / "params.toml").write_text((ROOT / "params.toml").read_text())
    return root


def _examples(project: Path):
    from uos.dataset.layout import load_holes
    from uos.labels.table import read_labels
    from uos.training.folds import read_folds

    folds = read_folds(project / "folds")
    holes = load_holes(project / "parsed", ["depth_mm", "torque_a", "thrust_a"], hole_ids=list(folds["hole_id"]))
    from uos.training.train import build_examples

    examples = build_examples([h for h in holes if h.signals], read_labels(project / "labels"), QUICK)
    fold_of = dict(zip(folds["hole_id"], folds["fold"], strict=True))
    return examples, np.array([fold_of[h] for h in examples.hole_ids])


def _recorder(into: list[int]):
    return lambda fold, errors, history: into.append(fold)


def test_the_numbers_are_the_same_whatever_the_number_of_workers(project):
    """Here one after the other, then on 2 and 4 worker processes: the same out-of-fold answers,
    histories and final weights, bit for bit; each fold's nested-run callback in fold order."""
    from uos.training.parallel import train_all

    examples, folds = _examples(project)
    params = dataclasses.replace(QUICK, epochs=3)
    base = params.model_config()
    runs = {}
    for workers in (1, 2, 4):
        called: list[int] = []
        lines: list[str] = []
        runs[workers] = train_all(
            examples, folds, params, base, workers, progress=lines.append, on_fold=_recorder(called)
        )
        assert called == [0, 1, 2], (workers, called)
        assert sum("final model: training on all" in line for line in lines) == 1, lines
        assert sum(line.startswith("  fold 2/3, epoch 3/3") for line in lines) == 1, lines
    sequential = runs[1]
    for workers in (2, 4):
        parallel = runs[workers]
        np.testing.assert_array_equal(parallel.cv.oof, sequential.cv.oof)
        assert parallel.cv.histories == sequential.cv.histories
        assert [a.record() for a in parallel.cv.answers] == [a.record() for a in sequential.cv.answers]
        assert [a.record() for a in parallel.cv.fast_answers] == [a.record() for a in sequential.cv.fast_answers]
        assert parallel.cv.fold_errors == sequential.cv.fold_errors
        assert parallel.final.history == sequential.final.history
        assert parallel.final.state.keys() == sequential.final.state.keys()
        for name, weights in sequential.final.state.items():
            np.testing.assert_array_equal(parallel.final.state[name], weights, err_msg=name)
    assert not np.array_equal(  # (the check can fail: another seed gives other weights)
        train_all(examples, folds, dataclasses.replace(params, seed=1), base, 2).cv.oof, sequential.cv.oof
    )


@pytest.mark.parametrize(
    "cores_, elsewhere, workers",
    [(2, 0, 2), (2, 0.5, 2), (2, 1, 2), (2, 2, 1), (2, 8, 1), (1, 0, 1), (16, 0, 16), (16, 14, 3), (16, 20, 1)],
)
def test_the_share_of_the_cores(cores_, elsewhere, workers):
    """Idle cores, and an equal share of the busy ones with the tasks running on them."""
    assert cores.fair_share(cores_, elsewhere) == workers


def test_workers_follow_the_affinity_the_load_and_the_tasks():
    assert cores.choose_workers(3, 10) == (3, "workers = 3")
    assert cores.choose_workers(8, 6)[0] == 6  # never more workers than tasks
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this system")
    script = (
        "import os; from uos import cores; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "print(cores.usable_cores(), cores.choose_workers(0, 6)[0])"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1"]
    # One busy process beside us: the count of tasks running elsewhere sees it.
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert cores.running_elsewhere() >= 1
    finally:
        spinner.kill()
        spinner.wait()


def test_a_negative_worker_count_is_a_clear_error(tmp_path):
    from uos.errors import ConfigError

    (tmp_path / "params.toml").write_text("[train]\nworkers = -1\n")
    with pytest.raises(ConfigError, match="workers must be 0"):
        load_params(TrainParams, "train", tmp_path / "params.toml")


@pytest.mark.parametrize("table", ["[train]\nthreads = 2\n", "[train.profiles.quick]\nthreads = 1\n"])
def test_the_retired_threads_setting_says_what_became_of_it(tmp_path, table):
    from uos.errors import ConfigError

    (tmp_path / "params.toml").write_text(table)
    with pytest.raises(ConfigError, match="threads is no longer a setting: the folds now train side by side"):
        load_params(TrainParams, "train", tmp_path / "params.toml").with_profile("quick")


def test_a_cgroup_cpu_quota_in_either_version(tmp_path):
    """cgroup v2 `cpu.max` and v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, in cores; none: None."""
    for text, expected in (("150000 100000", 1.5), ("max 100000", None), ("junk", None)):
        (tmp_path / "cpu.max").write_text(text)
        assert cores._quota_of(tmp_path, v2=True) == expected, text
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")
    for text, expected in (("200000\n", 2.0), ("-1\n", None)):
        (tmp_path / "cpu.cfs_quota_us").write_text(text)
        assert cores._quota_of(tmp_path, v2=False) == expected, text
    assert cores._quota_of(tmp_path / "none", v2=True) is None


def test_the_scratch_folder_of_a_killed_run_is_removed_by_the_next(tmp_path, monkeypatch):
    import tempfile

    from uos.training import parallel

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{parallel.SCRATCH_PREFIX}{gone.stdout.strip()}-abc"
    alive = tmp_path / f"{parallel.SCRATCH_PREFIX}{os.getpid()}-def"
    for folder in (stale, alive):
        folder.mkdir()
        (folder / parallel.WORK_FILE).write_bytes(b"work")
    parallel._remove_stale_scratch()
    assert not stale.exists() and alive.exists()


def _start_training(project: Path, tmp_path: Path, workers: int = 2, training: bool = True) -> subprocess.Popen:
    """`uos train` (the default profile: long enough to be stopped) in a process group of its own,
    as a terminal runs a command; returns once its workers are training (or at once)."""
    params = project / f"params-{workers}.toml"
    params.write_text((ROOT / "params.toml").read_text().replace("\nworkers = 0 ", f"\nworkers = {workers} "))
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )
    command = ["uos", "train", "parsed", "labels", "folds", "--out", str(tmp_path / "model"), "--params", str(params)]
    process = subprocess.Popen(
        command, cwd=project, env=env, stderr=subprocess.PIPE, text=True, process_group=0, bufsize=1
    )
    if not training:
        return process
    for line in process.stderr:  # until a worker says it trains
        if "epoch" in line:
            return process
    raise AssertionError(f"uos train ended before training: {process.wait()}")


def _workers(pid: int) -> list[int]:
    """The pool's worker processes (not its resource tracker)."""
    found = []
    for child in _children(pid):
        try:
            if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text():
                found.append(child)
        except OSError:
            continue
    return found


def _children(pid: int) -> set[int]:
    result = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in result.stdout.split()}


def _gone(pids: set[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    try:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except (OSError, StopIteration):
        return "zombie"


def _last_run_status(tmp_path: Path) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("uos-depth")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.mlflow.runName = 'train'")
    return runs[0].info.status


def test_ctrl_c_stops_the_workers_and_ends_as_an_interrupted_run(project, tmp_path):
    """SIGINT to the process group (a terminal's Ctrl-C): 'Interrupted.', exit 130, no traceback
    from any process, no worker left, the MLflow run ended as a sequential run's (FAILED)."""
    process = _start_training(project, tmp_path)
    workers = _children(process.pid)
    assert len(workers) >= 2, workers  # (the workers, and the queue's resource tracker)
    os.killpg(process.pid, signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=60) == 130
    assert "Interrupted." in rest and "Traceback" not in rest and "leaked" not in rest, rest
    assert _gone(workers), [_state(p) for p in workers]
    assert _last_run_status(tmp_path) == "FAILED"
    assert not (tmp_path / "model" / "weights.pt").exists()


def test_a_training_killed_while_its_workers_start_leaves_none(project, tmp_path):
    """kill -9 while the workers import torch (before they can ask to die with their parent):
    each finds its parent gone and exits, instead of training for nobody, then waiting forever."""
    process = _start_training(project, tmp_path, training=False)
    deadline = time.monotonic() + 60
    while not (started := _workers(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started, "no worker started"
    workers = _children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert _gone(workers, within=30), [_state(p) for p in workers]


def test_a_killed_training_takes_its_workers_with_it(project, tmp_path):
    """kill -9 of `uos train`: its workers do not go on training for nobody on a shared server."""
    process = _start_training(project, tmp_path)
    workers = _children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert _gone(workers), [_state(p) for p in workers]


def test_a_worker_that_dies_is_one_error_line(project, tmp_path):
    """A worker killed (the out-of-memory killer, say): one 'Error:' line that says so, exit 1, the
    other workers stopped, no weights written."""
    process = _start_training(project, tmp_path)
    workers = _children(process.pid)
    training = _workers(process.pid)
    assert training, workers
    os.kill(training[0], signal.SIGKILL)
    _ends_with_the_worker_error(process, workers, tmp_path)


def test_a_worker_killed_while_it_starts_is_one_error_line(project, tmp_path):
    """Killed while it imports torch and reads its work: the same one line (the work used to be
    written into the new worker's pipe, and the parent waited there forever)."""
    process = _start_training(project, tmp_path, training=False)
    deadline = time.monotonic() + 60
    while not (started := _workers(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started, "no worker started"
    workers = _children(process.pid)
    os.kill(started[-1], signal.SIGKILL)
    _ends_with_the_worker_error(process, workers, tmp_path)


def _ends_with_the_worker_error(process: subprocess.Popen, workers: set[int], tmp_path: Path) -> None:
    try:
        _, rest = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("uos train hung after a worker died") from None
    assert process.returncode == 1
    errors = [line for line in rest.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: a training worker process died (out of memory, or killed?): nothing was written"], rest
    assert "Traceback" not in rest
    assert _gone(workers)
    assert not (tmp_path / "model" / "weights.pt").exists()
