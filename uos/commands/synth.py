"""`uos synth`: synthetic Setitec files with exact ground truth."""

from __future__ import annotations

from pathlib import Path

import click

from uos.commands.common import params_option, progress_bar


@click.command("synth")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--holes",
    type=click.IntRange(min=1),
    default=None,
    help="Number of holes (default: [synth] holes).",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Random seed (default: [synth] seed). Same seed, same bytes.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Write into a folder that already holds files (replacing same names).",
)
@params_option
def synth_command(out_dir, holes, seed, overwrite, params_path):
    """Write synthetic Setitec files, as real units write them, and truth.csv with their keypoints.

    \b
    Holes come from a production unit (format 9, torque-triggered steps: CFRP over titanium or
    aluminium) and a lab unit (format 4, stroke-triggered steps), with tool wear, parts of
    different thicknesses, noise and quantisation as measured on real units, and a few air
    cuts, single-layer and aborted holes. truth.csv gives each hole's entry, transition and exit
    (where the drill point crosses the top surface, the interface and the bottom surface).

    \b
    Examples:
      uos synth data/raw --holes 300 --seed 7
      uos synth /tmp/demo --holes 20 && uos parse /tmp/demo --out /tmp/demo-parsed
    """
    import dataclasses

    from uos.params import load_params
    from uos.synth.generate import synthesize
    from uos.synth.params import SynthParams
    from uos.synth.truth import TRUTH_FILE

    params = load_params(SynthParams, "synth", params_path)
    if holes is not None:
        params = dataclasses.replace(params, holes=holes)
    if seed is not None:
        params = dataclasses.replace(params, seed=seed)
    with progress_bar("Synthesising") as update:
        summary = synthesize(out_dir, params, overwrite=overwrite, progress=update)
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(summary.by_kind.items()))
    click.echo(
        f"{summary.holes} holes in {out_dir} ({kinds}); ground truth in {out_dir / TRUTH_FILE}",
        err=True,
    )
