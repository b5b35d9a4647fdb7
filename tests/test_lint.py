"""`just lint` (ruff check and ruff format --check, line length 120) is part of the suite, so CI
runs it: the tools own the layout, and no line opts out of them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import servers

ROOT = Path(__file__).resolve().parent.parent


def test_just_lint_passes():
    result = subprocess.run(
        servers.just("lint"), cwd=ROOT, env=servers.venv_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_no_line_opts_out_of_the_formatter():
    skipped = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("uos", "tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "fmt: " + "skip" in line or "fmt: " + "off" in line
    ]
    assert not skipped, skipped
