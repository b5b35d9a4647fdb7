"""`uos train`: the depth model, cross-validated, tracked in MLflow and registered."""

from __future__ import annotations

from pathlib import Path

import click

from uos.commands.common import experiment_option, metrics_option, out_option, params_option, truth_option
from uos.labels import KEYPOINTS


@click.command("train")
@click.argument("parsed", type=click.Path(file_okay=False, path_type=Path))
@click.argument("labels", type=click.Path(file_okay=False, path_type=Path))
@click.argument("folds", type=click.Path(file_okay=False, path_type=Path))
@out_option("Folder for the weights, metrics and plots.")
@click.option(
    "--profile", default=None, help="A [train.profiles.NAME] table overriding [train] (e.g. ci: a quick run)."
)
@truth_option("for exact accuracy")
@experiment_option("MLflow experiment for the run (default: $MLFLOW_EXPERIMENT_NAME, else uos-depth).")
@metrics_option("Where to write the headline metrics (default: OUT/metrics.json); the DVC stage: metrics/train.json.")
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
    The folds and the final model train side by side, each in a worker process with one torch
    thread: [train] workers in params.toml, 0 (the default) for our share of the cores this
    process may use (the idle ones, and a share of those busy with other jobs); the numbers are
    the same for any count. Ctrl-C stops every worker.

    \b
    Examples:
      uos train build/parsed build/labels build/folds --out build/model
        (the DVC stage adds --metrics metrics/train.json --plots metrics/plots)
      uos train build/parsed build/labels build/folds --out /tmp/m --profile ci --experiment trials
    """
    from uos.dataset.build import ParseParams
    from uos.labels.label import LabelParams
    from uos.params import load_params
    from uos.training.run import run_training
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
    _report(summary, params.refine)


def _report(summary, refine: bool) -> None:
    """The cross-validated errors, the answers by status, and where the run and model are, on stderr."""
    from uos.training import evaluation
    from uos.training.tracking import shown_uri

    cv = summary.metrics["cv"]
    figures = ", ".join(
        f"{k} {cv[k]['mae_mm']:.3f} ± {cv[k]['sd_mm']:.3f}"
        for k in (*KEYPOINTS, "thickness")
        if cv[k]["mae_mm"] is not None
    )
    click.echo(f"Cross-validated MAE mm (all answers, against the labels): {figures}", err=True)
    tables = {("refined" if refine else "not refined") + " (predict)": summary.metrics["answers"]["all"]}
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
