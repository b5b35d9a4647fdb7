"""The Setitec reader against hostile files: huge header numbers, monstrous rows, extra columns
named like the dataset's own, ragged padding, out-of-range integer signals, binary junk, and holes
too big or too broken to plot. Each gets a one-line reason or is read right; none crashes a run or
corrupts what is stored."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

import oddities
from conftest import ROOT
from uos.cli import main
from uos.errors import InputError
from uos.holes.excel import OLE2_MAGIC
from uos.holes.read import read_bytes, read_source
from uos.holes.record import Hole

SMALL = "misc/23120040_23120040_ST_2412_60.xls"  # 135 samples, format 11: 10 header names, 9 values
# A child's peak memory: VmHWM starts afresh at exec (ru_maxrss carries the forking parent's).
PEAK_KB = (
    "def peak_kb():\n"
    "    lines = open('/proc/self/status').read().splitlines()\n"
    "    return int(next(line for line in lines if line.startswith('VmHWM')).split()[1])\n"
)


@pytest.fixture
def good_bytes(setitec_dir) -> bytes:
    return (setitec_dir / SMALL).read_bytes()


def _parse(tmp_path, files: dict[str, bytes], *extra: str):
    """`uos parse` on a folder holding `files`; the run's result and the stored holes."""
    from uos.dataset.layout import read_holes

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, data in files.items():
        (inputs / name).write_bytes(data)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["parse", str(inputs), "--out", str(out), *extra])
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.stderr
    return result, read_holes(out).set_index("hole_id", drop=False), out


def _reasons(hole: Hole) -> list[str]:
    return [f"{i.level}: {i.reason}" for i in hole.issues]


# --- 1. header integers beyond int64 ----------------------------------------------------------

HEAD_ROW = b"23120040\tConcentric Collet\tLight\t2412\t60\t2304\t"
VERSION_ROW = b"11\t2024-12-11:17:33:29"


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        (
            HEAD_ROW,
            HEAD_ROW.replace(b"\t2412\t", b"\t1e19\t"),
            "global_counter",
            "warning: Head Global Counter '1e19' is not a whole number in range: ignored",
        ),
        (
            HEAD_ROW,
            HEAD_ROW.replace(b"\t60\t", b"\t99999999999999999999\t"),
            "tool_age",
            "warning: Head Local Counter 1 '99999999999999999999' is not a whole number in range: ignored",
        ),
        (
            VERSION_ROW,
            VERSION_ROW.replace(b"11", b"1e30"),
            "format_version",
            "error: Version '1e30' is not a whole number in range",
        ),
    ],
    ids=["global_counter", "tool_age", "version"],
)
def test_header_integer_beyond_int64_is_an_issue_not_a_crash(tmp_path, good_bytes, old, new, field, reason):
    assert good_bytes.count(old) == 1
    hostile = good_bytes.replace(old, new)
    hole = read_bytes(hostile, "hostile.xls")
    assert hole.meta[field] is None
    assert reason in _reasons(hole)
    other = good_bytes.replace(HEAD_ROW, HEAD_ROW.replace(b"\t2412\t", b"\t2413\t"))
    result, holes, _ = _parse(tmp_path, {"good.xls": other, "hostile.xls": hostile})
    assert len(holes) == 2, result.stderr
    row = holes[holes["source"].str.endswith("hostile.xls")].iloc[0]
    assert reason.split(": ", 1)[1] in [i["reason"] for i in row["issues"]]


def test_integer_fields_of_program_and_step_results_beyond_int64(good_bytes):
    step_result = b"1,000\t64,000\t1,920\t"
    assert good_bytes.count(step_result) == 1
    hole = read_bytes(good_bytes.replace(step_result, b"1,000\t1e30\t1,920\t"), "x.xls")
    assert hole.step_results[0]["stop_code"] is None
    assert "warning: Step Results 'Stop Code' '1e30' is not a whole number in range: ignored" in _reasons(hole)


# --- 2. one monstrous row ---------------------------------------------------------------------


def _with_wide_row(raw: bytes, position: int, fields: int) -> bytes:
    wide = "\t".join(["-1,000"] * fields)
    return oddities.edited(raw, lambda rows: [*rows[:position], wide.split("\t"), *rows[position:]])


@pytest.mark.parametrize(
    ("position", "fields"),
    [(0, 2_000_000), (60, 2_000_000), (60, 50_000), (60, 31)],
    ids=["first-14MB", "later-14MB", "later-350kB", "later-31-values"],
)
def test_a_row_far_wider_than_the_header_is_an_error_in_bounded_memory(tmp_path, good_bytes, position, fields):
    path = tmp_path / "wide.xls"
    path.write_bytes(_with_wide_row(good_bytes, position, fields))
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from uos.holes.read import read_source\n"
        "from uos.errors import InputError\n"
        "try:\n"
        f"    read_source({str(path)!r})\n"
        "except InputError as exc:\n"
        "    print(exc.reason)\n"
        f"{PEAK_KB}print(peak_kb())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    reason, peak_kb = result.stdout.splitlines()
    assert reason == f"Datas row {position + 1} has {fields} values: the header names 10 columns"
    assert int(peak_kb) < 600_000


# --- 3. extra columns named like the dataset's own -------------------------------------------


@pytest.mark.parametrize("name", ["Hole ID", "Sample", "Depth mm", "depth_mm", "hole_id", "sample", "I Torque (A)"])
def test_an_extra_column_never_shadows_a_canonical_one(tmp_path, good_bytes, name):
    from uos.dataset.layout import load_hole

    head, header, rows = oddities._split(good_bytes)
    header = header.rstrip("\r\n\t").split("\t")[:9]
    hostile = oddities._join(head, "\t".join([*header, name]), [[*r[:9], "7,000"] for r in rows])
    original = read_bytes(good_bytes, "good.xls")
    hole = read_bytes(hostile, "hostile.xls")
    np.testing.assert_array_equal(hole.signals["depth_mm"], original.signals["depth_mm"])
    np.testing.assert_array_equal(hole.signals["torque_a"], original.signals["torque_a"])
    extra = [n for n in hole.signals if n not in original.signals]
    assert len(extra) == 1 and extra[0].startswith("extra_") and (hole.signals[extra[0]] == 7.0).all()
    assert any(f"Datas column '{name}' stored as '{extra[0]}'" in r for r in _reasons(hole))

    result, holes, out = _parse(tmp_path, {"hostile.xls": hostile})
    assert result.exit_code == 0, result.stderr
    stored = load_hole(out, holes.index[0])
    np.testing.assert_array_equal(stored.signals["depth_mm"], original.signals["depth_mm"])
    np.testing.assert_array_equal(stored.signals[extra[0]], hole.signals[extra[0]])
    from uos.labels.label import label_dataset
    from uos.labels.table import read_labels

    label_dataset(out, tmp_path / "labels")  # crashed when the extra had taken hole_id or sample
    assert read_labels(tmp_path / "labels")["hole_id"].tolist() == [holes.index[0]]


def test_text_in_an_extra_column_costs_no_hole(good_bytes):
    """A comment column: its text is stored as empty, with a warning; the signals are whole."""
    head, header, rows = oddities._split(good_bytes)
    header = header.rstrip("\r\n\t").split("\t")[:9]
    commented = [[*r[:9], "hello" if i % 2 else "1,5"] for i, r in enumerate(rows)]
    hole = read_bytes(oddities._join(head, "\t".join([*header, "Comment"]), commented), "comment.xls")
    original = read_bytes(good_bytes, "good.xls")
    np.testing.assert_array_equal(hole.signals["torque_a"], original.signals["torque_a"])
    assert np.isnan(hole.signals["comment"][1::2]).all() and (hole.signals["comment"][::2] == 1.5).all()
    texts = len(rows) // 2
    assert f"warning: Datas column 'Comment': {texts} values that are not numbers stored as empty" in _reasons(hole)
    # The same in a row of another width (read by pyarrow's odd-row handler): still no hole lost.
    padded = [[*r[:9], "hello", "", ""] if i == 7 else [*r[:9], "1,5"] for i, r in enumerate(rows)]
    hole = read_bytes(oddities._join(head, "\t".join([*header, "Comment"]), padded), "padded.xls")
    np.testing.assert_array_equal(hole.signals["torque_a"], original.signals["torque_a"])
    assert np.isnan(hole.signals["comment"][7]) and np.count_nonzero(np.isnan(hole.signals["comment"])) == 1
    assert "warning: Datas column 'Comment': 1 values that are not numbers stored as empty" in _reasons(hole)
    torque_text = [[r[0], "hello", *r[2:9]] if i == 5 else r[:9] for i, r in enumerate(rows)]
    with pytest.raises(InputError, match="column 'I Torque \\(A\\)': 'hello' is not a number"):
        read_bytes(oddities._join(head, "\t".join(header), torque_text), "torque.xls")


def test_thousands_of_extra_columns_are_not_stored(good_bytes):
    """Every column is stored for every sample of every hole in the dataset: 3,000 extra columns
    in one file beside a 5 M-sample hole took 21 GB. Beyond what a unit writes, they are ignored."""
    head, header, rows = oddities._split(good_bytes)
    header = header.rstrip("\r\n\t").split("\t")[:9]
    names = [f"Extra {i}" for i in range(3000)]
    hostile = oddities._join(head, "\t".join([*header, *names]), [[*r[:9], *["1,0"] * 3000] for r in rows[:200]])
    hole = read_bytes(hostile, "wide.xls")
    assert len(hole.signals) <= 7 + 32 + 2  # (+ the derived columns)
    assert "warning: 2970 Datas columns beyond the 39 a unit writes: ignored" in _reasons(hole)
    original = read_bytes(good_bytes, "good.xls")
    np.testing.assert_array_equal(hole.signals["torque_a"], original.signals["torque_a"][:200])


# --- 4. the table width -----------------------------------------------------------------------


@pytest.mark.parametrize("row", [0, 1, 70])
def test_trailing_tabs_on_one_row_do_not_decide_the_width(good_bytes, row):
    original = read_bytes(good_bytes, "good.xls")

    def pad(rows):
        rows[row] = [*rows[row], "", ""]
        return rows

    hole = read_bytes(oddities.edited(good_bytes, pad), "padded.xls")
    assert hole.n_samples == original.n_samples
    assert hole.issues == original.issues
    for name, column in original.signals.items():
        np.testing.assert_array_equal(hole.signals[name], column, err_msg=name)


def test_a_short_row_in_the_middle_is_dropped_and_the_order_kept(good_bytes):
    original = read_bytes(good_bytes, "good.xls")
    hostile = oddities.edited(good_bytes, lambda rows: [*rows[:40], rows[40][:3], *rows[40:]])
    hole = read_bytes(hostile, "short.xls")
    np.testing.assert_array_equal(hole.signals["depth_mm"], original.signals["depth_mm"])
    assert "warning: 1 incomplete row in the Datas table dropped (truncated file?)" in _reasons(hole)


# --- 5. integer signals out of range ----------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [("1e30", "1e+30"), ("-1e19", "-1e+19"), ("2,5", "2.5")])
def test_a_stop_code_out_of_range_is_an_error_never_a_wrapped_value(tmp_path, good_bytes, value, shown):
    def edit(rows):
        rows[10][6] = value
        return rows

    hostile = oddities.edited(good_bytes, edit)
    hole = read_bytes(hostile, "stop.xls")
    stop = hole.signals["stop_code"]
    assert np.isnan(stop[10]) and not (stop[np.isfinite(stop)] < 0).any()
    assert f"error: Stop code: 1 value not a whole number in range (first: {shown} in Datas row 11)" in _reasons(hole)
    result, holes, _ = _parse(tmp_path, {"stop.xls": hostile})
    assert result.exit_code == 1
    assert holes.iloc[0]["status"] == "error"
    # One reason for the value, not a second 'non-finite values' for the NaN left in its place.
    assert [r for r in holes.iloc[0]["issues"] if "Stop code" in r["reason"]] == [
        {"level": "error", "reason": f"Stop code: 1 value not a whole number in range (first: {shown} in Datas row 11)"}
    ]


def test_a_negative_stop_code_is_a_warning(tmp_path, good_bytes):
    def edit(rows):
        rows[10][6] = "-5,000"
        return rows

    _, holes, _ = _parse(tmp_path, {"stop.xls": oddities.edited(good_bytes, edit)})
    reasons = [i["reason"] for i in holes.iloc[0]["issues"]]
    assert "Stop code: 1 negative values (stop codes are bit flags)" in reasons


# --- 6. binary junk, NaN holes: one Error line ------------------------------------------------


def test_binary_excel_junk_is_an_input_error(tmp_path, good_bytes, capsys):
    rng = np.random.default_rng(3)
    for size in (0, 600, 20_000):
        with pytest.raises(InputError) as info:
            read_bytes(OLE2_MAGIC + rng.bytes(size), "junk.xls")
        assert info.value.reason.startswith("binary Excel file that xlrd cannot read")
    # A workbook whose streams are damaged: xlrd fails in many ways, each one an InputError.
    resaved = tmp_path / "resaved.xls"
    from test_excel_resave import _resave_as_excel

    source = tmp_path / "good.xls"
    source.write_bytes(good_bytes)
    _resave_as_excel(source, resaved)
    workbook = resaved.read_bytes()
    reasons: list[str] = []
    for trial in range(60):
        damaged = np.frombuffer(workbook, dtype=np.uint8).copy()
        spots = rng.integers(512, len(damaged), 1 + trial % 30)
        damaged[spots] = rng.integers(0, 256, len(spots), dtype=np.uint8)
        try:
            read_bytes(damaged.tobytes(), "damaged.xls")
        except InputError as exc:  # (some damage leaves a readable workbook)
            reasons.append(exc.reason)
    assert capsys.readouterr().out == ""  # xlrd's chatter never reaches stdout (predict's data)
    # In the file's terms, never the decoder's internals (an offset, "AssertionError", an index).
    internals = ("Error)", "index out of range", "unpack", "KeyError")
    assert reasons and not [r for r in reasons if any(word in r for word in internals) or re.search(r"\(\d+\)$", r)]


def test_show_and_predict_on_binary_junk_give_one_error_line(tmp_path):
    from uos.training.predict import predict_paths

    junk = tmp_path / "junk.xls"
    junk.write_bytes(OLE2_MAGIC + bytes(range(256)) * 20)
    result = CliRunner().invoke(main, ["show", str(junk)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"Error: {junk}: binary Excel file that xlrd cannot read")
    assert len(result.stderr.splitlines()) == 1
    records = list(predict_paths([str(junk)], model=None))
    assert [(r["source"], r["status"]) for r in records] == [(str(junk), "error")]
    assert records[0]["error"].startswith("binary Excel file that xlrd cannot read")


@pytest.mark.parametrize("column", [0, 1, 2])
def test_show_a_hole_whose_signal_is_all_nan(tmp_path, good_bytes, column):
    def edit(rows):
        for row in rows:
            row[column] = "NaN"
        return rows

    path = tmp_path / "nan.xls"
    path.write_bytes(oddities.edited(good_bytes, edit))
    result = CliRunner().invoke(main, ["show", str(path), "--width", "100"])
    assert result.exception is None, result.stderr
    assert result.exit_code == 0
    assert "status        error" in result.stdout


@pytest.mark.parametrize("value", ["-1e308", "1e308"])
def test_show_a_hole_with_positions_near_the_float_limit(tmp_path, good_bytes, value):
    """Three positions of -1e308 overflowed the plotting library's axis arithmetic."""

    def edit(rows):
        for row in rows[10:13]:
            row[0] = value
        return rows

    path = tmp_path / "far.xls"
    path.write_bytes(oddities.edited(good_bytes, edit))
    result = CliRunner().invoke(main, ["show", str(path), "--width", "100"])
    assert result.exception is None, result.stderr
    assert result.exit_code == 0 and "depth (mm)" in result.stdout
    assert "status        error" in result.stdout


# --- 7. a huge hole plots fast ----------------------------------------------------------------


def test_show_plots_a_5m_sample_hole_in_seconds():
    from uos.show import render_plot

    n = 5_000_000
    depth = np.linspace(0.5, 40.0, n)
    torque = np.sin(depth)
    torque[3_333_333] = 50.0  # one spike: the decimated view must keep it
    signals = {"depth_mm": depth, "torque_a": torque, "thrust_a": np.cos(depth), "step": (depth > 20).astype(np.int64)}
    hole = Hole(meta={"hole_id": "big-1"}, signals=signals)
    start = time.perf_counter()
    text = render_plot(hole, width=120, height=20)
    assert time.perf_counter() - start < 3.0
    assert "depth (mm)" in text


def test_decimated_view_keeps_extremes_in_order():
    from uos.show import decimated

    x = np.arange(1000.0)
    y = np.zeros(1000)
    y[123], y[456] = 9.0, -9.0
    xs, ys = decimated(x, y, 50)
    assert len(xs) <= 100 and ys.max() == 9.0 and ys.min() == -9.0
    assert (np.diff(xs) >= 0).all()
    assert decimated(x[:80], y[:80], 50)[0].tolist() == x[:80].tolist()


# --- 8. memory ----------------------------------------------------------------------------------


def test_reading_a_big_file_costs_under_three_times_its_size(tmp_path, good_bytes):
    head, header, rows = oddities._split(good_bytes)
    body = "\n".join("\t".join(r) for r in rows).encode("latin-1") + b"\n"
    path = tmp_path / "big.xls"
    with path.open("wb") as handle:
        handle.write(head.encode("latin-1") + header.encode("latin-1") + b"\n")
        for _ in range(100_000_000 // len(body)):
            handle.write(body)
    code = (
        "import sys\n"
        "import pyarrow.csv\n"
        "from uos.holes.read import read_bytes\n"
        f"raw = open({str(path)!r}, 'rb').read()\n"
        f"{PEAK_KB}before = peak_kb()\n"
        "hole = read_bytes(raw, 'big.xls')\n"
        "print(before, peak_kb(), hole.n_samples, len(raw))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    before_kb, after_kb, samples, size = map(int, result.stdout.split())
    assert samples == len(rows) * (100_000_000 // len(body))
    # Beyond the bytes themselves: the signal arrays (9 float64 per ~60-byte row) and little else.
    assert (after_kb - before_kb) * 1024 < 1.75 * size, json.dumps([before_kb, after_kb, size])


def test_show_a_hole_with_nan_steps_and_a_step_change_every_sample(good_bytes):
    from uos.holes.quality import QualityRules, check_source
    from uos.show import render_plot, render_summary

    hole = read_bytes(good_bytes, "good.xls")
    n = hole.n_samples
    hole.signals["step"] = np.where(np.arange(n) % 2 == 0, 1.0, np.nan)
    hole.issues = check_source(hole, QualityRules())
    assert "status        error" in render_summary(hole)
    hole.signals["step"] = np.arange(n) % 2
    start = time.perf_counter()
    assert "depth (mm)" in render_plot(hole, width=100)
    assert time.perf_counter() - start < 2.0


def _untrained_model():
    """The product's DepthModel with fresh (untrained) weights: real inference, answers of no worth."""
    from uos.params import load_params
    from uos.training.model import DepthNet, NetConfig
    from uos.training.pyfunc import DepthModel
    from uos.training.train import TrainParams

    model = DepthModel()
    model.config = load_params(TrainParams, "train", ROOT / "params.toml").with_profile("ci").model_config()
    model.network = DepthNet(NetConfig(**model.config.net)).eval()
    return model


def test_predict_answers_the_holes_around_a_bad_input_in_input_order(tmp_path, setitec_dir):
    from uos.training.predict import predict_paths

    files = {
        "a.xls": (setitec_dir / "mql/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls").read_bytes(),
        "b.xls": OLE2_MAGIC + bytes(range(256)) * 20,
        "c.xls": (setitec_dir / "tuhh/001_V1/V1_001.xls").read_bytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    inputs = [str(tmp_path / name) for name in files]
    records = list(predict_paths(inputs, _untrained_model()))
    assert [r["source"] for r in records] == inputs
    assert [r["error"] is None for r in records] == [True, False, True]
    assert records[1]["status"] == "error" and records[1]["error"].startswith("binary Excel file that xlrd cannot read")
    # In the order given, not in name order; a missing input in its place.
    given = [inputs[2], str(tmp_path / "missing.xls"), inputs[0]]
    records = list(predict_paths(given, _untrained_model()))
    assert [r["source"] for r in records] == given
    assert [r["error"] for r in records][1] == "no such file or directory"


def test_odd_rows_keep_their_place_in_a_table_read_block_by_block(good_bytes):
    """Tables beyond 16 MB are read in blocks into arrays sized once: odd rows still fit in."""
    head, header, rows = oddities._split(good_bytes)
    rows = rows * (17_000_000 // sum(len("\t".join(r)) + 1 for r in rows) + 1)
    clean = read_bytes(oddities._join(head, header, rows), "clean.xls")
    padded = [list(r) for r in rows]
    for i in (0, 1, len(rows) // 2, len(rows) - 1):
        padded[i] = [*padded[i], "", ""]
    padded.insert(len(rows) // 3, rows[5][:2])  # a short row: dropped, with a warning
    hole = read_bytes(oddities._join(head, header, padded), "padded.xls")
    assert hole.n_samples == clean.n_samples > 250_000
    for name, column in clean.signals.items():
        np.testing.assert_array_equal(hole.signals[name], column, err_msg=name)
    assert "warning: 1 incomplete row in the Datas table dropped (truncated file?)" in _reasons(hole)


def test_a_name_with_a_latin1_byte_is_printable_in_predict_and_show(tmp_path, setitec_dir):
    """Old units wrote `Pset_n°` in Latin-1: the name reaches the JSON line and the terminal as
    `\\xb0`, never as a lone surrogate that other JSON readers refuse."""
    from uos.show import hole_json
    from uos.training.predict import predict_paths

    data = (setitec_dir / "tuhh/001_V1/V1_001.xls").read_bytes()
    path = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"Pset_n\xb0 3.xls"))
    with open(os.fsencode(path), "wb") as handle:
        handle.write(data)
    (record,) = predict_paths([str(tmp_path)], _untrained_model())
    assert record["source"] == f"{tmp_path}/Pset_n\\xb0 3.xls" and record["error"] is None
    json.dumps(record).encode("utf-8")
    shown = hole_json(read_source(path))
    assert "Pset_n\\\\xb0 3.xls" in shown and "\\udcb0" not in shown
    shown.encode("utf-8")
