"""The options of the commands that answer with a registered model (predict, export, serve)."""

from __future__ import annotations

import click

from uos.training.tracking import DEFAULT_MODEL_URI


def model_option():
    return click.option("--model", "model_uri", default=DEFAULT_MODEL_URI, show_default=True, help="MLflow model URI.")


runtime_option = click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default="torch",
    show_default=True,
    help="What runs the network: PyTorch, or ONNX Runtime (the same keypoints; lighter, no torch loaded).",
)
