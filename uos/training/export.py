"""A registered model's network as a file of its own (ONNX)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from uos.errors import UosError, gist


def export_onnx_file(model_uri: str, out: str | Path) -> Path:
    """The network of `model_uri` as ONNX at `out` (see `runtimes` for its contract): the file
    registered with the version, or, for a version registered before uos logged one, exported
    from its weights."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from uos.training import tracking
    from uos.training.logged_model import ONNX_FILE, final_net
    from uos.training.runtimes import export_onnx

    tracking.configure()
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="uos-export-") as scratch:
        try:
            local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=scratch))
        except MlflowException as exc:
            raise UosError(f"cannot load model {model_uri}: {gist(exc)}") from None
        logged = local / "artifacts" / ONNX_FILE
        if not logged.exists():  # registered before uos logged its network: exported from the weights
            try:
                net = final_net(local / "artifacts")
            except Exception as exc:  # no uos model there, or damaged: torch and json each raise their own
                raise UosError(f"cannot load model {model_uri}: not a uos model, or damaged ({gist(exc)})") from None
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if logged.exists():
                shutil.copyfile(logged, out)
            else:
                export_onnx(net, out)
        except OSError as exc:
            raise UosError(f"cannot write {out}: {exc.strerror}") from None
    return out
