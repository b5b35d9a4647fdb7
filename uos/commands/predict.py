"""`uos predict`: keypoints for files, folders or MQTT captures, as JSON lines."""

from __future__ import annotations

import click

from uos.commands.model_options import model_option, runtime_option


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True)
@model_option()
@click.option(
    "--refine/--no-refine",
    default=None,
    help=(
        "Ramp-fit refinement of the network's positions (default: as the model was trained); "
        "off: ~2 ms instead of ~80 ms per hole."
    ),
)
@runtime_option
def predict_command(inputs, model_uri, refine, runtime):
    """Estimate entry, transition, exit and thickness for each hole, one JSON object per line.

    \b
    INPUTS are Setitec files, folders (recursively) or MQTT capture folders. Each line has
    source, hole_id, entry_mm, transition_mm, exit_mm, top_layer_mm, bottom_layer_mm,
    thickness_mm (null where a point does not exist), grip_code (only when the answer is ok), a
    confidence per keypoint, status (ok, review or error), review_reasons and error. A hole
    that cannot have keypoints (too short, non-finite values, an air cut, ...) or an input that
    cannot be read gets error with the reason and no numbers; the rest still come, and the exit
    code is 1. A count by status goes to stderr.

    \b
    Examples:
      uos predict data/raw/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls
      uos predict incoming/ --model models:/uos-depth@candidate | jq -c 'select(.status == "review")'
      uos predict incoming/ --runtime onnx                 (ONNX Runtime: the same keypoints)
    """
    import json
    import sys
    from collections import Counter

    from uos.training.predict import load_model, predict_paths

    model = load_model(model_uri, runtime)
    counts: Counter[str] = Counter()
    for record in predict_paths(list(inputs), model, refine=refine):
        counts[record["status"]] += 1
        if record["error"]:
            click.echo(f"Error: {record['source']}: {record['error']}", err=True)
        click.echo(json.dumps(record))
    shown = ", ".join(f"{counts[s]} {s}" for s in ("ok", "review", "error") if counts[s])
    click.echo(f"{sum(counts.values())} holes: {shown or 'none'}", err=True)
    if counts["error"]:
        sys.exit(1)
