# Daily recipes. `just --list` shows them; each runs inside .venv (created on first use).

set shell := ["bash", "-euo", "pipefail", "-c"]

run := justfile_directory() / "bin/run"

# List the recipes
default:
    @just --list

# The main job end to end: demo data when data/raw is empty, `dvc repro`, a summary
demo:
    ./bin/demo

# The whole test suite (extra arguments go to pytest)
test *args:
    ./bin/test {{args}}

# Lint and format check
lint:
    {{run}} ruff check uos tests bench
    {{run}} ruff format --check uos tests bench

# Format the code
fmt:
    {{run}} ruff format uos tests bench
    {{run}} ruff check --fix uos tests bench

# Run the pipeline stages whose inputs changed
repro *args:
    {{run}} dvc repro {{args}}

# Review labels in the terminal (the session ends with `dvc add data` and an MLflow run), then relabel
annotate *args:
    {{run}} uos annotate {{args}}
    {{run}} dvc repro
    {{run}} uos summary

# Synthetic demo holes with exact ground truth (into an empty folder)
synth out *args:
    {{run}} uos synth {{out}} {{args}}

# Parse raw files into build/parsed (what the parse stage runs)
parse *args:
    {{run}} uos parse data/raw --out build/parsed {{args}}

# Show one hole (a file, capture folder or hole id) in the terminal
show target *args:
    {{run}} uos show {{target}} {{args}}

# Cross-validated errors of the champion and the candidate model, in the terminal
report *args:
    {{run}} uos report {{args}}

# Make the candidate model the champion, unless its cross-validated error regresses
promote *args:
    {{run}} uos promote {{args}}

# Keypoints for Setitec files or folders, one JSON line per hole
predict +paths:
    {{run}} uos predict {{paths}}

# Answer holes over MQTT with the champion model (broker from UOS_MQTT_* or options; see uos serve --help)
serve *args:
    {{run}} uos serve {{args}}

# Publish Setitec files as drilling units do and print the answers, e.g. `just replay data/raw --rate 20`
replay +args:
    {{run}} uos replay {{args}}

# A local MQTT broker on 127.0.0.1 for trying things out (mosquitto when installed)
broker *args:
    {{run}} uos broker {{args}}

# Try training parameters as a DVC experiment, e.g. `just exp train.epochs=60`
exp +settings:
    {{run}} dvc exp run {{ prepend("-S params.toml:", settings) }}

# Train on the data of a git tag or commit into a named MLflow experiment, e.g. `just train-data-version v1.0 drilling_v0.3`
train-data-version rev experiment *settings:
    {{run}} uos train-data-version {{quote(rev)}} --experiment {{quote(experiment)}} {{ prepend("-S ", settings) }}

# The MLflow UI on 127.0.0.1 for the project's store (from your machine: ssh -L 5000:127.0.0.1:5000 server, open localhost:5000)
mlflow-ui port="5000":
    #!/usr/bin/env bash
    set -euo pipefail
    read -r uri shown < <({{run}} python -c 'from uos.training.tracking import tracking_uri as t, shown_uri as s; print(t(), s(t()))')
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"  # as in mlflow-server
    case "$uri" in
        http://* | https://*)  # a tracking server serves its own UI
            echo "The tracking server $shown serves the MLflow UI: open it in a browser."
            if [[ $uri == http://* ]]; then  # plain http: the team reaches it over an SSH tunnel
                server=${uri#http://}; server=${server%%/*}; server=${server##*@}  # (no user:password@)
                port=${server##*:}; [[ $server == *:* ]] || port=80
                case "${server%:*}" in
                    localhost | 127.0.0.1)  # the server runs here, or this end of a tunnel to it
                        echo "Open http://localhost:$port here; from another machine: ssh -L $port:127.0.0.1:$port $(hostname), then the same" ;;
                    *) echo "From your machine: ssh -L $port:127.0.0.1:$port ${server%:*}, then open http://localhost:$port" ;;
                esac
            fi
            ;;
        *) exec {{run}} mlflow ui --backend-store-uri "$uri" --host 127.0.0.1 --port {{port}} ;;
    esac

# The registered model over HTTP, as MLflow serves any model (POST /invocations on 127.0.0.1; UOS_MODEL_URI, default the champion)
mlflow-serve port="5001" *args:
    {{run}} mlflow models serve -m "${UOS_MODEL_URI:-models:/uos-depth@champion}" --env-manager local --host 127.0.0.1 --port {{port}} {{args}}

# The team's MLflow tracking server on PostgreSQL (UOS_MLFLOW_BACKEND_URI) with the artifact proxy, on 127.0.0.1 (see deploy/README.md)
mlflow-server port="5000" *args:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "${UOS_MLFLOW_BACKEND_URI:-}" ]; then
        echo "Error: set UOS_MLFLOW_BACKEND_URI to the team's database, e.g. postgresql://mlflow@127.0.0.1/mlflow (password in ~/.pgpass)" >&2
        exit 2
    fi
    # MLflow's job runner serves GenAI features (prompt optimisation, scorers) that uos does not use.
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
    exec {{run}} mlflow server --backend-store-uri "$UOS_MLFLOW_BACKEND_URI" \
        --serve-artifacts --artifacts-destination "${UOS_MLFLOW_ARTIFACTS:-$PWD/mlartifacts}" \
        --host 127.0.0.1 --port {{port}} {{args}}

# Accuracy of the trained pipeline per source folder and program family (model vs baseline)
bench-accuracy *args:
    {{run}} python bench/accuracy.py {{args}}

# Labelling accuracy (synthetic truth, real events) and speed
bench-label *args:
    {{run}} python bench/label_bench.py {{args}}

# Benchmark uos parse over ../shared/setitec, cold and warm, against a bare pandas read
bench-parse *args:
    {{run}} python bench/parse_bench.py {{args}}

# The pipeline on the shared files and `uos train --profile ci` on the demo data, idle and beside a busy process
bench-train *args:
    {{run}} python bench/train_bench.py {{args}}

# Benchmark uos serve through mosquitto against a client that answers without computing
bench-serve *args:
    {{run}} python bench/serve_bench.py {{args}}

# PyTorch against ONNX Runtime on every shared file: parity and speed per hole
bench-runtime *args:
    {{run}} python bench/runtime_bench.py {{args}}

# The model over HTTP (mlflow models serve) beside uos serve, one hole per request
bench-http *args:
    {{run}} python bench/http_bench.py {{args}}
