"""The `uos` command itself: fast help, no heavy imports, help text with examples."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from uos.cli import main

HEAVY = ("torch", "mlflow", "textual", "dvc", "paho", "pandas", "pyarrow")


def test_help_imports_no_heavy_package():
    code = (
        "import sys; from uos.cli import main; main(['--help'], standalone_mode=False); "
        f"print('HEAVY:' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "HEAVY:"


def test_help_answers_well_under_a_second():
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "uos", "--help"], capture_output=True, check=True)
        timings.append(time.perf_counter() - started)
    assert statistics.median(timings) < 0.6, timings


def test_every_command_has_help_with_an_example():
    runner = CliRunner()
    for name, command in main.commands.items():
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Example" in result.output, f"`uos {name} --help` shows no example"
        assert command.short_help or command.help, name


def test_show_a_file(setitec_dir):
    path = setitec_dir / "mql/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls"
    result = CliRunner().invoke(main, ["show", str(path), "--width", "100"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Hole E00401009F45C395-1874  ({path})"
    assert "    step 2 ended: 0x800 (torque min) after 59.36 s, started at 10.69 mm" in lines
    assert any("depth (mm)" in line for line in lines)


def test_show_json_is_metadata_only(setitec_dir):
    path = setitec_dir / "tuhh/001_V1/V1_001.xls"
    result = CliRunner().invoke(main, ["show", str(path), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["hole_id"] == "116-V3-012-203"
    assert data["tool_age"] == 1
    assert data["status"] == "ok"
    assert [s["step"] for s in data["program"]] == [0, 1, 2]


def test_show_a_hole_of_a_dataset(tmp_path, setitec_dir):
    out = tmp_path / "parsed"
    runner = CliRunner()
    assert runner.invoke(main, ["parse", str(setitec_dir / "tuhh/001_V1/V1_001.xls"), "--out", str(out)]).exit_code == 0
    result = runner.invoke(main, ["show", "116-V3-012-203", "--data", str(out), "--no-plot"])
    assert result.exit_code == 0
    assert result.stdout.startswith("Hole 116-V3-012-203  (")


def test_show_unknown_hole(tmp_path, setitec_dir):
    out = tmp_path / "parsed"
    CliRunner().invoke(main, ["parse", str(setitec_dir / "tuhh/001_V1/V1_001.xls"), "--out", str(out)])
    result = CliRunner().invoke(main, ["show", "nope-1", "--data", str(out)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: no hole 'nope-1' in {out}\n"


def test_show_without_dataset(tmp_path):
    result = CliRunner().invoke(main, ["show", "nope-1", "--data", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {tmp_path / 'none' / 'holes.parquet'} not found: "
        f"run `uos parse INPUT... --out {tmp_path / 'none'}` first\n"
    )


# --- uos summary ---------------------------------------------------------------------------------

SUMMARY = "import sys; from uos.cli import main; main(['summary'], standalone_mode=False)"


def _python(code: str, cwd: Path, tracking_uri: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)


def test_summary_without_a_store_says_so_in_one_line_and_creates_none(tmp_path):
    result = _python(f"{SUMMARY}; print('mlflow' in sys.modules)", tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0] == "Holes      nothing parsed yet: put Setitec files in data/raw and run `dvc repro`"
    assert (
        lines[1]
        == f"Model      no MLflow store at {tmp_path / 'mlflow.db'} yet: `dvc repro` trains and registers a model"
    )
    assert lines[-1] == "False"  # looking imported no MLflow
    assert list(tmp_path.iterdir()) == []


def test_summary_with_a_store_but_no_model_says_so(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    (tmp_path / "project").mkdir()
    code = f"import mlflow; mlflow.MlflowClient({uri!r}).search_experiments(); {SUMMARY}"
    result = _python(code, tmp_path / "project", uri)
    model = [line for line in result.stdout.splitlines() if line.startswith("Model")]
    assert model == [f"Model      no model registered as uos-depth in {uri} yet: `dvc repro` trains one"]
    assert list((tmp_path / "project").iterdir()) == []  # no mlruns/ where it looked from


def test_summary_hides_a_password_in_the_tracking_uri():
    from uos.training.tracking import shown_uri

    assert shown_uri("postgresql://mlflow:s3cret@db:5432/mlflow") == "postgresql://mlflow:***@db:5432/mlflow"
    assert shown_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
