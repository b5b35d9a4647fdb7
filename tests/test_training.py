"""Folds, training, registry, prediction and report, on a small synthetic set with a real MLflow
(a SQLite file of the test's own) and real PyTorch."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import oddities
from conftest import ROOT
from uos.dataset.build import parse_dataset
from uos.errors import UosError
from uos.labels import annotations
from uos.labels.label import label_dataset
from uos.params import load_params
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams
from uos.synth.truth import read_truth
from uos.training.folds import SplitParams, read_folds, split_dataset
from uos.training.train import TrainParams

SYNTH = dataclasses.replace(SynthParams(), holes=48, seed=11, production_tool_life=8, lab_tool_life=8)
SPLIT = SplitParams(k=3, life_block=0)
QUICK = load_params(TrainParams, "train", ROOT / "params.toml").with_profile("ci")  # what CI trains
ANSWER_FIELDS = [
    "entry_mm",
    "transition_mm",
    "exit_mm",
    "top_layer_mm",
    "bottom_layer_mm",
    "thickness_mm",
    "grip_code",
    "entry_confidence",
    "transition_confidence",
    "exit_confidence",
    "status",
    "review_reasons",
    "error",
]


@pytest.fixture(scope="module")
def tracking_home(tmp_path_factory):
    """MLflow in a SQLite file of this module's own (the product's default is the project's)."""
    home = tmp_path_factory.mktemp("mlflow")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    yield home
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """48 synthetic holes, plus a re-exported copy of one (same signals, another name), a broken
    file, and one hole an expert rejected."""
    raw = tmp_path_factory.mktemp("raw")
    synthesize(raw, SYNTH)
    files = sorted(p for p in raw.iterdir() if p.suffix == ".xls")
    (raw / "again").mkdir()
    # Re-exported: other bytes (Windows line ends), the same recording.
    (raw / "again" / f"copy_{files[0].name}").write_bytes(
        files[0].read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    )
    (raw / "broken_ST_1_1.xls").write_bytes(b"\xd0\xcf\x11\xe0 not really a workbook")
    # Cut short after 20 samples: a hole with an id, but an error (too few samples to use).
    lines = files[1].read_bytes().split(b"\n")
    header = next(i for i, line in enumerate(lines) if line.startswith(b"Position (mm)"))
    (raw / "again" / f"short_{files[1].name}").write_bytes(b"\n".join(lines[: header + 21]) + b"\n")
    parsed = tmp_path_factory.mktemp("parsed")
    parse_dataset([str(raw)], parsed, cache_root=tmp_path_factory.mktemp("cache"))
    labels_first = tmp_path_factory.mktemp("labels-first")
    label_dataset(parsed, labels_first)
    from uos.labels.table import read_labels

    rejected_id = read_labels(labels_first)["hole_id"].iloc[5]
    notes = tmp_path_factory.mktemp("annotations")
    annotations.save(notes, annotations.Annotation(rejected_id, rejected="drill slipped", annotator="test"))
    labels = tmp_path_factory.mktemp("labels")
    label_dataset(parsed, labels, annotations_dir=notes)
    folds = tmp_path_factory.mktemp("folds")
    summary = split_dataset(parsed, labels, folds, SPLIT)
    return {"raw": raw, "parsed": parsed, "labels": labels, "folds": folds, "split": summary, "rejected": rejected_id}


@pytest.fixture(scope="module")
def trained(dataset, tracking_home, tmp_path_factory):
    from uos.training.run import run_training

    out = tmp_path_factory.mktemp("model")
    summary = run_training(
        dataset["parsed"],
        dataset["labels"],
        dataset["folds"],
        out,
        dataclasses.replace(QUICK, workers=2),  # folds side by side (test_a_sequential_run_writes_the_same_files)
        truth_path=dataset["raw"] / "truth.csv",
        root=tmp_path_factory.mktemp("project"),
    )
    return summary


def _env(tracking_home: Path) -> dict[str, str]:
    return dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        MLFLOW_TRACKING_URI=f"sqlite:///{tracking_home / 'mlflow.db'}",
    )


# --- split --------------------------------------------------------------------------------------


def test_groups_never_straddle_folds(dataset):

    folds = read_folds(dataset["folds"])
    assert folds.groupby("group")["fold"].nunique().max() == 1
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    # Tool lives, from what the fleet was made of (truth.csv), not from the split's own grouping:
    # a head's life starts again wherever its tool age goes down; each life sits in one fold.
    truth = read_truth(dataset["raw"] / "truth.csv")
    truth["head"] = truth["hole_id"].str.rsplit("-", n=1).str[0]
    truth["counter"] = truth["hole_id"].str.rsplit("-", n=1).str[1].astype(int)
    truth = truth.sort_values(["head", "counter"])
    truth["life"] = truth.groupby("head")["tool_age"].transform(lambda age: (age.diff() < 0).cumsum())
    placed = truth.merge(folds, on="hole_id")  # (the fixture's extra copies have no truth)
    assert len(placed) >= len(folds) - 5
    lives = placed.groupby(["head", "life"])["fold"]
    assert lives.ngroups >= 4, "a fleet of several tool lives, or the check proves nothing"
    assert lives.nunique().max() == 1, lives.nunique()


def test_same_signals_stay_together_and_bad_holes_are_left_out(dataset):
    from uos.dataset.layout import read_holes

    folds = read_folds(dataset["folds"])
    holes = read_holes(dataset["parsed"], ["hole_id", "signals_hash", "status"])
    twins = holes[holes["signals_hash"].duplicated(keep=False) & (holes["status"] != "error")]
    assert len(twins) >= 2, "the re-exported copy should be a second hole with the same signals"
    assert folds[folds["hole_id"].isin(twins["hole_id"])]["fold"].nunique() == 1
    assert dataset["rejected"] not in set(folds["hole_id"])
    errored = set(holes.loc[holes["status"] == "error", "hole_id"])
    assert errored and not errored & set(folds["hole_id"])
    assert dataset["split"].left_out["rejected"] == 1
    assert dataset["split"].left_out["parse error"] >= 1


def test_program_families_are_spread_over_folds(dataset):
    folds = read_folds(dataset["folds"])
    per_fold = folds.groupby("fold")["family"].nunique()
    assert folds["family"].nunique() >= 2
    assert (per_fold == folds["family"].nunique()).all(), folds.groupby(["fold", "family"]).size()


def test_too_few_groups_is_a_clear_error(dataset, tmp_path):
    from uos.errors import UosError

    with pytest.raises(UosError, match="groups of holes for 60 folds"):
        split_dataset(dataset["parsed"], dataset["labels"], tmp_path, SplitParams(k=60, life_block=0))


# --- train --------------------------------------------------------------------------------------


def test_training_is_deterministic_for_a_seed(dataset):
    import torch

    from uos.dataset.layout import load_holes
    from uos.labels.table import read_labels
    from uos.training.train import build_examples, fit

    holes = load_holes(
        dataset["parsed"],
        ["depth_mm", "torque_a", "thrust_a"],
        hole_ids=list(read_folds(dataset["folds"])["hole_id"][:16]),
    )
    examples = build_examples([h for h in holes if h.signals], read_labels(dataset["labels"]), QUICK)
    params = dataclasses.replace(QUICK, epochs=2)
    first, history_first = fit(examples, params)
    second, history_second = fit(examples, params)
    assert history_first == history_second
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name


def test_train_tracks_everything_in_mlflow(trained, dataset):
    import mlflow

    from uos.training import tracking

    metrics = json.loads((trained.out_dir / "details.json").read_text())
    headline = json.loads((trained.out_dir / "metrics.json").read_text())
    assert headline["cv_mae"]["exit"] == metrics["cv"]["exit"]["mae_mm"] and "truth_model_mae" in headline
    for name in ("entry", "transition", "exit", "thickness"):
        assert metrics["cv"][name]["mae_mm"] is not None
        assert name in metrics["baseline"]
    assert metrics["synthetic_truth"]["model"]["exit_n"] > 30

    client = tracking.client()
    parent = client.get_run(trained.run_id)
    assert parent.data.params["epochs"] == str(QUICK.epochs) and parent.data.params["split_k"] == "3"
    assert {"cv_exit_mae_mean", "cv_exit_mae_sd", "cv_thickness_mae_mean"} <= set(parent.data.metrics)
    assert "git_commit" in parent.data.tags and "data_md5" in parent.data.tags
    assert parent.inputs.dataset_inputs and parent.inputs.dataset_inputs[0].dataset.name == "uos-holes"
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{trained.run_id}'")
    assert len(children) == 3
    assert len(client.get_metric_history(children[0].info.run_id, "train_loss")) == QUICK.epochs
    artifacts = {a.path for a in client.list_artifacts(trained.run_id, "plots")}
    assert {"plots/error_histogram.png", "plots/predicted_vs_label.png", "plots/learning_curve.png"} <= artifacts

    version = tracking.version_for_alias(tracking.CANDIDATE)
    assert version.version == trained.version and version.run_id == trained.run_id
    assert "labels_md5" in version.tags
    del mlflow


def test_a_sequential_run_writes_the_same_files(trained, dataset, tmp_path):
    """`[train] workers = 1` (one fold after the other, in this process) writes, byte for byte, what
    the fixture's two worker processes wrote; MLflow has the same metrics and each fold's nested
    run, and the worker count as a tag, not a param (it does not change the model)."""
    from uos.training import tracking
    from uos.training.run import run_training

    out = tmp_path / "model"
    try:
        sequential = run_training(
            dataset["parsed"],
            dataset["labels"],
            dataset["folds"],
            out,
            dataclasses.replace(QUICK, workers=1),
            truth_path=dataset["raw"] / "truth.csv",
            root=tmp_path / "project",
        )
    finally:  # the fixture's version stays the candidate, as the other tests expect
        tracking.client().set_registered_model_alias(tracking.MODEL_NAME, tracking.CANDIDATE, trained.version)
    written = sorted(p.relative_to(trained.out_dir) for p in trained.out_dir.rglob("*") if p.is_file())
    assert Path("weights.pt") in written and Path("plots/out_of_fold.csv") in written
    for name in written:
        assert (out / name).read_bytes() == (trained.out_dir / name).read_bytes(), name
    client = tracking.client()
    runs = {"parallel": client.get_run(trained.run_id), "sequential": client.get_run(sequential.run_id)}
    assert runs["parallel"].data.metrics == runs["sequential"].data.metrics
    assert (
        runs["parallel"].data.params == runs["sequential"].data.params and "workers" not in runs["parallel"].data.params
    )
    assert (runs["parallel"].data.tags["workers"], runs["sequential"].data.tags["workers"]) == ("2", "1")
    for run in runs.values():
        children = client.search_runs(
            [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'", order_by=["start_time ASC"]
        )
        assert [c.data.tags["mlflow.runName"] for c in children] == ["fold-0", "fold-1", "fold-2"]


def test_weights_load_without_pickled_code(trained):
    import torch

    from uos.training.model import DepthNet, NetConfig

    config = json.loads((trained.out_dir / "config.json").read_text())
    state = torch.load(trained.out_dir / "weights.pt", weights_only=True)
    net = DepthNet(NetConfig(**config["net"]))
    net.load_state_dict(state)


def test_registered_model_takes_raw_signals(trained, dataset):
    import mlflow
    import pandas as pd

    from uos.dataset.layout import load_holes

    model = mlflow.pyfunc.load_model("models:/uos-depth@candidate")
    loaded = [h for h in load_holes(dataset["parsed"], ["depth_mm", "torque_a", "thrust_a"]) if h.signals]
    short = next(h for h in loaded if h.n_samples == 20)  # cut short after 20 samples
    holes = [h for h in loaded if h.n_samples > 150][:5]
    frame = pd.DataFrame({k: [h.signals[k] for h in [*holes, short]] for k in ("depth_mm", "torque_a", "thrust_a")})
    result = model.predict(frame)
    assert list(result.columns) == ANSWER_FIELDS  # the fields of a `uos predict` line and a serve answer
    assert result["error"].iloc[-1] == "too few samples: 20 (at least 50 needed)"
    assert result.iloc[-1][["entry_mm", "exit_mm", "thickness_mm", "grip_code"]].isna().all()
    result, frame = result.iloc[:-1], frame.iloc[:-1]
    assert len(result) == 5 and result["entry_mm"].notna().all()
    assert result["status"].isin(["ok", "review"]).all() and result["error"].isna().all()
    assert (
        result[[f"{k}_confidence" for k in ("entry", "transition", "exit")]]
        .apply(lambda c: c.between(0, 1))
        .all()
        .all()
    )
    assert model.metadata.signature is not None
    # Without the ramp-fit refinement (for speed): the network's positions, close to the refined.
    fast = model.predict(frame, params={"refine": False})
    assert list(fast.columns) == list(result.columns)
    assert (fast["exit_mm"] - result["exit_mm"]).abs().max() < 0.5


def test_promote_refuses_a_regression_unless_forced(trained, dataset, tracking_home, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from uos.cli import main
    from uos.training import tracking

    tracking.configure()
    champion = tracking.version_for_alias(tracking.CHAMPION)
    result = tracking.promote()
    assert result.promoted or (champion is not None and "already" in result.reason), result
    assert not result.regressed and tracking.version_for_alias(tracking.CHAMPION).version == trained.version

    # A model trained for one epoch, in an experiment of its own: worse, so it stays a candidate.
    # (The command in this process: torch and MLflow are loaded already.)
    params = tmp_path / "params.toml"
    params.write_text("[train]\nepochs = 1\nbatch_size = 16\nrefine = false\n")
    monkeypatch.chdir(tmp_path)
    args = [dataset["parsed"], dataset["labels"], dataset["folds"], "--out", tmp_path / "worse", "--params", params]
    worse = CliRunner().invoke(main, ["train", *map(str, args), "--experiment", "uos-trials"])
    assert worse.exit_code == 0, worse.output
    worse_version = tracking.version_for_alias(tracking.CANDIDATE)
    assert worse_version.version != trained.version
    experiment = tracking.client().get_experiment(tracking.client().get_run(worse_version.run_id).info.experiment_id)
    assert experiment.name == "uos-trials" and experiment.tags[tracking.EXPERIMENT_KIND_TAG] == tracking.EXPERIMENT_KIND
    old = tracking.version_metrics(tracking.version_for_alias(tracking.CHAMPION))
    new = tracking.version_metrics(worse_version)
    assert any(new[k] > old[k] for k in new if k.endswith("_mae_mean")), "the one-epoch model should be worse"
    refused = tracking.promote()
    assert not refused.promoted and refused.regressed and "regresses" in refused.reason
    result = subprocess.run(["uos", "promote"], env=_env(tracking_home), capture_output=True, text=True)
    assert result.returncode == 3 and "regresses" in result.stderr, result.stderr  # a refusal, not an error (1)
    assert tracking.version_for_alias(tracking.CHAMPION).version == trained.version
    forced = subprocess.run(["uos", "promote", "--force"], env=_env(tracking_home), capture_output=True, text=True)
    assert forced.returncode == 0 and "forced" in forced.stderr
    assert tracking.version_for_alias(tracking.CHAMPION).version == worse_version.version
    # A version named explicitly (a DVC experiment's): the good model back, as it regresses nothing.
    back = CliRunner().invoke(main, ["promote", "--version", str(trained.version)])
    assert back.exit_code == 0 and f"version {trained.version} is now the champion" in back.output, back.output
    assert tracking.version_for_alias(tracking.CHAMPION).version == trained.version
    assert tracking.promote(version=str(worse_version.version)).regressed
    with pytest.raises(UosError, match="no version 999 of uos-depth"):
        tracking.promote(version="999")


def test_the_experiment_is_the_option_else_the_environment_and_opens_on_runs(tracking_home, monkeypatch):
    from uos.training import tracking

    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    assert tracking.experiment_name() == "uos-depth"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    assert tracking.experiment_name() == "from-env" and tracking.experiment_name("option") == "option"
    # An experiment made elsewhere (the UI, another tool) gets the tag that opens it on its runs.
    tracking.configure()
    made = tracking.client().create_experiment("made-elsewhere")
    tracking.configure_runs(experiment="made-elsewhere")
    assert tracking.client().get_experiment(made).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_predict_gives_one_json_line_per_hole_and_survives_bad_files(trained, dataset, tracking_home, tmp_path):
    raw = dataset["raw"]
    good = sorted(p for p in raw.iterdir() if p.suffix == ".xls" and not p.name.startswith("broken"))[:3]
    bad = tmp_path / "empty_ST_9_9.xls"
    bad.write_bytes(b"")
    args = [
        "uos",
        "predict",
        *map(str, good),
        str(bad),
        str(raw / "broken_ST_1_1.xls"),
        "--model",
        "models:/uos-depth@candidate",
    ]
    result = subprocess.run(args, env=_env(tracking_home), capture_output=True, text=True)
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 5
    for record in records:
        assert list(record) == ["source", "hole_id", *ANSWER_FIELDS]
    by_source = {Path(r["source"]).name: r for r in records}
    for path in good:
        record = by_source[path.name]
        assert record["error"] is None and record["entry_mm"] is not None and record["status"] in ("ok", "review")
        assert record["grip_code"] is None or record["status"] == "ok"  # a grip code only where nobody needs to check
    for name in (bad.name, "broken_ST_1_1.xls"):
        record = by_source[name]
        assert record["error"] and record["status"] == "error" and record["thickness_mm"] is None
        assert record["grip_code"] is None and record["entry_confidence"] is None
    assert len([line for line in result.stderr.splitlines() if line.startswith("Error:")]) == 2


def test_predict_without_a_model_is_a_clear_error(tmp_path, dataset):
    env = dict(_env(tmp_path), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'empty.db'}")
    result = subprocess.run(["uos", "predict", str(dataset["raw"])], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("Error: cannot load model models:/uos-depth@champion")
    assert "(no champion yet? `uos promote` after `uos train`" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_report_shows_champion_and_candidate(trained, tracking_home):
    result = subprocess.run(
        ["uos", "report", "--width", "100"], env=_env(tracking_home), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "Cross-validated MAE" in result.stdout
    assert "champion v" in result.stdout and "candidate v" in result.stdout
    assert "learning curve" in result.stdout and "out-of-fold error" in result.stdout


def test_the_ci_profile_is_quick_and_still_accurate(trained):
    """The CI profile trains (cross-validation and final model) in under a minute, and its
    out-of-fold keypoints are within 0.2 mm of the exact synthetic truth."""
    assert trained.seconds < 60
    exact = json.loads((trained.out_dir / "details.json").read_text())["synthetic_truth"]["model"]
    for name in ("entry", "transition", "exit", "thickness"):
        assert exact[name] < 0.2, exact


ODD_HOLES = {  # file -> (how it is made, the start of the reason no answer can be given)
    "one_sample.xls": (lambda raw: oddities.first_rows(raw, 1), "too few samples: 1"),
    "twenty.xls": (lambda raw: oddities.first_rows(raw, 20), "too few samples: 20"),
    "air.xls": (oddities.only_air, "air cut"),
    "nan_depth.xls": (oddities.nan_depth, "non-finite values in Position (mm)"),
    "stuck.xls": (oddities.stuck_depth, "depth does not advance"),
}


def _production_file(raw: Path) -> tuple[Path, float]:
    """A synthetic production hole (format 9) and its exact entry."""

    from uos.holes import read_source

    truth = read_truth(raw / "truth.csv", by_hole=True)
    for path in sorted(raw.glob("*.xls")):
        try:
            hole = read_source(path)
        except Exception:
            continue
        row = truth.loc[hole.hole_id] if hole.hole_id in truth.index else None
        if row is not None and row["kind"] == "normal" and hole.meta["format_version"] == 9 and row["entry_mm"] > 4.9:
            return path, float(row["entry_mm"])
    raise AssertionError("no production hole in the synthetic set")


def test_predict_gives_no_number_for_a_hole_that_cannot_have_one(trained, dataset, tracking_home, tmp_path):
    source, _ = _production_file(dataset["raw"])
    for name, (make, _) in ODD_HOLES.items():
        (tmp_path / name).write_bytes(make(source.read_bytes()))
    args = ["uos", "predict", str(tmp_path), "--model", "models:/uos-depth@candidate"]
    result = subprocess.run(args, env=_env(tracking_home), capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    records = {Path(r["source"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(records) == set(ODD_HOLES)
    for name, (_, reason) in ODD_HOLES.items():
        record = records[name]
        assert record["status"] == "error" and record["error"].startswith(reason), record
        numbers = ("entry_mm", "transition_mm", "exit_mm", "thickness_mm", "grip_code", "entry_confidence")
        assert all(record[key] is None for key in numbers), record
        assert f"Error: {tmp_path / name}: {reason}" in result.stderr


def test_predict_puts_no_entry_on_a_baseline_shift(trained, dataset, tracking_home, tmp_path):
    from uos.holes import read_source
    from uos.training.predict import load_model

    source, entry = _production_file(dataset["raw"])
    shifted = tmp_path / "shifted.xls"
    shifted.write_bytes(oddities.baseline_shift(source.read_bytes(), 1.5, entry - 1.2, 0.2))
    hole = read_source(shifted)
    model = load_model("models:/uos-depth@candidate")
    signals = [(hole.signals["depth_mm"], hole.signals["torque_a"], hole.signals["thrust_a"])]
    for refine in (False, True):
        answer = model.answer(signals, refine=refine)[0]
        assert answer.error is None and abs(answer.positions[0] - entry) < 0.5, (refine, answer)


def test_decoding_stays_inside_the_recording(trained, dataset, tracking_home):
    """A short hole of 100 samples: whatever the network makes of it, no position lies outside
    the recorded depths; and 100 samples over under a millimetre get no answer at all."""
    import numpy as np

    from uos.training.predict import load_model

    model = load_model("models:/uos-depth@candidate")
    depth = np.linspace(0.55, 6.0, 100)
    answer = model.answer([(depth, np.where(depth > 2.5, 3.0, 0.0), np.where(depth > 2.5, 0.2, 0.0))])[0]
    assert answer.error is None and answer.status == "review", answer  # nothing like a stack trained on
    finite = answer.positions[np.isfinite(answer.positions)]
    assert ((finite >= depth[0]) & (finite <= depth[-1])).all(), answer
    short = model.answer([(np.linspace(0.55, 1.52, 100), np.zeros(100), np.zeros(100))])[0]
    assert short.error.startswith("the drill travels 0.97 mm: too short to hold a stack")


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({}, "the model's config.json is not a uos model's (no network settings)"),
        ({"net": {"width": 8}}, "this model version was registered before answers carried a confidence"),
        ("{not json", "the model's config.json cannot be read"),
    ],
)
def test_a_model_whose_config_is_not_a_uos_model_s_says_which(tmp_path, config, reason):
    from types import SimpleNamespace

    from uos.training.pyfunc import DepthModel

    path = tmp_path / "config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(ValueError, match=r"^" + re.escape(reason)):
        DepthModel().load_context(SimpleNamespace(artifacts={"config": str(path), "weights": str(tmp_path / "w.pt")}))
