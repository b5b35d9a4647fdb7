"""Labelling accuracy and speed, for the closing figures of the label stage.

- synthetic holes (exact truth): MAE per keypoint, per unit, and per confidence bucket;
- real holes with machine events (../shared/setitec/mql): the signal-only detector (events hidden)
  against the event-anchored labels, and where the raw events sit relative to the keypoints;
- time per hole.

    python bench/label_bench.py [--holes 300] [--seed 42]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from uos.dataset.build import parse_dataset
from uos.labels import KEYPOINTS
from uos.labels.label import label_dataset
from uos.synth.generate import synthesize
from uos.synth.params import SynthParams
from uos.synth.truth import read_truth

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--mql", type=Path, default=ROOT.parent / "shared" / "setitec" / "mql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="uos-label-bench-") as scratch:
        work = Path(scratch)
        synthesize(work / "raw", dataclasses.replace(SynthParams(), holes=args.holes, seed=args.seed))
        parse_dataset([str(work / "raw")], work / "parsed", cache_root=work / "cache")
        started = time.perf_counter()
        summary = label_dataset(work / "parsed", work / "labels", truth_path=work / "raw" / "truth.csv")
        elapsed = time.perf_counter() - started
        rows = pd.DataFrame(summary.rows).set_index("hole_id")
        truth = read_truth(work / "raw" / "truth.csv", by_hole=True)
        print(
            f"Synthetic: {args.holes} holes (seed {args.seed}), labelled in {elapsed:.1f} s "
            f"({elapsed / args.holes * 1000:.0f} ms per hole on all cores)"
        )
        print(f"  {'keypoint':<11}{'unit':<12}{'holes':>6}{'MAE mm':>9}{'p95 mm':>9}{'max mm':>9}")
        for name in KEYPOINTS:
            joined = rows[[f"{name}_mm"]].join(truth[[f"{name}_mm", "unit"]].add_suffix("_truth")).dropna()
            for unit, part in joined.groupby("unit_truth"):
                error = (part[f"{name}_mm"] - part[f"{name}_mm_truth"]).abs()
                print(
                    f"  {name:<11}{unit:<12}{len(part):>6}{error.mean():>9.3f}"
                    f"{np.percentile(error, 95):>9.3f}{error.max():>9.3f}"
                )
        print("  error by confidence bucket:")
        for name in KEYPOINTS:
            cells = [
                f"{b}: {f['holes']} at {f['mae_mm']:.3f}"
                for b, f in summary.metrics["synthetic"][name]["by_confidence"].items()
            ]
            print(f"    {name:<11}" + ";  ".join(cells))

        if args.mql.is_dir():
            parse_dataset([str(args.mql)], work / "mql", cache_root=work / "cache")
            started = time.perf_counter()
            real = label_dataset(work / "mql", work / "mql-labels")
            elapsed = time.perf_counter() - started
            events = real.metrics["signal_vs_events"]
            print(f"Real ({args.mql}): {len(real.rows)} holes with events, labelled in {elapsed:.1f} s")
            for name in ("transition", "exit"):
                print(
                    f"  signal-only vs event-anchored {name}: MAE {events[name]['mae_mm']:.3f} mm"
                    f" over {events[name]['holes']} holes"
                )
            offsets = {"transition": [], "exit": []}
            for r in real.rows:
                for name in offsets:
                    event = float(r[f"{name}_reason"].split(" at ")[1].split(" mm")[0])
                    offsets[name].append(event - r[f"{name}_mm"])
            for name, values in offsets.items():
                print(
                    f"  raw event - {name}: median {np.median(values):.2f} mm (p5 {np.percentile(values, 5):.2f}, "
                    f"p95 {np.percentile(values, 95):.2f}): the lag the labels correct"
                )


if __name__ == "__main__":
    main()
