"""Shared fixtures: the real files in ../shared (read in place), an isolated parse cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _shared() -> Path:
    """The real files: $UOS_SHARED, else ../shared beside the project (as on the team's machines)."""
    if env := os.environ.get("UOS_SHARED"):
        return Path(env).resolve()
    for candidate in (ROOT.parent / "shared", Path("/work/shared")):
        if candidate.is_dir():
            return candidate.resolve()
    return (ROOT.parent / "shared").resolve()


SHARED = _shared()
SETITEC = SHARED / "setitec"
MQTT = SHARED / "mqtt"


def _require_shared() -> None:
    if not SETITEC.is_dir():
        message = f"real files not found at {SHARED} (set UOS_SHARED)"
        if os.environ.get("UOS_REQUIRE_SHARED"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test parses with its own cache, so that no test sees another's results."""
    monkeypatch.setenv("UOS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def setitec_dir() -> Path:
    _require_shared()
    return SETITEC


@pytest.fixture(scope="session")
def mqtt_dir() -> Path:
    _require_shared()
    return MQTT


@pytest.fixture(scope="session")
def real_dataset(tmp_path_factory):
    """Every real Setitec file and MQTT capture parsed once for the session."""
    _require_shared()
    from uos.dataset.build import parse_dataset

    out = tmp_path_factory.mktemp("real-dataset")
    summary = parse_dataset([str(SETITEC), str(MQTT)], out, cache_root=tmp_path_factory.mktemp("real-cache"))
    return summary


def labelled_project(root: Path) -> Path:
    """A small parsed and labelled dataset in `root` (10 synthetic holes, two heads): what the
    annotation tests review."""
    import dataclasses

    from uos.dataset.build import parse_dataset
    from uos.labels.label import label_dataset
    from uos.synth.generate import synthesize
    from uos.synth.params import SynthParams

    synthesize(root / "raw", dataclasses.replace(SynthParams(), holes=10, seed=4))
    parse_dataset([str(root / "raw")], root / "parsed", cache_root=root / "cache")
    label_dataset(root / "parsed", root / "labels")
    return root


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster for the session (skipped without PostgreSQL, unless
    UOS_REQUIRE_POSTGRES is set); the URI of its first database. Modules make their own databases
    on it (`servers.database`)."""
    import servers

    servers.require_postgres()
    with servers.postgres() as uri:
        yield uri


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """A model trained once for the session on a few synthetic holes, registered twice (versions
    1 and 2, the same files), v1 the champion, in a SQLite store of its own: what the serving and
    model tests answer with. Tests that move an alias put it back."""
    import dataclasses

    from uos.dataset.build import parse_dataset
    from uos.labels.label import label_dataset
    from uos.synth.generate import synthesize
    from uos.synth.params import SynthParams
    from uos.training import tracking
    from uos.training.folds import SplitParams, split_dataset
    from uos.training.run import run_training
    from uos.training.train import TrainParams

    home = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        raw = home / "raw"
        synthesize(raw, dataclasses.replace(SynthParams(), holes=30, seed=5, production_tool_life=6, lab_tool_life=6))
        parse_dataset([str(raw)], home / "parsed", cache_root=home / "cache")
        label_dataset(home / "parsed", home / "labels")
        split_dataset(home / "parsed", home / "labels", home / "folds", SplitParams(k=2, life_block=0))
        parts = [home / "parsed", home / "labels", home / "folds", home / "model"]
        run_training(*parts, TrainParams(epochs=20, batch_size=16), root=home)
        tracking.configure()
        client = tracking.client()
        first = client.get_model_version(tracking.MODEL_NAME, "1")
        client.create_model_version(tracking.MODEL_NAME, source=first.source, run_id=first.run_id)
        client.set_registered_model_alias(tracking.MODEL_NAME, tracking.CHAMPION, "1")
    return {"home": home, "uri": uri, "raw": raw, "files": answerable(sorted(raw.glob("*.xls")))}


@pytest.fixture
def registry_store(registry, monkeypatch):
    """MLFLOW_TRACKING_URI at the session's registry for one test (and the commands it runs)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    return registry


def answerable(files: list[Path]) -> list[Path]:
    """The files whose hole passes the gate (a synthetic air cut is answered on the error topic):
    tests that count answers count these."""
    from uos.holes import read_source
    from uos.holes.quality import QualityRules, unanswerable

    return [path for path in files if unanswerable(read_source(path).signals, QualityRules()) is None]
