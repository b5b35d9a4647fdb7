"""What the pipeline has produced so far, in a few lines: the end of the demo, and `uos summary`.

The stages' figures come from the files the stages write (metrics/*.json, where the DVC pipeline
puts them, else beside the stage's outputs under build/); the model's from the MLflow registry
the project tracks to, so that every team-mate sees the same candidate and champion.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from uos.errors import UosError, gist
from uos.labels import KEYPOINTS

# Each stage's figures: where the DVC stage writes them first, then where the command alone does.
STAGE_FIGURES = {
    "parse": ("metrics/parse.json", "build/parsed/summary.json"),
    "label": ("metrics/label.json", "build/labels/metrics.json"),
    "split": ("build/folds/folds.json",),
}
KEYPOINT_NAMES = (*KEYPOINTS, "thickness")
STATUSES = ("ok", "review", "error")
# The out-of-fold answers a training run logs (`cv_<key>_<status>_holes`, `..._gross`).
ANSWER_PATHS = {"answers": "refined, as uos predict", "answers_without_refine": "network only, as uos serve"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pipeline_summary(root: Path | None = None) -> dict[str, Any]:
    """Figures from each stage's files under `root` (missing stages are left out) and the
    registered model's versions from MLflow (`model`). `root` defaults to the project around the
    current folder."""
    from uos.training.tracking import project_root

    root = project_root(root)
    summary: dict[str, Any] = {}
    for stage, paths in STAGE_FIGURES.items():
        figures = next((f for f in (_read_json(root / path) for path in paths) if f), None)
        if figures:
            summary[stage] = figures
    summary["model"] = registry_summary(root)
    return summary


def _missing_store(uri: str) -> str | None:
    """Why there is nothing to read at a local store, without creating one by looking."""
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
    elif parts.scheme in ("", "file"):
        path = Path(parts.path)
    else:  # a tracking server or a database: ask it
        return None
    return None if path.exists() else f"no MLflow store at {path} yet: `dvc repro` trains and registers a model"


def registry_summary(root: Path = Path(".")) -> dict[str, Any]:
    """The registered model's candidate and champion, each with the figures its training run
    logged; or, in `missing`, why there are none."""
    from uos.training import tracking

    uri = tracking.tracking_uri(root)
    model: dict[str, Any] = {"name": tracking.MODEL_NAME, "registry": tracking.shown_uri(uri)}
    if missing := _missing_store(uri):
        return {**model, "missing": missing}
    from mlflow.exceptions import MlflowException

    try:
        tracking.use_store(uri)  # (not configure: looking creates no experiment)
    except UosError as exc:  # a server or database that does not answer: the rest is still worth showing
        return {**model, "missing": str(exc)}
    client = tracking.client()
    try:
        found = client.search_registered_models(filter_string=f"name = '{tracking.MODEL_NAME}'")
        if not found:
            missing = f"no model registered as {tracking.MODEL_NAME} in {model['registry']} yet: `dvc repro` trains one"
            return {**model, "missing": missing}
        aliases = found[0].aliases
        model["versions"] = {
            alias: _version_figures(client, tracking.MODEL_NAME, aliases[alias])
            for alias in (tracking.CHAMPION, tracking.CANDIDATE)
            if alias in aliases
        }
    except MlflowException as exc:
        return {**model, "missing": f"cannot read the registry at {model['registry']}: {gist(exc)}"}
    return model


def _version_figures(client, name: str, version: str) -> dict[str, Any]:
    """What the run that made a version logged: cross-validated MAE (mean and sd over folds),
    the signal-only baseline's, and the out-of-fold answers by status with their gross errors."""
    run_id = client.get_model_version(name, version).run_id
    metrics = client.get_run(run_id).data.metrics
    figures: dict[str, Any] = {
        "version": str(version),
        "run_id": run_id,
        "cv_mae": {k: metrics.get(f"cv_{k}_mae_mean") for k in KEYPOINT_NAMES},
        "cv_sd": {k: metrics.get(f"cv_{k}_mae_sd") for k in KEYPOINT_NAMES},
        "baseline_mae": {k: metrics.get(f"baseline_{k}_mae_mm") for k in KEYPOINT_NAMES},
    }
    for key in ANSWER_PATHS:
        by_status = {
            status: {
                "holes": int(metrics[f"cv_{key}_{status}_holes"]),
                "gross": int(metrics[f"cv_{key}_{status}_gross"]),
            }
            for status in STATUSES
            if f"cv_{key}_{status}_holes" in metrics
        }
        if by_status:
            figures[key] = by_status
    return figures


def _status_line(answers: dict) -> str:
    """ok and review answers with their gross errors: a mean never comes alone."""
    parts = []
    for status in ("ok", "review"):
        part = answers.get(status)
        if part:
            parts.append(f"{part['holes']} {status} ({part['gross']} gross errors > 1 mm)")
    return ", ".join(parts) or "none"


def _mae_line(figures: dict[str, Any]) -> str:
    return ", ".join(f"{key} {figures[key]:.3f}" for key in KEYPOINT_NAMES if figures.get(key) is not None)


def _model_lines(model: dict[str, Any]) -> list[str]:
    if "missing" in model:
        return [f"Model      {model['missing']}"]
    lines = [f"Model      {model['name']} in {model['registry']}"]
    versions = model.get("versions", {})
    if not versions:
        lines.append("           no candidate or champion version (aliases) yet")
    by_version: dict[str, list[str]] = {}
    for alias, figures in versions.items():
        by_version.setdefault(figures["version"], []).append(alias)
    for number, aliases in by_version.items():
        figures = versions[aliases[0]]
        named = " and ".join(aliases)
        lines.append(f"           version {number} ({named}), cross-validated MAE mm: {_mae_line(figures['cv_mae'])}")
        lines.append(f"             signal-only baseline against the same labels: {_mae_line(figures['baseline_mae'])}")
        for key, path in ANSWER_PATHS.items():
            if key in figures:
                lines.append(f"             out of fold, {path}: {_status_line(figures[key])}")
    return lines


def render_summary(summary: dict[str, Any]) -> str:
    lines = []
    parsed = summary.get("parse")
    if parsed:
        lines.append(
            f"Holes      {parsed['holes']} parsed from {parsed['inputs']} inputs ({parsed['samples']:,} samples): "
            f"{parsed['ok']} ok, {parsed['warning']} with warnings, {parsed['error']} with errors "
            "(build/parsed/report.csv)"
        )
    else:
        lines.append("Holes      nothing parsed yet: put Setitec files in data/raw and run `dvc repro`")
    labels = summary.get("label")
    if labels:
        sources = {}
        for name in KEYPOINTS:
            for source, n in labels["by_source"][name].items():
                if "absent" not in source:
                    sources[source] = sources.get(source, 0) + n
        shown = ", ".join(f"{n} from {source}s" for source, n in sorted(sources.items()))
        lines.append(
            f"Labels     {labels['holes']} holes, {labels['reviewed']} reviewed by a human, "
            f"{labels['rejected']} rejected: "
            f"{shown} (build/labels/labels.parquet)"
        )
        synthetic = labels.get("synthetic")
        if synthetic:
            maes = ", ".join(f"{k} {synthetic[k]['mae_mm']:.2f}" for k in KEYPOINTS)
            lines.append(f"           against the synthetic ground truth, MAE mm: {maes}")
    split = summary.get("split")
    if split:
        sizes = "/".join(str(n) for n in split["fold_sizes"].values())
        lines.append(
            f"Folds      {split['holes']} holes in {split['k']} folds of {sizes} "
            f"({split['groups']} groups by {split['group_by']})"
        )
    model = summary.get("model")
    if model:
        lines.extend(_model_lines(model))
    if model and model.get("versions"):
        lines.append(
            "Next       uos report (errors in the terminal), uos promote (candidate -> champion), "
            "uos predict FILE, uos annotate, just --list"
        )
    else:
        lines.append(
            "Next       uos show HOLE_ID (one hole in the terminal), uos annotate (review labels), just --list"
        )
    return "\n".join(lines)
