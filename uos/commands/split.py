"""`uos split`: grouped cross-validation folds."""

from __future__ import annotations

from pathlib import Path

import click

from uos.commands.common import out_option, params_option


@click.command("split")
@click.argument("parsed", type=click.Path(file_okay=False, path_type=Path))
@click.argument("labels", type=click.Path(file_okay=False, path_type=Path))
@out_option("Folder for folds.parquet.")
@params_option
def split_command(parsed, labels, out_dir, params_path):
    """Assign every usable hole to one of K cross-validation folds ([split] in params.toml).

    \b
    Holes of one group never straddle train and test: by default one tool life of one head, cut
    into blocks of consecutive holes when long; holes with the same signals are kept together;
    rejected and errored holes are left out; program families are balanced across folds.
    Prints the fold sizes.

    \b
    Example:
      uos split build/parsed build/labels --out build/folds
    """
    from uos.params import load_params
    from uos.training.folds import SplitParams, fold_table, split_dataset

    params = load_params(SplitParams, "split", params_path)
    summary = split_dataset(parsed, labels, out_dir, params)
    left = ", ".join(f"{n} {why}" for why, n in summary.left_out.items() if n) or "none"
    click.echo(fold_table(summary.folds), err=True)
    click.echo(
        f"{len(summary.folds)} holes in {params.k} folds ({summary.folds['group'].nunique()} groups); left out: {left}",
        err=True,
    )
