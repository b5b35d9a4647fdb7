"""The DVC pipeline's project, as the other DVC tests build it (`make_project`), a changed
parameter that re-runs its stage, and the demo data that reproduces `data.dvc`. The whole
pipeline, its lineage and no-op re-run are in test_project_tracking.py, a team's pull and
experiments in test_team_dvc.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from uos.labels.annotations import ensure_folder
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams

PROJECT_FILES = ["dvc.yaml", "params.toml", ".dvcignore"]


def _run(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own SQLite file, as for a user
    env.update(extra_env or {})
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _quick_params(path: Path) -> None:
    """Small folds and the CI training profile, for a few holes."""
    text = path.read_text()
    for old, new in (
        ("\nk = 5 ", "\nk = 3 "),
        ("\nlife_block = 20 ", "\nlife_block = 0 "),
        ("\nepochs = 40", "\nepochs = 20"),
        ("\nbatch_size = 32", "\nbatch_size = 16"),
    ):
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


# Keys that change how fast or how a stage ends, never what it writes: no stage depends on them.
NOT_OUTPUTS = {"parse.workers", "parse.allow_errors", "label.workers", "train.workers"}


def test_each_stage_depends_on_exactly_the_params_that_change_its_outputs():
    """A stage listing a whole table re-ran for a key it does not use (train for the CI profile it
    never trains with, parse for its worker count); one missing a key would leave stale outputs."""
    import tomllib

    import yaml

    params = tomllib.loads((ROOT / "params.toml").read_text())
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {
        name: {key for entry in stage.get("params", []) for key in entry["params.toml"]}
        for name, stage in stages.items()
    }
    for name in ("parse", "label", "split", "train"):
        table = {f"{name}.{key}" for key, value in params[name].items() if not isinstance(value, dict)}
        if name in declared[name]:  # the whole table: right only when every key of it counts
            assert not table & NOT_OUTPUTS, (name, table & NOT_OUTPUTS)
        else:
            own = {key for key in declared[name] if key.startswith(f"{name}.")}
            assert own == table - NOT_OUTPUTS, (name, own ^ (table - NOT_OUTPUTS))
