"""`uos train` and `uos promote`: the depth model, tracked in MLflow and registered."""

from __future__ import annotations

from pathlib import Path

import click

from uos.commands.common import params_option


@click.command("train")
@click.argument("parsed", type=click.Path(file_okay=False, path_type=Path))
@click.argument("labels", type=click.Path(file_okay=False, path_type=Path))
@click.argument("folds", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the weights, metrics and plots.",
)
@click.option(
    "--profile", default=None, help="A [train.profiles.NAME] table overriding [train] (e.g. ci: a quick run)."
)
@click.option(
    "--truth",
    "truth_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Ground truth of synthetic holes (truth.csv), for exact accuracy; skipped when absent.",
)
@click.option(
    "--experiment",
    default=None,
    help="MLflow experiment for the run (default: $MLFLOW_EXPERIMENT_NAME, else uos-depth).",
)
@click.option(
    "--metrics",
    "metrics_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the headline metrics (default: OUT/metrics.json); the DVC stage: metrics/train.json.",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the data of the DVC plots (default: OUT/plots); the DVC stage: metrics/plots.",
)
@params_option
def train_command(
    parsed, labels, folds, out_dir, profile, truth_path, experiment, metrics_path, plots_dir, params_path
):
    """Train the depth model: cross-validated over the folds, then on every labelled hole.

    \b
    Every run is tracked in MLflow (MLFLOW_TRACKING_URI, default a SQLite file mlflow.db at the
    project's root): params, losses per epoch, MAE per keypoint and thickness per fold and as mean
    and sd, error plots, out-of-fold predictions, data lineage (git commit, DVC hashes, the data
    version: a git tag of the same data.dvc). The final model is registered as uos-depth with the
    alias candidate; `uos promote` makes it the champion. Inside a DVC experiment (`dvc exp run`)
    the version is registered and tagged with the experiment's name, but candidate stays where
    it is: `uos promote --version N` promotes it.
    The files written depend on the inputs and the seed only (the run id and version are
    MLflow's, and on stderr).

    \b
    Examples:
      uos train build/parsed build/labels build/folds --out build/model
      uos train build/parsed build/labels build/folds --out build/model --metrics m.json --plots p/
      uos train build/parsed build/labels build/folds --out /tmp/m --profile ci --experiment trials
    """
    from uos.dataset.build import ParseParams
    from uos.labels.label import LabelParams
    from uos.params import load_params
    from uos.training import evaluation
    from uos.training.run import run_training
    from uos.training.tracking import shown_uri
    from uos.training.train import TrainParams

    params = load_params(TrainParams, "train", params_path).with_profile(profile)
    gate = load_params(ParseParams, "parse", params_path).rules()
    rule = load_params(LabelParams, "label", params_path).rule()
    summary = run_training(
        parsed,
        labels,
        folds,
        out_dir,
        params,
        truth_path=truth_path if truth_path and truth_path.exists() else None,
        profile=profile,
        progress=lambda message: click.echo(message, err=True),
        gate=gate,
        rule=rule,
        metrics_path=metrics_path,
        plots_dir=plots_dir,
        experiment=experiment,
    )
    cv = summary.metrics["cv"]
    figures = ", ".join(
        f"{k} {cv[k]['mae_mm']:.3f} ± {cv[k]['sd_mm']:.3f}"
        for k in ("entry", "transition", "exit", "thickness")
        if cv[k]["mae_mm"] is not None
    )
    click.echo(f"Cross-validated MAE mm (all answers, against the labels): {figures}", err=True)
    tables = {("refined" if params.refine else "not refined") + " (predict)": summary.metrics["answers"]["all"]}
    if "answers_without_refine" in summary.metrics:
        tables["network only (serve)"] = summary.metrics["answers_without_refine"]["all"]
    click.echo(evaluation.format_table(tables, "Out-of-fold answers by status (gross: > 1 mm off):"), err=True)
    where = f"run {summary.run_id} in {shown_uri(summary.tracking_uri)}, {summary.seconds:.0f} s"
    if summary.dvc_experiment:
        click.echo(
            f"Registered {summary.model_uri} for DVC experiment {summary.dvc_experiment} ({where}), "
            f"candidate unchanged; `uos promote --version {summary.version}` to make it the champion.",
            err=True,
        )
    else:
        click.echo(
            f"Registered {summary.model_uri} as candidate ({where}); `uos promote` to make it the champion.", err=True
        )


@click.command("promote")
@click.option("--force", is_flag=True, help="Promote even when the model's cross-validated error is worse.")
@click.option(
    "--version",
    default=None,
    help="The uos-depth version to promote (e.g. a DVC experiment's) instead of the candidate.",
)
def promote_command(force, version):
    """Make the candidate model (or --version N) the champion, unless its cross-validated error regresses.

    \b
    Compares its cross-validated MAE per keypoint and thickness, and its share of gross errors
    among confident answers, with the current champion's and says why it did or did not move
    the alias. Exit code 1 when it regresses (and is not promoted).

    \b
    Examples:
      uos promote
      uos promote --version 7
    """
    import sys

    from uos.training import tracking

    tracking.configure()
    result = tracking.promote(force, version)
    click.echo(result.reason, err=True)
    if result.regressed:
        sys.exit(1)


@click.command("train-data-version")
@click.argument("rev")
@click.option("--experiment", required=True, help="MLflow experiment to train into (created when missing).")
@click.option(
    "-S",
    "--set-param",
    "settings",
    multiple=True,
    help="A params.toml value for this run, e.g. -S train.epochs=60 (as `dvc exp run -S`); repeatable.",
)
def train_data_version_command(rev, experiment, settings):
    """Train on the data of a git tag or commit (its data.dvc) into a named MLflow experiment.

    \b
    Takes data.dvc from REV, checks its data out (from the DVC cache, else `dvc pull`), runs the
    whole pipeline on it as a DVC experiment in a temporary copy (`dvc exp run --temp --force`),
    then puts the workspace's data.dvc and data/ back as they were. The run records REV as its
    data_version; its model version is registered without moving candidate (a DVC experiment).
    Prints the run as one JSON line.

    \b
    Examples:
      uos train-data-version v1.0 --experiment drilling_v0.3
      uos train-data-version 3f2a9c1 --experiment drilling_v0.3 -S train.epochs=60
    """
    import dataclasses
    import json

    from uos.training.data_version import train_data_version

    overrides = [s if ":" in s.split("=", 1)[0] else f"params.toml:{s}" for s in settings]
    run = train_data_version(rev, experiment, overrides, say=lambda message: click.echo(message, err=True))
    click.echo(
        f"Trained the data of {rev} into MLflow experiment {experiment}: run {run.run_id}, "
        f"model version {run.model_version} (candidate unchanged)",
        err=True,
    )
    click.echo(json.dumps(dataclasses.asdict(run)))
