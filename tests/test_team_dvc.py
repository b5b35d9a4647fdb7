"""A team on one pipeline, with the real DVC, git and MLflow: project A runs the pipeline and
pushes to a DVC remote (a folder); a team-mate's clone B pulls and has nothing to reproduce, and
sees, through the team's tracking server (`mlflow server` on PostgreSQL), the champion A
promoted; experiments compare in `dvc exp show`, `dvc metrics diff` and `dvc plots diff`, because
their figures are committed to git (metrics/), never volatile, and leave `candidate` alone.

One project is trained once for the module (24 holes, 3 folds, 2 epochs, no ramp-fit refinement:
the plumbing is tested here, not the accuracy) and shared by the tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import servers
from test_pipeline_dvc import PROJECT_FILES, _run, make_project
from uos.summary import render_summary

STAGE_METRICS = {"metrics/parse.json", "metrics/label.json", "metrics/train.json"}
MEASURED = {"entry", "transition", "exit", "thickness"}


@pytest.fixture(scope="module")
def tracking_uri(request, tmp_path_factory) -> Iterator[str]:
    """The team's tracking server (`just mlflow-server` on a PostgreSQL database of this module's
    own), given to A and B through MLFLOW_TRACKING_URI. Where PostgreSQL is not installed (and
    UOS_REQUIRE_POSTGRES is not set, as it is in CI), one shared SQLite store stands in for it."""
    home = tmp_path_factory.mktemp("mlflow")
    if servers.postgres_bin() is None and not os.environ.get("UOS_REQUIRE_POSTGRES"):
        yield f"sqlite:///{home / 'mlflow.db'}"
        return
    database = servers.database(request.getfixturevalue("postgres_cluster"), "mlflow_team")
    with servers.mlflow_server(database, home / "artifacts") as server:
        yield server.url


@pytest.fixture(scope="module")
def team(tmp_path_factory, tracking_uri):
    """Project A, its pipeline run, pushed to a local DVC remote and committed; and the
    environment every command of the team runs with."""
    base = tmp_path_factory.mktemp("team")
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "UOS_CACHE_DIR": str(base / "parse-cache")}
    a = make_project(base / "a", [*PROJECT_FILES, ".gitignore"])
    params = a / "params.toml"
    quick = (
        params.read_text().replace("\nepochs = 20", "\nepochs = 2", 1).replace("\nrefine = true ", "\nrefine = false ")
    )
    assert "refine = false" in quick
    params.write_text(quick)
    assert _run(["dvc", "remote", "add", "-d", "team", str(base / "remote")], a).returncode == 0
    repro = _run(["dvc", "repro"], a, env)
    assert repro.returncode == 0, repro.stderr
    push = _run(["dvc", "push"], a)
    assert push.returncode == 0, push.stderr
    assert _run(["git", "add", "-A"], a).returncode == 0
    assert _run(["git", "commit", "-qm", "pipeline"], a).returncode == 0
    return {"a": a, "base": base, "env": env}


def _summary(project: Path, env: dict[str, str]) -> dict:
    result = _run(["uos", "summary", "--json"], project, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_metrics_are_committed_and_build_is_not(team):
    a = team["a"]
    committed = set(_run(["git", "ls-files", "metrics"], a).stdout.split())
    plots = ("predictions.csv", "error_histogram.csv", "learning_curve_mean.csv")
    assert committed == STAGE_METRICS | {f"metrics/plots/{name}" for name in plots}
    assert _run(["git", "check-ignore", "-q", "build/model/weights.pt"], a).returncode == 0
    assert _run(["git", "ls-files", "build"], a).stdout == ""
    # The run id, version and tracking URI are MLflow's, not in an output DVC tracks.
    details = json.loads((a / "build/model/details.json").read_text())
    assert "model" not in details and "run_id" not in json.dumps(details)


def test_a_clone_pulls_reproduces_nothing_and_sees_the_champion(team, tmp_path):
    a, env = team["a"], team["env"]
    b = tmp_path / "b"
    assert _run(["git", "clone", "-q", str(a), str(b)], tmp_path).returncode == 0
    from uos.training.data_version import _workspace_problem

    assert _workspace_problem(b) == "data/ is not here: `dvc pull` (or `dvc checkout data.dvc`) first"
    pull = _run(["dvc", "pull"], b)
    assert pull.returncode == 0, pull.stderr
    repro = _run(["dvc", "repro"], b, env)
    assert repro.returncode == 0, repro.stderr
    assert "Data and pipelines are up to date." in repro.stdout, repro.stdout
    assert "Data and pipelines are up to date." in _run(["dvc", "status"], b).stdout
    assert _run(["git", "status", "--porcelain"], b).stdout == ""

    # Trained again from the same inputs and seed, the model and its figures are the same files.
    again = _run(["dvc", "repro", "--force", "--single-item", "train"], b, env)
    assert again.returncode == 0, again.stderr
    assert _run(["git", "status", "--porcelain"], b).stdout == "", "dvc.lock or metrics/ changed"

    # A promotes; B, on the same tracking store, sees that champion with the figures A committed.
    promote = _run(["uos", "promote", "--force"], a, env)
    assert promote.returncode == 0, promote.stderr
    seen_by_b = _summary(b, env)
    champion = seen_by_b["model"]["versions"]["champion"]
    assert f"version {champion['version']} is now the champion" in promote.stderr
    assert champion["cv_mae"] == json.loads((a / "metrics/train.json").read_text())["cv_mae"]
    assert champion["answers"] and champion["answers_without_refine"]
    assert seen_by_b["parse"]["holes"] == 24 and seen_by_b["label"]["holes"] == 24 and seen_by_b["split"]["k"] == 3
    assert f"version {champion['version']} (champion" in render_summary(seen_by_b)
    assert _summary(b / "build" / "model", env) == seen_by_b  # from anywhere in the project


def _registry(uri: str) -> dict:
    """The candidate's version, and the versions registered by DVC experiments (by name)."""
    from mlflow.tracking import MlflowClient

    from uos.training import tracking

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions(f"name = '{tracking.MODEL_NAME}'")
    return {
        "candidate": client.get_model_version_by_alias(tracking.MODEL_NAME, tracking.CANDIDATE).version,
        "by_experiment": {
            v.tags[tracking.DVC_EXPERIMENT_TAG]: v.version for v in versions if tracking.DVC_EXPERIMENT_TAG in v.tags
        },
    }


def _exp_rows(table: list[dict]) -> dict[str, dict]:
    """`dvc exp show --json`: the data of the baseline commit and of each experiment, by name."""
    rows = {}
    for commit in table:
        if commit["rev"] == "workspace":
            continue
        rows[commit["rev"]] = commit["data"]
        for experiment in commit.get("experiments") or []:
            for rev in experiment["revs"]:
                rows[rev["name"]] = rev["data"]
    return rows


def test_experiments_compare_in_exp_show_metrics_diff_and_plots_diff(team):
    a, env = team["a"], team["env"]
    names = []
    for epochs in (1, 3):
        run = _run(["dvc", "exp", "run", "-S", f"params.toml:train.epochs={epochs}"], a, env)
        assert run.returncode == 0, run.stderr
        assert "Running stage 'train'" in run.stdout and "Running stage 'parse'" not in run.stdout
        names.append(run.stdout.split("Ran experiment(s): ")[1].split()[0])

    shown = _run(["dvc", "exp", "show", "--json"], a)
    assert shown.returncode == 0, shown.stderr
    rows = _exp_rows(json.loads(shown.stdout))
    assert len(rows) == 3 and set(names) < set(rows), rows.keys()
    for name, data in rows.items():
        assert set(data["metrics"]) == STAGE_METRICS, name
        for path, figures in data["metrics"].items():
            assert "error" not in figures and figures["data"], (name, path)
        assert set(data["metrics"]["metrics/train.json"]["data"]["cv_mae"]) == MEASURED
    epochs = {name: rows[name]["params"]["params.toml"]["data"]["train"]["epochs"] for name in names}
    assert sorted(epochs.values()) == [1, 3]
    # Each trial registered its version, tagged with its experiment, and left candidate alone.
    registry = _registry(team["env"]["MLFLOW_TRACKING_URI"])
    assert registry["by_experiment"].keys() == set(names)
    assert registry["candidate"] not in registry["by_experiment"].values()

    diff = _run(["dvc", "metrics", "diff", "HEAD", "--all", "--json"], a)
    assert diff.returncode == 0, diff.stderr
    changes = json.loads(diff.stdout)
    assert set(changes) == STAGE_METRICS
    assert changes["metrics/train.json"]["holes"]["old"] == changes["metrics/train.json"]["holes"]["new"] == 24

    titles = {next(iter(plot)) for plot in yaml.safe_load((a / "dvc.yaml").read_text())["plots"]}
    assert len(titles) == 3
    plots = _run(["dvc", "plots", "show", "--json"], a)
    assert plots.returncode == 0, plots.stderr
    assert set(json.loads(plots.stdout)["data"]) == titles  # only the charts defined, no default ones
    compared = _run(["dvc", "plots", "diff", "HEAD", names[0], "--json"], a)
    assert compared.returncode == 0, compared.stderr
    charts = json.loads(compared.stdout)["data"]
    assert set(charts) == titles
    for title in titles:
        values = charts[title][0]["content"]["data"]["values"]
        assert {value["rev"] for value in values} == {"HEAD", names[0]}, title
    # Each revision's own data: the baseline trained 2 epochs, the first experiment 1.
    curve = next(charts[title] for title in titles if title.startswith("Learning curve"))[0]["content"]["data"]
    drawn = {
        rev: sorted({value["epoch"] for value in curve["values"] if value["rev"] == rev}) for rev in ("HEAD", names[0])
    }
    assert drawn == {"HEAD": ["1", "2"], names[0]: ["1"]}
