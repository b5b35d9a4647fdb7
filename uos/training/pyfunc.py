"""The registered model, as MLflow loads it ("models from code": this file, not a pickle).

Input: one row per hole with the raw signals as arrays (`depth_mm`, `torque_a`, `thrust_a`);
output: `entry_mm`, `transition_mm`, `exit_mm`, `thickness_mm` (NaN where a point does not exist)
and the presence probability of each point. The param `refine` (default: as trained) turns the
ramp-fit refinement off for speed: the network's own positions, ~2 ms instead of ~80 ms per hole.
The preprocessing is inside, so that `uos predict`, `uos serve` and any MLflow client see holes
exactly as training did. The weights are a plain state dict, loaded with `weights_only=True`: no
pickled code runs on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class DepthModel(PythonModel):
    def load_context(self, context) -> None:
        import torch

        from uos.training.model import DepthNet, NetConfig

        config = json.loads(Path(context.artifacts["config"]).read_text())
        self.config = config
        self.net = DepthNet(NetConfig(**config["net"]))
        self.net.load_state_dict(torch.load(context.artifacts["weights"], weights_only=True, map_location="cpu"))
        self.net.eval()
        self.refine = bool(config.get("refine", True))

    def keypoints(self, signals: list[tuple[np.ndarray, np.ndarray, np.ndarray]], refine_positions: bool | None = None):
        """Positions (holes x 3, mm, NaN where absent) and presence probabilities for raw
        (depth, torque, thrust) arrays: what `predict` returns, without the DataFrames (the path
        `uos serve` takes, hundreds of holes a second)."""
        import torch

        from uos.training.features import hole_features
        from uos.training.model import decode, refine

        if not signals:
            return np.zeros((0, 3)), np.zeros((0, 3))
        features = np.stack([hole_features(*s) for s in signals])
        with torch.inference_mode():
            heatmaps, presence = self.net(torch.from_numpy(features))
        positions, probability = decode(heatmaps.numpy(), presence.numpy(), float(self.config.get("min_gap_mm", 1.0)))
        if self.refine if refine_positions is None else refine_positions:
            for i, s in enumerate(signals):
                positions[i] = refine(positions[i], *s)
        return positions, probability

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from uos.training.model import KEYPOINTS

        signals = [
            (np.asarray(d, float), np.asarray(t, float), np.asarray(f, float))
            for d, t, f in zip(model_input["depth_mm"], model_input["torque_a"], model_input["thrust_a"], strict=True)
        ]
        positions, probability = self.keypoints(signals, bool((params or {}).get("refine", self.refine)))
        frame = pd.DataFrame(positions, columns=[f"{k}_mm" for k in KEYPOINTS])
        frame["thickness_mm"] = frame["exit_mm"] - frame["entry_mm"]
        for j, name in enumerate(KEYPOINTS):
            frame[f"{name}_presence"] = probability[:, j]
        return frame


mlflow.models.set_model(DepthModel())
