"""`uos synth`: genuine Setitec files, same seed same bytes, ground truth that parsing gives back."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
from click.testing import CliRunner

from uos.cli import main
from uos.dataset.build import parse_dataset
from uos.dataset.layout import load_hole, read_holes
from uos.holes import stopcodes
from uos.synth.generate import build_hole, synthesize
from uos.synth.params import SynthParams
from uos.synth.plan import plan_fleet
from uos.synth.truth import read_truth

# Enough holes to meet every kind of hole and both units.
PARAMS = dataclasses.replace(
    SynthParams(), holes=48, seed=11, air_cut_rate=0.05, single_layer_rate=0.06, abort_rate=0.06
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, PARAMS)
    parsed = tmp_path_factory.mktemp("parsed")
    summary = parse_dataset([str(out)], parsed, cache_root=tmp_path_factory.mktemp("cache"))
    return out, parsed, summary


def _digest(folder) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    small = dataclasses.replace(PARAMS, holes=10)
    synthesize(tmp_path / "a", small)
    synthesize(tmp_path / "b", small)
    synthesize(tmp_path / "c", dataclasses.replace(small, seed=12))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_every_kind_of_hole_is_generated(generated):
    out, _, _ = generated
    truth = read_truth(out / "truth.csv")
    assert set(truth["kind"]) == {"normal", "single-layer", "air-cut", "aborted"}
    assert set(truth["unit"]) == {"production", "lab"}
    assert set(truth["bottom_material"].dropna()) <= {"ti", "al"}


def test_files_parse_back_to_the_ground_truth(generated):
    out, parsed, summary = generated
    truth = read_truth(out / "truth.csv").set_index("hole_id")
    assert [o.status for o in summary.outcomes if o.status == "error"] == []
    holes = read_holes(parsed).set_index("hole_id")
    assert sorted(holes.index) == sorted(truth.index)  # the parser finds each hole's id in its file
    for planned in plan_fleet(PARAMS):
        expected, row = build_hole(planned, PARAMS)
        hole = load_hole(parsed, row["hole_id"])
        # The signals are what was simulated, at the files' precision.
        assert hole.n_samples == len(expected.signals["depth_mm"])
        np.testing.assert_allclose(hole.signals["depth_mm"], expected.signals["depth_mm"], atol=5e-4)
        for column in ("torque_a", "thrust_a", "torque_empty_a", "thrust_empty_a"):
            np.testing.assert_allclose(hole.signals[column], np.round(expected.signals[column], 3), atol=1e-9)
        for column in ("step", "stop_code"):
            np.testing.assert_array_equal(hole.signals[column], expected.signals[column])
        # Keypoints are where the simulated drill point crossed the layers' surfaces.
        layers = planned.layers
        facts = truth.loc[row["hole_id"]]
        reached = hole.signals["depth_mm"].max()
        expected_points = {
            "entry_mm": layers[0].top_mm if layers else None,
            "transition_mm": layers[1].top_mm if len(layers) > 1 else None,
            "exit_mm": layers[-1].bottom_mm if layers else None,
        }
        for name, value in expected_points.items():
            if value is None or value > reached:
                assert np.isnan(facts[name]), (row["hole_id"], name)
            else:
                assert facts[name] == pytest.approx(value, abs=0.01), (row["hole_id"], name)


def test_keypoints_are_where_the_signals_say(generated):
    """On the parsed signals: no cutting before entry, cutting after it; none after the exit."""
    out, parsed, _ = generated
    truth = read_truth(out / "truth.csv")
    for _, facts in truth[truth["kind"] == "normal"].iterrows():
        hole = load_hole(parsed, facts["hole_id"])
        depth, torque = hole.signals["depth_mm"], hole.signals["torque_a"]
        tip = PARAMS.machines[facts["unit"]].tip_length_mm
        first_step = hole.signals["step"] == hole.signals["step"][0]
        before = first_step & (depth > facts["entry_mm"] - 1.5) & (depth < facts["entry_mm"] - 0.05)
        after = first_step & (depth > facts["entry_mm"] + tip) & (depth < facts["entry_mm"] + tip + 1.0)
        assert np.median(torque[before]) < 0.1, facts["hole_id"]
        assert np.median(torque[after]) > 0.5, facts["hole_id"]
        if not np.isnan(facts["exit_mm"]):
            inside = (depth > facts["exit_mm"] - 1.0) & (depth < facts["exit_mm"] - 0.1)
            through = (depth > facts["exit_mm"] + tip + 0.3) & (depth < facts["exit_mm"] + tip + 1.0)
            assert np.median(torque[inside]) > 1.0, facts["hole_id"]
            if through.any():  # a short program may end before the drill is fully through
                assert np.median(torque[through]) < 0.3, facts["hole_id"]


def test_machine_events_follow_the_keypoints(generated):
    out, parsed, _ = generated
    truth = read_truth(out / "truth.csv")
    production = truth[(truth["unit"] == "production") & (truth["kind"] == "normal")]
    assert len(production) > 5
    gap = 2.0
    tip = PARAMS.machines["production"].tip_length_mm
    for _, facts in production.iterrows():
        hole = load_hole(parsed, facts["hole_id"])
        depth, code = hole.signals["depth_mm"], hole.signals["stop_code"]
        rise = depth[np.flatnonzero(code & stopcodes.TORQUE_MAX)[0]]
        drop = depth[np.flatnonzero(code & stopcodes.TORQUE_MIN)[0]]
        assert facts["transition_mm"] < rise < facts["transition_mm"] + tip + 0.05
        assert facts["exit_mm"] + gap < drop < facts["exit_mm"] + tip + gap + 0.3


def test_odd_holes(generated):
    out, parsed, summary = generated
    truth = read_truth(out / "truth.csv").set_index("hole_id")
    reasons = {o.hole_id: o.reasons for o in summary.outcomes}
    for hole_id, facts in truth.iterrows():
        if facts["kind"] == "air-cut":
            assert any(r.startswith("air cut") for r in reasons[hole_id])
            assert np.isnan(facts["entry_mm"])
        elif facts["kind"] == "aborted":
            hole = load_hole(parsed, hole_id)
            assert hole.signals["stop_code"][-1] == stopcodes.ABORT
            assert np.isnan(facts["exit_mm"])
        elif facts["kind"] == "single-layer":
            assert np.isnan(facts["transition_mm"])


def test_cli_writes_files_and_refuses_a_used_folder(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["synth", str(tmp_path / "out"), "--holes", "3", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.xls"))) == 3
    assert (tmp_path / "out" / "truth.csv").exists()
    again = runner.invoke(main, ["synth", str(tmp_path / "out"), "--holes", "3"])
    assert again.exit_code == 1
    assert again.stderr == (
        f"Error: {tmp_path / 'out'} is not empty: "
        "choose an empty folder, or --overwrite to replace the generated files\n"
    )
