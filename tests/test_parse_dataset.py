"""The dataset `uos parse` writes, and re-runs that cost only what changed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from uos.dataset.build import parse_dataset
from uos.dataset.layout import load_hole, read_holes, read_signals
from uos.holes import read_source

SOME = [
    "mql/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls",
    "mql/E00401009F45C395_114-V3-002-MQ_ST_1875_2.xls",
    "tuhh/001_V1/V1_001.xls",
    "tuhh/005_V5/V5_10.xls",
    "misc/23120040_23120040_ST_2409_59.xls",
    "unk/MQTT_to_XLS_17070141_798.xls",
]


@pytest.fixture
def raw_dir(tmp_path, setitec_dir):
    folder = tmp_path / "raw"
    for name in SOME:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(setitec_dir / name, target)
    return folder


def test_dataset_tables_hold_what_the_parser_read(tmp_path, raw_dir):
    out = tmp_path / "parsed"
    summary = parse_dataset([str(raw_dir)], out)
    assert summary.n_holes == len(SOME)
    holes = read_holes(out)
    assert holes["hole_id"].is_unique
    assert set(holes.columns) >= {
        "hole_id",
        "source",
        "sha256",
        "signals_hash",
        "format_version",
        "date",
        "controller_sn",
        "motor_sn",
        "head_id",
        "cutting_tool",
        "global_counter",
        "tool_age",
        "program",
        "step_results",
        "status",
        "issues",
    }
    signals = read_signals(out)
    assert len(signals) == summary.n_samples == int(holes["n_samples"].sum())
    for name in SOME:
        direct = read_source(raw_dir / name)
        stored = load_hole(out, direct.hole_id)
        for column, values in direct.signals.items():
            np.testing.assert_array_equal(stored.signals[column], values, err_msg=f"{name} {column}")
        assert stored.program == direct.program
    v5 = holes.set_index("hole_id").loc[read_source(raw_dir / "tuhh/005_V5/V5_10.xls").hole_id]
    assert v5["status"] == "warning"
    assert json.loads((out / "summary.json").read_text())["holes"] == len(SOME)


def test_unchanged_inputs_are_a_no_op_and_new_ones_cost_only_themselves(tmp_path, raw_dir, setitec_dir):
    out = tmp_path / "parsed"
    first = parse_dataset([str(raw_dir)], out)
    assert first.n_parsed == len(SOME)
    manifest_mtime = (out / "manifest.json").stat().st_mtime_ns

    again = parse_dataset([str(raw_dir)], out)
    assert again.up_to_date
    assert (out / "manifest.json").stat().st_mtime_ns == manifest_mtime

    shutil.copy(setitec_dir / "mql/E00401009F45C395_114-V3-002-MQ_ST_1876_3.xls", raw_dir / "new.xls")
    grown = parse_dataset([str(raw_dir)], out)
    assert grown.n_parsed == 1
    assert grown.n_holes == len(SOME) + 1

    shutil.rmtree(out)  # DVC removes a stage's outputs before running it: the cache still serves
    rebuilt = parse_dataset([str(raw_dir)], out)
    assert rebuilt.n_parsed == 0
    assert rebuilt.n_holes == len(SOME) + 1


def test_same_bytes_twice_is_one_hole(tmp_path, raw_dir):
    shutil.copy(raw_dir / SOME[0], raw_dir / "copy.xls")
    summary = parse_dataset([str(raw_dir)], tmp_path / "out")
    assert summary.n_holes == len(SOME)
    # raw/copy.xls sorts first, so the original under mql/ is the one reported as its duplicate.
    first = next(o for o in summary.outcomes if o.source.endswith("copy.xls"))
    second = next(o for o in summary.outcomes if o.source.endswith(SOME[0]))
    assert first.status == "ok"
    assert second.status == "warning"
    assert second.reasons == [f"duplicate of {first.source} (same bytes): not added again"]


def test_globs_and_single_files(tmp_path, raw_dir):
    summary = parse_dataset([str(raw_dir / "mql" / "*.xls"), str(raw_dir / SOME[2])], tmp_path / "out")
    assert summary.n_holes == 3


def test_capture_folders_are_found_when_walking(tmp_path, mqtt_dir):
    summary = parse_dataset([str(mqtt_dir)], tmp_path / "out")
    assert len(summary.outcomes) == 7
    assert [o.source.rsplit("/", 1)[-1] for o in summary.outcomes if o.status == "error"] == [
        "data_20250623",
        "data_20250626",
    ]


def test_signals_written_in_chunks_read_back_whole(tmp_path, monkeypatch):
    """The signals table is converted a few rows at a time (memory): holes cut across chunks,
    a missing column and an integer column with gaps come back as they went in."""
    import uos.dataset.layout as layout

    monkeypatch.setattr(layout, "_CHUNK_ROWS", 7)
    rng = np.random.default_rng(3)
    holes = []
    for index, n in enumerate([5, 13, 1, 22]):
        signals = {name: rng.normal(size=n) for name in ("depth_mm", "torque_a", "thrust_a")}
        signals["step"] = np.arange(n, dtype=np.int64) if index != 2 else np.array([np.nan])
        if index == 1:
            signals["rpm"] = rng.normal(size=n)
        holes.append((f"h{index}", signals))
    assert layout.write_signals(tmp_path / "signals", holes) == 41
    (tmp_path / "holes.parquet").touch()  # read_signals only checks that the folder is there
    frame = read_signals(tmp_path)
    for hole_id, signals in holes:
        rows = frame[frame["hole_id"] == hole_id].sort_values("sample")
        assert rows["sample"].tolist() == list(range(len(signals["depth_mm"])))
        for name, values in signals.items():
            np.testing.assert_array_equal(rows[name].to_numpy(dtype=float), values.astype(float))
        assert rows["rpm"].isna().all() == (hole_id != "h1")
