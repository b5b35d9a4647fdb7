"""Helpers shared by the command wrappers (click and the standard library only)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import click

params_option = click.option(
    "--params",
    "params_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="params.toml to read (default: ./params.toml when present).",
)


# Options that several commands share, each written once (as sqlite-utils bundles its own).


def out_option(help: str):
    return click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help=help)


def workers_option(
    help: str = "Worker processes (default: the stage's workers in params.toml; 0: our share of the cores).",
    minimum: int = 0,
    default=None,
):
    return click.option(
        "--workers", type=click.IntRange(min=minimum), default=default, show_default=default is not None, help=help
    )


def truth_option(purpose: str):
    return click.option(
        "--truth",
        "truth_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Ground truth of synthetic holes (uos synth's truth.csv), {purpose}; skipped when absent.",
    )


def metrics_option(help: str):
    return click.option(
        "--metrics", "metrics_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help=help
    )


def json_option(what: str):
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON on stdout.")


def experiment_option(help: str, required: bool = False):
    return click.option("--experiment", default=None, required=required, help=help)


def warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


def error_line(message: str) -> None:
    click.echo(f"Error: {message}", err=True)


@contextmanager
def progress_bar(description: str, enabled: bool | None = None):
    """Yields `update(done, total)`; draws a bar on stderr only when stderr is a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda done, total: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
