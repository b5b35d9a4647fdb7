"""`uos annotate` mistakes a reviewer would notice, through Textual's pilot at 80x24: samples
missing from a zoomed plot, keypoints out of order, holes counted done too early, colours and
tags, the hint line, the head filter, the resume state of another dataset, stale annotations."""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.color import Color

from conftest import labelled_project
from uos.annotate.app import AnnotateApp, HolePlot, help_lines, make_app
from uos.annotate.session import AnnotationSession, open_session
from uos.dataset.build import parse_dataset
from uos.labels import annotations as human
from uos.labels.label import label_dataset

SIZE = (80, 24)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A small parsed and labelled dataset (synthetic holes, two heads)."""
    return labelled_project(tmp_path_factory.mktemp("review"))


def _session(project: Path, notes: Path, state: Path | None = None, parsed: Path | None = None) -> AnnotationSession:
    return open_session(parsed or project / "parsed", project / "labels", notes, "tester", state)


def _run(app, script, size=SIZE):
    async def go():
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await script(pilot)

    asyncio.run(go())


def _screen(app) -> str:
    """The text on screen, line after line, as the SVG screenshot has it."""
    svg = app.export_screenshot()
    return html.unescape("".join(re.findall(r">([^<>]*)</text>", svg))).replace("\xa0", " ")


def _sides(plot: HolePlot) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every point plotted against each y axis (plotext's record of the figure)."""
    monitor = plot.plt.monitor
    out = {}
    for side in ("left", "right"):
        series = [i for i, s in enumerate(monitor.yside) if s == side]
        out[side] = (
            np.concatenate([np.asarray(monitor.x[i], float) for i in series]),
            np.concatenate([np.asarray(monitor.y[i], float) for i in series]),
        )
    return out


def test_a_zoomed_plot_keeps_every_sample_in_view(project, tmp_path):
    """4x zoom at the deep end, where the exit is: the deepest samples are on the plot, and the
    y-limits hold every visible value of both traces."""
    session = _session(project, tmp_path / "notes")
    hole = session.hole
    depth = hole.signals["depth_mm"]
    session.set_cursor(float(depth.max()))
    app = make_app(session)

    async def script(pilot):
        await pilot.press("plus", "plus")
        await pilot.pause()
        lo, hi = session.view
        assert hi == pytest.approx(depth.max()) and (hi - lo) * 4 == pytest.approx(depth.max() - depth.min())
        inside = (depth >= lo) & (depth <= hi)
        plot = app.query_one(HolePlot)
        columns = max(plot.size.width - 12, 20)
        assert inside.sum() > 2 * columns  # decimated: more samples than columns
        sides = _sides(plot)
        monitor = plot.plt.monitor
        for side, signal in (("left", "torque_a"), ("right", "thrust_a")):
            x, y = sides[side]
            values = hole.signals[signal][inside]
            assert depth[inside][-1] in x and depth[inside].max() <= x.max() + 1e-9  # the last sample in view
            assert y.min() == values.min() and y.max() == values.max()  # every spike, whichever column
            low, high = monitor.ylim[("left", "right").index(side)]
            assert low is not None and low <= values.min() and values.max() <= high, (side, low, high)

    _run(app, script)


def test_an_entry_deeper_than_the_transition_is_refused_on_screen(project, tmp_path):
    notes = tmp_path / "notes"
    session = _session(project, notes)
    hole_id = session.hole_id
    transition = session.points()["transition"].depth_mm
    app = make_app(session)

    async def script(pilot):
        session.set_cursor(transition + 1.0)
        await pilot.press("e")
        await pilot.pause()
        reason = f"refused: entry {transition + 1.0:.2f} mm is deeper than automatic transition {transition:.2f} mm"
        assert reason in _screen(app)  # whole, at 80 columns
        assert not (notes / human.file_name(hole_id)).exists()
        assert session.points()["entry"].human is False
        session.set_cursor(transition - 1.0)  # the transition is the annotator's now ...
        await pilot.press("t")
        session.set_cursor(transition)
        await pilot.press("e")  # ... and an entry below it is refused too
        await pilot.pause()
        assert f"refused: entry {transition:.2f} mm is deeper than transition {transition - 1.0:.2f} mm" in _screen(app)
        await pilot.press("right")  # moving on clears it
        await pilot.pause()
        assert "refused" not in _screen(app)

    _run(app, script)
    saved = json.loads((notes / human.file_name(hole_id)).read_text())
    assert saved["transition_mm"] == pytest.approx(transition - 1.0, abs=1e-3) and "entry_mm" not in saved


def test_a_hole_is_done_when_its_three_keypoints_are_decided_and_accept_goes_on(project, tmp_path):
    notes = tmp_path / "notes"
    session = _session(project, notes)
    first = session.hole_id
    app = make_app(session)

    async def script(pilot):
        await pilot.press("X")  # one call: the entry and the transition are still undecided
        await pilot.pause()
        assert session.progress()[0] == 0 and "done 0/10" in _screen(app)
        assert session.status(first) == "partial"
        await pilot.press("A")  # accept the rest, and on to the next hole
        await pilot.pause()
        assert session.position == 1 and session.status(first) == "done"
        assert "done 1/10" in _screen(app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert "accept the keypoints shown / accept, then next hole" in _screen(app)

    _run(app, script)
    saved = json.loads((notes / human.file_name(first)).read_text())
    assert saved["exit_mm"] is None and saved["entry_mm"] is not None and saved["transition_mm"] is not None


def test_a_change_that_cannot_be_saved_is_refused_on_screen(project, tmp_path):
    """The annotations folder cannot be made (a file is in the way): the change is not made, the
    screen says why in a line, and the app goes on."""
    (tmp_path / "in_the_way").write_text("a file\n")
    notes = tmp_path / "in_the_way" / "annotations"
    session = _session(project, notes)
    app = make_app(session)

    async def script(pilot):
        await pilot.press("X")
        await pilot.pause()
        assert session.refused == f"not saved: Not a directory: {notes}"
        assert "not saved: Not a directory" in _screen(app)  # (the path too, where the screen is wide enough)
        assert session.points()["exit"].human is False and not session.undo_stack and not session.annotated
        await pilot.press("n")
        await pilot.pause()
        assert session.position == 1 and "not saved" not in _screen(app)

    _run(app, script)


def test_an_undo_that_cannot_be_saved_is_not_undone(project, tmp_path):
    notes = tmp_path / "notes"
    session = _session(project, notes)
    session.clear_point("exit")
    shutil.rmtree(notes)
    notes.write_text("a file where the annotations were\n")
    session.undo()
    assert session.refused == f"not saved: File exists: {notes}" and session.message == "exit marked absent"
    assert len(session.undo_stack) == 1 and session.points()["exit"].human and not session.redo_stack
    notes.unlink()
    session.undo()  # the folder back: undone
    assert not session.undo_stack and session.points()["exit"].human is False and session.message == "undone"


def _first_screen(project, tmp_path, check) -> None:
    """Open the app at 80x24 on the first hole and run `check(app, session)` on it."""
    session = _session(project, tmp_path / "notes")
    app = make_app(session)

    async def script(pilot):
        check(app, session)

    _run(app, script)


def test_the_cursor_has_a_colour_of_its_own(project, tmp_path):
    def check(app, session):
        from plotext._dict import color_codes

        def shown(colour) -> str:  # as Textual paints a plotext colour (red and magenta: both #f4005f)
            return Color.from_ansi(color_codes[colour]).get_truecolor(app.ansi_theme).hex

        monitor = app.query_one(HolePlot).plt.monitor
        lines = list(zip(monitor.vcoord[0], monitor.vcolors[0], strict=True))
        (at, cursor), others = lines[-1], lines[:-1]  # the cursor is drawn last, over the rest
        assert at == session.cursor_mm
        for colour in {*(c for series in monitor.color for c in series), *(c for _, c in others)}:
            assert shown(colour) != shown(cursor), colour

    _first_screen(project, tmp_path, check)


def test_keypoint_lines_are_tagged(project, tmp_path):
    def check(app, session):
        row = session.labels[session.hole_id]
        monitor = app.query_one(HolePlot).plt.monitor
        tags = dict(zip(monitor.text, monitor.tx, strict=True))
        for name, letter in (("entry", "E"), ("transition", "T"), ("exit", "X")):
            assert tags.get(letter) == pytest.approx(row[f"{name}_mm"]), letter

    _first_screen(project, tmp_path, check)


def test_the_reason_of_the_keypoint_at_the_cursor_is_shown(project, tmp_path):
    def check(app, session):
        row = session.labels[session.hole_id]
        nearest = min(("entry", "transition", "exit"), key=lambda k: abs(row[f"{k}_mm"] - session.cursor_mm))
        reason = row[f"{nearest}_reason"]
        assert len(reason) > 20 and reason[:60] in _screen(app)  # why the keypoint is there (labels.parquet)

    _first_screen(project, tmp_path, check)


KEY_LINE = (
    "? help  ←→ move  e/t/x set  E/T/X absent  a accept  A accept+next  r reject  u undo  +/- zoom  n/p hole  "
    "[ ] keypoint  ⇧←→ fast"
)


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (40, "? help  ←→ move  e/t/x set"),
        (80, "? help  ←→ move  e/t/x set  E/T/X absent  a accept  A accept+next  r reject"),
        (200, KEY_LINE),
    ],
)
def test_the_key_line_shows_the_most_needed_keys_that_fit(project, tmp_path, columns, expected):
    """The line under the plot, most needed first: at 80 columns the tail is left out, never `? help`."""
    app = make_app(_session(project, tmp_path / "notes"))

    async def script(pilot):
        assert str(app.query_one("#keys").render()) == expected
        assert expected in _screen(app)

    _run(app, script, size=(columns, 24))


def test_the_help_has_a_line_for_every_action_the_keys_do(project, tmp_path):
    """The help is made from the app's bindings: every action is on it, with its keys; only the
    second keys (= for +, j and k for n and p) are on no line."""
    bindings = AnnotateApp.BINDINGS
    lines = help_lines(bindings)
    unlisted = [b.key for b in bindings if b.group is None and not b.tooltip]
    assert unlisted == ["equals_sign", "j", "k"]
    assert {b.action for b in bindings if b.key not in unlisted} == {b.action for b in bindings}
    assert ("n  p  (or PgDn PgUp)", "next / previous hole") in lines and len(lines) == 15
    app = make_app(_session(project, tmp_path / "notes"))

    async def script(pilot):
        await pilot.press("question_mark")
        await pilot.pause()
        screen = _screen(app)
        for keys, what in [*lines, ("click", "move the cursor where you click")]:
            assert re.search(re.escape(keys) + " +" + re.escape(what), screen), (keys, what)

    _run(app, script)


def test_the_head_filter_matches_the_name_on_screen_and_the_rfid(project, tmp_path):
    session = _session(project, tmp_path / "notes")
    named = [h for h in session.holes.values() if h.meta["head_name"] != h.meta["head_id"]]
    assert named  # a head with an RFID tag: its name differs from its id
    name, tag = named[0].meta["head_name"], named[0].meta["head_id"]
    for text in (name, tag):
        session.set_filter(f"head:{text}")
        assert sorted(session.queue) == sorted(h.hole_id for h in named if h.meta["head_id"] == tag), text


def test_the_saved_filter_belongs_to_its_dataset(project, tmp_path):
    """Resuming on one dataset never applies the filter or hole saved on another."""
    from uos.annotate.session import state_path

    other = tmp_path / "other"
    shutil.copytree(project / "parsed", other)
    root = tmp_path / ".uos"
    here = state_path(project / "parsed", None, root)
    assert here != state_path(other, None, root) and here != state_path(project / "parsed", "alice", root)
    assert here == state_path(Path(str(project / "parsed") + "/"), None, root)  # the same folder
    first = _session(project, tmp_path / "notes", here)
    first.set_filter("rejected")
    again = _session(project, tmp_path / "notes", here)
    assert again.filter == "rejected"
    elsewhere = _session(project, tmp_path / "notes", state_path(other, None, root), parsed=other)
    assert elsewhere.filter == "review" and elsewhere.queue


def test_a_stale_annotation_is_marked_and_redone_afresh(project, tmp_path):
    """Its signals_hash differs from the hole's: `uos label` ignores it, so the screen says so,
    it is not done, and the next change starts a new annotation."""
    notes = tmp_path / "notes"
    session = _session(project, notes)
    hole_id = session.hole_id
    points = {"entry": 1.0, "transition": 2.0, "exit": 3.0}
    human.save(notes, human.Annotation(hole_id, "0" * 64, points, None, "carol", "t"))
    session = open_session(project / "parsed", project / "labels", notes, "tester", None, "all")
    assert session.hole_id == hole_id
    app = make_app(session)

    async def script(pilot):
        screen = _screen(app)
        assert "STALE" in screen and "yours" not in screen
        assert session.status(hole_id) == "stale" and session.progress()[0] == 0
        session.set_filter("review")
        assert hole_id in session.queue  # to be done again
        session.set_filter("all")
        await pilot.press("X")
        await pilot.pause()
        assert "STALE" not in _screen(app)

    _run(app, script)
    saved = json.loads((notes / human.file_name(hole_id)).read_text())
    assert saved["signals_hash"] == session.holes[hole_id].meta["signals_hash"]
    assert saved["exit_mm"] is None and "entry_mm" not in saved  # the stale calls are not carried over


def test_odd_holes_open_and_take_keys(project, tmp_path):
    """A hole with NaN depths, one with depths of -1e308, one whose depth never moves, one with
    NaN torque and one of a single sample: the app shows each (it stopped at the first before)
    and takes the keys."""
    import oddities

    source = sorted((project / "raw").glob("*.xls"))[0].read_bytes()

    def nan_torque(rows):
        for row in rows[::40]:
            row[1] = "NaN"
        return rows

    def far_depth(rows):
        for row in rows[10:13]:
            row[0] = "-1e308"
        return rows

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "far_depth.xls").write_bytes(oddities.edited(source, far_depth))
    (raw / "nan_depth.xls").write_bytes(oddities.nan_depth(source))
    (raw / "stuck.xls").write_bytes(oddities.stuck_depth(source))
    (raw / "nan_torque.xls").write_bytes(oddities.edited(source, nan_torque))
    (raw / "one.xls").write_bytes(oddities.first_rows(source, 1))
    parse_dataset([str(raw)], tmp_path / "parsed")
    label_dataset(tmp_path / "parsed", tmp_path / "labels")
    session = open_session(tmp_path / "parsed", tmp_path / "labels", tmp_path / "notes", "tester", None, "all")
    assert len(session.queue) == 5
    app = make_app(session)
    seen = []

    async def script(pilot):
        for _ in session.queue:
            await pilot.press("plus", "plus", "right", "e", "L", "x", "minus", "0", "A")
            await pilot.pause()
            seen.append(session.position)
            assert f"hole {session.position + 1}/5" in _screen(app)

    _run(app, script)
    assert seen == [1, 2, 3, 4, 4]


def test_an_unknown_filter_is_one_error_line(project, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from uos.cli import main

    monkeypatch.chdir(tmp_path)  # (the resume state goes to ./.uos)
    result = CliRunner().invoke(
        main, ["annotate", "--data", str(project / "parsed"), "--labels", str(project / "labels"), "--filter", "bogus"]
    )
    assert result.exit_code == 1
    assert result.stderr == ("Error: unknown filter 'bogus': review, all, rejected, head:TEXT or folder:TEXT\n"), (
        result.stderr
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hole_id,answer\nh1,ok\n", "no column review_reasons, status"),
        (
            b'hole_id,status,review_reasons\n"h1,ok\n',
            "Error tokenizing data. C error: EOF inside string starting at row 1",
        ),
        (b"", "No columns to parse from file"),
    ],
)
def test_answers_that_cannot_be_read_are_one_error_line(project, tmp_path, monkeypatch, content, reason):
    """--answers names the model's out-of-fold answers (uos train writes them): a file that is not
    those is said in one line, not a pandas traceback."""
    from click.testing import CliRunner

    from uos.cli import main

    monkeypatch.chdir(tmp_path)  # (the resume state goes to ./.uos)
    (tmp_path / "answers.csv").write_bytes(content)
    data = ["--data", str(project / "parsed"), "--labels", str(project / "labels")]
    result = CliRunner().invoke(main, ["annotate", *data, "--answers", "answers.csv"])
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"Error: answers.csv is not the model's answers (uos train's out_of_fold.csv): {reason}\n"
    ), result.stderr
