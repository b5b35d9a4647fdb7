"""Finding the inputs: Setitec files, MQTT capture folders and globs, each read once.

`discover` takes what a user typed (files, folders searched recursively, glob patterns) and
returns the inputs to read and, for anything that is not one, the reason.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from uos.holes.files import open_regular, printable, regular_file_problem

SETITEC_SUFFIXES = (".xls",)


@dataclass(frozen=True)
class InputProblem:
    """An input that is not one: what the user named, and why."""

    source: str
    reason: str


def display_name(path: Path, cwd: str) -> str:
    """Paths relative to the working directory when inside it, so datasets do not depend on
    where the project is checked out."""
    absolute = os.path.abspath(path)
    if absolute.startswith(cwd + os.sep):
        absolute = absolute[len(cwd) + 1 :]
    return printable(Path(absolute).as_posix())


class _Finder:
    """What `discover` found: regular files (symbolic links resolved) and capture folders, each
    folder visited once whatever the links that lead to it, and a reason for anything else."""

    def __init__(self) -> None:
        self.found: dict[str, Path] = {}
        self.problems: dict[str, InputProblem] = {}
        self.cwd = os.getcwd()
        self._seen: set[tuple[int, int]] = set()
        self._links: list[Path] = []  # linked folders, walked after the real ones

    def problem(self, name: str, reason: str) -> None:
        source = printable(name)
        self.problems.setdefault(source, InputProblem(source, reason))

    def add(self, path: Path) -> None:
        if reason := regular_file_problem(path):
            self.problem(display_name(path, self.cwd), reason)
        else:
            self.found.setdefault(display_name(path, self.cwd), path)

    def walk(self, folder: Path) -> None:
        from uos.holes.mqtt import is_capture_folder

        try:
            info = folder.stat()
            key = (info.st_dev, info.st_ino)
            if key in self._seen:
                return
            self._seen.add(key)
            if is_capture_folder(folder):
                self.found.setdefault(display_name(folder, self.cwd), folder)
                return
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            self.problem(display_name(folder, self.cwd), f"cannot read folder: {exc.strerror}")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _is_dir(entry):
                (self._links.append if entry.is_symlink() else self.walk)(Path(entry.path))
            elif entry.name.lower().endswith(SETITEC_SUFFIXES):
                self.add(Path(entry.path))

    def finish(self) -> None:
        while self._links:
            self.walk(self._links.pop(0))


def _is_dir(path: Path | os.DirEntry) -> bool:
    """A folder to walk? A link loop, a name too long or a place we may not look is not one
    (as a file, it then gets that reason from `add`)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _folders_below(folder: Path) -> list[Path]:
    """`folder` and every folder under it (what `**` matches), each once."""
    out, seen, stack = [], set(), [folder]
    while stack:
        current = stack.pop()
        try:
            info = current.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = sorted(os.scandir(current), key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        out.append(current)
        stack.extend(Path(e.path) for e in entries if not e.name.startswith(".") and _is_dir(e))
    return out


def _expand(pattern: str) -> list[Path]:
    """A glob pattern's matches, like `glob.glob(recursive=True)` but visiting each folder once:
    a symbolic link loop under `**` would otherwise grow the walk exponentially."""
    parts = Path(pattern).parts
    roots = [Path(parts[0])] if os.path.isabs(pattern) else [Path()]
    for part in parts[1:] if os.path.isabs(pattern) else parts:
        matches: list[Path] = []
        for root in roots:
            if part == "**":
                matches.extend(_folders_below(root))
            elif glob.has_magic(part):
                try:
                    names = sorted(os.listdir(root))
                except OSError:
                    continue
                hidden = part.startswith(".")
                matches.extend(root / n for n in names if fnmatch.fnmatchcase(n, part) and (hidden or n[0] != "."))
            else:
                matches.append(root / part)
        roots = list(dict.fromkeys(matches))
    return [path for path in roots if os.path.lexists(path)]


def discover(inputs: Iterable[str]) -> tuple[list[Path], list[InputProblem]]:
    """Files, folders (recursively: Setitec `.xls` files and MQTT capture folders) and globs.
    Only regular files are inputs: a FIFO, a device or a broken link gets its reason."""
    finder = _Finder()
    for item in inputs:
        path = Path(item)
        if _is_dir(path):
            finder.walk(path)
        elif glob.has_magic(item) and not os.path.lexists(path):
            matches = _expand(item)
            if not matches:
                finder.problem(item, "no file matches this pattern")
            for match in matches:
                (finder.walk if _is_dir(match) else finder.add)(match)
        else:
            finder.add(path)  # a file, or the reason it is not one (no such file, name too long...)
    finder.finish()
    found = finder.found
    return [found[k] for k in sorted(found)], list(finder.problems.values())


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes (read in blocks: a big file is not held) or of a capture folder.
    Raises InputError when the file cannot be read (gone, or no longer a regular file)."""
    if path.is_dir():
        from uos.holes.mqtt import capture_digest

        return capture_digest(path)  # (it refuses a message file that is a FIFO or a device)
    with open_regular(path) as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
