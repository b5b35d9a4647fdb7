"""The DVC pipeline as a user runs it: `dvc repro` builds the dataset, a second run is a no-op."""

from __future__ import annotations

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


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def project(tmp_path):
    """A copy of the project's pipeline files and code, with a few synthetic holes as data."""
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "uos", tmp_path / "uos", ignore=shutil.ignore_patterns("__pycache__"))
    assert _run(["git", "init", "-q"], tmp_path).returncode == 0
    assert _run(["dvc", "init", "-q"], tmp_path).returncode == 0
    synthesize(tmp_path / "data" / "raw", SynthParams(holes=12, seed=3))
    ensure_folder(tmp_path / "data" / "annotations")
    assert _run(["dvc", "add", "-q", "data"], tmp_path).returncode == 0
    return tmp_path


def test_repro_builds_the_dataset_then_is_a_no_op(project):
    first = _run(["dvc", "repro"], project)
    assert first.returncode == 0, first.stderr
    assert "Running stage 'parse'" in first.stdout
    assert (project / "build/parsed/holes.parquet").exists()
    assert (project / "dvc.lock").exists()

    started = time.perf_counter()
    second = _run(["dvc", "repro"], project)
    elapsed = time.perf_counter() - started
    assert second.returncode == 0, second.stderr
    assert "Data and pipelines are up to date." in second.stdout
    assert elapsed < 4.0, f"no-op dvc repro took {elapsed:.1f} s"


def test_changed_parse_params_rerun_the_stage(project):
    assert _run(["dvc", "repro"], project).returncode == 0
    params = project / "params.toml"
    params.write_text(params.read_text().replace("few_samples = 150", "few_samples = 160"))
    again = _run(["dvc", "repro"], project)
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
