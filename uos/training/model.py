"""The depth model: a small 1-D U-Net over a hole's channels on the depth grid.

It outputs one heatmap per keypoint (where along the depth the point is) and one presence logit
per keypoint (whether the point exists at all: air cuts, single layers, holes that stop before
breakthrough). A position is the soft-argmax of the heatmap around its peak (finer than the grid),
optionally refined on the signals by the same ramp fit the labels use (`edges.fit_ramp`): the
network decides which edge, the fit where exactly it starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from uos.training.features import CHANNELS, GRID_MM

KEYPOINTS = ("entry", "transition", "exit")


@dataclass(frozen=True)
class NetConfig:
    width: int = 8  # channels of the first level; doubled at each of the deeper levels
    levels: int = 3
    kernel: int = 5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _block(inputs: int, outputs: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(inputs, outputs, kernel, padding=kernel // 2),
        nn.GroupNorm(min(4, outputs), outputs),
        nn.GELU(),
        nn.Conv1d(outputs, outputs, kernel, padding=kernel // 2),
        nn.GroupNorm(min(4, outputs), outputs),
        nn.GELU(),
    )


class DepthNet(nn.Module):
    def __init__(self, config: NetConfig, channels: int = len(CHANNELS)):
        super().__init__()
        widths = [config.width * 2**i for i in range(config.levels + 1)]
        self.encoders = nn.ModuleList()
        inputs = channels
        for width in widths:
            self.encoders.append(_block(inputs, width, config.kernel))
            inputs = width
        self.pool = nn.MaxPool1d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for deeper, shallower in zip(widths[::-1][:-1], widths[::-1][1:], strict=True):
            self.ups.append(nn.ConvTranspose1d(deeper, shallower, 2, stride=2))
            self.decoders.append(_block(2 * shallower, shallower, config.kernel))
        self.heatmaps = nn.Conv1d(widths[0], len(KEYPOINTS), 1)
        self.presence = nn.Linear(widths[-1], len(KEYPOINTS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for index, encoder in enumerate(self.encoders):
            x = encoder(x)
            if index < len(self.encoders) - 1:
                skips.append(x)
                x = self.pool(x)
        presence = self.presence(torch.amax(x, dim=-1))
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips), strict=True):
            x = up(x)
            x = decoder(torch.cat([x[..., : skip.shape[-1]], skip], dim=1))
        return self.heatmaps(x), presence


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


def decode(
    heatmaps: np.ndarray, presence: np.ndarray, min_gap_mm: float = 1.0, window: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (mm; NaN where the point is judged absent) and presence probabilities, from the
    network's outputs for a batch: (holes, 3, bins) and (holes, 3).

    The peaks of the points judged present are chosen together, in depth order and at least
    `min_gap_mm` apart (a heatmap with two bumps, e.g. a CFRP ply step and the real transition,
    cannot put the transition before the entry); each position is then the soft-argmax around
    its peak, finer than the grid."""
    probability = 1.0 / (1.0 + np.exp(-presence))
    holes, points, bins = heatmaps.shape
    positions = np.full((holes, points), np.nan)
    log_probability = _log_softmax(heatmaps.astype(np.float64))
    gap_bins = max(round(min_gap_mm / GRID_MM), 1)
    for h in range(holes):
        present = np.flatnonzero(probability[h] >= 0.5)
        if not len(present):
            continue
        for p, peak in zip(present, _ordered_peaks(log_probability[h, present], gap_bins), strict=True):
            lo, hi = max(peak - window, 0), min(peak + window + 1, bins)
            weights = np.exp(heatmaps[h, p, lo:hi] - heatmaps[h, p, peak])
            index = float((weights * np.arange(lo, hi)).sum() / weights.sum())
            positions[h, p] = (index + 0.5) * GRID_MM
    return positions, probability


# Windows (mm before, mm after the network's position) in which a ramp is fitted where the
# detector disagrees with the network. The fit moves a little with its window, so the refined
# point is the median over several of them.
REFINE_WINDOWS_MM = ((2.0, 2.0), (2.5, 2.5), (3.0, 3.0))


def refine(
    positions: np.ndarray,
    depth: np.ndarray,
    torque: np.ndarray,
    thrust: np.ndarray,
    agree_mm: float = 0.5,
    reach_mm: float = 1.0,
) -> np.ndarray:
    """The network decides which edge, the labels' own ramp fit where exactly it starts.

    Where the signal-only detector of `uos label` found the point within `agree_mm` of the
    network's, its depth is taken (the same fit, in the same window, as the labels). Elsewhere
    the detector picked another edge or none: the ramp is fitted around the network's position
    (median over REFINE_WINDOWS_MM of the fits within `reach_mm`), or the network's position stays."""
    from uos.labels.detect import detect
    from uos.labels.edges import fit_ramp
    from uos.labels.profile import build_profile

    profile = build_profile(
        np.asarray(depth, float), np.asarray(torque, float), np.nan_to_num(np.asarray(thrust, float))
    )
    refined = positions.copy()
    if profile is None:
        return refined
    detected = detect(profile).points
    for index, name in enumerate(KEYPOINTS):
        at = positions[index]
        if not np.isfinite(at):
            continue
        alone = detected[name].depth_mm
        if alone is not None and abs(alone - at) <= agree_mm:
            refined[index] = alone
            continue
        # Bounded by the neighbouring keypoints, so that a window never takes in another edge.
        floor = max([-np.inf, *[positions[j] + 0.3 for j in range(index) if np.isfinite(positions[j])]])
        ceiling = min([np.inf, *[positions[j] - 0.3 for j in range(index + 1, 3) if np.isfinite(positions[j])]])
        found = []
        for before, after in REFINE_WINDOWS_MM:
            edge = fit_ramp(profile, max(at - before, floor), min(at + after, ceiling), rising=name != "exit")
            if edge is not None and abs(edge.depth_mm - at) <= reach_mm:
                found.append(edge.depth_mm)
        if found:
            refined[index] = float(np.median(found))
    return refined
