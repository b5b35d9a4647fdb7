"""`uos show`: one hole's metadata and a terminal plot of torque and thrust against depth."""

from __future__ import annotations

from pathlib import Path

import click

from uos.commands.common import json_option, params_option

DEFAULT_DATASET = Path("build/parsed")


@click.command("show")
@click.argument("target")
@click.option(
    "--data",
    "dataset",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATASET,
    show_default=True,
    help="Parsed dataset in which to look up a hole id.",
)
@json_option("the metadata (no plot)")
@click.option("--no-plot", is_flag=True, help="Only the summary.")
@click.option(
    "--width",
    type=click.IntRange(min=40),
    default=None,
    help="Plot width in characters (default: terminal).",
)
@click.option(
    "--height",
    type=click.IntRange(min=10),
    default=None,
    help="Plot height in lines (default: 20).",
)
@params_option
def show_command(target, dataset, as_json, no_plot, width, height, params_path):
    """Show one hole: a Setitec file, an MQTT capture folder, or a hole id of a parsed dataset.

    \b
    Examples:
      uos show data/raw/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls
      uos show E00401009F45C395-1874                 (looked up in build/parsed)
      uos show ../shared/mqtt/data0 --json | jq .tool_age
    """
    from uos.dataset.build import ParseParams
    from uos.params import load_params
    from uos.show import hole_json, render_plot, render_summary

    path = Path(target)
    if path.is_symlink() or path.exists():  # a broken link is a file that cannot be read, not a hole id
        from uos.holes import read_source
        from uos.holes.quality import check_source

        hole = read_source(path)
        hole.issues = check_source(hole, load_params(ParseParams, "parse", params_path).rules())
    else:
        from uos.dataset.layout import load_hole

        hole = load_hole(dataset, target)

    if as_json:
        click.echo(hole_json(hole))
        return
    click.echo(render_summary(hole))
    if not no_plot:
        click.echo(render_plot(hole, width=width, height=height))
