"""`uos split`: K cross-validation folds in which related holes never straddle train and test.

Holes of one group stay together: by default one tool life of one head (a head's holes from one
tool change to the next: a model must not learn a tool's wear state in training and meet the same
tool in test). Holes with the same signals (re-exports, captures of a file) are merged into one
group. Rejected holes (by an annotator) and holes the parser marked as errors are left out.
Program families are balanced across folds (sklearn's StratifiedGroupKFold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from uos.errors import UosError
from uos.outputs import write_atomic, write_json

FOLDS_FILE = "folds.parquet"
SUMMARY_FILE = "folds.json"


@dataclass(frozen=True)
class SplitParams:
    """`[split]` in params.toml."""

    k: int = 5
    group_by: str = "tool_life"  # tool_life (head + tool change), folder (of the source), or a holes.parquet column
    life_block: int = 20  # a tool life longer than this is cut into blocks of consecutive holes (0: never)
    seed: int = 0


def program_family(program: list[dict[str, Any]] | None) -> str:
    """A program's signature: its enabled steps' speeds and triggers (e.g. `1500T/320t/1500`)."""
    steps = []
    for step in [] if program is None else program:
        if not step.get("enabled"):
            continue
        trigger = "T" if step.get("torque_max_a") else ("t" if step.get("torque_min_a") else "")
        steps.append(f"{round(step.get('rpm') or 0)}{trigger}")
    return "/".join(steps) or "unknown"


def tool_lives(holes, block: int = 0) -> np.ndarray:
    """For each hole, `head/life-N`: a new life starts whenever a head's tool age goes down; with
    `block`, a long life is cut into blocks of that many consecutive holes (`head/life-N/M`), so
    that a dataset of one long tool life can still be cross-validated without neighbours (same
    wear, same part) straddling train and test."""
    lives = np.empty(len(holes), dtype=object)
    for head, part in holes.groupby(holes["head_id"].fillna("unknown-head")):
        order = part.sort_values(["global_counter", "tool_age"], na_position="last")
        age = order["tool_age"].astype("float64").to_numpy()
        changes = np.concatenate([[0], (np.diff(age) < 0).astype(int)])
        life = np.cumsum(changes)
        position = np.zeros(len(life), dtype=int)  # rank of the hole within its life
        for value in np.unique(life):
            members = life == value
            position[members] = np.arange(members.sum())
        for index, value, rank in zip(order.index, life, position, strict=True):
            name = f"{head}/life-{value}" + (f"/{rank // block}" if block else "")
            lives[holes.index.get_loc(index)] = name
    return lives


def _merge_same_signals(groups: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Union of groups that share a signals hash: duplicates must land in one fold."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    by_hash: dict[str, str] = {}
    for group, signals in zip(groups, hashes, strict=True):
        if signals is None or signals != signals:  # None or NaN
            continue
        if signals in by_hash:
            a, b = find(group), find(by_hash[signals])
            if a != b:
                parent[max(a, b)] = min(a, b)
        else:
            by_hash[signals] = group
    return np.array([find(g) for g in groups], dtype=object)


@dataclass
class SplitSummary:
    out_dir: Path
    folds: Any  # DataFrame: hole_id, fold, group, family
    left_out: dict[str, int]


# What the split needs of each hole in holes.parquet.
_SPLIT_COLUMNS = (
    "hole_id",
    "head_id",
    "global_counter",
    "tool_age",
    "signals_hash",
    "status",
    "program",
    "source",
    "cutting_tool",
)


def _usable_holes(parsed_dir: str | Path, labels_dir: str | Path) -> tuple[Any, dict[str, int]]:
    """The holes a model can learn from (parsed without error, labelled, neither rejected nor
    without keypoints), renumbered from 0, and how many were left out for each reason."""
    from uos.dataset.layout import read_holes
    from uos.labels.table import read_labels

    holes = read_holes(parsed_dir, list(_SPLIT_COLUMNS))
    labels = read_labels(labels_dir)[["hole_id", "status"]].rename(columns={"status": "label_status"})
    holes = holes.merge(labels, on="hole_id", how="left")
    parse_error = holes["status"] == "error"
    left_out = {
        "parse error": int(parse_error.sum()),
        "no keypoints possible": int(((holes["label_status"] == "error") & ~parse_error).sum()),
        "rejected": int((holes["label_status"] == "rejected").sum()),
        "not labelled": int(holes["label_status"].isna().sum()),
    }
    holes = holes[~parse_error & holes["label_status"].notna() & ~holes["label_status"].isin(["rejected", "error"])]
    return holes.reset_index(drop=True), left_out


def _groups(holes, params: SplitParams) -> np.ndarray:
    """Each hole's group (`params.group_by`), groups sharing signals merged into one."""
    if params.group_by == "tool_life":
        groups = tool_lives(holes, params.life_block)
    elif params.group_by == "folder":  # where the files came from: a session, a unit, a campaign
        groups = np.array([str(PurePath(s).parent) for s in holes["source"]], dtype=object)
    elif params.group_by in holes.columns:
        groups = holes[params.group_by].astype(str).to_numpy(dtype=object)
    else:
        raise UosError(
            f"[split] group_by: no column {params.group_by!r} (use tool_life, folder or a holes.parquet column)"
        )
    return _merge_same_signals(groups, holes["signals_hash"].to_numpy(dtype=object))


def _assign_folds(groups: np.ndarray, families: np.ndarray, params: SplitParams) -> np.ndarray:
    """Each hole's fold: whole groups per fold, program families spread across folds."""
    import pandas as pd
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=params.k, shuffle=True, random_state=params.seed)
    fold = np.full(len(groups), -1)
    # Stratify on the family (rare families are merged so that every class can be spread).
    counts = pd.Series(families).value_counts()
    strata = np.array([f if counts[f] >= params.k else "other" for f in families], dtype=object)
    for index, (_, test) in enumerate(splitter.split(np.zeros(len(groups)), strata, groups)):
        fold[test] = index
    return fold


def _write_split(out: Path, frame, params: SplitParams, n_groups: int, left_out: dict[str, int]) -> None:
    """FOLDS_FILE (replaced in one step: never half written) and its summary, SUMMARY_FILE."""
    out.mkdir(parents=True, exist_ok=True)
    with write_atomic(out / FOLDS_FILE) as tmp:
        frame.to_parquet(tmp, index=False)
    summary = {
        "k": params.k,
        "group_by": params.group_by,
        "holes": len(frame),
        "groups": n_groups,
        "left_out": left_out,
        "fold_sizes": {str(k): int(v) for k, v in frame["fold"].value_counts().sort_index().items()},
    }
    write_json(out / SUMMARY_FILE, summary)


def split_dataset(
    parsed_dir: str | Path, labels_dir: str | Path, out_dir: str | Path, params: SplitParams | None = None
) -> SplitSummary:
    """Write OUT/folds.parquet (hole_id, fold, group, family) and OUT/folds.json for the usable
    holes of `parsed_dir` labelled in `labels_dir`."""
    import pandas as pd

    params = params or SplitParams()
    if params.k < 2:
        raise UosError(f"[split] k must be at least 2, not {params.k}")
    holes, left_out = _usable_holes(parsed_dir, labels_dir)
    groups = _groups(holes, params)
    families = np.array([program_family(p) for p in holes["program"]], dtype=object)
    n_groups = len(set(groups))
    if n_groups < params.k:
        raise UosError(
            f"only {n_groups} groups of holes for {params.k} folds: lower [split] k or group by something finer"
        )
    fold = _assign_folds(groups, families, params)
    frame = pd.DataFrame({"hole_id": holes["hole_id"], "fold": fold, "group": groups, "family": families})
    out = Path(out_dir)
    _write_split(out, frame, params, n_groups, left_out)
    return SplitSummary(out, frame, left_out)


def fold_table(frame) -> str:
    """Holes per fold and program family (families as rows: there may be many), with totals and
    the number of groups per fold, as a table for the terminal."""
    table = frame.pivot_table(index="family", columns="fold", values="hole_id", aggfunc="count", fill_value=0)
    table.columns = [f"fold {c}" for c in table.columns]
    table["all"] = table.sum(axis=1)
    table.loc["holes"] = table.sum(axis=0)
    groups = frame.groupby("fold")["group"].nunique()
    table.loc["groups"] = [*groups.tolist(), frame["group"].nunique()]
    table.index.name = None
    return table.to_string()


def read_folds(directory: str | Path):
    import pandas as pd

    path = Path(directory) / FOLDS_FILE
    if not path.exists():
        raise UosError(f"{path} not found: run `uos split` first (or `dvc repro`)")
    return pd.read_parquet(path)
