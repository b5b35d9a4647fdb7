"""`uos promote`: a registered version becomes the champion, unless it regresses."""

from __future__ import annotations

import click

NOT_PROMOTED = 3  # the exit code of a refusal (it regresses), apart from errors' 1


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
    the alias. Exit code 3 when it regresses (and is not promoted), 1 for an error (no registry,
    no such version), so that a script tells a refusal from a failure.

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
        sys.exit(NOT_PROMOTED)
