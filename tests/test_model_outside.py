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


def test_without_uos_installed_mlflow_loads_the_model_and_it_answers_as_uos_predict(
    model_folder, setitec_dir, tmp_path
):
    """In an environment of only MLflow and what the model declares (every one a PyPI release;
    no uos), `mlflow.pyfunc.load_model` gives the numbers `uos predict` gives on real files."""
    declared = (model_folder / "requirements.txt").read_text().split()
    names = {line.split("==")[0] for line in declared}
    assert names == {"mlflow", "torch", "numpy", "pandas", "scipy", "onnxruntime"}, declared
    assert all("==" in line and "+" not in line for line in declared), declared  # pinned, no local build
    python = envs.venv_with(tmp_path / "env", declared)
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    # (run from tmp_path: `python -c` puts the current folder, the project's, on sys.path)
    assert subprocess.run([python, "-c", "import uos"], env=bare, cwd=tmp_path, capture_output=True).returncode != 0

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
        return json.loads(answer.read())["predictions"]


def test_mlflow_models_serve_answers_the_logged_example_and_real_holes(http_model, model_folder, setitec_dir):
    (example,) = _post(http_model, json.loads((model_folder / "serving_input_example.json").read_text()))
    assert example["status"] in ("ok", "review") and example["entry_mm"] is not None, example
    paths = [setitec_dir / name for name in REAL[:2]]
    answers = _post(http_model, {"dataframe_records": _rows(paths)})
    for got, want in zip(answers, _predicted(paths), strict=True):
        assert {key: got[key] for key in ANSWER} == {key: want[key] for key in ANSWER}, (got, want)


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


def test_a_version_registered_before_onnx_refuses_the_onnx_runtime_rather_than_run_torch():
    from types import SimpleNamespace

    from uos.errors import UosError
    from uos.training.runtimes import check_runtime

    older = SimpleNamespace()  # a DepthModel of earlier code: MLflow ignored the runtime asked for
    with pytest.raises(UosError, match="cannot run in onnx: it was registered before uos logged its network"):
        check_runtime(older, "onnx", "models:/uos-depth/3")
    check_runtime(older, "torch", "models:/uos-depth/3")
