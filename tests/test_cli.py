"""The `uos` command itself: fast help, no heavy imports, help text with examples."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

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
        f"Error: {tmp_path / 'none' / 'holes.parquet'} not found: run `uos parse INPUT... --out {tmp_path / 'none'}` first\n"
    )
