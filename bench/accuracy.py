"""Out-of-fold accuracy of a trained pipeline, per status, source folder and program family.

Reads what `dvc repro` (or `uos train`) wrote under build/: the out-of-fold answers of the
inference path, with the ramp-fit refinement (`uos predict`'s default) and without it (`uos
serve`'s default), judged against the labels. For each group: holes, and for the `ok` and the
`review` answers their number, thickness MAE and **gross errors** (a keypoint or the thickness
more than 1 mm off, or a number where the labels have none); and every `ok` answer with a gross
error, by name.

To see how unseen data behaves, train with whole folders held out (`[split] group_by =
"folder"`: each fold leaves out every hole of some source folders, as a new session or unit
would be): `dvc exp run -S split.group_by=folder`, then run this again.

    python bench/accuracy.py [--project .] [--folder mql]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from uos.labels import KEYPOINTS
from uos.training import evaluation

ANSWER_FILES = {
    "refined (uos predict)": "out_of_fold.csv",
    "network only (uos serve)": "out_of_fold_without_refine.csv",
}


def _tables(frame: pd.DataFrame, title: str) -> str:
    groups = {"all": evaluation.summarize(frame)}
    groups |= {f"folder {k}": v for k, v in evaluation.by_group(frame, "folder").items()}
    groups |= {f"family {k}": v for k, v in evaluation.by_group(frame, "family").items()}
    return evaluation.format_table(groups, title)


def _gross_keypoints(row: pd.Series) -> str:
    """What is wrong: each keypoint off, missed or invented (or only the thickness off)."""
    parts = []
    for name in KEYPOINTS:
        given, label = row[f"{name}_mm"], row[f"{name}_label_mm"]
        wrong = pd.isna(given) != pd.isna(label) or (not pd.isna(given) and abs(given - label) > evaluation.GROSS_MM)
        if row[f"{name}_judged"] and wrong:
            parts.append(f"{name} {given:.2f} vs label {label:.2f}")
    return ", ".join(parts) or f"thickness off by {row['thickness_error_mm']:.2f} mm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--folder", default=None, help="only holes from this source folder")
    args = parser.parse_args()
    plots = args.project / "build" / "model" / "plots"
    for title, name in ANSWER_FILES.items():
        path = plots / name
        if not path.exists():
            print(f"{path}: not there (train first: dvc repro)")
            continue
        frame = pd.read_csv(path, dtype={"hole_id": str, "folder": str, "family": str})
        if args.folder:
            frame = frame[frame["folder"] == args.folder]
        print(_tables(frame, f"Out-of-fold answers, {title} (gross: > 1 mm off):"))
        for _, row in frame[frame["gross"] & (frame["status"] == "ok")].iterrows():
            print(f"  ok but gross: {row['hole_id']} ({row['folder']}): {_gross_keypoints(row)}")
        print()


if __name__ == "__main__":
    main()
