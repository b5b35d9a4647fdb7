"""What the pipeline has produced so far, in a few lines: the end of the demo, and `uos summary`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Each stage's figures, where its command writes them.
STAGE_FIGURES = {
    "parse": "build/parsed/summary.json",
    "label": "build/labels/metrics.json",
    "split": "build/folds/folds.json",
    "train": "build/model/details.json",
}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pipeline_summary(root: Path = Path(".")) -> dict[str, Any]:
    """Figures from each stage's outputs under `root/build` (missing stages are left out)."""
    summary: dict[str, Any] = {}
    for stage, path in STAGE_FIGURES.items():
        figures = _read_json(root / path)
        if figures:
            summary[stage] = figures
    return summary


def _status_line(answers: dict) -> str:
    """ok and review answers with their gross errors: a mean never comes alone."""
    parts = []
    for status in ("ok", "review"):
        part = answers.get(status)
        if part:
            parts.append(f"{part['holes']} {status} ({part['gross']} gross errors > 1 mm)")
    return ", ".join(parts) or "none"


def _mae_line(figures: dict[str, Any], keys=("entry", "transition", "exit", "thickness")) -> str:
    shown = []
    for key in keys:
        value = figures.get(key)
        value = value.get("mae_mm") if isinstance(value, dict) else value
        if value is not None:
            shown.append(f"{key} {value:.3f}")
    return ", ".join(shown)


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
        for name in ("entry", "transition", "exit"):
            for source, n in labels["by_source"][name].items():
                if "absent" not in source:
                    sources[source] = sources.get(source, 0) + n
        shown = ", ".join(f"{n} from {source}s" for source, n in sorted(sources.items()))
        lines.append(
            f"Labels     {labels['holes']} holes, {labels['reviewed']} reviewed by a human, {labels['rejected']} rejected: "
            f"{shown} (build/labels/labels.parquet)"
        )
        synthetic = labels.get("synthetic")
        if synthetic:
            maes = ", ".join(f"{k} {synthetic[k]['mae_mm']:.2f}" for k in ("entry", "transition", "exit"))
            lines.append(f"           against the synthetic ground truth, MAE mm: {maes}")
    split = summary.get("split")
    if split:
        sizes = "/".join(str(n) for n in split["fold_sizes"].values())
        lines.append(
            f"Folds      {split['holes']} holes in {split['k']} folds of {sizes} ({split['groups']} groups by {split['group_by']})"
        )
    model = summary.get("train")
    if model:
        info = model.get("model", {})
        lines.append(f"Model      {info.get('name')} version {info.get('version')} ({info.get('alias')}), "
                     f"cross-validated MAE mm: {_mae_line(model['cv'])}")  # fmt: skip
        lines.append(f"           signal-only baseline against the same labels: {_mae_line(model['baseline'])}")
        exact = model.get("synthetic_truth")
        if exact:
            lines.append(f"           against the synthetic ground truth: {_mae_line(exact['model'])}")
        for key, path in (
            ("answers", "refined, as uos predict"),
            ("answers_without_refine", "network only, as uos serve"),
        ):
            if key in model:
                lines.append(f"           out of fold, {path}: {_status_line(model[key]['all'])}")
        lines.append("Next       uos report (errors in the terminal), uos promote (candidate -> champion), "
                     "uos predict FILE, uos annotate, just --list")  # fmt: skip
    else:
        lines.append(
            "Next       uos show HOLE_ID (one hole in the terminal), uos annotate (review labels), just --list"
        )
    return "\n".join(lines)
