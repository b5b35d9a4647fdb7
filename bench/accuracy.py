"""Cross-validated accuracy of a trained pipeline, per source folder and program family.

Reads what `dvc repro` wrote (build/parsed, build/labels, build/folds, build/model) and compares
the model's out-of-fold keypoints and the label stage's signal-only detector with the labels
the detector did not make itself (machine events, humans), and with all labels.

    python bench/accuracy.py [--project .] [--folder mql]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from uos.dataset.layout import read_holes
from uos.labels.label import read_labels
from uos.training.folds import read_folds

KEYPOINTS = ("entry", "transition", "exit")
INDEPENDENT = ("event", "human")


def _mae(frame: pd.DataFrame, predicted: str, only_independent: bool) -> dict[str, tuple[float, int]]:
    result = {}
    for name in KEYPOINTS:
        rows = frame[frame[f"{name}_source"].isin(INDEPENDENT)] if only_independent else frame
        error = (rows[f"{name}_{predicted}"] - rows[f"{name}_mm"]).abs().dropna()
        result[name] = (float(error.mean()) if len(error) else np.nan, len(error))
    rows = frame[frame["exit_source"].isin(INDEPENDENT)] if only_independent else frame
    error = (
        ((rows[f"exit_{predicted}"] - rows[f"entry_{predicted}"]) - (rows["exit_mm"] - rows["entry_mm"])).abs().dropna()
    )
    result["thickness"] = (float(error.mean()) if len(error) else np.nan, len(error))
    return result


def _row(label: str, holes: int, figures: dict[str, tuple[float, int]]) -> str:
    cells = "".join(f"{value:>9.3f} ({n:>3})" if n else f"{'-':>15}" for value, n in figures.values())
    return f"  {label:<34}{holes:>6}{cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--folder", default=None, help="only holes whose source path has this folder")
    args = parser.parse_args()
    build = args.project / "build"
    holes = read_holes(build / "parsed", ["hole_id", "source"])
    labels = read_labels(build / "labels")
    folds = read_folds(build / "folds")[["hole_id", "family"]]
    oof = pd.read_csv(build / "model/plots/out_of_fold.csv", dtype={"hole_id": str})
    oof = oof.rename(columns={f"{k}_mm": f"{k}_model" for k in KEYPOINTS})
    frame = (
        labels.merge(oof, on="hole_id").merge(folds, on="hole_id").merge(holes, on="hole_id", suffixes=("", "_parsed"))
    )
    frame = frame.rename(columns={f"{k}_signal_mm": f"{k}_signal" for k in KEYPOINTS})
    source = frame["source_parsed"] if "source_parsed" in frame else frame["source"]
    frame["folder"] = [Path(s).parent.name for s in source]
    if args.folder:
        frame = frame[[f"/{args.folder}/" in s for s in source]]
    header = f"  {'':<34}{'holes':>6}" + "".join(f"{k:>15}" for k in (*KEYPOINTS, "thickness"))
    for title, independent in (("against event and human labels", True), ("against all labels", False)):
        print(f"Out-of-fold MAE mm (holes), {title}: model / signal-only baseline")
        print(header)
        groups = [("all", frame)] + [(f"folder {k}", g) for k, g in frame.groupby("folder")]
        groups += [(f"family {k}", g) for k, g in frame.groupby("family")]
        for name, group in groups:
            model, baseline = _mae(group, "model", independent), _mae(group, "signal", independent)
            if not any(n for _, n in model.values()):
                continue
            print(_row(f"{name} model", len(group), model))
            print(_row(f"{name} baseline", len(group), baseline))
        print()


if __name__ == "__main__":
    main()
