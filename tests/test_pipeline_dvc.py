"""The DVC pipeline as a user runs it: `dvc repro` runs parse, label, split and train on a small
synthetic set, a second run is a no-op, `dvc exp run -S` retrains."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from uos.labels.annotations import ensure_folder
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams

PROJECT_FILES = ["dvc.yaml", "params.toml", ".dvcignore"]


def _run(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com", GIT_COMMITTER_NAME="test",
               GIT_COMMITTER_EMAIL="test@example.com")  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own SQLite file, as for a user
    env.update(extra_env or {})
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _quick_params(path: Path) -> None:
    """Small folds and the CI training profile, for a few holes."""
    text = path.read_text()
    for old, new in (("\nk = 5 ", "\nk = 3 "), ("\nlife_block = 20 ", "\nlife_block = 0 "), ("\nepochs = 40", "\nepochs = 20"),
                     ("\nbatch_size = 32", "\nbatch_size = 16")):  # fmt: skip
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text)


def make_project(root: Path, files: list[str] = PROJECT_FILES) -> Path:
    """A copy of the project's pipeline files and code, with a few synthetic holes as data."""
    root.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "uos", root / "uos", ignore=shutil.ignore_patterns("__pycache__"))
    assert _run(["git", "init", "-q"], root).returncode == 0
    assert _run(["dvc", "init", "-q"], root).returncode == 0
    _quick_params(root / "params.toml")
    synthesize(root / "data" / "raw", SynthParams(holes=24, seed=3, production_tool_life=6, lab_tool_life=6))
    ensure_folder(root / "data" / "annotations")
    assert _run(["dvc", "add", "-q", "data"], root).returncode == 0
    return root


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


def test_repro_runs_the_pipeline_then_is_a_no_op_and_exp_run_retrains(project):
    import yaml

    first = _run(["dvc", "repro"], project)
    assert first.returncode == 0, first.stderr
    for stage in ("parse", "label", "split", "train"):
        assert f"Running stage '{stage}'" in first.stdout, stage
    assert (project / "build/parsed/holes.parquet").exists()
    details = json.loads((project / "build/model/details.json").read_text())
    assert "model" not in details  # the run id and version are MLflow's: nothing volatile in a DVC output
    metrics = json.loads((project / "metrics/train.json").read_text())
    assert set(metrics["cv_mae"]) == {"entry", "transition", "exit", "thickness"} and "baseline_mae" in metrics
    assert (project / "mlflow.db").exists()

    # The registered model records the data it came from, as DVC hashed it.
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    labels_md5 = next(o["md5"] for o in lock["label"]["outs"] if o["path"] == "build/labels/labels.parquet")
    data_md5 = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    show = _run([sys.executable, "-c", LINEAGE], project)
    assert show.returncode == 0, show.stderr
    tags = json.loads(show.stdout)
    assert tags["labels_md5"] == labels_md5 and tags["data_md5"] == data_md5
    assert tags["git_commit"] and tags["parsed_md5"]

    started = time.perf_counter()
    second = _run(["dvc", "repro"], project)
    elapsed = time.perf_counter() - started
    assert second.returncode == 0, second.stderr
    assert "Data and pipelines are up to date." in second.stdout
    assert elapsed < 4.0, f"no-op dvc repro took {elapsed:.1f} s"

    assert _run(["git", "add", "-A"], project).returncode == 0
    assert _run(["git", "commit", "-qm", "pipeline"], project).returncode == 0
    experiment = _run(["dvc", "exp", "run", "-S", "params.toml:train.epochs=3"], project)
    assert experiment.returncode == 0, experiment.stderr
    assert "Running stage 'train'" in experiment.stdout and "Running stage 'parse'" not in experiment.stdout
    assert "\nepochs = 3\n" in (project / "params.toml").read_text()
    # The trial registered its version, tagged with its DVC experiment, and left candidate alone.
    registry = json.loads(_run([sys.executable, "-c", VERSIONS], project).stdout)
    assert registry["candidate"] == "1" and len(registry["experiments"]) == 2
    assert registry["experiments"][0] is None and registry["experiments"][1]


LINEAGE = """
import json
from uos.training import tracking
tracking.configure()
version = tracking.version_for_alias(tracking.CANDIDATE)
print(json.dumps(version.tags))
"""


VERSIONS = """
import json
from uos.training import tracking
tracking.configure()
versions = sorted(tracking.client().search_model_versions("name = 'uos-depth'"), key=lambda v: int(v.version))
print(json.dumps({"candidate": str(tracking.version_for_alias(tracking.CANDIDATE).version),
                  "experiments": [v.tags.get(tracking.DVC_EXPERIMENT_TAG) for v in versions]}))
"""


def test_changed_parse_params_rerun_the_stage(project):
    assert _run(["dvc", "repro", "parse"], project).returncode == 0  # (the stage alone: no training needed)
    params = project / "params.toml"
    params.write_text(params.read_text().replace("few_samples = 150", "few_samples = 160"))
    again = _run(["dvc", "repro", "parse"], project)
    assert again.returncode == 0, again.stderr
    assert "Running stage 'parse'" in again.stdout


def test_demo_data_reproduces_data_dvc(tmp_path):
    """On a fresh clone the demo generates data/raw from params.toml: the very content that the
    committed data.dvc records, so `dvc status` stays clean."""
    import yaml

    from uos.params import load_params

    shutil.copy(ROOT / ".dvcignore", tmp_path / ".dvcignore")
    assert _run(["git", "init", "-q"], tmp_path).returncode == 0
    assert _run(["dvc", "init", "-q"], tmp_path).returncode == 0
    synthesize(tmp_path / "data" / "raw", load_params(SynthParams, "synth", ROOT / "params.toml"))
    ensure_folder(tmp_path / "data" / "annotations")
    assert _run(["dvc", "add", "-q", "data"], tmp_path).returncode == 0
    generated = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]
    committed = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]
    assert (generated["md5"], generated["nfiles"]) == (committed["md5"], committed["nfiles"])
