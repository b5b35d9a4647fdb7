"""The registered model, as MLflow loads it ("models from code": this file, not a pickle).

Input: one row per hole with the raw signals as arrays (`depth_mm`, `torque_a`, `thrust_a`) and,
optionally, what else is known of it (`program_family`, `unit`: the review flags families and
units the model was not trained on). Output: the fields of a `uos predict` line, from the one
inference path (`infer.answer_holes`): `entry_mm`, `transition_mm`, `exit_mm`, `top_layer_mm`,
`bottom_layer_mm`, `thickness_mm`, `grip_code` (only for `ok` answers), a confidence per
keypoint, `status` (`ok`, `review` or `error`), `review_reasons` and `error`. The param `refine`
(default: as trained) turns the ramp-fit refinement off for speed: ~2 ms instead of ~80 ms per
hole. The weights are a plain state dict, loaded with `weights_only=True`: no pickled code runs
on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from uos.errors import gist


class DepthModel(PythonModel):
    def load_context(self, context) -> None:
        """The config, then the network in the runtime asked for at load (MLflow's `model_config`,
        `{"runtime": "onnx"}`; PyTorch by default): ONNX Runtime needs no torch at all."""
        from uos.training.infer import ModelConfig

        _check_own_code(Path(context.artifacts["config"]).resolve().parents[1])
        try:
            data = json.loads(Path(context.artifacts["config"]).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"the model's config.json cannot be read ({gist(exc, sentence=True)})") from None
        if not isinstance(data, dict) or "net" not in data:
            raise ValueError("the model's config.json is not a uos model's (no network settings)")
        if "train" not in data:
            raise ValueError(
                "this model version was registered before answers carried a confidence and a status: "
                "train and register a new one (uos train, uos promote)"
            )
        try:
            self.config = ModelConfig.from_dict(data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the model's config.json is not a uos model's ({gist(exc, sentence=True)})") from None
        runtime = (getattr(context, "model_config", None) or {}).get("runtime", "torch")
        if runtime == "onnx":
            self.network = _onnx_network(context.artifacts)
        elif runtime == "torch":
            self.network = _torch_network(context.artifacts, self.config)
        else:
            raise ValueError(f"unknown runtime {runtime!r}: torch or onnx")
        self.runtime = runtime

    def answer(self, signals, contexts=None, refine: bool | None = None):
        """`infer.Answer` per hole for raw (depth, torque, thrust) arrays, with optional
        `infer.Context`s: the path `uos predict` and `uos serve` take, without DataFrames."""
        from uos.training.infer import answer_holes

        return answer_holes(self.network, self.config, signals, contexts, refine)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from uos.training.infer import Context

        signals = [
            (np.asarray(d, float), np.asarray(t, float), np.asarray(f, float))
            for d, t, f in zip(model_input["depth_mm"], model_input["torque_a"], model_input["thrust_a"], strict=True)
        ]
        families = model_input["program_family"] if "program_family" in model_input else [None] * len(signals)
        units = model_input["unit"] if "unit" in model_input else [None] * len(signals)
        contexts = [Context(_text(f), _text(u)) for f, u in zip(families, units, strict=True)]
        refine = (params or {}).get("refine")
        answers = self.answer(signals, contexts, None if refine is None else bool(refine))
        # Objects, not numbers: one answer's null would make the batch's floats NaN (invalid
        # JSON over HTTP) and its grip codes floats.
        return pd.DataFrame([a.record() for a in answers], dtype=object)


def _check_own_code(model_dir: Path) -> None:
    """Every model's code is the package `uos`, and a process imports it once: a second model
    whose code differs from the first one's would quietly run the first one's. Refused (a process
    of its own runs it). The uos installed where the model runs (`uos predict`, `uos serve`, a
    notebook with uos) answers for any version whose config it reads: that is its contract."""
    import uos

    loaded = Path(uos.__file__).resolve().parent
    own = model_dir / "code" / "uos"
    if not own.is_dir() or loaded == own or not (loaded.parent.parent / "MLmodel").is_file():
        return
    if _code_digest(loaded) != _code_digest(own):
        raise ValueError(
            f"this process already runs the uos code of the model in {loaded.parent.parent}, which differs "
            "from this model's: load this model in a process of its own"
        )


def _code_digest(package: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _torch_network(artifacts: dict[str, str], config):
    import torch

    from uos.training.model import DepthNet, NetConfig
    from uos.training.runtimes import TorchNetwork

    try:
        net = DepthNet(NetConfig(**config.net))
    except TypeError as exc:
        raise ValueError(f"the model's config.json is not a uos model's ({gist(exc, sentence=True)})") from None
    try:
        net.load_state_dict(torch.load(artifacts["weights"], weights_only=True, map_location="cpu"))
    except Exception as exc:  # a damaged file or another network's: torch raises a different type for each
        raise ValueError(f"the model's weights.pt cannot be loaded ({gist(exc, sentence=True)})") from None
    return TorchNetwork(net)


def _onnx_network(artifacts: dict[str, str]):
    from uos.training.runtimes import ONNX_ARTIFACT, OnnxNetwork

    if ONNX_ARTIFACT not in artifacts:
        raise ValueError("this model version has no ONNX file (registered before uos exported one): train a new one")
    return OnnxNetwork(artifacts[ONNX_ARTIFACT])


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


mlflow.models.set_model(DepthModel())
