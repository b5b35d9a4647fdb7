"""The registered model as MLflow keeps it: usable by anyone with MLflow, without uos installed.

The logged model carries what it runs: `pyfunc.py` (models from code, no pickle), the weights, the
config, the network as ONNX (`artifacts/depth.onnx`), and the `uos` package itself (MLflow's `code_paths`: the model's
Python path), with requirements pinned to what trained it, all on PyPI; an input example (a real
training hole) and the meaning of every field in the model's metadata. `mlflow models serve`,
`mlflow.pyfunc.load_model` in a notebook or another team's service, `mlflow models build-docker`:
each gets the answers `uos predict` gives.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import metadata as dist
from pathlib import Path
from typing import Any

from uos.training.infer import OUTPUT_COLUMNS
from uos.training.runtimes import ONNX_ARTIFACT

ONNX_FILE = "depth.onnx"  # under artifacts/ in a logged model

# What the model's code imports (`pyfunc.py` and the inference path of `uos`), pinned at logging.
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "scipy", "onnxruntime", "orjson")
INPUT_FIELDS = {
    "depth_mm": "the hole's depths, mm (= -Position of the unit), one per sample (100 Hz), as recorded",
    "torque_a": "spindle current above no-load (I Torque), A, one per sample",
    "thrust_a": "feed current above no-load (I Thrust), A, one per sample",
    "program_family": "optional: the program family (uos.training.folds.program_family), for the review",
    "unit": "optional: the drilling head (RFID or name), for the review",
}
OUTPUT_FIELDS = {
    "entry_mm": "where the drill point enters the stack, mm of depth; null: none or no answer",
    "transition_mm": "where it crosses from the first layer to the second, mm; null: one layer",
    "exit_mm": "where it breaks through, mm; null: the recording stops before",
    "top_layer_mm": "transition - entry",
    "bottom_layer_mm": "exit - transition",
    "thickness_mm": "exit - entry: the stack",
    "grip_code": "the thickness in 1/16 inch steps, rounded up; only for status ok",
    "entry_confidence": "probability that the entry lies within 0.5 mm of entry_mm (or that there is none)",
    "transition_confidence": "likewise for the transition",
    "exit_confidence": "likewise for the exit",
    "status": "ok (use it), review (a person checks it first: review_reasons) or error (no answer: error)",
    "review_reasons": "why a person should look at this answer",
    "error": "why the hole cannot have keypoints (too few samples, non-finite values, air cut, ...)",
}


def requirements() -> list[str]:
    """The packages the model imports, at the versions installed (a local build label such as
    torch's `+cpu` dropped: every index has the release)."""
    return [f"{name}=={dist.version(name).split('+')[0]}" for name in REQUIREMENTS]


def signature(refine: bool):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema(
            [
                ColSpec(Array("double"), "depth_mm"),
                ColSpec(Array("double"), "torque_a"),
                ColSpec(Array("double"), "thrust_a"),
                ColSpec("string", "program_family", required=False),
                ColSpec("string", "unit", required=False),
            ]
        ),
        outputs=Schema(
            [
                *(ColSpec("double", c) for c in OUTPUT_COLUMNS),
                ColSpec("long", "grip_code"),
                ColSpec("string", "status"),
                ColSpec(Array("string"), "review_reasons"),
                ColSpec("string", "error"),
            ]
        ),
        params=ParamSchema([ParamSpec("refine", "boolean", refine)]),
    )


def _package_copy(into: Path, package: Path | None = None) -> Path:
    """The `uos` package's modules, for `code_paths`: its `.py` files and nothing else (a secret,
    an editor's swap file or a scratch array in the working tree must not travel with a model)."""
    package = package or Path(__file__).resolve().parent.parent

    def not_code(folder: str, names: list[str]) -> list[str]:
        return [
            name
            for name in names
            if name.startswith(".")
            or name == "__pycache__"
            or (Path(folder, name).is_file() and not name.endswith(".py"))
        ]

    return Path(shutil.copytree(package, into / "uos", ignore=not_code))


def log_model(out: Path, refine: bool, example: dict[str, list[float]] | None) -> Any:
    """Log the model in `out` (weights.pt, config.json) with its ONNX network, its code and
    requirements, in the active run; MLflow's ModelInfo."""
    import mlflow
    import pandas as pd

    from uos.training.runtimes import export_onnx

    with tempfile.TemporaryDirectory(prefix="uos-model-") as scratch:
        onnx = export_onnx(final_net(out), Path(scratch) / ONNX_FILE)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("pyfunc.py")),
            artifacts={
                "weights": str(out / "weights.pt"),
                "config": str(out / "config.json"),
                ONNX_ARTIFACT: str(onnx),
            },
            code_paths=[str(_package_copy(Path(scratch)))],
            signature=signature(refine),
            input_example=None if example is None else pd.DataFrame([example]),
            pip_requirements=requirements(),
            # The runtime a caller may ask for at load (`model_config={"runtime": "onnx"}`): MLflow
            # only passes on keys the logged model declares.
            model_config={"runtime": "torch"},
            metadata={
                "input_fields": INPUT_FIELDS,
                "output_fields": OUTPUT_FIELDS,
                "onnx": f"artifacts/{ONNX_FILE}",
            },
        )


def final_net(out: Path):
    """The torch network of a model folder (weights.pt and config.json)."""
    import json

    import torch

    from uos.training.infer import ModelConfig
    from uos.training.model import DepthNet, NetConfig

    config = ModelConfig.from_dict(json.loads((out / "config.json").read_text()))
    net = DepthNet(NetConfig(**config.net))
    net.load_state_dict(torch.load(out / "weights.pt", weights_only=True, map_location="cpu"))
    return net.eval()
