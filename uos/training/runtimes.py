"""The network of a model, run by PyTorch or by ONNX Runtime: features in, outputs out.

Everything around the network (the features, decoding, refinement, confidence, review) is numpy
and the same for both, so that `--runtime onnx` gives the keypoints PyTorch gives. The ONNX file
(`uos export --onnx`, and `artifacts/depth.onnx` in every registered version) is
the network alone, with this contract:

- input `features`, float32 [holes, 6, 400]: a hole on the 0.1 mm depth grid from 0 to 40 mm,
  the channels of `features.CHANNELS` (torque / 10 A, thrust A, torque and thrust scaled to their
  maximum, the torque's slope scaled to its maximum, 1 where the recording covers the bin), as
  `features.profile_features` makes them from the hole's fresh-cut profile
  (`profile.build_profile` of depth mm = -Position, torque A and thrust A);
- outputs `heatmaps`, float32 [holes, 3, 400]: for entry, transition and exit, a logit per bin
  (softmax over the bins: where the point lies); `presence`, float32 [holes, 3]: the logit that
  each point exists;
- then `decode.decode` (peaks in depth order, masked by the cutting rule), refinement and review
  (`infer.py`): what makes a `uos predict` answer of the outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from uos.errors import UosError, gist
from uos.labels import KEYPOINTS
from uos.training.features import CHANNELS, N_BINS

RUNTIMES = ("torch", "onnx")
INPUT, OUTPUTS = "features", ("heatmaps", "presence")
ONNX_ARTIFACT = "onnx"  # its key among the logged model's artifacts
OPSET = 18


class Network(Protocol):
    def run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(heatmaps, presence) for float32 features (holes, channels, bins)."""
        ...


class TorchNetwork:
    def __init__(self, net: Any):
        self.net = net.eval()

    def run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            heatmaps, presence = self.net(torch.from_numpy(features))
        return heatmaps.numpy(), presence.numpy()


class OnnxNetwork:
    """The network in ONNX Runtime, one intra-op thread (serve's workers are the parallelism,
    as with torch)."""

    def __init__(self, path: str | Path, threads: int = 1):
        try:
            import onnxruntime
        except ImportError:
            raise UosError("--runtime onnx needs ONNX Runtime: pip install onnxruntime") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3  # its warnings are about graph optimisation, not for users
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's own errors (a damaged or foreign file): no common base
            raise ValueError(f"the model's ONNX file cannot be loaded ({gist(exc)})") from None

    def run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(features):  # (the exported graph's reshapes cannot take an empty batch)
            return np.zeros((0, len(KEYPOINTS), N_BINS), np.float32), np.zeros((0, len(KEYPOINTS)), np.float32)
        heatmaps, presence = self.session.run(list(OUTPUTS), {INPUT: np.ascontiguousarray(features, np.float32)})
        return heatmaps, presence


def one_thread(runtime: str) -> None:
    """One intra-op thread for the network in this process (ONNX Runtime's sessions have one
    already, see OnnxNetwork): a thread pool stalls whenever another process takes one of its
    cores, and a hole's network is too small for a pool to pay (uos.cores)."""
    if runtime == "torch":
        import torch

        torch.set_num_threads(1)


def check_runtime(python_model: Any, asked: str, uri: str) -> None:
    """A UosError when a loaded model does not run in the runtime asked for: MLflow passes the
    runtime only to versions that declare it, and an older one would quietly run in torch."""
    if getattr(python_model, "runtime", "torch") != asked:
        raise UosError(
            f"model {uri} cannot run in {asked}: it was registered before uos logged its network as ONNX "
            "(train and register a new version, or --runtime torch)"
        )


def as_network(net: Any) -> Network:
    """A runtime network as it is; a torch DepthNet (training, cross-validation) wrapped."""
    return net if hasattr(net, "run") else TorchNetwork(net)


def export_onnx(net: Any, path: str | Path) -> Path:
    """Write the network as ONNX (the contract above), any number of holes per call."""
    import logging
    import warnings

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, len(CHANNELS), N_BINS)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # the exporter's chatter is not for users
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net.eval(),
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_shapes=({0: torch.export.Dim("holes")},),
            verbose=False,
        )
    program.save(str(path))
    _describe(path)
    return path


def _describe(path: Path) -> None:
    """The contract in the file itself (its doc string and metadata), for whoever opens it."""
    import onnx

    model = onnx.load(str(path))
    model.doc_string = __doc__[__doc__.index("- input") :].strip()
    for key, value in {
        "uos.grid_mm": "0.1",
        "uos.bins": str(N_BINS),
        "uos.channels": ",".join(CHANNELS),
        "uos.keypoints": ",".join(KEYPOINTS),
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
