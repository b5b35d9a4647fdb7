"""The registered model over HTTP (`mlflow models serve`, `just mlflow-serve`) beside `uos serve`
over MQTT, one hole per request, in one run.

Real holes from ../shared/setitec (shuffled, fixed seed), one at a time (closed loop: the next
request when the answer came), through:
- `mlflow models serve` (env manager local, `--workers` processes): POST /invocations with the
  hole's raw signals (`dataframe_records`), the model's default refinement (as `uos predict`)
  and without it (`params: {"refine": false}`, as `uos serve`);
- `uos serve` through a mosquitto started here (as bench/serve_bench.py, one hole in flight).
Holes per second and the latency of each request (p50, p99); rounds alternate, medians.

    python bench/http_bench.py [--holes 300] [--rounds 3] [--workers 1] [--model models:/uos-depth@champion]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from serve_bench import SETITEC, run_once  # noqa: E402


def _rows(paths: list[Path]) -> list[dict]:
    from uos.holes import read_source

    rows = []
    for path in paths:
        signals = read_source(path).signals
        rows.append({n: signals[n].astype(float).tolist() for n in ("depth_mm", "torque_a", "thrust_a")})
    return rows


def _start_http(model: str, port: int, workers: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, UOS_MODEL_URI=model)
    command = ["just", "--justfile", str(ROOT / "justfile"), "--set", "run", "env", "mlflow-serve", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mlflow models serve exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    raise SystemExit("mlflow models serve did not start in 300 s")


def _stop(process: subprocess.Popen) -> None:
    """mlflow models serve and the workers it started (its process group)."""
    import signal

    for number, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, number)
            process.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def http_round(port: int, rows: list[dict], refine: bool | None) -> dict:
    latencies = []
    started = time.perf_counter()
    for row in rows:
        payload: dict = {"dataframe_records": [row]}
        if refine is not None:
            payload["params"] = {"refine": refine}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        sent = time.perf_counter()
        with urllib.request.urlopen(request, timeout=120) as answer:
            json.loads(answer.read())
        latencies.append((time.perf_counter() - sent) * 1000)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "holes_per_s": len(rows) / elapsed,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(int(len(latencies) * 0.99), len(latencies) - 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--model", default="models:/uos-depth@champion")
    parser.add_argument("--setitec", type=Path, default=SETITEC)
    args = parser.parse_args()

    from uos.serve import broker
    from uos.serve.replay import prepare

    files = sorted(args.setitec.rglob("*.xls"))
    random.Random(0).shuffle(files)
    files = files[: args.holes]
    rows = _rows(files)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="uos-http-bench-") as scratch:
        http_port, mqtt_port = broker.free_port(), broker.free_port()
        http = _start_http(args.model, http_port, args.workers, Path(scratch) / "http.log")
        mosquitto = broker.start_mosquitto(mqtt_port, Path(scratch) / "broker")
        serve = ["uos", "serve", "--port", str(mqtt_port), "--model", args.model, "--no-refine"]
        serve += ["--status-every", "5", "--session-expiry", "0"]
        try:
            http_round(http_port, rows[:5], None)  # the workers' first calls
            for index in range(args.rounds):
                for name, refine in (("http, refined (as predict)", None), ("http, network only (as serve)", False)):
                    results.setdefault(name, []).append(http_round(http_port, rows, refine))
                items, _ = prepare([str(p) for p in files], tools=1, first_result_id=20_000_000 * (index + 1))
                one_at_a_time = run_once(serve, mqtt_port, items, window=1, rate=0.0, env=env)
                results.setdefault("uos serve over MQTT, network only", []).append(one_at_a_time)
                for name, runs in results.items():
                    last = runs[-1]
                    print(
                        f"  round {index + 1} {name:<34} {last['holes_per_s']:6.1f} holes/s  "
                        f"p50 {last['p50_ms']:6.1f} ms  p99 {last['p99_ms']:6.1f} ms",
                        file=sys.stderr,
                    )
        finally:
            _stop(http)
            mosquitto.terminate()
            mosquitto.wait(timeout=10)
    summary = {"holes": len(rows), "rounds": args.rounds, "http_workers": args.workers, "one hole at a time": {}}
    for name, runs in results.items():
        summary["one hole at a time"][name] = {
            key: round(statistics.median(r[key] for r in runs), 1) for key in ("holes_per_s", "p50_ms", "p99_ms")
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
