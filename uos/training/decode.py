"""The network's outputs as keypoints: positions, presence and confidence per hole.

Plain numpy, no torch: the same decoding follows the network whether it runs in PyTorch or in
ONNX Runtime (`runtimes.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uos.training.features import GRID_MM


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    peak = logits.max(axis=-1, keepdims=True)
    return logits - peak - np.log(np.exp(logits - peak).sum(axis=-1, keepdims=True))


def _ordered_peaks(log_probability: np.ndarray, gap_bins: int) -> list[int]:
    """The most likely bins of the given points (rows, in depth order) such that each lies at least
    `gap_bins` after the one before: the keypoints of a hole are ordered, and a layer is never
    thinner than the gap. Dynamic programming with running maxima, O(points x bins)."""
    bins = log_probability.shape[1]
    best = log_probability[0].copy()
    back = []
    for row in log_probability[1:]:
        running = np.maximum.accumulate(best)
        # The latest bin holding the running maximum is the argmax of each prefix.
        where = np.maximum.accumulate(np.where(best >= running, np.arange(bins), 0))
        shifted, origin = np.full(bins, -np.inf), np.zeros(bins, dtype=int)
        if gap_bins < bins:
            shifted[gap_bins:], origin[gap_bins:] = running[: bins - gap_bins], where[: bins - gap_bins]
        back.append(origin)
        best = shifted + row
    peaks = [int(np.argmax(best))]
    for origin in reversed(back):
        peaks.append(int(origin[peaks[-1]]))
    return peaks[::-1]


CONFIDENCE_MM = 0.5  # a present keypoint's confidence: its probability of lying within this of where decoded


@dataclass
class Decoded:
    """The network's keypoints for a batch of holes."""

    positions: np.ndarray  # (holes, 3) mm; NaN where judged absent or where it may not lie
    presence: np.ndarray  # (holes, 3) probability that the point exists
    confidence: np.ndarray  # (holes, 3) present: P(exists) x P(within CONFIDENCE_MM); absent: P(absent)
    unlocated: np.ndarray  # (holes, 3) judged present, but the network's mass is nowhere it may lie
    unordered: np.ndarray  # (holes,) no choice in depth order fits where the points may lie


def decode(
    heatmaps: np.ndarray,
    presence: np.ndarray,
    min_gap_mm: float = 1.0,
    window: int = 4,
    allowed: np.ndarray | None = None,
) -> Decoded:
    """Keypoints from the network's outputs for a batch: (holes, 3, bins) and (holes, 3).

    The peaks of the points judged present are chosen together, in depth order and at least
    `min_gap_mm` apart (a heatmap with two bumps, e.g. a CFRP ply step and the real transition,
    cannot put the transition before the entry), and only where `allowed` (holes, 3, bins) says
    a point may lie: inside the recording, at a change of cutting state. Each position is then
    the soft-argmax around its peak (over allowed bins), finer than the grid. The confidence is
    the network's own probability, before the masks: mass it put elsewhere, on a place the rule
    forbids included, is doubt."""
    probability = 1.0 / (1.0 + np.exp(-presence))
    holes, points, bins = heatmaps.shape
    log_probability = _log_softmax(heatmaps.astype(np.float64))
    masked = log_probability if allowed is None else np.where(allowed, log_probability, -np.inf)
    gap_bins = max(round(min_gap_mm / GRID_MM), 1)
    near = round(CONFIDENCE_MM / GRID_MM)
    result = Decoded(
        np.full((holes, points), np.nan),
        probability,
        1.0 - probability,
        np.zeros((holes, points), dtype=bool),
        np.zeros(holes, dtype=bool),
    )
    for h in range(holes):
        present = np.flatnonzero(probability[h] >= 0.5)
        locatable = np.array([p for p in present if np.isfinite(masked[h, p]).any()], dtype=int)
        for p in set(present.tolist()) - set(locatable.tolist()):
            result.unlocated[h, p], result.confidence[h, p] = True, 0.0
        if not len(locatable):
            continue
        peaks = _ordered_peaks(masked[h, locatable], gap_bins)
        if not np.isfinite(masked[h, locatable, peaks].sum()):
            result.unordered[h] = True
            peaks = [int(np.argmax(masked[h, p])) for p in locatable]
        for p, peak in zip(locatable, peaks, strict=True):
            lo, hi = max(peak - window, 0), min(peak + window + 1, bins)
            around = masked[h, p, lo:hi]  # log-probabilities, -inf where the point may not lie
            weights = np.exp(around - around.max())  # (relative to the largest: no overflow)
            index = float((weights * np.arange(lo, hi)).sum() / weights.sum())
            result.positions[h, p] = (index + 0.5) * GRID_MM
            mass = np.exp(log_probability[h, p, max(peak - near, 0) : peak + near + 1]).sum()
            result.confidence[h, p] = probability[h, p] * float(mass)
    return result
