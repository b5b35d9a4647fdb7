"""`uos annotate`: review and fix keypoint labels in the terminal."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("annotate")
@click.option(
    "--data",
    "parsed_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/parsed"),
    show_default=True,
    help="Parsed dataset.",
)
@click.option(
    "--labels",
    "labels_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/labels"),
    show_default=True,
    help="Automatic labels (uos label).",
)
@click.option(
    "--annotations",
    "annotations_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data/annotations"),
    show_default=True,
    help="Where your annotations are saved.",
)
@click.option(
    "--annotator", default=None, help="Your name in the annotations and MLflow (default: $UOS_ANNOTATOR or your login)."
)
@click.option(
    "--filter",
    "filter_",
    default=None,
    help="review (default: holes not done yet, lowest confidence first), all, rejected, "
    "head:TEXT (its name or RFID), folder:TEXT.",
)
@click.option(
    "--answers",
    "answers_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("build/model/plots/out_of_fold.csv"),
    show_default=True,
    help="The model's out-of-fold answers (uos train): holes it is unsure of come first.",
)
def annotate_command(parsed_dir, labels_dir, annotations_dir, annotator, filter_, answers_file):
    """Review and fix keypoint labels, keyboard first (press ? for every key).

    \b
    Holes whose model answer is `review` come first, with the reason on screen, then the rest,
    lowest label confidence first. Move the cursor, set entry / transition / exit at it,
    mark a point absent, accept the automatic labels, or reject a hole; every change is saved
    at once to data/annotations/ (one small JSON file per hole), and reopening resumes where you
    stopped (per dataset). A hole is done when its three keypoints are decided (set, marked
    absent or accepted) or it is rejected. Then `dvc repro` relabels with your calls, which always win.

    \b
    When you quit, a session that reviewed holes is versioned and tracked: DVC adds the tracked
    folder that holds the annotations (data/, as `dvc add data`), and one MLflow run in the
    experiment uos-annotation records the annotator, the holes reviewed, changed, accepted and
    rejected, the time, holes per minute, the mean shift of the keypoints moved and the DVC md5s.

    \b
    Examples:
      uos annotate
      uos annotate --filter head:114-V3-002 --annotator alice
    """
    from uos.annotate.app import make_app
    from uos.annotate.session import open_session, state_path
    from uos.annotate.tracking import finish_session

    state = state_path(parsed_dir, annotator)
    session = open_session(parsed_dir, labels_dir, annotations_dir, annotator, state, filter_, answers_file)
    make_app(session).run()
    stats = session.stats()
    done, total, _ = session.progress()
    click.echo(f"{stats.reviewed} holes reviewed in this session; {done}/{total} of the queue done.", err=True)
    for line in finish_session(stats, parsed_dir, annotations_dir):
        click.echo(line, err=True)
    if stats.reviewed:
        click.echo("Run `dvc repro` to relabel with them (`just annotate` does it for you).", err=True)
