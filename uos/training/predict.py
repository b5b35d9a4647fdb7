"""`uos predict`: keypoints for Setitec files, folders or MQTT captures, from a registered model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from uos.errors import InputError, UosError, gist
from uos.training.tracking import DEFAULT_MODEL_URI


def load_model(uri: str = DEFAULT_MODEL_URI, runtime: str = "torch"):
    """The registered model's `DepthModel` (answers without MLflow's per-call DataFrame checks),
    its network in `runtime` (torch or onnx); a clear error when the registry has no such version
    or it cannot be used."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from uos.training import tracking
    from uos.training.runtimes import check_runtime, one_thread

    tracking.configure()
    one_thread(runtime)
    try:
        model = mlflow.pyfunc.load_model(uri, model_config={"runtime": runtime})
    except MlflowException as exc:
        hint = ""
        if uri == DEFAULT_MODEL_URI and exc.error_code == "RESOURCE_DOES_NOT_EXIST":  # not when it is damaged
            hint = " (no champion yet? `uos promote` after `uos train`, or --model models:/uos-depth@candidate)"
        raise UosError(f"cannot load model {uri}: {gist(exc)}{hint}") from None
    except ValueError as exc:  # DepthModel.load_context: a model from before confidence and status
        raise UosError(f"cannot use model {uri}: {exc}") from None
    python_model = model.unwrap_python_model()
    check_runtime(python_model, runtime, uri)
    return python_model


def predict_paths(inputs: list[str], model, batch: int = 32, refine: bool | None = None) -> Iterator[dict[str, Any]]:
    """One record per hole: the answer (keypoints, confidence, status), or the reason there is
    none (an input that does not exist or cannot be read, a hole the gate refuses), in the order
    of the inputs (a folder's files in name order), each problem in its place."""
    from uos.holes import read_source
    from uos.holes.discover import discover
    from uos.holes.files import printable
    from uos.training.infer import context_of

    pending: list[tuple[str, Any]] = []

    def flush() -> Iterator[dict[str, Any]]:
        if not pending:
            return
        signals = [(h.signals["depth_mm"], h.signals["torque_a"], h.signals["thrust_a"]) for _, h in pending]
        answers = model.answer(signals, [context_of(h) for _, h in pending], refine)
        for (source, hole), answer in zip(pending, answers, strict=True):
            yield _record(source, hole.hole_id, answer.record())
        pending.clear()

    for path in _in_input_order(inputs, discover):
        if not isinstance(path, Path):  # an input that is not there or not a file: its reason
            yield from flush()
            yield _record(path.source, None, error=path.reason)
            continue
        source = printable(str(path))  # a Latin-1 byte in a name must not break the JSON line
        try:
            hole = read_source(path, source)
        except InputError as exc:
            yield from flush()  # the holes read before it are answered first: lines in input order
            yield _record(source, None, error=exc.reason)
            continue
        if any(name not in hole.signals for name in ("depth_mm", "torque_a", "thrust_a")):
            yield from flush()
            yield _record(source, hole.hole_id, error="missing signals: needs position, torque and thrust")
            continue
        pending.append((source, hole))
        if len(pending) >= batch:
            yield from flush()
    yield from flush()


def _in_input_order(inputs: list[str], discover) -> Iterator[Any]:
    """The files of each input in turn (`uos parse` sorts them all; a pipeline expects its own
    order back), and in its place the reason an input has none."""
    for item in inputs:
        paths, problems = discover([item])
        yield from problems
        yield from paths


def _record(source: str, hole_id: str | None, answer: dict[str, Any] | None = None, error: str | None = None):
    """A `uos predict` line: where the hole came from, then the answer's fields."""
    from uos.training.infer import Answer

    answer = answer or Answer(error=error).record()
    return {"source": source, "hole_id": hole_id, **answer}
