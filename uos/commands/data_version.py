"""`uos train-data-version`: the whole pipeline on the data of a git tag or commit."""

from __future__ import annotations

import click

from uos.commands.common import experiment_option


@click.command("train-data-version")
@click.argument("rev")
@experiment_option("MLflow experiment to train into (created when missing).", required=True)
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
