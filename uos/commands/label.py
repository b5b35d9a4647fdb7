"""`uos label`: automatic keypoint labels with source and confidence; human annotations win."""

from __future__ import annotations

from pathlib import Path

import click

from uos.commands.common import (
    json_option,
    metrics_option,
    out_option,
    params_option,
    progress_bar,
    truth_option,
    warn,
    workers_option,
)
from uos.labels import KEYPOINTS


@click.command("label")
@click.argument("parsed", type=click.Path(file_okay=False, path_type=Path))
@out_option("Folder for labels.parquet and metrics.json.")
@click.option(
    "--annotations",
    "annotations_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Human annotations (data/annotations): they always win, unless they cannot be (keypoints out of "
    "depth order or outside the recording: a warning, and the automatic labels stand).",
)
@truth_option("to measure accuracy")
@metrics_option("Where to write the metrics (default: OUT/metrics.json); the DVC stage writes metrics/label.json.")
@workers_option()
@json_option("the metrics")
@params_option
def label_command(parsed, out_dir, annotations_dir, truth_path, metrics_path, workers, as_json, params_path):
    """Label entry, transition and exit of every hole of a parsed dataset.

    \b
    Each keypoint gets a depth (mm), its source (human, event or signal), a confidence in [0, 1]
    and a reason; a point that does not exist (air cut, one layer, a recording that stops before
    breakthrough) is null with the reason. A keypoint is a change of cutting state: an entry rises
    from air to cutting level (cutting_a above the hole's air baseline) within a drill point, a
    transition from a cutting level to a clearly higher one, an exit falls back towards air; an
    automatic keypoint that is not is dropped, and the metrics count them per source folder.
    Machine events (stop codes of torque-triggered steps) are corrected for the unit's detection
    lag by the torque ramp around them; everywhere else the signals alone decide. Writes
    labels.parquet and metrics.json (counts by source and confidence, accuracy against synthetic
    ground truth and of the signals alone against the events).

    \b
    Examples:
      uos label build/parsed --out build/labels --annotations data/annotations
      uos label build/parsed --out build/labels --metrics metrics/label.json   (as the DVC stage)
      uos label build/parsed --out /tmp/labels --truth data/raw/truth.csv --json | jq .synthetic
    """
    import dataclasses
    import json

    from uos.dataset.build import ParseParams
    from uos.labels.label import LabelParams, label_dataset
    from uos.params import load_params

    params = load_params(LabelParams, "label", params_path)
    rules = load_params(ParseParams, "parse", params_path).rules()
    if workers is not None:
        params = dataclasses.replace(params, workers=workers)
    if truth_path is not None and not truth_path.exists():
        warn(f"{truth_path}: no ground truth there; accuracy on synthetic holes not measured")
        truth_path = None
    with progress_bar("Labelling") as update:
        summary = label_dataset(
            parsed,
            out_dir,
            annotations_dir,
            truth_path,
            params,
            progress=update,
            rules=rules,
            metrics_path=metrics_path,
        )
    for problem in summary.problems:
        warn(problem)
    _report(summary.metrics, out_dir)
    if as_json:
        click.echo(json.dumps(summary.metrics, indent=2))


def _report(metrics: dict, out_dir: Path) -> None:
    """What was labelled, the cutting rule's verdict per folder and the accuracy, on stderr."""
    counts = ", ".join(
        f"{name} " + "/".join(f"{n} {source}" for source, n in metrics["by_source"][name].items()) for name in KEYPOINTS
    )
    click.echo(
        f"{metrics['holes']} holes labelled in {out_dir} "
        f"({metrics['reviewed']} reviewed, {metrics['rejected']} rejected, "
        f"{metrics['no_keypoints']} that cannot have keypoints): {counts}",
        err=True,
    )
    breaking = {folder: f["breaking"] for folder, f in metrics["cutting_rule"].items() if f["breaking"]}
    if breaking:
        listed = ", ".join(f"{folder} {n}" for folder, n in breaking.items())
        warn(f"labels that break the cutting rule (listed in the rule_broken column), per folder: {listed}")
    else:
        click.echo("Cutting rule: every keypoint is a change of cutting state (0 labels break it).", err=True)
    aside = {folder: f["events_set_aside"] for folder, f in metrics["cutting_rule"].items() if f["events_set_aside"]}
    if aside:
        listed = ", ".join(f"{folder} {n}" for folder, n in aside.items())
        click.echo(f"Machine events set aside (no change of cutting state there), per folder: {listed}", err=True)
    synthetic = metrics.get("synthetic")
    if synthetic:
        maes = ", ".join(f"{k} {synthetic[k]['mae_mm']:.3f}" for k in KEYPOINTS)
        click.echo(f"Against the synthetic ground truth ({synthetic['holes']} holes), MAE mm: {maes}", err=True)
