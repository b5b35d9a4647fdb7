"""The `uos` command: a click group over the library, one thin wrapper per command."""

from __future__ import annotations

import sys

import click

from uos import __version__
from uos.commands.annotate import annotate_command
from uos.commands.broker import broker_command
from uos.commands.data_version import train_data_version_command
from uos.commands.export import export_command
from uos.commands.label import label_command
from uos.commands.parse import parse_command
from uos.commands.predict import predict_command
from uos.commands.promote import promote_command
from uos.commands.replay import replay_command
from uos.commands.report import report_command
from uos.commands.serve import serve_command
from uos.commands.show import show_command
from uos.commands.split import split_command
from uos.commands.summary import summary_command
from uos.commands.synth import synth_command
from uos.commands.train import train_command


class UosGroup(click.Group):
    """Turns the library's `UosError` into one `Error: ...` line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context):
        from uos.errors import UosError

        try:
            return super().invoke(ctx)
        except UosError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except BrokenPipeError:  # `uos ... | head`: the reader left, nothing to report
            sys.stderr.close()
            sys.exit(0)


@click.group(cls=UosGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="uos")
def main() -> None:
    """Parse, label, train and serve hole-depth models from Setitec drilling-unit signals.

    \b
    Typical flow (each step is also a DVC stage, see dvc.yaml):
      uos synth data/raw --holes 300            demo holes with exact ground truth
      uos parse data/raw --out build/parsed     files -> one clean dataset
      uos label build/parsed --out build/labels  keypoints with source and confidence
      uos annotate                               review and fix labels (keyboard TUI)
      uos split build/parsed build/labels --out build/folds
      uos train build/parsed build/labels build/folds --out build/model
      uos show build/parsed HOLE                 look at one hole in the terminal
      uos serve                                  answer holes over MQTT with the champion model
      uos replay data/raw --rate 5               publish files as drilling units do
    """


main.add_command(parse_command)
main.add_command(show_command)
main.add_command(label_command)
main.add_command(annotate_command)
main.add_command(split_command)
main.add_command(train_command)
main.add_command(promote_command)
main.add_command(train_data_version_command)
main.add_command(predict_command)
main.add_command(export_command)
main.add_command(report_command)
main.add_command(serve_command)
main.add_command(replay_command)
main.add_command(broker_command)
main.add_command(summary_command)
main.add_command(synth_command)
