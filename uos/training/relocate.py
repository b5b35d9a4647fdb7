"""A project's own MLflow store follows the project when its folder is moved or copied.

The SQLite store records absolute artifact paths (MLflow has no relative artifact root for a local
store: even `artifact_location="mlruns"` is stored absolute). In a moved project they point at a
folder that is gone; in a copy, at the original, where the copy's new runs would write. So when the
store's experiments record an artifact root other than the project's `mlruns/`, and that folder is
here, the old root is rewritten to the new one in every column that holds an artifact path.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from uos.errors import UosError

# (table, column, which rows): every place MLflow 3 keeps an artifact path in its SQL store.
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location", ""),
    ("runs", "artifact_uri", ""),
    ("logged_models", "artifact_location", ""),
    ("model_versions", "source", ""),
    ("model_versions", "storage_location", ""),
    ("trace_tags", "value", "AND key = 'mlflow.artifactLocation'"),
)


def _local_path(location: str | None) -> Path | None:
    if not location:
        return None
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    return Path(location) if location.startswith("/") else None


def _recorded_roots(connection: sqlite3.Connection) -> set[Path]:
    """The artifact roots (`.../mlruns`) of the experiments uos created (at the root itself).
    MLflow's Default experiment is left out: its `mlruns/0` follows the folder it was first
    opened from, which need not be the project's root."""
    locations = connection.execute("SELECT artifact_location FROM experiments WHERE experiment_id != 0")
    paths = (_local_path(location) for (location,) in locations)
    return {path for path in paths if path is not None and path.name == "mlruns"}


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _present_columns(connection: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """The ARTIFACT_COLUMNS this store has (a store from another MLflow version may lack some)."""
    tables = _tables(connection)
    return [
        (table, column, rows)
        for table, column, rows in ARTIFACT_COLUMNS
        if table in tables and column in {c[1] for c in connection.execute(f"PRAGMA table_info({table})")}
    ]


def _rewrite(connection: sqlite3.Connection, columns: list[tuple[str, str, str]], old: str, new: str) -> int:
    """Replace the prefix `old` (a whole path component) by `new`; the number of values changed."""
    changed = 0
    for table, column, rows in columns:
        cursor = connection.execute(
            f"UPDATE {table} SET {column} = :new || substr({column}, length(:old) + 1) "
            f"WHERE ({column} = :old OR substr({column}, 1, length(:old) + 1) = :old || '/') {rows}",
            {"old": old, "new": new},
        )
        changed += cursor.rowcount
    return changed


def follow_moved_project(db: Path, mlruns: Path) -> int:
    """Point the store's artifact paths at `mlruns` when they name another artifact root and
    `mlruns` is here (the project was moved or copied); one transaction, one line on stderr.
    Returns the number of values rewritten."""
    mlruns = mlruns.resolve()
    if not db.is_file() or not mlruns.is_dir():
        return 0
    connection = sqlite3.connect(db, timeout=60, isolation_level=None)
    try:
        if "experiments" not in _tables(connection):
            return 0
        connection.execute("BEGIN IMMEDIATE")  # read and rewrite under one lock: two commands may start at once
        old_roots = _recorded_roots(connection) - {mlruns}
        columns = _present_columns(connection) if old_roots else []
        changed = 0
        for old in sorted(old_roots):
            changed += _rewrite(connection, columns, old.as_uri(), mlruns.as_uri())
            changed += _rewrite(connection, columns, str(old), str(mlruns))
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise UosError(f"cannot point the artifact paths in {db} at {mlruns}: {exc}") from None
    finally:
        connection.close()
    if changed:
        moved = ", ".join(str(old) for old in sorted(old_roots))
        print(
            f"MLflow store: the project moved, {changed} artifact paths now under {mlruns} (were {moved})",
            file=sys.stderr,
        )
    return changed
