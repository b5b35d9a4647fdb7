"""`uos predict`: keypoints for Setitec files, folders or MQTT captures, from a registered model."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from uos.errors import InputError, UosError
from uos.training.tracking import DEFAULT_MODEL_URI


def load_model(uri: str = DEFAULT_MODEL_URI):
    """The registered pyfunc model; a clear error when the registry has no such version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from uos.training import tracking

    tracking.configure()
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        hint = ""
        if uri == DEFAULT_MODEL_URI:
            hint = " (no champion yet? `uos promote` after `uos train`, or --model models:/uos-depth@candidate)"
        raise UosError(f"cannot load model {uri}: {str(exc).splitlines()[0]}{hint}") from None


def _number(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 3)


def predict_paths(inputs: list[str], model, batch: int = 32, refine: bool | None = None) -> Iterator[dict[str, Any]]:
    """One record per hole: the keypoints, or the reason the input could not be read (inputs that
    do not exist come first, then the holes in the order found)."""
    import pandas as pd

    from uos.dataset.build import discover
    from uos.holes import read_source

    paths, problems = discover(inputs)
    for problem in problems:
        yield _record(problem.source, None, None, problem.reasons[0])
    pending: list[tuple[str, Any]] = []

    def flush() -> Iterator[dict[str, Any]]:
        frame = pd.DataFrame(
            {
                "depth_mm": [h.signals["depth_mm"] for _, h in pending],
                "torque_a": [h.signals["torque_a"] for _, h in pending],
                "thrust_a": [h.signals["thrust_a"] for _, h in pending],
            }
        )
        result = model.predict(frame, params=None if refine is None else {"refine": refine})
        for (source, hole), (_, row) in zip(pending, result.iterrows(), strict=True):
            yield _record(source, hole.hole_id, row, None)
        pending.clear()

    for path in paths:
        try:
            hole = read_source(path)
        except InputError as exc:
            yield _record(str(path), None, None, exc.reason)
            continue
        if any(name not in hole.signals for name in ("depth_mm", "torque_a", "thrust_a")):
            yield _record(str(path), hole.hole_id, None, "missing signals: needs position, torque and thrust")
            continue
        pending.append((str(path), hole))
        if len(pending) >= batch:
            yield from flush()
    if pending:
        yield from flush()


def _record(source: str, hole_id: str | None, row, error: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"source": source, "hole_id": hole_id}
    for name in ("entry_mm", "transition_mm", "exit_mm", "thickness_mm"):
        record[name] = None if row is None else _number(row[name])
    record["error"] = error
    return record
