"""One `uos train` run: cross-validation, the final model, metrics and plots for DVC, and
everything tracked in MLflow (a parent run, a nested run per fold, the registered model)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uos.holes.quality import QualityRules
from uos.labels import KEYPOINTS
from uos.labels.cutting import CuttingRule
from uos.outputs import write_json
from uos.training import evaluation
from uos.training.infer import ModelConfig
from uos.training.parallel import Trained
from uos.training.train import CrossValidation, Examples, FinalModel, TrainParams, build_examples, errors

METRICS_FILE = "metrics.json"  # the headline figures, for `dvc metrics show/diff`
DETAILS_FILE = "details.json"  # every figure: per family, presence errors, counts (the version is in MLflow)
PLOTS_DIR = "plots"  # under --out: every held-out hole's answer (ANSWER_FILES)
PLOT_FILES = ("predictions.csv", "error_histogram.csv", "learning_curve_mean.csv")  # `plots:` in dvc.yaml
ANSWER_FILES = ("out_of_fold.csv", "out_of_fold_without_refine.csv")  # as `uos predict`, as `uos serve`
ANSWER_KEYS = ("answers", "answers_without_refine")  # out of fold: as `uos predict`, as `uos serve` answers
INDEPENDENT_SOURCES = ("event", "human")  # labels not made by the signal-only detector itself


@dataclass
class TrainSummary:
    out_dir: Path
    metrics: dict[str, Any]
    model_uri: str
    version: str
    run_id: str
    seconds: float
    tracking_uri: str = ""  # where the run is (MLflow's; never in a file DVC tracks)
    dvc_experiment: str | None = None  # the DVC experiment it ran in: `candidate` was left alone


def _mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return float(np.mean(present)), float(np.std(present))


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def _subset_errors(predicted: np.ndarray, expected: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """errors() counting, for each keypoint, only the holes in `mask` (holes x 3); thickness where
    the exit is in the mask (an independent exit makes an independent thickness)."""
    result = errors(np.where(mask, predicted, np.nan), np.where(mask, expected, np.nan))
    thickness = errors(np.where(mask[:, 2:3], predicted, np.nan), np.where(mask[:, 2:3], expected, np.nan))
    result["thickness"], result["thickness_n"] = thickness["thickness"], thickness["thickness_n"]
    return result


def _metrics(examples: Examples, labels, oof: np.ndarray, fold_errors, families: np.ndarray, truth) -> dict[str, Any]:
    rows = labels.set_index("hole_id").loc[examples.hole_ids]
    baseline = np.array([[rows.at[h, f"{k}_signal_mm"] for k in KEYPOINTS] for h in examples.hole_ids], dtype=float)
    sources = np.array([[rows.at[h, f"{k}_source"] for k in KEYPOINTS] for h in examples.hole_ids], dtype=object)
    independent = np.isin(sources, INDEPENDENT_SOURCES)
    metrics: dict[str, Any] = {"holes": len(examples.hole_ids), "folds": len(fold_errors), "cv": {}, "baseline": {}}
    for name in (*KEYPOINTS, "thickness"):
        mean, sd = _mean_sd([f[name] for f in fold_errors])
        metrics["cv"][name] = {"mae_mm": mean, "sd_mm": sd}
    for name, value in errors(baseline, examples.positions).items():
        if not name.endswith(("_n", "_errors")):
            metrics["baseline"][name] = {"mae_mm": value}
    # Against labels the signal-only detector did not make itself (machine events, humans).
    if independent.any():
        metrics["independent_labels"] = {
            "model": _subset_errors(oof, examples.positions, independent),
            "baseline": _subset_errors(baseline, examples.positions, independent),
        }
    if truth is not None:
        exact = np.array(
            [[truth.at[h, f"{k}_mm"] if h in truth.index else np.nan for k in KEYPOINTS] for h in examples.hole_ids],
            dtype=float,
        )
        known = np.array([h in truth.index for h in examples.hole_ids])
        if known.any():
            metrics["synthetic_truth"] = {
                "model": errors(oof[known], exact[known]),
                "baseline": errors(baseline[known], exact[known]),
            }
    by_family = {}
    for family in sorted(set(families.tolist())):
        members = families == family
        entry: dict[str, Any] = {
            "holes": int(members.sum()),
            "model_vs_labels": errors(oof[members], examples.positions[members]),
        }
        if independent[members].any():
            entry["model_vs_independent"] = _subset_errors(
                oof[members], examples.positions[members], independent[members]
            )
            entry["baseline_vs_independent"] = _subset_errors(
                baseline[members], examples.positions[members], independent[members]
            )
        by_family[family] = entry
    metrics["by_family"] = by_family
    return _round(metrics)


def _write_plots(plots: Path, examples: Examples, oof: np.ndarray, histories):
    """The data of the DVC plots (`plots:` in dvc.yaml): out-of-fold predictions, the error
    histogram and the learning curve (mean over folds). Returns them, and the curve per fold."""
    import pandas as pd

    plots.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, hole_id in enumerate(examples.hole_ids):
        for j, name in enumerate(KEYPOINTS):
            if np.isfinite(examples.positions[i, j]) and np.isfinite(oof[i, j]):
                rows.append(
                    {
                        "hole_id": hole_id,
                        "keypoint": name,
                        "label_mm": round(examples.positions[i, j], 4),
                        "predicted_mm": round(oof[i, j], 4),
                        "error_mm": round(oof[i, j] - examples.positions[i, j], 4),
                    }
                )
    predictions = pd.DataFrame(rows, columns=["hole_id", "keypoint", "label_mm", "predicted_mm", "error_mm"])
    predictions.to_csv(plots / "predictions.csv", index=False)
    # The error histogram as counts per 0.05 mm bin (clipped at +/- 1 mm), one column per keypoint.
    edges = np.round(np.arange(-1.0, 1.0001, 0.05), 3)
    histogram = pd.DataFrame({"error_mm": np.round((edges[:-1] + edges[1:]) / 2, 3)})
    for name in KEYPOINTS:
        values = predictions.loc[predictions["keypoint"] == name, "error_mm"].clip(-0.999, 0.999)
        histogram[name] = np.histogram(values, bins=edges)[0]
    histogram.to_csv(plots / "error_histogram.csv", index=False)
    curve = pd.DataFrame(
        [
            {"fold": f, "epoch": e, "train_loss": round(t, 5), "validation_loss": None if v is None else round(v, 5)}
            for f, history in enumerate(histories)
            for e, t, v in history
        ]
    )
    mean_curve = curve.groupby("epoch")[["train_loss", "validation_loss"]].mean().reset_index()
    mean_curve.to_csv(plots / "learning_curve_mean.csv", index=False)
    return predictions, curve, mean_curve


def _draw_images(folder: Path, predictions, curve, mean_curve) -> None:
    """For MLflow only: the same plots as PNG, and the learning curve of each fold (CSV)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve.to_csv(folder / "learning_curve.csv", index=False)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for axis, name in zip(axes, KEYPOINTS, strict=True):
        part = predictions[predictions["keypoint"] == name]
        axis.scatter(part["label_mm"], part["predicted_mm"], s=6)
        if len(part):
            lo, hi = part["label_mm"].min(), part["label_mm"].max()
            axis.plot([lo, hi], [lo, hi], color="gray", lw=0.8)
        axis.set(title=f"{name}: out-of-fold prediction", xlabel="label (mm)", ylabel="predicted (mm)")
    figure.tight_layout()
    figure.savefig(folder / "predicted_vs_label.png", dpi=80)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name in KEYPOINTS:
        part = predictions[predictions["keypoint"] == name]["error_mm"].clip(-1, 1)
        axis.hist(part, bins=50, alpha=0.5, label=name)
    axis.set(title="out-of-fold error (clipped at 1 mm)", xlabel="predicted - label (mm)", ylabel="keypoints")
    axis.legend()
    figure.savefig(folder / "error_histogram.png", dpi=80)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(mean_curve["epoch"], mean_curve["train_loss"], label="train")
    axis.plot(mean_curve["epoch"], mean_curve["validation_loss"], label="validation")
    axis.set(title="learning curve (mean over folds)", xlabel="epoch", ylabel="loss")
    axis.legend()
    figure.savefig(folder / "learning_curve.png", dpi=80)
    plt.close("all")


def _write_and_log_plots(out: Path, plots: Path, data: TrainingSet, cv: CrossValidation, frames) -> None:
    """The DVC plots' data into `plots`, every held-out hole's answer into OUT/plots, and all of
    it with the PNGs as MLflow artifacts (`plots/`, what `uos report` reads)."""
    import tempfile

    import mlflow

    predictions, curve, mean_curve = _write_plots(plots, data.examples, cv.oof, cv.histories)
    answers = out / PLOTS_DIR
    answers.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(ANSWER_FILES, frames, strict=True):
        frame.assign(fold=data.folds).to_csv(answers / name, index=False)
    with tempfile.TemporaryDirectory() as scratch:  # the PNGs are for MLflow only: none left in the project
        _draw_images(Path(scratch), predictions, curve, mean_curve)
        mlflow.log_artifacts(scratch, artifact_path="plots")
    for path in [*(plots / name for name in PLOT_FILES), *(answers / name for name in ANSWER_FILES)]:
        mlflow.log_artifact(str(path), artifact_path="plots")
    mlflow.log_artifact(str(answers / ANSWER_FILES[0]), artifact_path="predictions")


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures worth a column in `dvc metrics show`: MAE per keypoint and thickness, for the
    model (cross-validated, mean and sd over folds) and the signal-only baseline, against all
    labels, against the independent (event, human) labels and against synthetic truth."""
    names = (*KEYPOINTS, "thickness")
    result: dict[str, Any] = {
        "holes": metrics["holes"],
        "cv_mae": {k: metrics["cv"][k]["mae_mm"] for k in names},
        "cv_sd": {k: metrics["cv"][k]["sd_mm"] for k in names},
        "baseline_mae": {k: metrics["baseline"][k]["mae_mm"] for k in names},
    }
    for key, title in (("independent_labels", "independent"), ("synthetic_truth", "truth")):
        if key in metrics:
            for side in ("model", "baseline"):
                result[f"{title}_{side}_mae"] = {k: metrics[key][side][k] for k in names}
    for key in ANSWER_KEYS:  # out of fold, by status: a mean never comes without its gross errors
        if key in metrics:
            result[key] = evaluation.headline(metrics[key]["all"])
    return result


def _flat(prefix: str, data: dict[str, Any], into: dict[str, float]) -> dict[str, float]:
    for key, value in data.items():
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, dict):
            _flat(name, value, into)
        elif isinstance(value, int | float) and not isinstance(value, bool) and value is not None:
            into[name.replace("/", "_")] = float(value)
    return into


@dataclass
class TrainingSet:
    """The labelled holes of the split, ready for the network, and what to report them by."""

    examples: Examples
    folds: np.ndarray
    families: np.ndarray
    folders: np.ndarray
    labels: Any  # the labels table
    truth: Any  # synthetic ground truth, or None
    example: dict[str, list[float]] | None = None  # the shortest hole's raw signals: the model's input example


def load_training_set(
    parsed_dir,
    labels_dir,
    folds_dir,
    params: TrainParams,
    config: ModelConfig,
    truth_path=None,
    say: Callable[[str], None] = print,
) -> TrainingSet:
    from uos.dataset.layout import load_holes
    from uos.labels.table import read_labels
    from uos.synth.truth import read_truth
    from uos.training.folds import read_folds

    folds_frame = read_folds(folds_dir)
    labels = read_labels(labels_dir)
    fold_of = dict(zip(folds_frame["hole_id"], folds_frame["fold"], strict=True))
    family_of = dict(zip(folds_frame["hole_id"], folds_frame["family"], strict=True))
    say(f"loading {len(fold_of)} holes")
    holes = [
        h for h in load_holes(parsed_dir, ["depth_mm", "torque_a", "thrust_a"], hole_ids=list(fold_of)) if h.signals
    ]
    examples = build_examples(holes, labels, params, config)
    if len(examples.hole_ids) < len(holes):
        say(f"{len(holes) - len(examples.hole_ids)} holes cannot have keypoints (the gate): left out")
    folder_of = {h.hole_id: Path(str(h.meta.get("source") or "?")).parent.name for h in holes}
    truth = None
    if truth_path is not None and Path(truth_path).exists():
        truth = read_truth(truth_path, by_hole=True)
    trained = set(examples.hole_ids)
    shortest = min((h for h in holes if h.hole_id in trained), key=lambda h: h.n_samples, default=None)
    return TrainingSet(
        examples,
        np.array([fold_of[h] for h in examples.hole_ids]),
        np.array([family_of[h] for h in examples.hole_ids], dtype=object),
        np.array([folder_of[h] for h in examples.hole_ids], dtype=object),
        labels,
        truth,
        None
        if shortest is None
        else {n: shortest.signals[n].astype(float).tolist() for n in ("depth_mm", "torque_a", "thrust_a")},
    )


def _evaluate(data: TrainingSet, answers) -> tuple[Any, dict[str, Any]]:
    """The out-of-fold answers judged against the labels: per hole, and per status overall, per
    source folder and per program family."""
    judged = data.examples.weights > 0
    frame = evaluation.hole_table(
        data.examples.hole_ids,
        answers,
        data.examples.positions,
        judged,
        {"folder": data.folders, "family": data.families},
    )
    report = {
        "all": evaluation.summarize(frame),
        "by_folder": evaluation.by_group(frame, "folder"),
        "by_family": evaluation.by_group(frame, "family"),
    }
    return frame, report


def _train_tracked(data: TrainingSet, params: TrainParams, config: ModelConfig, say) -> Trained:
    """The folds and the final model, side by side on the workers `[train] workers` asks for
    (`uos.cores`); each fold's nested run logged here, in fold order, as it is done."""
    import mlflow

    from uos.cores import choose_workers
    from uos.training.parallel import train_all

    def on_fold(fold: int, result: dict[str, Any], history) -> None:
        with mlflow.start_run(run_name=f"fold-{fold}", nested=True):
            mlflow.log_params({"fold": fold, "test_holes": int((data.folds == fold).sum())})
            for epoch, train_loss, validation_loss in history:
                mlflow.log_metric("train_loss", train_loss, step=epoch)
                if validation_loss is not None:
                    mlflow.log_metric("validation_loss", validation_loss, step=epoch)
            mlflow.log_metrics({f"mae_{k}": v for k, v in result.items() if isinstance(v, float)})

    folds = len(set(data.folds.tolist()))
    workers, why = choose_workers(params.workers, folds + 1)
    say(f"training {folds} folds and the final model on {workers} worker process{'es' * (workers > 1)} ({why})")
    mlflow.set_tag("workers", workers)  # (speed only: the numbers are the same for any count)
    return train_all(data.examples, data.folds, params, config, workers, progress=say, on_fold=on_fold)


def _log_cv_metrics(metrics: dict[str, Any]) -> None:
    import mlflow

    for name in (*KEYPOINTS, "thickness"):
        mean, sd = metrics["cv"][name]["mae_mm"], metrics["cv"][name]["sd_mm"]
        if mean is not None:
            mlflow.log_metrics({f"cv_{name}_mae_mean": mean, f"cv_{name}_mae_sd": sd})
    mlflow.log_metrics(_flat("", {k: v for k, v in metrics.items() if k not in ("cv", "by_family", *ANSWER_KEYS)}, {}))
    for key in ANSWER_KEYS:
        mlflow.log_metrics(_flat(f"cv_{key}", metrics[key]["all"], {}))


def _save_final_model(out: Path, data: TrainingSet, final: FinalModel, config: ModelConfig) -> ModelConfig:
    """Write the final model (trained on every labelled hole): weights.pt and config.json (the
    whole [train] table, the gate, the cutting rule and what training covered)."""
    import mlflow
    import torch

    out.mkdir(parents=True, exist_ok=True)
    torch.save(final.state_dict(), out / "weights.pt")
    saved = dataclasses.replace(config, known=data.examples.known())
    write_json(out / "config.json", saved.to_dict())
    for epoch, train_loss, _ in final.history:
        mlflow.log_metric("final_train_loss", train_loss, step=epoch)
    return saved


def _register(out: Path, params: TrainParams, facts: dict[str, Any], profile: str | None, example):
    """Log the final model (`logged_model`: self-contained, with its ONNX network), register it
    and point `candidate` at it (not in a DVC experiment)."""
    import mlflow

    from uos.training import logged_model, tracking

    info = logged_model.log_model(out, params.refine, example)
    version = mlflow.register_model(info.model_uri, tracking.MODEL_NAME)
    client = tracking.client()
    # A trial in a DVC experiment registers its version (tagged with the experiment's name) but
    # leaves `candidate` to the team's line: `dvc repro` or `uos train` outside an experiment.
    if tracking.DVC_EXPERIMENT_TAG not in facts:
        client.set_registered_model_alias(tracking.MODEL_NAME, tracking.CANDIDATE, version.version)
    for key, value in {**facts, "profile": profile or "default"}.items():
        client.set_model_version_tag(tracking.MODEL_NAME, version.version, key, str(value))
    return version


@dataclass
class _CrossValidated:
    """What cross-validation leaves for the later steps: the folds' results, every figure, and
    the out-of-fold answers as tables (ANSWER_FILES: refined, network only)."""

    cv: CrossValidation
    metrics: dict[str, Any]
    frames: tuple[Any, Any]


def _split_facts(folds_dir: str | Path) -> dict[str, Any]:
    """What `uos split` wrote about the split (folds.json), or nothing when it is absent."""
    summary_path = Path(folds_dir) / "folds.json"
    return json.loads(summary_path.read_text()) if summary_path.exists() else {}


def _track_inputs(
    data: TrainingSet,
    params: TrainParams,
    profile: str | None,
    facts: dict[str, Any],
    split_facts: dict[str, Any],
    labels_dir: str | Path,
) -> None:
    """The parent run's params, lineage tags and dataset (the holes with their fold and family)."""
    import mlflow
    import pandas as pd

    from uos.training import tracking

    examples = data.examples
    mlflow.log_params({**params.table(), "profile": profile or "default", "holes": len(examples.hole_ids)})
    mlflow.log_params({f"split_{k}": v for k, v in split_facts.items() if not isinstance(v, dict)})
    mlflow.set_tags(tracking.run_tags(facts))
    digest = facts["labels_md5"] or facts["data_md5"] or "unversioned"
    dataset_frame = pd.DataFrame({"hole_id": examples.hole_ids, "fold": data.folds, "family": data.families})
    mlflow.log_input(
        mlflow.data.from_pandas(
            dataset_frame, source=str(Path(labels_dir).resolve()), name="uos-holes", digest=str(digest)[:36]
        ),
        context="training",
    )


def _score(data: TrainingSet, cv: CrossValidation) -> _CrossValidated:
    """Every figure over the out-of-fold answers. Nothing here writes a file."""
    metrics = _metrics(data.examples, data.labels, cv.oof, cv.fold_errors, data.families, data.truth)
    answers_frame, metrics["answers"] = _evaluate(data, cv.answers)
    fast_frame, metrics["answers_without_refine"] = _evaluate(data, cv.fast_answers)
    return _CrossValidated(cv, metrics, (answers_frame, fast_frame))


def _track_cv_results(metrics: dict[str, Any]) -> None:
    import mlflow

    _log_cv_metrics(metrics)
    for key in ANSWER_KEYS:  # per status, source folder and family
        mlflow.log_dict(metrics[key], f"{key}.json")


def _save(
    out: Path, plots_dir: str | Path | None, data: TrainingSet, scored: _CrossValidated, final: FinalModel, config
) -> None:
    """The final model into OUT, the plots' data into `plots_dir` (default OUT/plots) and every
    held-out answer into OUT/plots; MLflow gets the final losses and the same files as artifacts."""
    _save_final_model(out, data, final, config)
    plots = Path(plots_dir) if plots_dir is not None else out / PLOTS_DIR
    _write_and_log_plots(out, plots, data, scored.cv, scored.frames)


def _write_metrics(out: Path, metrics: dict[str, Any], metrics_path: str | Path | None) -> None:
    """Every figure (DETAILS_FILE) and the headline ones where the DVC stage declares them."""
    write_json(out / DETAILS_FILE, metrics)
    write_json(metrics_path or out / METRICS_FILE, headline(metrics))


def run_training(
    parsed_dir: str | Path,
    labels_dir: str | Path,
    folds_dir: str | Path,
    out_dir: str | Path,
    params: TrainParams,
    truth_path: str | Path | None = None,
    profile: str | None = None,
    root: Path | None = None,
    progress: Callable[[str], None] | None = None,
    gate: QualityRules | None = None,
    rule: CuttingRule | None = None,
    metrics_path: str | Path | None = None,
    plots_dir: str | Path | None = None,
    experiment: str | None = None,
) -> TrainSummary:
    """Cross-validate, train the final model, write metrics and plots for DVC, and track it all
    in MLflow (in `experiment`, see `tracking.experiment_name`): a parent run, a nested run per
    fold, the registered model. `root` is the folder the pipeline runs in (default: the current
    one; a temporary copy in a queued DVC experiment, whose runs go to the project's store).

    The headline metrics go to `metrics_path` (default OUT/metrics.json) and the plots' data to
    `plots_dir` (default OUT/plots), where the DVC stage declares them. What is written for DVC
    depends on the inputs and the seed only: the run id and registered version stay in MLflow."""
    import mlflow

    from uos.training import tracking

    started = time.perf_counter()
    say = progress or (lambda message: None)
    out = Path(out_dir)
    root = (root or Path.cwd()).resolve()
    config = params.model_config(gate, rule)
    # Load: the labelled holes with their folds, what they were made from, where runs are tracked.
    data = load_training_set(parsed_dir, labels_dir, folds_dir, params, config, truth_path, say)
    tracking.configure_runs(root, experiment)
    facts = tracking.lineage(root)
    split_facts = _split_facts(folds_dir)
    with mlflow.start_run(run_name=f"train{'-' + profile if profile else ''}") as parent:
        _track_inputs(data, params, profile, facts, split_facts, labels_dir)
        # Train: the folds (a nested run each) and the final model, side by side in worker processes.
        trained = _train_tracked(data, params, config, say)
        scored = _score(data, trained.cv)
        _track_cv_results(scored.metrics)
        # Save: the final model and the plots' data (metrics.json once the run is closed), as DVC declares.
        _save(out, plots_dir, data, scored, trained.final, config)
        # Track and register: the final model as a new version of the registered model.
        version = _register(out, params, facts, profile, data.example)
        run_id = parent.info.run_id
    _write_metrics(out, scored.metrics, metrics_path)
    return TrainSummary(
        out,
        scored.metrics,
        f"models:/{tracking.MODEL_NAME}/{version.version}",
        version.version,
        run_id,
        time.perf_counter() - started,
        tracking_uri=mlflow.get_tracking_uri(),
        dvc_experiment=facts.get(tracking.DVC_EXPERIMENT_TAG),
    )
