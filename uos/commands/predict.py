"""`uos predict`: keypoints for files, folders or MQTT captures, as JSON lines."""

from __future__ import annotations

import click


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "model_uri", default="models:/uos-depth@champion", show_default=True, help="MLflow model URI.")
@click.option(
    "--refine/--no-refine",
    default=None,
    help="Ramp-fit refinement of the network's positions (default: as the model was trained); off: ~2 ms instead of ~80 ms per hole.",
)
def predict_command(inputs, model_uri, refine):
    """Estimate entry, transition, exit and thickness for each hole, one JSON object per line.

    \b
    INPUTS are Setitec files, folders (recursively) or MQTT capture folders. Each line has
    source, hole_id, entry_mm, transition_mm, exit_mm, thickness_mm (null where a point does not
    exist) and error (null, or why that input could not be read). A bad input gets its line and
    the rest still come; the exit code is 1 when any failed.

    \b
    Examples:
      uos predict data/raw/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls
      uos predict incoming/ --model models:/uos-depth@candidate | jq -c '[.hole_id, .thickness_mm]'
    """
    import json
    import sys

    from uos.training.predict import load_model, predict_paths

    model = load_model(model_uri)
    failed = 0
    for record in predict_paths(list(inputs), model, refine=refine):
        if record["error"]:
            failed += 1
            click.echo(f"Error: {record['source']}: {record['error']}", err=True)
        click.echo(json.dumps(record))
    if failed:
        sys.exit(1)
