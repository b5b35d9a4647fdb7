"""What an annotation session did, versioned with DVC and logged as one MLflow run.

At the end of `uos annotate`: when the annotations folder lies in a DVC-tracked folder (`data/`,
tracked by `data.dvc`), DVC's own `add` records the new version of that folder; then one run in
the MLflow experiment `uos-annotation` (beside the training runs, not among them) holds who
annotated, how many holes were reviewed, changed, accepted and rejected, how fast, how far the
moved keypoints went, and the DVC md5 of the annotations folder and of `data/`. Neither DVC nor
MLflow is imported until a session ends (`uos --help` stays light). A session that reviewed
nothing versions and logs nothing; a tracking server out of reach loses nothing (the annotations
are saved as they are made) and costs one warning line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from uos.errors import gist

EXPERIMENT = "uos-annotation"
# A tracking server out of reach: give up in seconds, not after MLflow's minutes of retries.
QUICK_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


@dataclass(frozen=True)
class SessionStats:
    """One session, hole by hole against how each hole was when the session opened. A hole whose
    changes were all undone was not reviewed."""

    annotator: str
    filter: str
    changed: int  # a keypoint moved, marked absent or set where there was none, versus what was shown
    accepted: int  # decided as shown (accepted as labelled)
    rejected: int
    seconds: float  # wall time from opening the session to its end
    shifts_mm: tuple[float, ...] = ()  # how far each moved keypoint went

    @property
    def reviewed(self) -> int:
        return self.changed + self.accepted + self.rejected

    @property
    def moved(self) -> int:
        return len(self.shifts_mm)

    @property
    def mean_shift_mm(self) -> float | None:
        return sum(self.shifts_mm) / len(self.shifts_mm) if self.shifts_mm else None

    @property
    def holes_per_minute(self) -> float:
        return self.reviewed / (self.seconds / 60.0) if self.seconds > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """The run's metrics (no mean shift when no keypoint moved: it has no value then)."""
        metrics = {
            "holes_reviewed": self.reviewed,
            "holes_changed": self.changed,
            "holes_accepted": self.accepted,
            "holes_rejected": self.rejected,
            "session_minutes": round(self.seconds / 60.0, 3),
            "holes_per_minute": round(self.holes_per_minute, 3),
            "keypoints_moved": self.moved,
        }
        if self.mean_shift_mm is not None:
            metrics["mean_shift_mm"] = round(self.mean_shift_mm, 4)
        return {key: float(value) for key, value in metrics.items()}


@dataclass(frozen=True)
class DataVersion:
    """What DVC recorded for the annotations once added."""

    dvc_file: str  # the .dvc file that tracks them (data.dvc), relative to the DVC repo
    data_md5: str  # the md5 it records for its folder (data/)
    annotations_md5: str  # the annotations folder's own tree: what `dvc add` of it would record


def version_with_dvc(annotations_dir: Path) -> DataVersion | None:
    """Run DVC's add on the tracked folder that holds `annotations_dir` (`dvc add data`) and
    return the md5s it recorded; None when the folder is in no DVC repo or in no folder that a
    .dvc file tracks. The annotations' md5 is their sub-tree of the recorded `data/` tree, hashed
    by DVC (`Tree.get_obj`), so it is the very version `data.dvc` points to."""
    from dvc.exceptions import NotDvcRepoError, OutputNotFoundError
    from dvc.repo import Repo

    annotations_dir = Path(os.path.abspath(annotations_dir))  # (as DVC has its paths: links kept)
    try:
        root = Repo.find_root(str(annotations_dir))
    except NotDvcRepoError:
        return None
    with Repo(root) as repo, _quiet_dvc():
        try:
            outs = repo.find_outs_by_path(str(annotations_dir), strict=False)
        except OutputNotFoundError:
            return None
        tracked = [out for out in outs if out.stage.is_data_source]  # a .dvc file, not a pipeline output
        if not tracked:
            return None
        (stage,) = repo.add([tracked[0].fs_path])
        out = stage.outs[0]
        dvc_file, recorded = os.path.relpath(stage.path, root), out.hash_info.value
        inside = annotations_dir.relative_to(out.fs_path).parts
        if not inside:  # the annotations are the tracked folder itself
            return DataVersion(dvc_file, recorded, recorded)
        tree = out.get_dir_cache()
        sub = tree.get_obj(out.cache, inside) if tree is not None else None
        return DataVersion(dvc_file, recorded, sub.hash_info.value if sub is not None else _empty_tree_md5())


@contextmanager
def _quiet_dvc() -> Iterator[None]:
    """DVC's warnings only, as `dvc add --quiet` (no progress bars; our own line says what to commit)."""
    import logging

    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _empty_tree_md5() -> str:
    """A folder with no file (DVC versions files, not folders): `dvc add` records this."""
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    tree.digest()
    return tree.hash_info.value


@contextmanager
def _quick_http() -> Iterator[None]:
    """MLflow's HTTP settings for an end of session: the user's own where set, else quick."""
    saved = {name: os.environ.get(name) for name in QUICK_HTTP}
    for name, value in QUICK_HTTP.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def log_session(stats: SessionStats, dataset: str, annotations_dir: str, version: DataVersion | None) -> str:
    """One finished MLflow run for the session, timed as it was (the UI's duration is the
    session's); returns its id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from uos.training import tracking

    # The experiment is made as training's are: artifacts beside the store, the UI on its runs.
    tracking.configure_runs(experiment=EXPERIMENT)
    client = MlflowClient()
    ended = int(time.time() * 1000)
    started = ended - int(stats.seconds * 1000)
    tags = {"annotator": stats.annotator, "dataset": dataset, "mlflow.user": stats.annotator}
    tags["mlflow.source.name"] = "uos annotate"
    if version is not None:  # (data_md5: the tag training runs carry for the data they used)
        tags |= {"dvc_file": version.dvc_file, "data_md5": version.data_md5}
    name = f"{stats.annotator} {datetime.fromtimestamp(started / 1000):%Y-%m-%d %H:%M}"
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    run = client.create_run(experiment_id, start_time=started, tags=tags, run_name=name)
    run_id = run.info.run_id
    params = {"filter": stats.filter, "annotations": annotations_dir}
    if version is not None:
        params["annotations_md5"] = version.annotations_md5
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, ended, 0) for key, value in stats.metrics().items()],
        params=[Param(key, str(value)) for key, value in params.items()],
        tags=[RunTag("mlflow.note.content", _note(stats, version))],
    )
    client.set_terminated(run_id, "FINISHED", end_time=ended)
    return run_id


def _note(stats: SessionStats, version: DataVersion | None) -> str:
    """The run's description, as the UI shows it."""
    shift = f", moved keypoints {stats.mean_shift_mm:.3f} mm on average" if stats.mean_shift_mm is not None else ""
    text = (
        f"{stats.annotator} reviewed {stats.reviewed} holes in {stats.seconds / 60:.1f} min: "
        f"{stats.changed} changed, {stats.accepted} accepted, {stats.rejected} rejected{shift}."
    )
    if version is not None:
        text += f" Annotations md5 {version.annotations_md5} ({version.dvc_file}: {version.data_md5})."
    return text


def finish_session(stats: SessionStats, dataset: str | Path, annotations_dir: str | Path) -> list[str]:
    """Version the annotations with DVC and log the session in MLflow; the lines to tell the
    user. Failures of either become a warning line: the annotations are already saved."""
    if stats.reviewed == 0:
        return ["Nothing reviewed in this session: nothing versioned, no MLflow run."]
    lines = []
    version = None
    try:
        version = version_with_dvc(Path(annotations_dir))
    except Exception as exc:  # DVC's errors, a lock held by another command, a full disk: say which
        lines.append(f"Warning: {annotations_dir} not versioned by DVC ({_reason(exc)}); run `dvc add` on it.")
    if version is not None:
        lines.append(
            f"{version.dvc_file} updated by DVC (annotations md5 {version.annotations_md5}): "
            f"commit it with git to share this version."
        )
    from uos.training import tracking

    try:
        with _quick_http():
            run_id = log_session(stats, str(dataset), str(annotations_dir), version)
    except Exception as exc:  # any reason MLflow could not take the run: the session is not lost
        lines.append(
            f"Warning: this session was not tracked in MLflow ({tracking.tracking_uri()}: {_reason(exc)}); "
            "your annotations are saved."
        )
        return lines
    lines.append(
        f"Session logged in MLflow (experiment {EXPERIMENT}, run {run_id}): {stats.reviewed} holes reviewed, "
        f"{stats.changed} changed, {stats.accepted} accepted, {stats.rejected} rejected, "
        f"{stats.holes_per_minute:.1f} holes/min."
    )
    return lines


def _reason(exc: BaseException) -> str:
    """The root of an error, in a line: a connection refused, not the URL of each layer around it."""
    while (inner := exc.__cause__ or exc.__context__) is not None and str(inner).strip():
        exc = inner
    return gist(exc)
