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
