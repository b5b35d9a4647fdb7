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

runtime_option = click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default="torch",
    show_default=True,
    help="What runs the network: PyTorch, or ONNX Runtime (the same keypoints; lighter, no torch loaded).",
)


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
