"""`uos report`: model errors in the terminal."""

from __future__ import annotations

import click


@click.command("report")
@click.option(
    "--width", type=click.IntRange(min=40), default=None, help="Plot width in characters (default: terminal)."
)
def report_command(width):
    """Show the champion's and the candidate's cross-validated errors, learning curve and error
    histogram in the terminal.

    \b
    For the full MLflow UI over SSH: `just mlflow-ui` on the server, then
    `ssh -L 5000:127.0.0.1:5000 server` and open http://127.0.0.1:5000.

    \b
    Example:
      uos report
    """
    from uos.training.report import build_report

    click.echo(build_report(width))
