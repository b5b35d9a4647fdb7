"""The depth model: a small 1-D U-Net over a hole's channels on the depth grid.

It outputs one heatmap per keypoint (where along the depth the point is) and one presence logit
per keypoint (whether the point exists at all: air cuts, single layers, holes that stop before
breakthrough). `decode.py` turns them into positions (the soft-argmax around each peak, finer
than the grid) and `infer.py` takes it from there (refinement, confidence, review). The network
also runs as ONNX, without torch (`runtimes.py`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from uos.labels import KEYPOINTS
from uos.training.features import CHANNELS


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
