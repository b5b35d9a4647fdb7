"""`uos annotate` through Textual's pilot: real key presses, then the annotations read back from
disk; a few SVG snapshots; speed on an 11,000-sample hole; files whole when the process is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import labelled_project
from uos.annotate.app import HolePlot, make_app
from uos.annotate.session import AnnotationSession, open_session
from uos.dataset.build import parse_dataset
from uos.labels import annotations as human
from uos.labels.label import label_dataset

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A small parsed and labelled dataset (synthetic holes)."""
    return labelled_project(tmp_path_factory.mktemp("annotate"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _session(project: Path, notes: Path, state: Path | None = None) -> AnnotationSession:
    session = open_session(project / "parsed", project / "labels", notes, "tester", state)
    session.clock = FakeClock()
    session.started = session.clock()
    return session


def _run(app, size, script):
    async def go():
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await script(pilot)

    asyncio.run(go())


def _read(notes: Path, hole_id: str) -> dict:
    return json.loads((notes / human.file_name(hole_id)).read_text())


def test_keys_set_clear_accept_and_reject_are_saved(project, tmp_path):
    notes = tmp_path / "annotations"
    session = _session(project, notes)
    first = session.hole_id
    (lo, hi), start = session.view, session.cursor_mm
    # Two fine steps (0.5% of the view each) and a coarse one (5%): 6% of the view deeper.
    moved = start + 0.06 * (hi - lo)
    assert moved < hi  # (not stopped at the bottom of the recording)

    async def script(pilot):
        await pilot.press("right", "right", "shift+right", "e")  # entry at the cursor
        await pilot.press("X")  # no exit
        await pilot.press("n", "a")  # next hole: accept its automatic labels
        await pilot.press("n", "r", *"broken tool", "enter")  # next: reject with a reason
        await pilot.pause()

    _run(make_app(session), (100, 30), script)
    first_note = _read(notes, first)
    assert first_note["entry_mm"] == pytest.approx(moved, abs=1e-3)  # (saved to a micrometre)
    assert first_note["exit_mm"] is None
    assert "transition_mm" not in first_note  # not decided: stays automatic
    assert first_note["annotator"] == "tester"
    assert first_note["signals_hash"] == session.holes[first].meta["signals_hash"]
    second, third = session.queue[1], session.queue[2]
    accepted = _read(notes, second)
    row = session.labels[second]
    for name in ("entry", "transition", "exit"):
        expected = row[f"{name}_mm"]
        assert accepted[f"{name}_mm"] == (None if expected is None or expected != expected else round(expected, 3))
    assert _read(notes, third)["rejected"] == "broken tool"


def test_undo_and_redo(project, tmp_path):
    notes = tmp_path / "annotations"
    session = _session(project, notes)
    hole_id = session.hole_id
    path = notes / human.file_name(hole_id)

    async def script(pilot):
        await pilot.press("e")
        await pilot.pause()
        assert path.exists()
        await pilot.press("u")
        await pilot.pause()
        assert not path.exists()  # the only change undone: nothing left for this hole
        await pilot.press("U")
        await pilot.pause()
        assert path.exists()

    _run(make_app(session), (100, 30), script)
    assert "entry_mm" in _read(notes, hole_id)


def test_cursor_zoom_and_keypoint_jumps(project, tmp_path):
    session = _session(project, tmp_path / "annotations")
    full = session.view
    width = full[1] - full[0]
    entry, transition, exit_ = (session.points()[k].depth_mm for k in ("entry", "transition", "exit"))
    assert full[0] < entry < transition < exit_
    session.set_cursor(full[0])  # the top of the recording: above every keypoint

    async def script(pilot):
        await pilot.press("right_square_bracket", "right_square_bracket")
        await pilot.pause()
        assert session.cursor_mm == transition
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert session.cursor_mm == entry
        await pilot.press("plus", "plus")  # 4x, around the cursor
        await pilot.pause()
        lo, hi = session.view
        assert hi - lo == pytest.approx(width / 4) and lo < entry < hi
        assert not lo <= exit_ <= hi
        await pilot.press("right_square_bracket", "right_square_bracket")
        await pilot.pause()
        lo, hi = session.view
        assert session.cursor_mm == exit_ and lo <= exit_ <= hi  # the view follows the cursor
        assert hi - lo == pytest.approx(width / 4)
        await pilot.press("0")
        await pilot.pause()
        assert session.view == full

    _run(make_app(session), (100, 30), script)


def test_a_click_on_the_plot_moves_the_cursor_to_the_depth_under_it(project, tmp_path):
    """Between the axes' labels (7 columns on the left, 8 on the right) the columns span the view."""
    session = _session(project, tmp_path / "annotations")
    lo, hi = session.view
    app = make_app(session)

    async def script(pilot):
        usable = app.query_one(HolePlot).size.width - 7 - 8
        for column in (7 + usable // 4, 7 + usable // 2):
            await pilot.click(HolePlot, offset=(column, 5))
            await pilot.pause()
            assert session.cursor_mm == pytest.approx(lo + (column - 7) / usable * (hi - lo), abs=1e-9)
            assert f"cursor {session.cursor_mm:.2f} mm" in str(app.query_one("#points").render())

    _run(app, (100, 30), script)


def test_reopening_resumes_where_the_user_stopped(project, tmp_path):
    notes, state = tmp_path / "annotations", tmp_path / "state.json"
    session = _session(project, notes, state)

    async def script(pilot):
        await pilot.press("n", "n", "n")
        await pilot.pause()

    _run(make_app(session), (100, 30), script)
    assert session.position == 3
    again = _session(project, notes, state)
    assert (again.position, again.hole_id) == (3, session.queue[3])
    assert _session(project, notes).position == 0  # (without the state: from the start)


@pytest.mark.parametrize("saved", ["[1, 2]", '"review"', "null", "{not json", '{"filter": 3, "hole_id": [1]}'])
def test_a_resume_state_that_is_not_ours_is_ignored(project, tmp_path, saved):
    """Resuming is a convenience: a state file that is no state opens the session at its start."""
    state = tmp_path / "state.json"
    state.write_text(saved)
    session = _session(project, tmp_path / "annotations", state)
    assert (session.filter, session.position) == ("review", 0)


def test_filters(project, tmp_path):
    notes = tmp_path / "annotations"
    session = _session(project, notes)
    total = len(session.queue)
    session.reject("bad")
    session.set_filter("rejected")
    assert len(session.queue) == 1
    session.set_filter("review")
    assert len(session.queue) == total - 1  # the rejected one has been reviewed
    head = next(iter(session.holes.values())).meta["head_id"]
    session.set_filter(f"head:{head}")
    assert sorted(session.queue) == sorted(h for h, hole in session.holes.items() if hole.meta["head_id"] == head)
    assert 0 < len(session.queue) < total  # (two heads)


def test_holes_the_model_is_unsure_of_come_first_with_the_reason(project, tmp_path):
    """The model's out-of-fold answers (`uos train` writes them) put its `review` holes at the
    head of the queue, whatever their label confidence, and the reason is on screen."""
    import pandas as pd

    labels = pd.read_parquet(project / "labels" / "labels.parquet").sort_values("min_confidence")
    surest = labels["hole_id"].iloc[-2:].tolist()  # the labels' two most confident holes
    answers = pd.DataFrame({"hole_id": labels["hole_id"], "status": "ok", "review_reasons": ""})
    answers.loc[answers["hole_id"].isin(surest), ["status", "review_reasons"]] = ["review", "exit not sure enough"]
    answers.to_csv(tmp_path / "out_of_fold.csv", index=False)
    session = open_session(
        project / "parsed", project / "labels", tmp_path / "notes", "tester", None, None, tmp_path / "out_of_fold.csv"
    )
    assert sorted(session.queue[:2]) == sorted(surest)
    assert session.review_reasons(session.queue[0]) == "exit not sure enough"
    assert session.review_reasons(session.queue[2]) is None
    app = make_app(session)

    async def script(pilot):
        assert "model unsure: exit not sure enough" in str(app.query_one("#meta").render())

    _run(app, (80, 24), script)


def _updating_snapshots() -> bool:
    """UOS_UPDATE_SNAPSHOTS=1: write the screens as they are (to look at, then commit), except in
    CI (.ci/run sets UOS_REQUIRE_SHARED, CI services set CI), where snapshots are only compared."""
    if os.environ.get("UOS_UPDATE_SNAPSHOTS") != "1":
        return False
    if os.environ.get("CI") or os.environ.get("UOS_REQUIRE_SHARED"):
        pytest.fail("UOS_UPDATE_SNAPSHOTS=1 in CI: snapshots are compared there, never written")
    return True


def _snapshot(app, name: str, size=(80, 24), keys: tuple[str, ...] = ()) -> None:
    """The screen against tests/snapshots/NAME.svg: a missing snapshot fails, as a changed one does."""
    path = SNAPSHOTS / f"{name}.svg"
    update = _updating_snapshots()
    shots = []

    async def script(pilot):
        if keys:
            await pilot.press(*keys)
            await pilot.pause()
        shots.append(app.export_screenshot())

    _run(app, size, script)
    (svg,) = shots
    if update:
        path.write_text(svg)
        return
    if not path.exists():
        pytest.fail(f"{path} missing: UOS_UPDATE_SNAPSHOTS=1 writes it; look at it, then commit it")
    assert svg == path.read_text(), f"{name} changed: look at it, then UOS_UPDATE_SNAPSHOTS=1 to accept"


def test_a_missing_snapshot_fails_and_is_written_only_when_asked(project, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "SNAPSHOTS", tmp_path)
    for name in ("CI", "UOS_REQUIRE_SHARED", "UOS_UPDATE_SNAPSHOTS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"new_80x24\.svg missing"):
        _snapshot(make_app(_session(project, tmp_path / "a")), "new_80x24")
    assert not (tmp_path / "new_80x24.svg").exists()
    monkeypatch.setenv("UOS_UPDATE_SNAPSHOTS", "1")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="compared there, never written"):
        _snapshot(make_app(_session(project, tmp_path / "a")), "new_80x24")
    monkeypatch.delenv("CI")
    _snapshot(make_app(_session(project, tmp_path / "a")), "new_80x24")
    assert (tmp_path / "new_80x24.svg").read_text().startswith("<svg")
    monkeypatch.delenv("UOS_UPDATE_SNAPSHOTS")
    _snapshot(make_app(_session(project, tmp_path / "a")), "new_80x24")  # the same screen: passes


def test_snapshot_main_screen_80x24(project, tmp_path):
    _snapshot(make_app(_session(project, tmp_path / "a")), "annotate_main_80x24")


def test_snapshot_help_screen(project, tmp_path):
    _snapshot(make_app(_session(project, tmp_path / "a")), "annotate_help_80x24", keys=("question_mark",))


def test_next_hole_appears_within_150_ms_for_an_11000_sample_hole(setitec_dir, tmp_path):
    big = sorted((setitec_dir / "mql").glob("*.xls"), key=lambda p: p.stat().st_size)[-3:]
    parse_dataset([str(p) for p in big], tmp_path / "parsed")
    label_dataset(tmp_path / "parsed", tmp_path / "labels")
    session = open_session(tmp_path / "parsed", tmp_path / "labels", tmp_path / "notes", "tester", None, filter="all")
    assert max(len(h.signals["depth_mm"]) for h in session.holes.values()) >= 11000
    timings = []
    app = make_app(session)

    async def script(pilot):
        for key in ["n", "n", "p", "p"] * 3:
            started = time.perf_counter()
            await pilot.press(key)
            await pilot.pause()
            timings.append(time.perf_counter() - started)

    _run(app, (120, 40), script)
    # From the key to the screen showing the new hole, as the app measures it; the pilot's own
    # round trip (waiting for the app to go idle) is printed beside it.
    shown = statistics.median(app.latencies)
    print(
        f"next hole shown after {shown * 1000:.0f} ms (median of {len(app.latencies)}); "
        f"pilot round trip {statistics.median(timings) * 1000:.0f} ms"
    )
    assert len(app.latencies) == 12
    assert shown <= 0.150


WRITER = """
import sys
from pathlib import Path
from uos.labels import annotations as human
folder = Path(sys.argv[1])
i = 0
while True:
    i += 1
    keypoints = {"entry": i / 1000, "exit": None}
    human.save(folder, human.Annotation(f"hole-{i % 7}", "h" * 64, keypoints, None, "w", str(i)))
"""


def test_annotation_files_stay_valid_when_the_process_is_killed(tmp_path):
    for attempt in range(5):
        notes = tmp_path / f"annotations-{attempt}"  # (what this writer left, none of an earlier one)
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(notes)])
        time.sleep(0.3 + 0.07 * attempt)
        process.send_signal(signal.SIGKILL)
        process.wait()
        problems: list[str] = []
        loaded = human.load(notes, problems)
        assert problems == []
        assert 1 <= len(loaded) <= 7
        for note in loaded.values():
            assert note.points["exit"] is None and note.points["entry"] > 0
