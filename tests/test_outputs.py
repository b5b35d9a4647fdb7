"""Files written whole (`uos.outputs.write_atomic`): the old file or the new, never half of one;
a disk that cannot keep a durable write says so; a killed writer's litter does not pile up."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from uos.labels import annotations as human
from uos.outputs import write_atomic


def test_an_error_in_the_block_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "figures.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), write_atomic(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["figures.json"]


def test_a_durable_write_the_disk_cannot_keep_is_an_error_and_changes_nothing(tmp_path, monkeypatch):
    """An annotation whose fsync fails was reported saved (the error was swallowed)."""

    def failing_fsync(descriptor):
        raise OSError(errno.EIO, "Input/output error")

    note = human.Annotation("H1", "h" * 64, {"entry": 5.0}, None, "test", "now")
    human.save(tmp_path, note)
    monkeypatch.setattr(os, "fsync", failing_fsync)
    changed = human.Annotation("H1", "h" * 64, {"entry": 7.0}, None, "test", "later")
    with pytest.raises(OSError, match="Input/output error"):
        human.save(tmp_path, changed)
    monkeypatch.undo()
    assert human.load(tmp_path, [])["H1"].points["entry"] == 5.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["H1.json"]


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)  # (a process that has ended: its pid is free)
    path = tmp_path / "labels.parquet"
    litter = tmp_path / f".labels.parquet.{dead_pid}.tmp"
    litter.write_text("half a file")
    alive = tmp_path / f".labels.parquet.{os.getppid()}.tmp"  # a writer still at work
    alive.write_text("being written")
    with write_atomic(path) as tmp:
        tmp.write_text("whole")
    assert path.read_text() == "whole" and not litter.exists() and alive.exists()
