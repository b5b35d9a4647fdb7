"""`uos report`: the champion's and the candidate's cross-validated errors, learning curves and
error histogram, drawn in the terminal (users work over SSH)."""

from __future__ import annotations

import shutil
from typing import Any

from uos.errors import UosError
from uos.training import tracking
from uos.training.model import KEYPOINTS


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
    return facts


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

    plt.clear_figure()
    plt.plotsize(columns, 15)
    plt.theme("clear")
    labels = [*KEYPOINTS, "thickness"]
    plt.multiple_bar(labels, [[t["metrics"].get(f"cv_{k}_mae_mean", 0.0) for k in labels] for t in tables],
                     labels=[f"{t['name']} v{t['version']}" for t in tables])  # fmt: skip
    plt.title("cross-validated MAE per keypoint (mm)")
    out.append(plt.build())
    latest = tables[-1]
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
