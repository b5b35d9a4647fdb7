"""Faults around the parse run: odd names, odd files in the folders, files rewritten while they
are parsed, a crash while the dataset is written, a damaged cache, values no writer can store.
Each test builds its inputs in a temporary folder; anything that could hang runs in a
subprocess with a timeout."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import oddities
from uos.cli import main
from uos.dataset.build import ParseParams, parse_dataset
from uos.dataset.layout import load_hole, read_holes, read_report, read_signals
from uos.holes import read_source

ROOT = Path(__file__).resolve().parent.parent
SMALL = "misc/23120040_23120040_ST_2412_60.xls"  # 135 samples, format 11
OTHER = "misc/23120040_23120040_ST_2409_59.xls"
THIRD = "mql/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls"


@pytest.fixture
def small(setitec_dir) -> bytes:
    return (setitec_dir / SMALL).read_bytes()


@pytest.fixture
def other(setitec_dir) -> bytes:
    return (setitec_dir / OTHER).read_bytes()


def _no_crash(result) -> None:
    """A CliRunner result that ended by exit code, not by an exception."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def _uos(*args: str, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`uos ...` in a fresh interpreter, killed if it outlives `timeout` (a hang is a failure)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        return subprocess.run(
            [sys.executable, "-m", "uos", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
            errors="backslashreplace",
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"uos {' '.join(args)} did not finish in {timeout} s")


# --- names -------------------------------------------------------------------------------------


def test_latin1_file_names_survive_into_the_dataset_and_the_report(tmp_path, small, other):
    folder = tmp_path / "in"
    folder.mkdir()
    base = os.fsencode(folder)
    (Path(os.fsdecode(base + b"/Pset_n\xb0 3.xls"))).write_bytes(small)
    (Path(os.fsdecode(base + b"/vide_\xe9.xls"))).write_bytes(b"")
    (folder / "plain.xls").write_bytes(other)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["parse", str(folder), "--out", str(out)])
    _no_crash(result)
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[0] == f"Error: {folder}/vide_\\xe9.xls: empty file"
    holes = read_holes(out)
    assert sorted(holes["source"].str.rsplit("/", n=1).str[-1]) == ["Pset_n\\xb0 3.xls", "plain.xls"]
    named = holes[holes["source"].str.endswith("3.xls")].iloc[0]
    assert load_hole(out, named["hole_id"]).n_samples == 135
    report = {Path(o.source).name: o.status for o in read_report(out / "report.csv")}
    # A warning: a name without the hole's counters.
    assert report == {"Pset_n\\xb0 3.xls": "warning", "plain.xls": "ok", "vide_\\xe9.xls": "error"}


# --- discovery ---------------------------------------------------------------------------------


def test_discovery_takes_regular_files_only_and_each_folder_once(tmp_path, small, other):
    folder = tmp_path / "in"
    (folder / "loops").mkdir(parents=True)
    (folder / "good.xls").write_bytes(small)
    elsewhere = tmp_path / "elsewhere.xls"
    elsewhere.write_bytes(other)
    (folder / "linked.xls").symlink_to(elsewhere)  # a symlink to a regular file is an input
    (folder / "dangling.xls").symlink_to(tmp_path / "gone.xls")
    os.mkfifo(folder / "fifo.xls")
    (folder / "zero.xls").symlink_to("/dev/zero")
    # Two loops: every folder reached again through `a` and `b` would double the walk per level.
    (folder / "loops" / "a").symlink_to("..")
    (folder / "loops" / "b").symlink_to("..")
    (folder / "again").symlink_to(folder)
    out = tmp_path / "out"
    result = _uos("parse", str(folder), "--out", str(out), "--workers", "1")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    assert result.stderr.splitlines()[:3] == [
        f"Error: {folder}/dangling.xls: broken symbolic link",
        f"Error: {folder}/fifo.xls: not a regular file (a FIFO)",
        f"Error: {folder}/zero.xls: not a regular file (a character device)",
    ]
    assert "2 holes" in result.stderr
    assert sorted(read_holes(out)["source"]) == [f"{folder}/good.xls", f"{folder}/linked.xls"]


def test_globs_do_not_follow_symlink_loops(tmp_path, small):
    folder = tmp_path / "in"
    (folder / "deep" / "loops").mkdir(parents=True)
    (folder / "deep" / "one.xls").write_bytes(small)
    (folder / "deep" / "loops" / "a").symlink_to("..")
    (folder / "deep" / "loops" / "b").symlink_to("..")
    result = _uos("parse", f"{folder}/**/*.xls", "--out", str(tmp_path / "out"), timeout=60)
    assert result.returncode == 0, result.stderr
    assert read_holes(tmp_path / "out")["source"].tolist() == [f"{folder}/deep/one.xls"]


def test_an_explicit_fifo_is_refused_without_waiting(tmp_path, small):
    os.mkfifo(tmp_path / "pipe.xls")
    (tmp_path / "good.xls").write_bytes(small)
    result = _uos("parse", str(tmp_path / "pipe.xls"), str(tmp_path / "good.xls"), "--out", str(tmp_path / "out"))
    assert result.stderr.splitlines()[0] == f"Error: {tmp_path}/pipe.xls: not a regular file (a FIFO)"
    assert len(read_holes(tmp_path / "out")) == 1


def test_a_capture_folder_holding_a_fifo_is_refused_without_waiting(tmp_path, mqtt_dir):
    capture = tmp_path / "captures" / "data0"
    shutil.copytree(mqtt_dir / "data0", capture)
    os.mkfifo(capture / "Heads.json")
    shutil.copytree(mqtt_dir / "data1", tmp_path / "captures" / "data1")
    result = _uos("parse", str(tmp_path / "captures"), "--out", str(tmp_path / "out"))
    assert result.stderr.splitlines()[0] == f"Error: {capture}: Heads.json: not a regular file (a FIFO)"
    assert len(read_holes(tmp_path / "out")) == 1
    # The same guard where any command reads a capture (it sat in parse's hashing only).
    shown = _uos("show", str(capture), "--no-plot", timeout=30)
    assert shown.returncode == 1 and shown.stderr == f"Error: {capture}: Heads.json: not a regular file (a FIFO)\n"


# --- a file rewritten during the parse ---------------------------------------------------------


def test_a_file_rewritten_after_hashing_is_stored_with_the_hash_of_what_was_parsed(tmp_path, small, other, monkeypatch):
    """The run hashes every input, then parses the new ones: a file rewritten in between must
    be stored with the sha256 of the bytes that were parsed, in the dataset and in the cache."""
    import uos.dataset.build as build

    folder = tmp_path / "in"
    folder.mkdir()
    target = folder / "moving.xls"
    target.write_bytes(small)
    real_digest = build.content_digest

    def digest_then_rewrite(path):
        digest = real_digest(path)
        if Path(path).name == "moving.xls":
            target.write_bytes(other)  # the unit saves the next hole under the same name
        return digest

    monkeypatch.setattr(build, "content_digest", digest_then_rewrite)
    out = tmp_path / "out"
    summary = parse_dataset([str(folder)], out, ParseParams(workers=1))
    holes = read_holes(out)
    assert len(holes) == 1
    stored = holes.iloc[0]
    parsed = load_hole(out, stored["hole_id"])
    assert stored["sha256"] == hashlib.sha256(other).hexdigest()
    assert parsed.n_samples == summary.n_samples == len(read_source(target).signals["depth_mm"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"] == [[str(target), hashlib.sha256(other).hexdigest()]]

    monkeypatch.undo()
    again = parse_dataset([str(folder)], out, ParseParams(workers=1))
    assert again.up_to_date  # the manifest names what was parsed, which is what the file holds
    shutil.rmtree(out)
    target.write_bytes(small)  # the old bytes come back: the cache must not serve `other` for them
    back = parse_dataset([str(folder)], out, ParseParams(workers=1))
    assert read_holes(out).iloc[0]["sha256"] == hashlib.sha256(small).hexdigest()
    assert back.n_samples == 135


# --- a crash while the dataset is written ------------------------------------------------------

_KILLER = """
import os, signal, sys
import uos.dataset.build as build
import uos.dataset.layout as layout

limit = int(sys.argv[1])
calls = 0

def counted(function):
    def wrapper(*args, **kwargs):
        global calls
        result = function(*args, **kwargs)
        calls += 1
        if calls == limit:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapper

# Every step that writes a file or makes one visible goes through one of these.
os.replace = counted(os.replace)
os.rename = counted(os.rename)
os.rmdir = counted(os.rmdir)
for name in ("write_signals", "write_holes", "write_report", "write_json"):
    setattr(build, name, counted(getattr(build, name)))
build.parse_dataset(sys.argv[3:], sys.argv[2], build.ParseParams(workers=1))
print(calls)
"""


def _state(out: Path) -> frozenset[str] | None:
    """The sha256 of the inputs the dataset at `out` holds, after checking that its parts agree;
    None when there is no dataset there."""
    if not (out / "manifest.json").exists():
        return None
    manifest = {sha for _, sha in json.loads((out / "manifest.json").read_text())["inputs"]}
    holes = read_holes(out)
    assert set(holes["sha256"]) == manifest, "holes.parquet and manifest.json disagree"
    signal_ids = set(pq.read_table(out / "signals", columns=["hole_id"]).column("hole_id").to_pylist())
    assert signal_ids == set(holes["hole_id"]), "signals/ and holes.parquet disagree"
    report = {o.hole_id for o in read_report(out / "report.csv")}
    assert report == set(holes["hole_id"]), "report.csv and holes.parquet disagree"
    return frozenset(manifest)


def test_a_crash_at_any_step_of_the_write_leaves_the_old_dataset_or_the_new(tmp_path, setitec_dir):
    old_inputs, new_inputs = tmp_path / "old", tmp_path / "new"
    for folder, names in ((old_inputs, [SMALL, OTHER]), (new_inputs, [SMALL, THIRD])):
        folder.mkdir()
        for name in names:
            shutil.copy(setitec_dir / name, folder / Path(name).name)
    pristine = tmp_path / "pristine"
    parse_dataset([str(old_inputs)], pristine, ParseParams(workers=1))
    old = _state(pristine)
    script = tmp_path / "killer.py"
    script.write_text(_KILLER)

    def run(limit: int, out: Path) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        command = [sys.executable, str(script), str(limit), str(out), str(new_inputs)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)

    whole = run(10_000, tmp_path / "count")
    assert whole.returncode == 0, whole.stderr
    new = _state(tmp_path / "count")
    steps = int(whole.stdout)
    assert steps >= 5 and old != new
    for limit in range(1, steps + 1):
        out = tmp_path / f"out-{limit}"
        shutil.copytree(pristine, out, symlinks=True)
        killed = run(limit, out)
        assert killed.returncode == -9, killed.stderr
        # The old inputs again (the user goes back): up to date only over the old dataset.
        back = parse_dataset([str(old_inputs)], out, ParseParams(workers=1))
        assert _state(out) == old, f"killed after step {limit}"
        assert back.n_holes == 2
        forward = parse_dataset([str(new_inputs)], out, ParseParams(workers=1))
        assert _state(out) == new, f"killed after step {limit}"
        assert forward.n_holes == 2
        leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".out-{limit}")]
        assert leftovers in ([], [f".out-{limit}.lock"]), leftovers  # the lock file stays, unlocked


def test_an_out_folder_holding_other_files_is_refused_not_replaced(tmp_path, small):
    (tmp_path / "good.xls").write_bytes(small)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / ".gitignore").write_text("/holes.parquet\n")
    result = CliRunner().invoke(main, ["parse", str(tmp_path / "good.xls"), "--out", str(out)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {out} holds files uos parse did not write (notes.txt): give --out a new or empty folder\n"
    )
    (out / "notes.txt").unlink()
    linked = tmp_path / "linked"
    linked.symlink_to(out)  # --out through a link: the folder it points to is replaced
    result = CliRunner().invoke(main, ["parse", str(tmp_path / "good.xls"), "--out", str(linked)])
    assert result.exit_code == 0, result.output
    assert linked.is_symlink() and len(read_holes(linked)) == 1
    assert (out / ".gitignore").read_text() == "/holes.parquet\n"  # carried over (DVC writes one)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == ["good.xls", "linked", "out"]


# --- a damaged cache ---------------------------------------------------------------------------


def _flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1 :]


@pytest.mark.parametrize(
    "damage",
    ["truncated", "garbage", "empty", "huge-index-length", "not-an-index", "a-bit-of-signals", "a-bit-of-index"],
)
def test_a_damaged_cache_pack_is_set_aside_and_its_inputs_parsed_again(tmp_path, small, other, damage):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.xls").write_bytes(small)
    (folder / "b.xls").write_bytes(other)
    cache = tmp_path / "cache"
    first = parse_dataset([str(folder)], tmp_path / "first", ParseParams(workers=1), cache_root=cache)
    pack = sorted(cache.glob("*/*.pack"))[0]  # one of the two packs (one per input here)
    data = pack.read_bytes()
    magic = data[:8]
    damaged = {
        "truncated": data[: len(data) - 1000],
        "garbage": magic + os.urandom(len(data) - 8),
        "empty": b"",
        "huge-index-length": data[:8] + (2**62).to_bytes(8, "little") + data[16:],
        "not-an-index": magic + (4).to_bytes(8, "little") + data[16:24] + b"[1] " + data[28:],
        "a-bit-of-signals": _flipped(data, len(data) - 997),  # a value stays a number, only wrong
        "a-bit-of-index": _flipped(data, 40),
    }[damage]
    pack.write_bytes(damaged)
    result = CliRunner().invoke(
        main, ["parse", str(folder), "--out", str(tmp_path / "out"), "--cache", str(cache), "--workers", "1"]
    )
    _no_crash(result)
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warning) == 1 and "damaged" in warning[0] and pack.name in warning[0], result.stderr
    assert "1 parsed, 1 from cache" in result.stderr
    assert read_holes(tmp_path / "out")["n_samples"].sum() == first.n_samples
    assert read_signals(tmp_path / "out").equals(read_signals(tmp_path / "first"))  # nothing served wrong
    # Set aside: the next run neither warns again nor parses again.
    again = CliRunner().invoke(
        main, ["parse", str(folder), "--out", str(tmp_path / "again"), "--cache", str(cache), "--workers", "1"]
    )
    assert "Warning: " not in again.stderr and "0 parsed, 2 from cache" in again.stderr


def test_a_folder_named_like_a_pack_in_the_cache_is_not_read(tmp_path, small):
    (tmp_path / "a.xls").write_bytes(small)
    cache = tmp_path / "cache"
    parse_dataset([str(tmp_path / "a.xls")], tmp_path / "first", cache_root=cache)
    (next(cache.glob("parse-*")) / "odd.pack").mkdir()
    again = parse_dataset([str(tmp_path / "a.xls")], tmp_path / "again", cache_root=cache)
    assert again.n_holes == 1 and again.n_parsed == 0


# --- values no writer can store ----------------------------------------------------------------


def _with_counter(raw: bytes, counter: bytes) -> bytes:
    """The file with its head's global counter (2412 in SMALL) replaced."""
    line = b"23120040\tConcentric Collet\tLight\t2412\t60\t"
    assert line in raw
    return raw.replace(line, b"23120040\tConcentric Collet\tLight\t" + counter + b"\t60\t")


@pytest.mark.parametrize("counter", [b"10000000000000000000", b"100000000000000000000000"])
def test_a_header_integer_too_large_to_store_is_dropped_with_a_warning(tmp_path, small, other, counter):
    """The reader drops a counter no 64-bit integer holds (the signals are sound); the writers
    never see it (what they cannot store fails only its input: the test below)."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "huge.xls").write_bytes(_with_counter(small, counter))
    (folder / "good.xls").write_bytes(other)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["parse", str(folder), "--out", str(out), "--workers", "1"])
    _no_crash(result)
    assert result.exit_code == 0, result.output
    holes = read_holes(out).set_index("source")
    assert sorted(holes.index) == [f"{folder}/good.xls", f"{folder}/huge.xls"]
    huge = holes.loc[f"{folder}/huge.xls"]
    assert huge["status"] == "warning" and pd.isna(huge["global_counter"])
    assert "Head Global Counter" in " ".join(str(issue) for issue in huge["issues"])


def test_what_the_cache_cannot_encode_becomes_that_inputs_error(tmp_path, setitec_dir):
    """Whatever a reader returns, one hole that cannot be stored fails alone, with its reason."""
    from uos.dataset.cache import _read_index, write_pack

    good = read_source(setitec_dir / SMALL)
    bad = read_source(setitec_dir / OTHER)
    bad.raw_metadata = {"Head Datas": {"Head Global Counter": 2**70}}
    odd = read_source(setitec_dir / THIRD)
    odd.meta["cutting_tool"] = "n\udcb0 3"  # a string that is not text
    pack = write_pack(tmp_path, {"a": (good, []), "b": (bad, []), "c": (odd, []), "d": "empty file"})
    index = _read_index(pack)
    assert "record" in index["a"] and index["d"] == {"error": "empty file"}
    assert "Head Global Counter" in index["b"]["error"] and "64-bit" in index["b"]["error"]
    assert "cutting_tool" in index["c"]["error"]


# --- found by a hostile second look --------------------------------------------------------------


def test_a_file_link_loop_a_control_character_and_a_name_too_long_are_reasons_not_crashes(tmp_path, small):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.xls").write_bytes(small)
    (folder / "loop-a.xls").symlink_to(folder / "loop-b.xls")
    (folder / "loop-b.xls").symlink_to(folder / "loop-a.xls")
    (folder / "new\nline.xls").write_bytes(b"")
    too_long = str(tmp_path / ("Y" * 300))
    for inputs in ([str(folder), too_long], [f"{folder}/**/*.xls", too_long]):
        result = _uos("parse", *inputs, "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
        errors = result.stderr.splitlines()
        assert "Traceback" not in result.stderr and result.returncode == 1, result.stderr
        assert f"Error: {folder}/loop-a.xls: cannot read: Too many levels of symbolic links" in errors
        assert f"Error: {folder}/new\\x0aline.xls: empty file" in errors
        assert f"Error: {too_long}: cannot read: File name too long" in errors
        assert read_holes(tmp_path / "out")["source"].tolist() == [f"{folder}/good.xls"]


@pytest.mark.parametrize(
    ("option", "where", "reason"),
    [
        ("--out", "/", "--out cannot be the root folder"),
        ("--out", "/proc/uos-dataset", "cannot write the dataset at /proc/uos-dataset: "),
        ("--cache", "/proc/uos-cache", "cannot use the parse cache at /proc/uos-cache: "),
    ],
)
def test_an_unusable_out_or_cache_folder_is_one_error_line(tmp_path, small, option, where, reason):
    (tmp_path / "good.xls").write_bytes(small)
    args = {"--out": str(tmp_path / "out"), "--cache": str(tmp_path / "cache"), option: where}
    result = _uos("parse", str(tmp_path / "good.xls"), *itertools.chain(*args.items()))
    assert result.returncode == 1 and result.stderr.startswith(f"Error: {reason}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_second_parse_into_the_same_dataset_waits_for_the_first(tmp_path, other):
    """Two runs writing one dataset at once mixed their files (one's signals beside the other's
    holes, then 'up to date'): the second waits for the first."""
    from uos.dataset.layout import writing_dataset

    (tmp_path / "b.xls").write_bytes(other)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "uos", "parse", "b.xls", "--out", str(out), "--cache", str(tmp_path / "cache")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with writing_dataset(out):  # as a first run holds it
        second = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
        time.sleep(3)
        assert second.poll() is None, second.stderr.read()
        assert not out.exists() and not list(tmp_path.glob(".out.*[!k]")), list(tmp_path.iterdir())
    assert second.wait(timeout=60) == 0
    assert "Waiting: another uos parse is writing" in second.stderr.read()
    holes = read_holes(out)
    assert holes["source"].tolist() == ["b.xls"]
    assert load_hole(out, holes["hole_id"][0]).n_samples == holes["n_samples"][0]


# --- everything at once ------------------------------------------------------------------------


def _hostile_folder(folder: Path, small: bytes, other: bytes, third: bytes) -> dict[str, str | None]:
    """Good files among every kind of bad input the issue found, in one folder: name -> a word of
    its reason (None: a good hole, parsed)."""
    head, header, rows = oddities._split(third)  # (format 9: as many names as values)

    def with_rows(edit) -> bytes:
        return oddities.edited(small, edit)

    def cell(column: int, value: str):
        def edit(rows):
            rows[5][column] = value
            return rows

        return edit

    files = {
        "good.xls": (small, None),
        "other.xls": (other, None),
        "Pset_n\xb0_latin1.xls": (other.replace(b"2409", b"2410"), None),  # a Latin-1 byte in the name
        "counter_1e19.xls": (small.replace(b"2412", b"10000000000000000000", 1), None),  # dropped, a warning
        "stop_1e30.xls": (with_rows(cell(6, "1e30")), "Stop code"),
        "text.xls": (with_rows(cell(1, "abc")), "is not a number"),
        "empty.xls": (b"", "empty file"),
        "junk.xls": (bytes(range(256)) * 20, "binary content"),
        "ole2.xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "binary Excel file"),
        "no_datas.xls": (small[: small.index(b"*** Datas ***")], "no Datas section"),
        "wide_row.xls": (oddities.edited(small, lambda r: [*r[:3], ["1,0"] * 200_000, *r[3:]]), "values"),
        "shadowing.xls": (
            (head + header.rstrip("\r\n\t") + "\tHole ID\n").encode("latin-1")
            + "\n".join("\t".join([*r, "7"]) for r in rows).encode("latin-1"),
            None,
        ),
    }
    folder.mkdir()
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    (folder / "dangling.xls").symlink_to(folder / "gone.xls")
    os.mkfifo(folder / "fifo.xls")
    (folder / "zero.xls").symlink_to("/dev/zero")
    (folder / "loop_a").symlink_to(".")
    (folder / "loop_b").symlink_to(".")
    return {name: word for name, (_, word) in files.items()} | {
        "dangling.xls": "broken symbolic link",
        "fifo.xls": "FIFO",
        "zero.xls": "character device",
    }


def test_hostile_inputs_beside_good_ones_cost_only_themselves(tmp_path, small, other, setitec_dir):
    """One parse of a folder of hostile inputs and good files: each bad one is one `Error:` line
    and one report row with its reason, every good one is in the dataset, nothing hangs."""
    expected = _hostile_folder(tmp_path / "in", small, other, (setitec_dir / THIRD).read_bytes())
    result = _uos("parse", str(tmp_path / "in"), "--out", str(tmp_path / "out"), timeout=120)
    assert "Traceback" not in result.stderr and result.returncode == 1, result.stderr[-3000:]
    report = {Path(o.source).name: o for o in read_report(tmp_path / "out" / "report.csv")}
    assert set(report) == set(expected), set(report) ^ set(expected)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == sum(word is not None for word in expected.values()), errors
    for name, word in expected.items():
        outcome = report[name]
        if word is None:
            assert outcome.status != "error", (name, outcome)
        else:
            assert outcome.status == "error" and word in "; ".join(outcome.reasons), (name, outcome)
    holes = read_holes(tmp_path / "out")
    usable = holes[holes["status"] != "error"]  # (a hole with an error is kept too, with its reason)
    assert sorted(Path(s).name for s in usable["source"]) == sorted(n for n, w in expected.items() if w is None)
    shadowing = holes[holes["source"].str.endswith("shadowing.xls")].iloc[0]
    assert load_hole(tmp_path / "out", shadowing["hole_id"]).signals["extra_hole_id"][0] == 7.0
