"""PyTorch against ONNX Runtime for a registered model, on every shared real file, in one run.

- parity: every hole answered by both runtimes (with and without the refinement), the largest
  difference in any keypoint or thickness (mm) and in any confidence, holes whose status differs;
- speed: the answer of each hole alone and in batches of 16 (serve's), network-only path, rounds
  alternating between the runtimes, medians;
- the network alone (features in, outputs out), per hole.

    python bench/runtime_bench.py [--model models:/uos-depth@champion] [--rounds 5] [--setitec ../shared/setitec]

The memory and throughput of a serving process with each runtime: `bench/serve_bench.py --runtimes torch,onnx`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SETITEC = ROOT.parent / "shared" / "setitec"
NUMBERS = ("entry_mm", "transition_mm", "exit_mm", "thickness_mm")
CONFIDENCES = ("entry_confidence", "transition_confidence", "exit_confidence")


def parity(paths: list[str], models: dict, refine: bool) -> dict:
    from uos.training.predict import predict_paths

    answers = {runtime: list(predict_paths(paths, model, refine=refine)) for runtime, model in models.items()}
    worst_mm, worst_confidence, off, status = 0.0, 0.0, 0, 0
    for a, b in zip(answers["torch"], answers["onnx"], strict=True):
        status += a["status"] != b["status"]
        diffs = [abs(a[k] - b[k]) for k in NUMBERS if a[k] is not None and b[k] is not None]
        diffs += [np.inf for k in NUMBERS if (a[k] is None) != (b[k] is None)]
        worst = max(diffs, default=0.0)
        worst_mm, off = max(worst_mm, worst), off + (worst > 0.001 + 1e-9)
        for k in CONFIDENCES:
            if a[k] is not None and b[k] is not None:
                worst_confidence = max(worst_confidence, abs(a[k] - b[k]))
    answered = sum(a["status"] != "error" for a in answers["torch"])
    return {
        "holes": len(paths),
        "answered": answered,
        "max_diff_mm": round(worst_mm, 4),
        "holes_over_0.001_mm": off,
        "max_confidence_diff": round(worst_confidence, 4),
        "status_differs": status,
    }


def timings(signals: list, models: dict, rounds: int, batch: int) -> dict:
    """Seconds per hole of `model.answer` (network only), rounds alternating between runtimes."""
    per_hole: dict[str, list[float]] = {runtime: [] for runtime in models}
    for _ in range(rounds):
        for runtime, model in models.items():
            started = time.perf_counter()
            for start in range(0, len(signals), batch):
                model.answer(signals[start : start + batch], None, False)
            per_hole[runtime].append((time.perf_counter() - started) / len(signals))
    return {runtime: round(statistics.median(values) * 1000, 3) for runtime, values in per_hole.items()}


def network_timings(features: np.ndarray, models: dict, rounds: int) -> dict:
    per_hole: dict[str, list[float]] = {runtime: [] for runtime in models}
    for _ in range(rounds):
        for runtime, model in models.items():
            started = time.perf_counter()
            for start in range(0, len(features), 16):
                model.network.run(features[start : start + 16])
            per_hole[runtime].append((time.perf_counter() - started) / len(features))
    return {runtime: round(statistics.median(values) * 1000, 3) for runtime, values in per_hole.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models:/uos-depth@champion")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--setitec", type=Path, default=SETITEC)
    args = parser.parse_args()

    import torch

    from uos.holes import read_source
    from uos.training.infer import prepare
    from uos.training.predict import load_model

    torch.set_num_threads(1)  # as serve's workers: one intra-op thread each (ONNX Runtime's sessions too)
    models = {runtime: load_model(args.model, runtime) for runtime in ("torch", "onnx")}
    assert [type(m.network).__name__ for m in models.values()] == ["TorchNetwork", "OnnxNetwork"]
    paths = sorted(str(p) for p in args.setitec.rglob("*.xls"))
    print(f"{len(paths)} files; parity...", file=sys.stderr)
    summary: dict = {"model": args.model, "files": len(paths)}
    summary["parity_without_refine"] = parity(paths, models, refine=False)
    summary["parity_refined"] = parity(paths, models, refine=True)
    holes = [read_source(p) for p in paths]
    signals = [(h.signals["depth_mm"], h.signals["torque_a"], h.signals["thrust_a"]) for h in holes]
    config = models["torch"].config
    features = np.stack([p.features for p in (prepare(s, config) for s in signals) if not isinstance(p, str)])
    print("speed...", file=sys.stderr)
    summary["ms_per_hole_alone"] = timings(signals, models, args.rounds, batch=1)
    summary["ms_per_hole_in_16s"] = timings(signals, models, args.rounds, batch=16)
    summary["network_ms_per_hole_in_16s"] = network_timings(features, models, args.rounds)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
