"""The model `uos serve` answers with: loaded from the MLflow registry, swapped without a restart
when its alias moves, the old one kept when the new one fails to load."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from uos.errors import UosError, gist
from uos.holes.record import Hole


@dataclass(frozen=True)
class Loaded:
    uri: str
    name: str
    version: str
    python_model: Any  # the registered DepthModel, without MLflow's per-call schema checks


def _alias_target(uri: str) -> tuple[str, str] | None:
    """(name, alias) for `models:/NAME@ALIAS`, else None (a fixed version or path)."""
    if uri.startswith("models:/") and "@" in uri:
        name, alias = uri.removeprefix("models:/").split("@", 1)
        return name, alias
    return None


def resolve_version(uri: str) -> tuple[str, str]:
    """(model name, version) the URI points at now."""
    from uos.training import tracking

    target = _alias_target(uri)
    if target is None:
        if uri.startswith("models:/"):
            name, _, version = uri.removeprefix("models:/").partition("/")
            return name, version
        return uri, ""
    from mlflow.exceptions import MlflowException

    try:
        version = tracking.client().get_model_version_by_alias(*target)
    except MlflowException as exc:
        raise UosError(f"cannot load model {uri}: {gist(exc, sentence=True, limit=300)}") from None
    return target[0], str(version.version)


def load(uri: str, runtime: str = "torch") -> Loaded:
    import pickle

    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    name, version = resolve_version(uri)
    fixed = f"models:/{name}/{version}" if _alias_target(uri) else uri
    try:
        model = mlflow.pyfunc.load_model(fixed, model_config={"runtime": runtime})
    # ValueError: a model from before confidence and status; RuntimeError, UnpicklingError and
    # EOFError: torch on a damaged weights file; YAMLError: a damaged MLmodel; ImportError and
    # SyntaxError: its code (models from code) damaged or for another uos.
    except (
        MlflowException,
        OSError,
        ValueError,
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        yaml.YAMLError,
        ImportError,
        SyntaxError,
    ) as exc:
        raise UosError(f"cannot load model {fixed}: {gist(exc, sentence=True, limit=300)}") from None
    from uos.training.runtimes import check_runtime

    python_model = model.unwrap_python_model()
    check_runtime(python_model, runtime, fixed)
    return Loaded(uri, name, version, python_model)


def warm_up_hole() -> Hole:
    """One synthetic hole: realistic input for warming a model (and the reading path) up."""
    from uos.synth.generate import build_hole
    from uos.synth.params import SynthParams
    from uos.synth.plan import plan_fleet

    params = SynthParams(holes=1)
    return build_hole(plan_fleet(params)[0], params)[0]


class ModelHolder:
    """The current model; `check()` swaps in the alias's new version when it moved.

    Every model is warmed up before it answers: torch prepares its kernels on the first call of
    each batch size (~12 ms each), which would otherwise stall the first holes served by ~0.3 s."""

    def __init__(self, uri: str, refine: bool | None = None, log=None, warm_batches: int = 0, runtime: str = "torch"):
        from uos.training.runtimes import one_thread

        one_thread(runtime)  # the workers are the parallelism; one intra-op thread each
        self.runtime = runtime
        self.uri = uri
        self.refine = refine
        self.log = log or (lambda **event: None)
        self.warm_batches = warm_batches
        self.warm_hole = warm_up_hole()
        self.current = self._warmed(load(uri, runtime))
        self._lock = threading.Lock()
        self._failed: str | None = None  # a version that would not load: not retried

    def _warmed(self, loaded: Loaded) -> Loaded:
        for size in range(1, self.warm_batches + 1):
            signals = self.warm_hole.signals
            self._predict(loaded, [(signals["depth_mm"], signals["torque_a"], signals["thrust_a"])] * size)
        return loaded

    def predict(self, signals: list[tuple[np.ndarray, np.ndarray, np.ndarray]], contexts=None) -> tuple[Loaded, list]:
        """The model that answered, and an `infer.Answer` per hole."""
        loaded = self.current
        return loaded, self._predict(loaded, signals, contexts)

    def _predict(self, loaded: Loaded, signals: list[tuple[np.ndarray, np.ndarray, np.ndarray]], contexts=None) -> list:
        return loaded.python_model.answer(signals, contexts, self.refine)

    def check(self) -> bool:
        """Follow the alias: load its new version and swap; on failure keep the old and say so."""
        if _alias_target(self.uri) is None:
            return False
        with self._lock:
            try:
                name, version = resolve_version(self.uri)
            except UosError as exc:
                self.log(event="model-check-failed", reason=str(exc))
                return False
            if version in (self.current.version, self._failed):
                return False
            try:
                loaded = self._warmed(load(f"models:/{name}/{version}", self.runtime))
            except Exception as exc:  # whatever breaks loading or warming it up: keep the old model
                self._failed = version
                self.log(event="model-load-failed", version=version, kept=self.current.version, reason=str(exc))
                return False
            previous = self.current.version
            self.current = Loaded(self.uri, name, version, loaded.python_model)
            self.log(event="model-switched", model=name, previous=previous, version=version)
            return True
