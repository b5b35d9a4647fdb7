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

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import torch

        from uos.training.features import hole_features
        from uos.training.model import KEYPOINTS, decode, refine

        refine_positions = bool((params or {}).get("refine", self.refine))
        rows = []
        signals = [
            (np.asarray(d, float), np.asarray(t, float), np.asarray(f, float))
            for d, t, f in zip(model_input["depth_mm"], model_input["torque_a"], model_input["thrust_a"], strict=True)
        ]
        if signals:
            features = np.stack([hole_features(*s) for s in signals])
            with torch.no_grad():
                heatmaps, presence = self.net(torch.from_numpy(features))
            positions, probability = decode(
                heatmaps.numpy(), presence.numpy(), float(self.config.get("min_gap_mm", 1.0))
            )
            for i, s in enumerate(signals):
                if refine_positions:
                    positions[i] = refine(positions[i], *s)
                row = {f"{k}_mm": float(positions[i, j]) for j, k in enumerate(KEYPOINTS)}
                row["thickness_mm"] = row["exit_mm"] - row["entry_mm"]
                row.update({f"{k}_presence": float(probability[i, j]) for j, k in enumerate(KEYPOINTS)})
                rows.append(row)
        columns = [f"{k}_mm" for k in KEYPOINTS] + ["thickness_mm"] + [f"{k}_presence" for k in KEYPOINTS]
        return pd.DataFrame(rows, columns=columns)


mlflow.models.set_model(DepthModel())
