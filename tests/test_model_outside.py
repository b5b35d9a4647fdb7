"""The registered model outside uos: loaded by MLflow where uos is not installed, served over HTTP
by `mlflow models serve`, and its network run by ONNX Runtime; each gives the answers `uos
predict` gives. The session's registry (conftest.py), real files from ../shared."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import envs
import servers
from uos.serve.broker import free_port

pytestmark = pytest.mark.usefixtures("registry_store")

MODEL = "models:/uos-depth/1"
REAL = [  # a file of each kind the shared folders hold, and two that cannot have an answer
    "mql/E00401009F45C395_114-V3-002-MQ_ST_1874_1.xls",
    "tuhh/001_V1/V1_001.xls",
    "tuhh/005_V5/V5_10.xls",  # an air cut
    "misc/23120040_23120040_ST_2409_59.xls",
    "misc/23120040_23120040_ST_2412_60.xls",  # stops 0.7 mm into the stack
    "mdb/17070141_17070141_ST_753_55.xls",
]
ANSWER = [  # the fields of an answer, as `uos predict` gives them
    "entry_mm",
    "transition_mm",
    "exit_mm",
    "top_layer_mm",
    "bottom_layer_mm",
    "thickness_mm",
    "grip_code",
    "entry_confidence",
    "transition_confidence",
    "exit_confidence",
    "status",
    "review_reasons",
    "error",
]


def _predicted(paths: list[Path], *args: str) -> list[dict]:
    result = subprocess.run(
        ["uos", "predict", *map(str, paths), "--model", MODEL, *args],
        env=servers.venv_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1) and result.stdout, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def _rows(paths: list[Path]) -> list[dict]:
    """A hole per file as the model's input: its raw signals and what is known of it."""
    from uos.holes import read_source
    from uos.training.infer import context_of

    rows = []
    for path in paths:
        hole = read_source(path)
        context = context_of(hole)
        row = {name: hole.signals[name].astype(float).tolist() for name in ("depth_mm", "torque_a", "thrust_a")}
        rows.append(row | {"program_family": context.family, "unit": context.unit})
    return rows


@pytest.fixture(scope="module")
def model_folder(registry, tmp_path_factory) -> Path:
    """The registered version as MLflow keeps it (MLmodel, code, artifacts, requirements)."""
    import mlflow

    from uos.training import tracking

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
        tracking.configure()
        return Path(mlflow.artifacts.download_artifacts(MODEL, dst_path=str(tmp_path_factory.mktemp("model"))))


# --- a self-contained model --------------------------------------------------------------------

OUTSIDE = """
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = json.load(open(sys.argv[2]))
print(model.predict(pd.DataFrame(rows)).to_json(orient="records"))
"""


@pytest.fixture(scope="module")
def outside(model_folder, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An environment of only MLflow and what the model declares (every one a PyPI release; no
    uos): its python, and a bare environment to run it in."""
    declared = (model_folder / "requirements.txt").read_text().split()
    names = {line.split("==")[0] for line in declared}
    assert names == {"mlflow", "torch", "numpy", "pandas", "scipy", "onnxruntime", "orjson"}, declared
    assert all("==" in line and "+" not in line for line in declared), declared  # pinned, no local build
    folder = tmp_path_factory.mktemp("outside")
    python = envs.venv_with(folder / "env", declared)
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(folder)}
    # (run from a folder of its own: `python -c` puts the current folder, the project's, on sys.path)
    assert subprocess.run([python, "-c", "import uos"], env=bare, cwd=folder, capture_output=True).returncode != 0
    return python, bare


def test_without_uos_installed_mlflow_loads_the_model_and_it_answers_as_uos_predict(
    model_folder, outside, setitec_dir, tmp_path
):
    """In an environment without uos, `mlflow.pyfunc.load_model` gives the numbers `uos predict`
    gives on real files."""
    python, bare = outside
    paths = [setitec_dir / name for name in REAL]
    (tmp_path / "rows.json").write_text(json.dumps(_rows(paths)))
    model = shutil.copytree(model_folder, tmp_path / "model")  # (its code gets byte-code caches when run)
    ran = subprocess.run(
        [python, "-c", OUTSIDE, str(model), str(tmp_path / "rows.json")],
        env=bare,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    outside = json.loads(ran.stdout.splitlines()[-1])
    expected = _predicted(paths)
    assert len(outside) == len(expected) == len(paths)
    assert {"review", "error"} <= {r["status"] for r in expected}  # (a model of synthetic holes: no ok needed)
    for got, want in zip(outside, expected, strict=True):
        assert {key: got[key] for key in ANSWER} == {key: want[key] for key in ANSWER}, (got, want)


TWO_MODELS = """
import sys
import mlflow
first = mlflow.pyfunc.load_model(sys.argv[1])
try:
    mlflow.pyfunc.load_model(sys.argv[2])
except Exception as exc:
    print("refused:", exc)
else:
    print("loaded")
"""


def test_a_second_model_with_other_code_is_refused_in_the_same_process(model_folder, outside, tmp_path):
    """Both models' code is the package `uos`: a second model whose code differs would run the
    first one's code. It is refused (load it in a process of its own); the same code is fine."""
    python, bare = outside
    first = shutil.copytree(model_folder, tmp_path / "first")
    same = shutil.copytree(model_folder, tmp_path / "same")
    other = shutil.copytree(model_folder, tmp_path / "other")
    with (other / "code" / "uos" / "training" / "infer.py").open("a") as code:
        code.write("\n# another version of uos\n")

    def load_both(a: Path, b: Path) -> str:
        ran = subprocess.run(
            [python, "-c", TWO_MODELS, str(a), str(b)],
            env=bare,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        return ran.stdout.splitlines()[-1]

    assert load_both(first, same) == "loaded"
    refused = load_both(first, other)
    assert refused.startswith("refused:") and "process of its own" in refused, refused


def test_a_batch_with_a_hole_that_cannot_be_answered_keeps_nulls_and_integers(model_folder, setitec_dir):
    """One answer's error (or one without a grip code) must not turn the batch's numbers into NaN
    (invalid JSON over HTTP) nor grip codes into floats."""
    import mlflow

    rows = _rows([setitec_dir / REAL[0]])
    rows.append({"depth_mm": [1.0], "torque_a": [1.0], "thrust_a": [1.0], "program_family": None, "unit": None})
    import pandas as pd

    answers = mlflow.pyfunc.load_model(str(model_folder)).predict(pd.DataFrame(rows)).to_dict("records")
    good, bad = answers
    assert bad["status"] == "error" and bad["error"]
    assert all(bad[key] is None for key in ANSWER[:10]), bad
    assert good["error"] is None and good["entry_mm"] is not None, good
    assert good["grip_code"] is None or type(good["grip_code"]) is int, good


def test_the_model_carries_its_package_code_and_nothing_else(tmp_path):
    """A secret, an editor's swap file or a scratch array left in the working tree's uos/ does not
    travel with every registered model."""
    from uos.training.logged_model import _package_copy

    source = shutil.copytree(Path(__file__).resolve().parent.parent / "uos", tmp_path / "tree" / "uos")
    (source / ".env").write_text("UOS_MQTT_PASSWORD=hunter2\n")
    (source / ".notes.txt.swp").write_bytes(b"swap")
    (source / ".mypy_cache").mkdir(exist_ok=True)
    (source / ".mypy_cache" / "x.json").write_text("{}")
    (source / "training" / "scratch_dump.npy").write_bytes(b"\0" * 1000)
    copied = _package_copy(tmp_path / "copy", source)
    files = sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*") if p.is_file())
    expected = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.py") if "__pycache__" not in p.parts)
    assert files == expected


def test_the_model_carries_an_input_example_and_the_meaning_of_its_fields(model_folder):
    import yaml

    meta = yaml.safe_load((model_folder / "MLmodel").read_text())
    assert set(meta["metadata"]["output_fields"]) == set(ANSWER)
    assert {"depth_mm", "torque_a", "thrust_a"} <= set(meta["metadata"]["input_fields"])
    assert meta["flavors"]["python_function"]["code"] == "code"
    assert (model_folder / "code" / "uos" / "training" / "infer.py").is_file()
    assert not list((model_folder / "code").rglob("__pycache__"))
    example = json.loads((model_folder / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["depth_mm", "torque_a", "thrust_a"]
    assert (model_folder / "artifacts" / "depth.onnx").is_file()


# --- HTTP serving ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_model(registry, tmp_path_factory):
    """`just mlflow-serve PORT` (mlflow models serve) of the registered version, on 127.0.0.1."""
    port = free_port()
    env = servers.venv_env(MLFLOW_TRACKING_URI=registry["uri"], UOS_MODEL_URI=MODEL)
    log = tmp_path_factory.mktemp("http") / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            servers.just("mlflow-serve", str(port), "--workers", "1"),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        servers.stop_group(process)


def _post(url: str, payload: dict) -> list[dict]:
    request = urllib.request.Request(
        f"{url}/invocations", json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        assert answer.status == 200
        return json.loads(answer.read(), parse_constant=_not_json)["predictions"]


def _not_json(token: str):
    raise AssertionError(f"{token} in the answer: not JSON (null is)")


def test_mlflow_models_serve_answers_the_logged_example_and_real_holes(http_model, model_folder, setitec_dir):
    (example,) = _post(http_model, json.loads((model_folder / "serving_input_example.json").read_text()))
    assert example["status"] in ("ok", "review") and example["entry_mm"] is not None, example
    paths = [setitec_dir / name for name in REAL[:2]]
    answers = _post(http_model, {"dataframe_records": _rows(paths)})
    for got, want in zip(answers, _predicted(paths), strict=True):
        assert {key: got[key] for key in ANSWER} == {key: want[key] for key in ANSWER}, (got, want)
    one_sample = {"depth_mm": [1.0], "torque_a": [1.0], "thrust_a": [1.0]}
    mixed = _post(http_model, {"dataframe_records": [*_rows(paths[:1]), one_sample], "params": {"refine": False}})
    assert mixed[1]["status"] == "error" and all(mixed[1][key] is None for key in ANSWER[:10]), mixed[1]
    assert mixed[0]["error"] is None and mixed[0]["entry_mm"] is not None, mixed[0]


# --- ONNX --------------------------------------------------------------------------------------


def _sample(setitec_dir: Path, per_folder: int = 4) -> list[Path]:
    """A few files of every folder of the shared set (the benchmark takes them all)."""
    folders = sorted({p.parent for p in setitec_dir.rglob("*.xls")})
    return [p for folder in folders for p in sorted(folder.glob("*.xls"))[:per_folder]]


@pytest.mark.parametrize("refine", [False, True])
def test_onnx_runtime_gives_the_keypoints_of_pytorch_on_real_files(setitec_dir, refine):
    from uos.training.predict import load_model, predict_paths

    paths = [str(p) for p in _sample(setitec_dir)]
    models = {runtime: load_model(MODEL, runtime) for runtime in ("torch", "onnx")}
    assert [type(m.network).__name__ for m in models.values()] == ["TorchNetwork", "OnnxNetwork"]
    by_runtime = {runtime: list(predict_paths(paths, model, refine=refine)) for runtime, model in models.items()}
    assert len(by_runtime["onnx"]) == len(paths) > 30
    for torch_answer, onnx_answer in zip(by_runtime["torch"], by_runtime["onnx"], strict=True):
        assert onnx_answer["status"] == torch_answer["status"], (torch_answer, onnx_answer)
        for key in ANSWER[:6] + ANSWER[7:10]:
            a, b = torch_answer[key], onnx_answer[key]
            assert (a is None and b is None) or abs(a - b) <= 0.001 + 1e-9, (torch_answer["source"], key, a, b)


def test_the_onnx_runtime_loads_no_torch(tmp_path):
    code = (
        "import sys\nfrom uos.training.predict import load_model\n"
        f"model = load_model({MODEL!r}, 'onnx')\n"
        "print(type(model.network).__name__, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["OnnxNetwork", "False"]


def test_uos_export_writes_the_network_with_its_contract(tmp_path, setitec_dir):
    import onnx
    import onnxruntime
    from click.testing import CliRunner

    from uos.cli import main
    from uos.holes import read_source
    from uos.holes.profile import build_profile
    from uos.training.features import profile_features
    from uos.training.predict import load_model

    out = tmp_path / "depth.onnx"
    result = CliRunner().invoke(main, ["export", "--onnx", str(out), "--model", MODEL])
    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    assert "input `features`, float32 [holes, 6, 400]" in model.doc_string
    assert {p.key: p.value for p in model.metadata_props}["uos.grid_mm"] == "0.1"
    signals = read_source(setitec_dir / REAL[0]).signals
    features = profile_features(build_profile(signals["depth_mm"], signals["torque_a"], signals["thrust_a"]))[None]
    heatmaps, presence = onnxruntime.InferenceSession(str(out)).run(None, {"features": features})
    expected = load_model(MODEL, "torch").network.run(features)
    np.testing.assert_allclose(heatmaps, expected[0], atol=1e-4)
    np.testing.assert_allclose(presence, expected[1], atol=1e-4)
    missing = CliRunner().invoke(main, ["export", "--onnx", str(out), "--model", "models:/uos-depth/99"])
    assert missing.exit_code == 1 and missing.output.startswith("Error: cannot load model models:/uos-depth/99")


def test_serve_with_the_onnx_runtime_answers_as_predict_does(registry, tmp_path):
    """`uos serve --runtime onnx` through a real mosquitto, the answers those of `uos predict`."""
    from test_serve import Broker, Serve, _env

    broker = Broker(tmp_path / "broker")
    service = Serve(registry, broker.port, "--runtime", "onnx")
    try:
        files = [str(p) for p in registry["files"][:4]]
        replayed = subprocess.run(
            ["uos", "replay", *files, "--port", str(broker.port), "--timeout", "30"],
            env=_env(registry),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replayed.returncode == 0, replayed.stderr
        answers = {a["hole_id"]: a for a in map(json.loads, replayed.stdout.splitlines())}
        expected = {r["hole_id"]: r for r in _predicted(registry["files"][:4], "--no-refine")}
        assert set(answers) == set(expected)
        for hole_id, answer in answers.items():
            for key in ("entry_mm", "transition_mm", "exit_mm", "thickness_mm"):
                a, b = answer[key], expected[hole_id][key]
                assert (a is None and b is None) or abs(a - b) <= 0.0011, (hole_id, key, a, b)
        assert service.events("model")[0]["runtime"] == "onnx"
        assert service.stop() == 0
    finally:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGKILL)
        broker.process.kill()
    assert os.environ["MLFLOW_TRACKING_URI"] == registry["uri"]


def _damaged_copy(model_folder: Path, tmp_path: Path) -> Path:
    """A copy of the model with no ONNX file and weights that are not a state dict."""
    copy = shutil.copytree(model_folder, tmp_path / "damaged")
    (copy / "artifacts" / "depth.onnx").unlink()
    (copy / "artifacts" / "weights.pt").write_text("junk\n")
    return copy


def test_a_model_that_cannot_be_loaded_is_one_error_line(model_folder, setitec_dir, tmp_path):
    from click.testing import CliRunner

    from uos.cli import main

    damaged = _damaged_copy(model_folder, tmp_path)
    for args in (
        ["export", "--onnx", str(tmp_path / "out.onnx"), "--model", str(damaged)],
        ["export", "--onnx", str(tmp_path / "out.onnx"), "--model", str(tmp_path)],  # no model there
        ["predict", str(setitec_dir / REAL[0]), "--model", str(damaged)],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: cannot "), (args, result.stderr)
        assert "cannot write" not in lines[0], lines[0]


def test_the_onnx_network_answers_for_no_holes():
    from uos.training.predict import load_model

    heatmaps, presence = load_model(MODEL, "onnx").network.run(np.zeros((0, 6, 400), np.float32))
    assert heatmaps.shape == (0, 3, 400) and presence.shape == (0, 3)


def test_a_version_registered_before_onnx_refuses_the_onnx_runtime_rather_than_run_torch():
    from types import SimpleNamespace

    from uos.errors import UosError
    from uos.training.runtimes import check_runtime

    older = SimpleNamespace()  # a DepthModel of earlier code: MLflow ignored the runtime asked for
    with pytest.raises(UosError, match="cannot run in onnx: it was registered before uos logged its network"):
        check_runtime(older, "onnx", "models:/uos-depth/3")
    check_runtime(older, "torch", "models:/uos-depth/3")
