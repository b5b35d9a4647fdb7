"""`uos summary`: what the pipeline has produced so far."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("summary")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON on stdout.")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Project folder (where build/ is).",
)
def summary_command(as_json, root):
    """Summarise the pipeline's outputs: holes, labels, cross-validation error, registered model.

    \b
    Example:
      uos summary            (after `dvc repro`)
      uos summary --json | jq .parse.holes
    """
    import json

    from uos.summary import pipeline_summary, render_summary

    summary = pipeline_summary(root)
    click.echo(json.dumps(summary, indent=2) if as_json else render_summary(summary))
