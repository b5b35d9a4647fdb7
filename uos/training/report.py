"""`uos report`: the champion's and the candidate's cross-validated errors, learning curves and
error histogram, drawn in the terminal (users work over SSH)."""

from __future__ import annotations

import shutil
from typing import Any

from uos.errors import UosError
from uos.labels import KEYPOINTS
from uos.training import tracking


def _run_table(version, name: str) -> dict[str, Any]:
    import pandas as pd
    from mlflow.artifacts import download_artifacts

    metrics = tracking.version_metrics(version)
    facts: dict[str, Any] = {
        "name": name,
        "version": str(version.version),
        "run_id": version.run_id,
        "metrics": metrics,
    }
    try:
        folder = download_artifacts(run_id=version.run_id, artifact_path="plots")
        facts["curve"] = pd.read_csv(f"{folder}/learning_curve_mean.csv")
        facts["errors"] = pd.read_csv(f"{folder}/error_histogram.csv")
    except Exception:  # an older run without plots still has its metrics
        facts["curve"], facts["errors"] = None, None
    try:
        facts["answers"] = pd.read_csv(f"{folder}/out_of_fold.csv")
        facts["threshold"] = float(
            tracking.client().get_run(version.run_id).data.params.get("review_confidence", "nan")
        )
    except Exception:  # a run from before answers had a status
        facts["answers"], facts["threshold"] = None, float("nan")
    return facts


def _figure(metrics: dict[str, float], key: str, width: int, digits: int = 0) -> str:
    value = metrics.get(key)
    return f"{'-' if value is None else f'{value:.{digits}f}':>{width}}"


def _status_lines(tables: list[dict[str, Any]]) -> str:
    """Out-of-fold answers per status, for each version: holes, thickness MAE, gross errors."""
    lines = [f"{'':<16}{'ok':>8}{'gross':>7}{'thick MAE':>11}{'review':>9}{'gross':>7}{'thick MAE':>11}"]
    for table in tables:
        metrics = table["metrics"]
        cells = [
            _figure(metrics, "cv_answers_ok_holes", 8),
            _figure(metrics, "cv_answers_ok_gross", 7),
            _figure(metrics, "cv_answers_ok_thickness_mae_mm", 11, 3),
            _figure(metrics, "cv_answers_review_holes", 9),
            _figure(metrics, "cv_answers_review_gross", 7),
            _figure(metrics, "cv_answers_review_thickness_mae_mm", 11, 3),
        ]
        lines.append(f"{table['name'] + ' v' + table['version']:<16}" + "".join(cells))
    return "Out-of-fold answers by status (gross: a keypoint or the thickness > 1 mm off)\n" + "\n".join(lines)


def _confidence_plot(plt, table: dict[str, Any], columns: int) -> str:
    """Each out-of-fold answer's worst error against its least keypoint confidence: what the
    review threshold separates."""
    answers = table["answers"]
    errors = answers[[f"{k}_error_mm" for k in (*KEYPOINTS, "thickness")]].max(axis=1).fillna(0)
    errors = errors.where(~answers["gross"], errors.clip(lower=3)).clip(upper=3)  # missed or invented: 3
    plt.clear_figure()
    plt.plotsize(columns, 18)
    plt.theme("clear")
    for status, marker in (("ok", "dot"), ("review", "x")):
        part = answers["status"] == status
        if part.any():
            plt.scatter(
                answers.loc[part, "min_confidence"].tolist(), errors[part].tolist(), marker=marker, label=status
            )
    plt.hline(1.0)
    if table["threshold"] == table["threshold"]:
        plt.vline(table["threshold"])
    plt.xlabel("least keypoint confidence")
    plt.ylabel("worst error (mm, clipped at 3; a point missed or invented: 3)")
    plt.title(f"out-of-fold error against confidence, {table['name']} v{table['version']} (gross above 1 mm)")
    return plt.build()


def build_report(width: int | None = None) -> str:
    import plotext as plt

    tracking.configure()
    versions = [(alias, tracking.version_for_alias(alias)) for alias in (tracking.CHAMPION, tracking.CANDIDATE)]
    versions = [(alias, v) for alias, v in versions if v is not None]
    if not versions:
        raise UosError("no champion or candidate in the registry yet: run `uos train` (or `dvc repro`) first")
    tables = [_run_table(v, alias) for alias, v in versions]
    columns = width or min(shutil.get_terminal_size((100, 30)).columns, 120)
    out = []
    lines = [f"{'':<12}" + "".join(f"{k:>14}" for k in (*KEYPOINTS, "thickness"))]
    for table in tables:
        cells = []
        for k in (*KEYPOINTS, "thickness"):
            mean, sd = table["metrics"].get(f"cv_{k}_mae_mean"), table["metrics"].get(f"cv_{k}_mae_sd")
            cells.append(f"{mean:.3f}±{sd:.3f}".rjust(14) if mean is not None else "-".rjust(14))
        lines.append(f"{table['name'] + ' v' + table['version']:<12}" + "".join(cells))
    out.append("Cross-validated MAE (mm, mean ± sd over folds)\n" + "\n".join(lines))
    out.append(_status_lines(tables))

    plt.clear_figure()
    plt.plotsize(columns, 15)
    plt.theme("clear")
    labels = [*KEYPOINTS, "thickness"]
    plt.multiple_bar(
        labels,
        [[t["metrics"].get(f"cv_{k}_mae_mean", 0.0) for k in labels] for t in tables],
        labels=[f"{t['name']} v{t['version']}" for t in tables],
    )
    plt.title("cross-validated MAE per keypoint (mm)")
    out.append(plt.build())
    latest = tables[-1]
    if latest["answers"] is not None:
        out.append(_confidence_plot(plt, latest, columns))
    if latest["curve"] is not None:
        plt.clear_figure()
        plt.plotsize(columns, 15)
        plt.theme("clear")
        curve = latest["curve"]
        plt.plot(curve["epoch"].tolist(), curve["train_loss"].tolist(), label="train")
        plt.plot(curve["epoch"].tolist(), curve["validation_loss"].tolist(), label="validation")
        plt.title(f"learning curve of {latest['name']} v{latest['version']} (mean over folds)")
        plt.xlabel("epoch")
        out.append(plt.build())
    if latest["errors"] is not None:
        plt.clear_figure()
        plt.plotsize(columns, 15)
        plt.theme("clear")
        histogram = latest["errors"]
        for name in KEYPOINTS:
            if name in histogram and histogram[name].sum():
                plt.plot(histogram["error_mm"].tolist(), histogram[name].tolist(), label=name)
        plt.xlabel("predicted - label (mm)")
        plt.ylabel("keypoints")
        plt.title(f"out-of-fold error of {latest['name']} v{latest['version']} (mm, clipped at 1)")
        out.append(plt.build())
    return "\n".join(out)
