"""`uos label`: accurate on exact synthetic truth, signals alone agree with the machine's events on
real holes, confidence means something, human annotations always win."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import oddities
from uos.cli import main
from uos.dataset.build import parse_dataset
from uos.labels import annotations as human
from uos.labels.label import LabelParams, label_dataset
from uos.labels.table import read_labels
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams
from uos.synth.truth import read_truth

PARAMS = dataclasses.replace(
    SynthParams(), holes=72, seed=31, air_cut_rate=0.03, single_layer_rate=0.05, abort_rate=0.04
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    synthesize(raw, PARAMS)
    parsed = tmp_path_factory.mktemp("parsed")
    parse_dataset([str(raw)], parsed, cache_root=tmp_path_factory.mktemp("cache"))
    labels = tmp_path_factory.mktemp("labels")
    summary = label_dataset(parsed, labels, truth_path=raw / "truth.csv")
    return raw, parsed, labels, summary


def test_accuracy_against_exact_synthetic_truth(synthetic):
    _, _, _, summary = synthetic
    metrics = summary.metrics["synthetic"]
    assert metrics["holes"] == PARAMS.holes
    for name in ("entry", "transition", "exit"):
        assert metrics[name]["holes"] >= 55, name
        assert metrics[name]["mae_mm"] <= 0.2, (name, metrics[name])
        assert metrics[name]["wrong_presence"] <= 3, (name, metrics[name])


def test_confidence_means_something(synthetic):
    raw, _, labels, _ = synthetic

    rows = read_labels(labels).set_index("hole_id")
    truth = read_truth(raw / "truth.csv", by_hole=True)
    errors, confidences = [], []
    for name in ("entry", "transition", "exit"):
        joined = rows[[f"{name}_mm", f"{name}_confidence"]].join(truth[f"{name}_mm"].rename("truth")).dropna()
        errors += list((joined[f"{name}_mm"] - joined["truth"]).abs())
        confidences += list(joined[f"{name}_confidence"])
    errors, confidences = np.array(errors), np.array(confidences)
    confident = confidences >= 0.8
    assert confident.mean() > 0.6  # most labels are confident ...
    assert errors[confident].mean() <= 0.1  # ... and those are accurate
    assert np.percentile(errors[confident], 95) <= 0.3
    assert summary_buckets_are_reported(labels)


def summary_buckets_are_reported(labels) -> bool:
    metrics = json.loads((labels / "metrics.json").read_text())
    return all(metrics["synthetic"][k]["by_confidence"] for k in ("entry", "transition", "exit"))


def test_absent_points_carry_a_reason(synthetic):
    raw, _, labels, _ = synthetic

    rows = read_labels(labels).set_index("hole_id")
    truth = read_truth(raw / "truth.csv", by_hole=True)
    air = truth.index[truth["kind"] == "air-cut"]
    assert len(air) > 0
    for hole_id in air:
        for name in ("entry", "transition", "exit"):
            assert rows.at[hole_id, f"{name}_mm"] is None or np.isnan(rows.at[hole_id, f"{name}_mm"])
            assert rows.at[hole_id, f"{name}_reason"].startswith("no keypoints: air cut")
        assert rows.at[hole_id, "status"] == "error"  # the same gate as predict and serve: no answer
    single = truth.index[truth["kind"] == "single-layer"]
    for hole_id in single:
        assert np.isnan(rows.at[hole_id, "transition_mm"])
        assert rows.at[hole_id, "transition_reason"]


def test_human_annotations_always_win(synthetic, tmp_path):
    _, parsed, labels, _ = synthetic
    rows = read_labels(labels).set_index("hole_id")
    first, second, third = rows.index[rows["error"].isna()][:3]
    refused = rows.index[rows["error"].notna()][0]  # an air cut: no keypoints, whoever says
    notes = tmp_path / "annotations"
    human.save(
        notes,
        human.Annotation(refused, rows.at[refused, "signals_hash"], {"entry": 2.0, "exit": 9.0}, None, "dan", "t"),
    )
    human.save(
        notes,
        human.Annotation(first, rows.at[first, "signals_hash"], {"entry": 4.321, "exit": None}, None, "alice", "t"),
    )
    human.save(notes, human.Annotation(second, rows.at[second, "signals_hash"], {}, "broken tool", "bob", "t"))
    human.save(notes, human.Annotation(third, "0" * 64, {"entry": 1.0}, None, "carol", "t"))  # signals changed since
    summary = label_dataset(parsed, tmp_path / "labels", annotations_dir=notes)
    relabelled = read_labels(tmp_path / "labels").set_index("hole_id")
    assert relabelled.at[first, "entry_mm"] == 4.321
    assert relabelled.at[first, "entry_source"] == "human"
    assert relabelled.at[first, "entry_confidence"] == 1.0
    assert relabelled.at[first, "entry_reason"] == "set by alice on t"
    assert np.isnan(relabelled.at[first, "exit_mm"]) and relabelled.at[first, "exit_source"] == "human"
    assert relabelled.at[first, "transition_source"] != "human"  # not decided: automatic
    assert relabelled.at[second, "status"] == "rejected" and relabelled.at[second, "rejected"] == "broken tool"
    assert relabelled.at[third, "entry_source"] != "human"
    assert relabelled.at[refused, "status"] == "error" and np.isnan(relabelled.at[refused, "thickness_mm"])
    assert f"annotation for {third}: the hole's signals changed since it was annotated (not used)" in summary.problems


def test_signals_alone_agree_with_machine_events_on_real_holes(setitec_dir, tmp_path):
    """On setitec/mql every hole has a transition (0x1) and an exit (0x800) event: the detector,
    with the events hidden from it, must land within 0.3 mm of the event-anchored labels."""
    parsed = tmp_path / "parsed"
    parse_dataset([str(setitec_dir / "mql")], parsed)
    summary = label_dataset(parsed, tmp_path / "labels", params=LabelParams())
    rows = summary.rows
    assert len(rows) == 80
    assert all(r["transition_source"] == "event" and r["exit_source"] == "event" for r in rows)
    events = summary.metrics["signal_vs_events"]
    assert events["transition"]["holes"] == 80 and events["exit"]["holes"] == 80
    assert events["transition"]["mae_mm"] <= 0.3
    assert events["exit"]["mae_mm"] <= 0.3
    # The events themselves lie where the physics puts them: 0x1 part-way up the ramp after the
    # transition, 0x800 the program's 2 mm gap plus part of the fall after the exit.
    for r in rows:
        rise = float(r["transition_reason"].split(" at ")[1].split(" mm")[0])
        drop = float(r["exit_reason"].split(" at ")[1].split(" mm")[0])
        assert 0.2 < rise - r["transition_mm"] < 1.5
        assert 2.0 < drop - r["exit_mm"] < 4.0


def test_cli_label(synthetic, tmp_path):
    raw, parsed, _, _ = synthetic
    result = CliRunner().invoke(
        main, ["label", str(parsed), "--out", str(tmp_path / "l"), "--truth", str(raw / "truth.csv"), "--json"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["holes"] == PARAMS.holes
    assert "Against the synthetic ground truth" in result.stderr
    missing = CliRunner().invoke(
        main, ["label", str(parsed), "--out", str(tmp_path / "m"), "--truth", str(tmp_path / "none.csv")]
    )
    assert missing.exit_code == 0
    assert (
        f"Warning: {tmp_path / 'none.csv'}: no ground truth there; accuracy on synthetic holes not measured"
        in missing.stderr
    )
    nothing = CliRunner().invoke(main, ["label", str(tmp_path / "nope"), "--out", str(tmp_path / "n")])
    assert nothing.exit_code == 1
    assert nothing.stderr.startswith("Error: ")
    shutil.rmtree(tmp_path / "l")


def _production_file(raw):
    """A synthetic production hole (format 9) with its exact entry."""

    from uos.holes import read_source

    truth = read_truth(raw / "truth.csv", by_hole=True)
    for path in sorted(raw.glob("*.xls")):
        hole = read_source(path)
        row = truth.loc[hole.hole_id]
        if row["kind"] == "normal" and hole.meta["format_version"] == 9 and row["entry_mm"] > 4.9:
            return path, hole, float(row["entry_mm"])
    raise AssertionError("no production hole in the synthetic set")


ODD_HOLES = {  # file -> (how it is made, the reason no keypoint can be given)
    "one_sample.xls": (lambda raw: oddities.first_rows(raw, 1), "too few samples: 1 (at least 50 needed)"),
    "twenty.xls": (lambda raw: oddities.first_rows(raw, 20), "too few samples: 20 (at least 50 needed)"),
    "air.xls": (
        oddities.only_air,
        "air cut or too little cutting: torque 0.5 A above air over only 0.0 mm (a stack needs 2.5 mm)",
    ),
    "nan_depth.xls": (oddities.nan_depth, "non-finite values in Position (mm)"),
    "stuck.xls": (oddities.stuck_depth, "depth does not advance (the drill travels 0.00 mm)"),
}


def test_holes_that_cannot_have_keypoints_get_none_and_the_reason(synthetic, tmp_path):
    from uos.holes import read_source
    from uos.labels.label import label_hole

    path, _, _ = _production_file(synthetic[0])
    for name, (make, reason) in ODD_HOLES.items():
        (tmp_path / name).write_bytes(make(path.read_bytes()))
        row = label_hole(read_source(tmp_path / name), None, LabelParams())
        assert row["status"] == "error" and row["error"].startswith(reason), (name, row["error"])
        for key in ("entry", "transition", "exit"):
            assert row[f"{key}_mm"] is None and row[f"{key}_confidence"] == 0.0  # unknown: not a training target
        assert row["thickness_mm"] is None


def test_a_baseline_shift_before_the_stack_is_not_an_entry(synthetic, tmp_path):
    from uos.holes import read_source
    from uos.labels.label import label_hole

    path, hole, entry = _production_file(synthetic[0])
    assert abs(label_hole(hole, None, LabelParams())["entry_mm"] - entry) < 0.1
    shifted = tmp_path / "shifted.xls"
    shifted.write_bytes(oddities.baseline_shift(path.read_bytes(), 1.5, entry - 1.2, 0.2))
    row = label_hole(read_source(shifted), None, LabelParams())
    assert abs(row["entry_mm"] - entry) < 0.1, row["entry_reason"]
    assert row["rule_broken"] is None


def test_real_baseline_shifts_are_not_entries(setitec_dir):
    """tuhh holes whose air baseline moves by 0.1-0.2 A at 1.2-1.6 mm: the drill meets the stack
    later (6-9 mm), where the torque climbs to several amps within the drill point."""
    from uos.holes import read_source
    from uos.holes.profile import build_profile
    from uos.labels.cutting import air_baseline
    from uos.labels.label import label_hole

    for name in ("009_V9/V9_004.xls", "002_V2/V2__090.xls", "004_V4/V4_024.xls", "004_V4/V4_127.xls"):
        hole = read_source(setitec_dir / "tuhh" / name)
        row = label_hole(hole, None, LabelParams())
        profile = build_profile(hole.signals["depth_mm"], hole.signals["torque_a"], hole.signals["thrust_a"])
        entry = row["entry_mm"]
        assert entry > 4.0, (name, entry, row["entry_reason"])
        before = profile.torque[profile.window(entry - 1.0, entry - 0.05)]
        after = profile.torque[profile.window(entry, entry + 2.0)]
        assert before.max() - air_baseline(profile) < 0.5 < 2.0 < after.max() - air_baseline(profile), name
        assert row["rule_broken"] is None


def test_the_cutting_rule_is_reported_per_folder(synthetic):
    metrics = synthetic[3].metrics["cutting_rule"]
    assert sum(folder["holes"] for folder in metrics.values()) == PARAMS.holes
    assert all(folder["breaking"] == 0 for folder in metrics.values())


def test_no_label_of_the_real_files_breaks_the_cutting_rule(real_dataset, tmp_path):
    """Every keypoint labelled on ../shared is a change of cutting state; in particular no entry on
    the 0.1-0.2 A air-baseline shifts of the lab holes, whose stacks start 6-9 mm deep."""
    summary = label_dataset(real_dataset.out_dir, tmp_path)
    breaking = {folder: f["breaking"] for folder, f in summary.metrics["cutting_rule"].items() if f["breaking"]}
    assert breaking == {}
    lab = [r for r in summary.rows if "/tuhh/" in str(r["source"]) and r["entry_mm"] is not None]
    assert len(lab) > 700 and min(r["entry_mm"] for r in lab) > 4.0


def test_a_step_change_dip_is_no_exit(setitec_dir):
    """Lab holes change speed at 15.7 mm, inside the CFRP, and the unit's torque drops to zero at
    once for a few tenths of a millimetre: not a breakthrough. The titanium's rise comes after it,
    the exit later still."""
    from uos.holes import read_source
    from uos.labels.label import label_hole

    for name in ("006_V6/V6_102.xls", "001_V1/V1_014.xls", "002_V2/V2__063.xls", "007_V7/V7_8.xls"):
        row = label_hole(read_source(setitec_dir / "tuhh" / name), None, LabelParams())
        assert 15.5 < row["transition_mm"] < 17.5, (name, row["transition_mm"], row["transition_reason"])
        assert row["exit_mm"] > 19.5, (name, row["exit_mm"], row["exit_reason"])


def test_impossible_human_labels_are_refused_with_a_warning(synthetic, tmp_path):
    """An entry deeper than the transition (17.13 over 12.91 mm, as saved by an annotate that did
    not check) or a keypoint outside the recording never makes a `reviewed` hole with a negative
    layer: `uos label` warns and the automatic labels stand; a human keypoint that an automatic
    one crosses wins, and the automatic one becomes unknown."""
    _, parsed, labels, _ = synthetic
    rows = read_labels(labels).set_index("hole_id")
    ok = rows.index[rows["error"].isna() & rows["transition_mm"].notna() & rows["exit_mm"].notna()]
    swapped, outside, crossing, rejected = ok[:4]
    notes = tmp_path / "annotations"

    def save(hole_id, points, reason=None):
        human.save(notes, human.Annotation(hole_id, rows.at[hole_id, "signals_hash"], points, reason, "eve", "t"))

    transition = {h: float(rows.at[h, "transition_mm"]) for h in ok[:4]}
    save(swapped, {"entry": transition[swapped] + 2.0, "transition": transition[swapped] - 2.0})
    save(outside, {"exit": 1e6})
    save(crossing, {"entry": transition[crossing] + 1.0})  # the automatic transition is above it
    save(rejected, {"entry": transition[rejected] + 2.0, "transition": 0.0}, "broken tool")
    result = CliRunner().invoke(main, ["label", str(parsed), "--out", str(tmp_path / "l"), "--annotations", str(notes)])
    assert result.exit_code == 0, result.output
    entry = transition[swapped] + 2.0
    assert (
        f"Warning: annotation for {swapped}: entry {entry:.2f} mm is deeper than transition "
        f"{transition[swapped] - 2.0:.2f} mm: keypoints not used (automatic labels instead)" in result.stderr
    )
    assert f"Warning: annotation for {outside}: exit 1000000.00 mm is outside the recording" in result.stderr
    assert f"Warning: annotation for {rejected}: " in result.stderr and "(its rejection is kept)" in result.stderr
    new = read_labels(tmp_path / "l").set_index("hole_id")
    for hole_id in (swapped, outside):
        assert new.at[hole_id, "status"] == "auto"
        assert (new.loc[hole_id, ["entry_source", "transition_source", "exit_source"]] != "human").all()
        assert new.at[hole_id, "top_layer_mm"] == rows.at[hole_id, "top_layer_mm"]
    assert new.at[rejected, "status"] == "rejected" and new.at[rejected, "rejected"] == "broken tool"
    assert new.at[crossing, "status"] == "reviewed" and new.at[crossing, "entry_source"] == "human"
    assert np.isnan(new.at[crossing, "transition_mm"]) and new.at[crossing, "transition_confidence"] == 0.0
    assert "on the wrong side of the human entry" in new.at[crossing, "transition_reason"]
    for column in ("top_layer_mm", "bottom_layer_mm", "thickness_mm"):
        assert not (new[column] < 0).any(), column


@pytest.mark.parametrize("with_retract", [False, True])
def test_the_ramp_fit_is_the_least_squares_fit_of_its_model(with_retract):
    """The normal equations made from prefix sums are those of the explicit basis (levels before
    and after, each pair once per side of a retract, and the drift), multiplied out point by
    point: for every ramp start and length the same sse and coefficients (ridge-regularised
    least squares, the drift clamped where it is too steep)."""
    from uos.labels.edges import _least_squares

    generator = np.random.default_rng(3)
    z = np.round(np.arange(4.0, 9.0, 0.05), 6)
    y = 1.0 + 2.5 * np.clip((z - 6.1) / 1.2, 0, 1) + 0.05 * generator.standard_normal(len(z)) + 0.3 * (z > 7.6)
    after_jump = (z >= 7.6).astype(float) if with_retract else None
    starts, lengths = z[5:-8:3], np.arange(0.15, 2.0, 0.2)
    drift_limit = 0.15 * float(np.ptp(y))
    sse, coefficients = _least_squares(z, y, after_jump, starts, lengths, drift_limit)

    def ridge_fit(basis: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
        gram, rhs = basis.T @ basis + 1e-6 * np.eye(basis.shape[1]), basis.T @ target
        solution = np.linalg.solve(gram, rhs)
        return solution, float(target @ target - solution @ rhs)

    clamped = 0
    for i, length in enumerate(lengths):
        for j, start in enumerate(starts):
            r = np.clip((z - start) / length, 0, 1)
            levels = [1 - r, r] if after_jump is None else [(1 - r) * (1 - after_jump), r * (1 - after_jump)]
            levels += [] if after_jump is None else [(1 - r) * after_jump, r * after_jump]
            drift = np.minimum(z - start, 0.0)
            expected, expected_sse = ridge_fit(np.stack([*levels, drift], axis=1), y)
            if abs(expected[-1]) > drift_limit:  # too steep a drift: clamped, the levels fitted to the rest
                clamped += 1
                slope = np.clip(expected[-1], -drift_limit, drift_limit)
                levels_only, expected_sse = ridge_fit(np.stack(levels, axis=1), y - slope * drift)
                expected = np.append(levels_only, slope)
            assert sse[i, j] == pytest.approx(expected_sse, rel=1e-9, abs=1e-9), (length, start)
            # (a level whose basis is all zeros, e.g. a ramp wholly after the retract, is the ridge's
            # 0 here and a rounding error of the sums there: 1e-6, where real levels are amperes)
            np.testing.assert_allclose(coefficients[i, j], expected, rtol=1e-7, atol=1e-5)
    assert clamped > 0  # (both branches are checked)
