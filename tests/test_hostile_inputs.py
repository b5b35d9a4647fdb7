"""Hostile inputs: each gets a clear one-line reason, never a traceback, and never stops a run."""

from __future__ import annotations

import random

import pytest
from click.testing import CliRunner

import oddities
from uos.cli import main
from uos.errors import InputError
from uos.holes import read_source

SMALL = "misc/23120040_23120040_ST_2412_60.xls"  # 135 samples, format 11
MQL = "mql/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls"  # 8,366 samples, format 9


@pytest.fixture
def good_bytes(setitec_dir) -> bytes:
    return (setitec_dir / SMALL).read_bytes()


def _data_start(raw: bytes) -> int:
    return raw.index(b"Position (mm)")


def _hostile_files(raw: bytes) -> dict[str, bytes]:
    start = _data_start(raw)
    header_end = raw.index(b"\n", start) + 1
    row_50 = header_end
    for _ in range(50):
        row_50 = raw.index(b"\n", row_50) + 1
    rng = random.Random(7)
    lines = raw.split(b"\n")
    bad_cell = lines.index(raw[start:header_end].rstrip(b"\n")) + 10
    cells = lines[bad_cell].split(b"\t")
    cells[1] = b"abc"
    lines[bad_cell] = b"\t".join(cells)
    return {
        "empty.xls": b"",
        "junk.xls": bytes(rng.randrange(256) for _ in range(5000)),
        "no_datas.xls": raw[: raw.index(b"*** Datas ***")],
        "header_only.xls": raw[:header_end],
        "non_numeric.xls": b"\n".join(lines),
        "utf16.xls": raw.decode("latin-1").encode("utf-16"),
        "truncated.xls": raw[: row_50 + 12],  # cut inside row 51, after its second cell
    }


EXPECTED_ERRORS = {
    "empty.xls": "empty file",
    "junk.xls": "binary content, not a Setitec text file",
    "no_datas.xls": "no Datas section (no header line starting with 'Position (mm)')",
    "header_only.xls": "the Datas table has a header but no rows",
    "non_numeric.xls": "Datas row 10, column 'I Torque (A)': 'abc' is not a number",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_bad_file_gives_its_reason(tmp_path, good_bytes, name):
    path = tmp_path / name
    path.write_bytes(_hostile_files(good_bytes)[name])
    with pytest.raises(InputError) as info:
        read_source(path)
    assert info.value.reason == EXPECTED_ERRORS[name]
    assert str(info.value) == f"{path}: {EXPECTED_ERRORS[name]}"


def test_utf16_resave_reads_like_the_original(tmp_path, good_bytes, setitec_dir):
    path = tmp_path / "utf16.xls"
    path.write_bytes(_hostile_files(good_bytes)["utf16.xls"])
    hole, original = read_source(path), read_source(setitec_dir / SMALL)
    assert hole.meta["signals_hash"] == original.meta["signals_hash"]
    assert hole.hole_id == original.hole_id


def test_truncated_file_keeps_its_complete_rows(tmp_path, good_bytes):
    path = tmp_path / "truncated.xls"
    path.write_bytes(_hostile_files(good_bytes)["truncated.xls"])
    hole = read_source(path)
    assert hole.n_samples == 50
    assert [i.reason for i in hole.issues] == ["1 incomplete row in the Datas table dropped (truncated file?)"]


def test_missing_required_column_is_an_error(tmp_path, good_bytes):
    from uos.holes.quality import QualityRules, check_hole

    text = good_bytes.decode("latin-1")
    start = text.index("Position (mm)")
    table = [line.split("\t") for line in text[start:].split("\n")]
    for row in table:  # drop the thrust column from header and rows
        if len(row) > 2:
            del row[2]
    path = tmp_path / "no_thrust.xls"
    path.write_bytes((text[:start] + "\n".join("\t".join(r) for r in table)).encode("latin-1"))
    hole = read_source(path)
    issues = check_hole(hole, QualityRules())
    assert "missing required columns: I Thrust (A)" in [i.reason for i in issues if i.level == "error"]


def test_cli_reports_each_bad_file_and_keeps_the_good_ones(tmp_path, good_bytes):
    from uos.dataset.layout import read_holes

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "good.xls").write_bytes(good_bytes)
    for name, data in _hostile_files(good_bytes).items():
        (inputs / name).write_bytes(data)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["parse", str(inputs), "--out", str(out)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    # The truncated file is read (50 rows), but 50 rows of this hole cover under 3 mm of travel:
    # no stack fits in it, so it is an error too, with its reasons.
    truncated = [line for line in errors if "truncated.xls" in line]
    assert len(truncated) == 1 and "too short to hold a stack (at least 3 mm)" in truncated[0]
    errors.remove(truncated[0])
    assert errors == [f"Error: {inputs / name}: {reason}" for name, reason in sorted(EXPECTED_ERRORS.items())]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    holes = read_holes(out)
    assert sorted(holes["source"].str.rsplit("/", n=1).str[-1]) == [
        "good.xls",
        "truncated.xls",
        "utf16.xls",
    ]


def test_cli_strict_stops_at_the_first_failure(tmp_path, good_bytes):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "a_good.xls").write_bytes(good_bytes)
    (inputs / "b_empty.xls").write_bytes(b"")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["parse", str(inputs), "--out", str(out), "--strict"])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {inputs / 'b_empty.xls'}: empty file\n"
    assert not out.exists()


def test_cli_allow_errors_exits_zero(tmp_path, good_bytes):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "good.xls").write_bytes(good_bytes)
    (inputs / "empty.xls").write_bytes(b"")
    result = CliRunner().invoke(main, ["parse", str(inputs), "--out", str(tmp_path / "out"), "--allow-errors"])
    assert result.exit_code == 0
    assert f"Error: {inputs / 'empty.xls'}: empty file" in result.stderr.splitlines()


def test_cli_missing_input(tmp_path):
    result = CliRunner().invoke(main, ["parse", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path / 'nope'}: no such file or directory\n"


def test_cli_bad_params_file(tmp_path, good_bytes):
    (tmp_path / "good.xls").write_bytes(good_bytes)
    params = tmp_path / "params.toml"
    params.write_text("[parse]\nmin_sample = 3\n")
    result = CliRunner().invoke(
        main,
        [
            "parse",
            str(tmp_path / "good.xls"),
            "--out",
            str(tmp_path / "out"),
            "--params",
            str(params),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {params} [parse]: unknown key min_sample "
        "(known: min_samples, few_samples, air_cut_torque_a, air_cut_contact_mm, min_span_mm, workers, allow_errors)\n"
    )


def _with_column(raw: bytes, column: int, value: str) -> bytes:
    """Every Datas row with `value` in `column` (0: Position, 1: I Torque)."""

    def edit(rows):
        for row in rows:
            row[column] = value
        return rows

    return oddities.edited(raw, edit)


def test_holes_whose_signals_are_all_unreadable_fail_only_themselves_in_show_and_annotate(tmp_path, setitec_dir):
    """A dataset keeps a hole whose positions are all NaN, or whose torque is all empty, as an
    error; `uos show` of it gives its status and no traceback, and `uos annotate` opens on the
    other holes."""
    from uos.annotate.session import open_session
    from uos.dataset.build import parse_dataset
    from uos.dataset.layout import load_hole, read_holes
    from uos.labels.label import label_dataset

    raw = (setitec_dir / MQL).read_bytes()
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "good.xls").write_bytes(raw)
    (tmp_path / "raw" / "nan_depth.xls").write_bytes(_with_column(raw, 0, "nan"))
    (tmp_path / "raw" / "empty_torque.xls").write_bytes(_with_column(raw, 1, ""))
    parse_dataset([str(tmp_path / "raw")], tmp_path / "parsed", cache_root=tmp_path / "cache")
    holes = read_holes(tmp_path / "parsed", ["hole_id", "source", "status"])
    broken = holes[holes["source"].str.contains("nan_depth|empty_torque")]
    assert len(broken) == 2 and set(broken["status"]) == {"error"}
    for hole_id in broken["hole_id"]:
        hole = load_hole(tmp_path / "parsed", hole_id)
        assert len(hole.signals["depth_mm"]) == len(hole.signals["torque_a"]) == hole.n_samples > 0
        shown = CliRunner().invoke(main, ["show", hole_id, "--data", str(tmp_path / "parsed"), "--width", "80"])
        assert shown.exit_code == 0 and shown.exception is None, shown.output
        assert "status        error" in shown.output

    label_dataset(tmp_path / "parsed", tmp_path / "labels")
    session = open_session(tmp_path / "parsed", tmp_path / "labels", tmp_path / "annotations")
    good = holes.loc[holes["source"].str.endswith("good.xls"), "hole_id"].item()
    assert good in session.holes


def test_show_of_a_broken_link_says_so_rather_than_looking_for_a_hole_id(tmp_path):
    (tmp_path / "gone.xls").symlink_to(tmp_path / "nowhere.xls")
    result = CliRunner().invoke(main, ["show", str(tmp_path / "gone.xls"), "--data", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"Error: {tmp_path / 'gone.xls'}: broken symbolic link"
