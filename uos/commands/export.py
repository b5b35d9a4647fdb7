"""`uos export`: a registered model's network in a format other tools run."""

from __future__ import annotations

from pathlib import Path

import click

from uos.commands.model_options import model_option


@click.command("export")
@click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Write the network as ONNX to this file.",
)
@model_option()
def export_command(onnx_path, model_uri):
    """Write a registered model's network as ONNX, for ONNX Runtime or any ONNX tool.

    \b
    The file is the network alone: input `features` float32 [holes, 6, 400] (a hole's channels on
    the 0.1 mm depth grid, 0 to 40 mm), outputs `heatmaps` float32 [holes, 3, 400] and `presence`
    float32 [holes, 3] (logits, for entry, transition, exit). The features and the decoding are
    uos's own (README: "The model outside uos"); `uos predict --runtime onnx` runs it in uos.

    \b
    Examples:
      uos export --onnx depth.onnx
      uos export --onnx v7.onnx --model models:/uos-depth/7
    """
    from uos.training.export import export_onnx_file

    written = export_onnx_file(model_uri, onnx_path)
    click.echo(f"Wrote {written} ({written.stat().st_size / 1e3:.0f} kB) from {model_uri}", err=True)
