"""`uos parse`: Setitec files and MQTT captures into one clean dataset with a quality report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from uos.commands.common import (
    error_line,
    json_option,
    metrics_option,
    out_option,
    params_option,
    progress_bar,
    warn,
    workers_option,
)


@click.command("parse")
@click.argument("inputs", nargs=-1, required=True)
@out_option("Dataset folder to write.")
@click.option("--strict", is_flag=True, help="Stop at the first input that fails, writing nothing.")
@click.option(
    "--allow-errors",
    is_flag=True,
    default=None,
    help="Exit 0 even when some inputs fail (they are still reported).",
)
@workers_option()
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Parse cache (default: $UOS_CACHE_DIR or ~/.cache/uos).",
)
@metrics_option("Also write the counts of summary.json here (the DVC stage: metrics/parse.json).")
@click.option("-v", "--verbose", is_flag=True, help="List every warning, not only their count.")
@json_option("the summary")
@params_option
def parse_command(
    inputs, out_dir, strict, allow_errors, workers, cache_dir, metrics_path, verbose, as_json, params_path
):
    """Parse Setitec files, folders (recursively) or globs into a dataset under --out.

    \b
    Writes holes.parquet (one row per hole), signals/ (one row per sample),
    report.csv (ok / warning / error per input, with reasons) and summary.json, all at once:
    an interrupted run leaves the previous dataset whole.
    Reads every Setitec format variant (versions 4 to 11, Latin-1, TAB or ';', comma or dot
    decimals, Excel re-saves) and MQTT capture folders (Result + Trace JSON). A bad input
    never stops the run: its reason goes to the report and to stderr, and the exit code is 1.
    Unchanged inputs are not parsed again (cache keyed by content hash).

    \b
    Examples:
      uos parse data/raw --out build/parsed
      uos parse data/raw --out build/parsed --metrics metrics/parse.json   (as the DVC stage)
      uos parse 'incoming/**/*.xls' captures/hole_17 --out /tmp/check --strict
    """
    import dataclasses
    import json

    from uos.dataset.build import ParseParams, parse_dataset
    from uos.outputs import write_json
    from uos.params import load_params

    params = load_params(ParseParams, "parse", params_path)
    if workers is not None:
        params = dataclasses.replace(params, workers=workers)
    if allow_errors is not None:
        params = dataclasses.replace(params, allow_errors=allow_errors)

    with progress_bar("Parsing") as update:
        summary = parse_dataset(inputs, out_dir, params, strict=strict, cache_root=cache_dir, progress=update)

    if metrics_path is not None:
        write_json(metrics_path, summary.figures())
    _report(summary, out_dir, verbose)
    if as_json:
        figures = {"holes": summary.n_holes, "samples": summary.n_samples}
        figures |= {status: summary.count(status) for status in ("ok", "warning", "error")}
        click.echo(json.dumps({**figures, "parsed": summary.n_parsed, "seconds": round(summary.seconds, 3)}))
    if summary.count("error") and not params.allow_errors:
        sys.exit(1)


def _report(summary, out_dir: Path, verbose: bool) -> None:
    """Each input that failed (and with -v each warning), then the counts, on stderr."""
    for note in summary.notes:
        warn(note)
    for outcome in summary.outcomes:
        if outcome.status == "error":
            error_line(f"{outcome.source}: {'; '.join(outcome.reasons)}")
        elif outcome.status == "warning" and verbose:
            warn(f"{outcome.source}: {'; '.join(outcome.reasons)}")
    ok, warned, failed = summary.count("ok"), summary.count("warning"), summary.count("error")
    state = (
        "up to date"
        if summary.up_to_date
        else f"{summary.n_parsed} parsed, {len(summary.outcomes) - summary.n_parsed} from cache"
    )
    click.echo(
        f"{len(summary.outcomes)} inputs -> {summary.n_holes} holes, {summary.n_samples:,} samples in {out_dir} "
        f"({ok} ok, {warned} warning{'s' if warned != 1 else ''}, {failed} error{'s' if failed != 1 else ''}; "
        f"{state}; {summary.seconds:.1f} s)",
        err=True,
    )
    if warned and not verbose:
        click.echo(f"Warnings are listed in {out_dir / 'report.csv'} (or run with -v).", err=True)
