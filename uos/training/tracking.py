"""MLflow: where runs are tracked, the data lineage each run records, the registry.

The tracking URI defaults to a SQLite file in the project (`mlflow.db`, artifacts in `mlruns/`),
so that nothing needs a server; `MLFLOW_TRACKING_URI` points a team at a shared tracking server.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from uos.errors import UosError

MODEL_NAME = "uos-depth"
EXPERIMENT = "uos-depth"
CANDIDATE, CHAMPION = "candidate", "champion"
DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@{CHAMPION}"


def tracking_uri(root: Path | None = None) -> str:
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    root = (root or Path.cwd()).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def configure(root: Path | None = None) -> str:
    """Point MLflow at the project's store (quietly: its start-up chatter is not for users)."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # The model's signature is declared; MLflow's advice to add an input example is not for users.
    warnings.filterwarnings("ignore", message=".*input example was not provided.*")
    warnings.filterwarnings("ignore", message=".*dataset source can be interpreted in multiple ways.*")
    warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column.*")
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None and uri.startswith("sqlite:///"):
        # Artifacts beside the database file (a tracking server keeps its own).
        artifacts = Path(uri.removeprefix("sqlite:///")).parent / "mlruns"
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts.resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)
    return uri


def _dvc_md5(root: Path, path: str) -> str | None:
    """The md5 DVC recorded for an output path, in dvc.lock or a .dvc file."""
    import yaml

    lock = root / "dvc.lock"
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []) + stage.get("deps", []):
                if out.get("path") == path:
                    return out.get("md5")
    dvc_file = root / f"{path}.dvc"
    if dvc_file.exists():
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", [])
        if outs:
            return outs[0].get("md5")
    return None


def lineage(root: Path | None = None) -> dict[str, Any]:
    """What a run was made from: DVC hashes of data/ and of the labels, and the git commit."""
    root = (root or Path.cwd()).resolve()
    facts: dict[str, Any] = {
        "data_md5": _dvc_md5(root, "data"),
        "labels_md5": _dvc_md5(root, "build/labels/labels.parquet"),
        "parsed_md5": _dvc_md5(root, "build/parsed/holes.parquet"),
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        facts["git_commit"] = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        facts["git_commit"] = None
    return facts


def client():
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def version_for_alias(alias: str):
    """The model version an alias points to, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(MODEL_NAME, alias)
    except MlflowException:
        return None


def version_metrics(version) -> dict[str, float]:
    """The cross-validation figures of the run that produced a model version."""
    run = client().get_run(version.run_id)
    return {k: v for k, v in run.data.metrics.items() if k.startswith("cv_")}


def _gross_share(metrics: dict[str, float], path: str) -> float | None:
    """Gross errors per ok answer out of fold (None: a run from before answers had a status)."""
    holes, gross = metrics.get(f"{path}_ok_holes"), metrics.get(f"{path}_ok_gross")
    return None if not holes or gross is None else gross / holes


def promote(force: bool = False) -> tuple[bool, str]:
    """Move `champion` to the current candidate, unless it regresses: a cross-validated MAE worse,
    or a larger share of gross errors among its out-of-fold `ok` answers."""
    candidate = version_for_alias(CANDIDATE)
    if candidate is None:
        raise UosError(f"no {CANDIDATE} version of {MODEL_NAME} in the registry: run `uos train` first")
    champion = version_for_alias(CHAMPION)
    if champion is not None and champion.version == candidate.version:
        return False, f"version {candidate.version} is already the {CHAMPION}"
    new = version_metrics(candidate)
    reason = ""
    if champion is not None and not force:
        old = version_metrics(champion)
        worse = [
            f"{key[3:-8]} {new[key]:.3f} > {old[key]:.3f} mm"
            for key in sorted(new)
            if key.endswith("_mae_mean") and key in old and new[key] > old[key] + 1e-9
        ]
        # A wrong number given with confidence is the worst answer: a larger share of them among
        # the ok answers is a regression.
        for path in ("cv_answers", "cv_answers_without_refine"):
            share_new, share_old = _gross_share(new, path), _gross_share(old, path)
            if share_new is not None and share_old is not None and share_new > share_old + 1e-12:
                worse.append(f"gross errors among {path[3:].replace('_', ' ')} ok {share_new:.2%} > {share_old:.2%}")
        if worse:
            return False, (f"not promoted: version {candidate.version} regresses against {CHAMPION} version "
                           f"{champion.version} ({'; '.join(worse)}); use --force to promote anyway")  # fmt: skip
        reason = f"no cross-validated error worse than version {champion.version}'s"
    elif champion is not None:
        reason = "forced"
    else:
        reason = "there was no champion yet"
    client().set_registered_model_alias(MODEL_NAME, CHAMPION, candidate.version)
    return True, f"version {candidate.version} is now the {CHAMPION} ({reason})"
