"""`uos summary`: what the pipeline has produced so far."""

from __future__ import annotations

from pathlib import Path

import click

from uos.commands.common import json_option


@click.command("summary")
@json_option("the figures")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project folder (where metrics/ and build/ are, and mlflow.db unless MLFLOW_TRACKING_URI says "
    "otherwise); default: the project around the current folder.",
)
def summary_command(as_json, root):
    """Summarise the pipeline's outputs: holes, labels, folds, and the registered model.

    \b
    The stages' figures come from metrics/*.json (what `dvc repro` writes; build/ when a command
    ran alone); the model's candidate and champion, with their cross-validated MAE and out-of-fold
    answers by status and gross errors, from the MLflow registry (MLFLOW_TRACKING_URI, default
    mlflow.db in the project): what every team-mate on the same tracking server sees. Looking
    never creates a store.

    \b
    Example:
      uos summary            (after `dvc repro`)
      uos summary --json | jq .parse.holes
      uos summary --json | jq .model.versions.champion.cv_mae
    """
    import json

    from uos.summary import pipeline_summary, render_summary

    summary = pipeline_summary(root)
    click.echo(json.dumps(summary, indent=2) if as_json else render_summary(summary))
