"""MLflow: where runs are tracked, the data lineage each run records, the registry.

The tracking URI defaults to a SQLite file at the project's root (`mlflow.db`, artifacts in
`mlruns/`), so that nothing needs a server and a DVC experiment run in a temporary copy of the
project (`dvc exp run --queue` or `--temp`) still tracks into the project's store;
`MLFLOW_TRACKING_URI` points a team at a shared tracking server.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uos.errors import UosError, gist

MODEL_NAME = "uos-depth"
EXPERIMENT = "uos-depth"  # the MLflow experiment, unless MLFLOW_EXPERIMENT_NAME or --experiment says otherwise
CANDIDATE, CHAMPION = "candidate", "champion"
DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@{CHAMPION}"
# MLflow 3's UI opens an experiment without this tag on its GenAI overview, not on its runs.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
DATA_VERSION_ENV = "UOS_DATA_VERSION"  # names the data a run trains on, when no git tag does
DVC_EXPERIMENT_TAG = "dvc_experiment"  # on a run and its model version: the DVC experiment it ran in


def project_root(start: Path | None = None) -> Path:
    """The project's folder: `DVC_ROOT` when DVC runs the command (for a queued or temporary
    experiment DVC points it at the project, not at the temporary copy), else the nearest folder
    from `start` (default: the current one) up that holds dvc.yaml or .dvc/, else `start`."""
    if env := os.environ.get("DVC_ROOT"):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() or (folder / ".dvc").is_dir():
            return folder
    return here


def tracking_uri(root: Path | None = None) -> str:
    """MLFLOW_TRACKING_URI, else the project's own store; a relative SQLite path (MLflow's docs'
    `sqlite:///mlflow.db`) is the project root's, not the current folder's (a queued DVC
    experiment runs in a temporary copy, deleted with its store)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and not env.startswith("sqlite:///"):
        return env
    root = (root or project_root()).resolve()
    path = Path(env.removeprefix("sqlite:///")) if env else Path("mlflow.db")
    return f"sqlite:///{path if path.is_absolute() else root / path}"


def experiment_name(option: str | None = None) -> str:
    """The MLflow experiment runs go to: the command's option, else MLFLOW_EXPERIMENT_NAME, else uos-depth."""
    return option or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT


def configure(root: Path | None = None) -> str:
    """Point MLflow at the project's store (quietly: its start-up chatter is not for users),
    checked to answer: what reading the registry and the runs needs."""
    import warnings

    # The model's signature is declared; MLflow's advice to add an input example is not for users.
    warnings.filterwarnings("ignore", message=".*input example was not provided.*")
    warnings.filterwarnings("ignore", message=".*dataset source can be interpreted in multiple ways.*")
    warnings.filterwarnings("ignore", message=".*Inferred schema contains integer column.*")
    root = project_root(root)
    uri = tracking_uri(root)
    if "MLFLOW_TRACKING_URI" not in os.environ:  # the project's own store: it moves with the project
        from uos.training.relocate import follow_moved_project

        follow_moved_project(root / "mlflow.db", root / "mlruns")
    use_store(uri)
    return uri


def configure_runs(root: Path | None = None, experiment: str | None = None) -> str:
    """`configure`, and the experiment new runs go to (`experiment_name`), created when missing."""
    uri = configure(root)
    _use_experiment(experiment_name(experiment), uri)
    return uri


def use_store(uri: str) -> None:
    """Point MLflow's tracking and registry at `uri`, quietly (its start-up chatter is not for
    users), once it is known to answer (`reachable`); nothing is created or changed in the store."""
    import logging

    reachable(uri)

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # With a tracking server MLflow writes "View run ... at: URL" to stdout, which is for data.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


REACH_TIMEOUT_S = 5.0  # a server that does not answer this soon is down (MLflow itself retries for minutes)


def shown_uri(uri: str) -> str:
    """A store's URI fit to print: its password, if any, hidden."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not parts.password:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def reachable(uri: str) -> None:
    """A UosError, at once, when the store cannot be used: a tracking server or database that
    does not answer, a scheme MLflow has no store for. (Left to MLflow, a server that is down
    costs about four minutes of retries and a traceback.)"""
    scheme = uri.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        import urllib.request

        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=REACH_TIMEOUT_S):
                return
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UosError(
                f"the MLflow tracking server {shown_uri(uri)} does not answer ({reason}): is it running, and the "
                "SSH tunnel to it open? (MLFLOW_TRACKING_URI)"
            ) from None
    elif scheme.split("+")[0] in ("postgresql", "mysql", "mssql"):
        _database_answers(uri)
    elif scheme not in ("sqlite", "file", "databricks") and "://" in uri:
        raise UosError(f"MLFLOW_TRACKING_URI {shown_uri(uri)}: MLflow has no store for {scheme}:// URIs")


def _database_answers(uri: str) -> None:
    import sqlalchemy

    arguments = {"connect_timeout": int(REACH_TIMEOUT_S)} if uri.startswith("postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=arguments)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # the drivers' own errors (psycopg, ...), wrapped by SQLAlchemy or not
        reached = gist(getattr(exc, "orig", None) or exc, limit=300)
        raise UosError(f"the MLflow database {shown_uri(uri)} cannot be reached: {reached}") from None


def _use_experiment(name: str, uri: str) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    found = mlflow.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "deleted":
        raise UosError(
            f"the MLflow experiment {name!r} was deleted: restore it (mlflow experiments restore --experiment-id "
            f"{found.experiment_id}) or choose another (--experiment or MLFLOW_EXPERIMENT_NAME)"
        )
    if found is None:
        # A SQLite store keeps artifacts beside the database file (a tracking server keeps its own).
        artifacts = None
        if uri.startswith("sqlite:///"):
            artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").resolve().as_uri()
        try:
            client().create_experiment(name, artifacts, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:  # created meanwhile by another run (queued experiments run in parallel)
            if mlflow.get_experiment_by_name(name) is None:
                raise
    elif EXPERIMENT_KIND_TAG not in found.tags:
        client().set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    mlflow.set_experiment(name)


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


def git_output(root: Path, *args: str) -> str | None:
    """A git command's output, or None when git or the repository is not there."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def tag_of_data(data_md5: str, project: Path) -> str | None:
    """The oldest git tag of the project whose data.dvc records `data_md5`, or None."""
    import yaml

    tags = (
        git_output(project, "for-each-ref", "--sort=creatordate", "--format=%(refname:short)", "refs/tags") or ""
    ).split()
    if not tags:
        return None
    # One `git cat-file --batch` for every tag: "<sha> blob <size>" and the text, or "<name> missing".
    asked = "".join(f"{tag}:data.dvc\n" for tag in tags).encode()
    out = subprocess.run(["git", "cat-file", "--batch"], cwd=project, input=asked, capture_output=True).stdout
    for tag in tags:
        header, _, out = out.partition(b"\n")
        if header and not header.endswith(b"missing"):
            size = int(header.split()[-1])
            text, out = out[:size], out[size + 1 :]
            outs = (yaml.safe_load(text) or {}).get("outs") or [{}]
            if outs[0].get("md5") == data_md5:
                return tag
    return None


def lineage(root: Path | None = None) -> dict[str, Any]:
    """What a run was made from: DVC hashes of data/ and of the labels, the git commit, the data
    version (`UOS_DATA_VERSION`, else the git tag of the same data, else its md5) and, in a DVC
    experiment, its name and baseline commit. `root` is the folder the pipeline runs in (a
    temporary copy for a queued experiment); tags are the project's."""
    root = (root or Path.cwd()).resolve()
    facts: dict[str, Any] = {
        "data_md5": _dvc_md5(root, "data"),
        "labels_md5": _dvc_md5(root, "build/labels/labels.parquet"),
        "parsed_md5": _dvc_md5(root, "build/parsed/holes.parquet"),
    }
    commit = git_output(root, "rev-parse", "HEAD")
    # The pipeline's own outputs are no inputs: DVC removes a stage's outputs (metrics/, git-tracked)
    # before it runs it, and rewrites dvc.lock after each stage.
    products = [f":(exclude){path}" for path in ("dvc.lock", *pipeline_outputs(root))]
    dirty = git_output(root, "status", "--porcelain", "--untracked-files=no", "--", ".", *products)
    facts["git_commit"] = None if commit is None else commit + ("-dirty" if dirty else "")
    version = os.environ.get(DATA_VERSION_ENV) or (
        facts["data_md5"] and (tag_of_data(facts["data_md5"], project_root(root)) or facts["data_md5"])
    )
    extra = {
        "data_version": version,
        DVC_EXPERIMENT_TAG: os.environ.get("DVC_EXP_NAME"),
        "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV"),
    }
    return facts | {k: v for k, v in extra.items() if v}


def pipeline_outputs(root: Path) -> list[str]:
    """The paths every stage of dvc.yaml writes (outs, metrics, plots)."""
    import yaml

    try:
        stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        return []
    return [
        next(iter(entry)) if isinstance(entry, dict) else str(entry)
        for stage in stages.values()
        for kind in ("outs", "metrics", "plots")
        for entry in stage.get(kind) or []
    ]


def run_tags(facts: dict[str, Any]) -> dict[str, str]:
    """The lineage as run tags, with MLflow's own tag for the commit (the UI links it)."""
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

    tags = {k: str(v) for k, v in facts.items()}
    if facts.get("git_commit"):
        tags[MLFLOW_GIT_COMMIT] = facts["git_commit"].removesuffix("-dirty")
    return tags


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


@dataclass(frozen=True)
class Promotion:
    """What `promote` did: whether the version became the champion, whether it was refused
    because it regresses, and why."""

    promoted: bool
    regressed: bool
    version: str
    reason: str


def _model_version(version: str | None):
    """The version asked for, else the candidate."""
    from mlflow.exceptions import MlflowException

    if version is None:
        found = version_for_alias(CANDIDATE)
        if found is None:
            raise UosError(
                f"no {CANDIDATE} version of {MODEL_NAME} in the registry: run `uos train` first "
                "(or `uos promote --version N` for a DVC experiment's version)"
            )
        return found
    try:
        return client().get_model_version(MODEL_NAME, str(version))
    except MlflowException:
        raise UosError(f"no version {version} of {MODEL_NAME} in the registry") from None


def _regressions(new: dict[str, float], old: dict[str, float]) -> list[str]:
    """How the new cross-validated figures are worse: a larger MAE, or a larger share of gross
    errors among the out-of-fold `ok` answers (a wrong number given with confidence is the worst)."""
    worse = [
        f"{key.removeprefix('cv_').removesuffix('_mae_mean')} {new[key]:.3f} > {old[key]:.3f} mm"
        for key in sorted(new)
        if key.endswith("_mae_mean") and key in old and new[key] > old[key] + 1e-9
    ]
    for path in ("cv_answers", "cv_answers_without_refine"):
        share_new, share_old = _gross_share(new, path), _gross_share(old, path)
        if share_new is not None and share_old is not None and share_new > share_old + 1e-12:
            worse.append(f"gross errors among {path[3:].replace('_', ' ')} ok {share_new:.2%} > {share_old:.2%}")
    return worse


def promote(force: bool = False, version: str | None = None) -> Promotion:
    """Move `champion` to the candidate (or to `version`, e.g. a DVC experiment's), unless it
    regresses against the champion; `force` promotes anyway."""
    chosen = _model_version(version)
    number = str(chosen.version)
    champion = version_for_alias(CHAMPION)
    if champion is not None and str(champion.version) == number:
        return Promotion(
            promoted=False, regressed=False, version=number, reason=f"version {number} is already the {CHAMPION}"
        )
    if champion is None:
        reason = "there was no champion yet"
    elif force:
        reason = "forced"
    elif worse := _regressions(version_metrics(chosen), version_metrics(champion)):
        return Promotion(
            promoted=False,
            regressed=True,
            version=number,
            reason=f"not promoted: version {number} regresses against {CHAMPION} "
            f"version {champion.version} ({'; '.join(worse)}); use --force to promote anyway",
        )
    else:
        reason = f"no cross-validated error worse than version {champion.version}'s"
    client().set_registered_model_alias(MODEL_NAME, CHAMPION, number)
    return Promotion(
        promoted=True, regressed=False, version=number, reason=f"version {number} is now the {CHAMPION} ({reason})"
    )
