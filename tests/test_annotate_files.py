"""Annotation files for any hole id: a leading dot, a very long id, ids that differ only in
characters a file name cannot hold; each one saved, loaded back under its own id, and removed."""

from __future__ import annotations

import json

import pytest

from uos.labels import annotations as human

ODD_IDS = [
    ".hidden-12",  # a head named ".hidden": the file must not be a dot file
    "..",
    "H" * 400 + "-1",  # longer than a file name can be (ENAMETOOLONG)
    "H" * 400 + "-2",  # same long prefix: a different file
    "a/b-1",
    "a_b-1",  # the same name as a/b-1 once `/` becomes `_`
    "a b-1",
    "tête-1",
    "x%41-1",
    "xA-1",
    "E0040100BFE8FFF1-1874~0a1b2c3d",  # a duplicate's id: kept as it is
]


def _note(hole_id: str, entry: float) -> human.Annotation:
    return human.Annotation(hole_id, "h" * 64, {"entry": entry, "exit": None}, None, "tester", "t")


def test_every_id_is_saved_and_loaded_back(tmp_path):
    for i, hole_id in enumerate(ODD_IDS):
        human.save(tmp_path, _note(hole_id, float(i)))
    names = [path.name for path in tmp_path.iterdir()]
    assert len(names) == len(ODD_IDS)  # no two ids share a file
    assert not [name for name in names if name.startswith(".")]  # none hidden
    assert max(len(name.encode()) for name in names) <= 255
    problems: list[str] = []
    loaded = human.load(tmp_path, problems)
    assert problems == []
    assert sorted(loaded) == sorted(ODD_IDS)
    for i, hole_id in enumerate(ODD_IDS):
        assert loaded[hole_id].points == {"entry": float(i), "exit": None}
    assert human.file_name("E0040100BFE8FFF1-1874~0a1b2c3d") == "E0040100BFE8FFF1-1874~0a1b2c3d.json"
    for hole_id in ODD_IDS:  # an annotation emptied by undo removes its file
        human.save(tmp_path, human.Annotation(hole_id))
    assert list(tmp_path.iterdir()) == []


def test_files_saved_under_the_old_names_are_read_back_and_replaced(tmp_path):
    """Before escaping, `.hidden-12` was saved as `.hidden-12.json` and never loaded again."""
    old = tmp_path / ".hidden-12.json"
    old.write_text(_note(".hidden-12", 3.0).to_json())
    (tmp_path / "a_b-1.json").write_text(_note("a/b-1", 4.0).to_json())  # the old name of a/b-1
    (tmp_path / ".x.json.123.tmp").write_text("{")  # a write in flight: never read
    loaded = human.load(tmp_path, [])
    assert loaded[".hidden-12"].points["entry"] == 3.0 and loaded["a/b-1"].points["entry"] == 4.0
    human.save(tmp_path, _note(".hidden-12", 5.0))
    assert not old.exists()  # one file per hole again
    assert human.load(tmp_path, [])[".hidden-12"].points["entry"] == 5.0
    human.save(tmp_path, _note("a_b-1", 6.0))  # owns the name a_b-1.json now: a/b-1's old file goes aside
    loaded = human.load(tmp_path, [])
    assert loaded["a_b-1"].points["entry"] == 6.0


@pytest.mark.parametrize("value", ["true", "NaN", '"3.1"'])
def test_a_keypoint_that_is_not_a_depth_is_refused_or_flagged(tmp_path, value):
    path = tmp_path / "h-1.json"
    path.write_text(json.dumps({"hole_id": "h-1"})[:-1] + f', "entry_mm": {value}}}')
    problems: list[str] = []
    loaded = human.load(tmp_path, problems)
    if value == "NaN":  # a number to JSON, but no depth: the check on the hole's recording says so
        assert human.impossible(loaded["h-1"].points, 0.0, 30.0) == "entry nan mm is not a depth"
    else:
        assert loaded == {} and "entry_mm must be a number or null" in problems[0]
