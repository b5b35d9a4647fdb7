"""`uos serve` through mosquitto on this machine, beside a client that answers without computing.

Real holes from ../shared/setitec are replayed as drilling units publish them (Heads, Result,
Trace; spread over several tools), two ways:
- capacity: as fast as the answering side keeps up (at most `--window` holes unanswered):
  sustained holes per second, first publish to last answer;
- latency: at a steady `--rate` (units publish when they drill, not when we are ready):
  Trace published -> answer received, p50 and p99.
Holes from different files are shuffled (fixed seed): the units of a shop drill at once, so
their holes interleave; `--in-file-order` replays them folder by folder instead (runs of 80
consecutive 230-320 KB mql traces, 5x the mean size). Both count holes lost (published, never
answered) and the answering process's peak RSS. The echo client answers each Trace at once,
computing nothing: the broker and client ceiling. Runs alternate echo / serve, and the medians
of the rounds are compared.

    python bench/serve_bench.py [--holes 2000] [--rounds 3] [--window 64] [--model models:/uos-depth@champion]
                                [--runtimes torch,onnx]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETITEC = ROOT.parent / "shared" / "setitec"


def echo(port: int) -> None:
    """The baseline: answer every Trace at once with its tool and ResultId, computing nothing."""
    import signal

    from uos.serve.connection import Connection
    from uos.serve.messages import RESULT_ID_BYTES, Topics

    topics = Topics()
    connection = Connection(port=port)
    client = connection.client("bench-echo", clean=True)

    def on_connect(c, *_):
        c.subscribe([(f"{topics.root}/+/+/ResultManagement/Trace", 1)])
        print('"subscribed"', file=sys.stderr, flush=True)

    def on_message(c, _u, message):
        levels = message.topic.split("/")
        tool = f"{levels[1]}/{levels[2]}"
        found = RESULT_ID_BYTES.search(message.payload)
        answer = {"tool": tool, "result_id": found.group(1).decode() if found else None}
        c.publish(topics.answer(topics.result, tool), json.dumps(answer), qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    connection.connect(client)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    client.loop_start()
    while not stopping:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_once(command: list[str], port: int, items, window: int, rate: float, env: dict[str, str]) -> dict:
    from uos.serve.connection import Connection
    from uos.serve.messages import Topics
    from uos.serve.replay import Replayer

    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    said = []
    for line in process.stderr:
        said.append(line)
        if '"subscribed"' in line:
            break
    else:
        hint = (
            " (no model registered yet? ./bin/demo trains and promotes one)"
            if "cannot load model" in "".join(said)
            else ""
        )
        raise SystemExit(f"{' '.join(command[:2])} did not start{hint}:\n{''.join(said[-5:])}")
    with Replayer(Connection(port=port), Topics()) as replayer:
        started = time.monotonic()
        replayer.publish(items, window=window, rate=rate)
        replayer.wait(120)
        elapsed = time.monotonic() - started
        report = replayer.report
    rss = peak_rss_mb(process.pid)
    process.terminate()
    process.wait(timeout=60)
    latencies = sorted(report.latencies_ms)
    return {
        "holes": report.published,
        "answered": report.answered,
        "lost": report.published - report.answered - report.errors,
        "errors": report.errors,
        "holes_per_s": report.answered / elapsed,
        "p50_ms": latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": latencies[min(int(len(latencies) * 0.99), len(latencies) - 1)] if latencies else float("nan"),
        "peak_rss_mb": rss,
    }


def _traffic(items: list, args: argparse.Namespace) -> list:
    if not args.in_file_order:
        random.Random(0).shuffle(items)
    return items[: args.holes]


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0, help="holes per second of the latency runs")
    parser.add_argument("--tools", type=int, default=8)
    parser.add_argument("--model", default="models:/uos-depth@champion")
    parser.add_argument("--setitec", type=Path, default=SETITEC)
    parser.add_argument("--in-file-order", action="store_true", help="do not shuffle the holes")
    parser.add_argument("--runtimes", default="torch", help="serve's runtimes to measure, e.g. torch,onnx")
    parser.add_argument("--echo", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def _commands(port: int, args: argparse.Namespace) -> dict[str, list[str]]:
    """The answering processes to compare, by name: the echo client, then serve in each runtime."""
    serve = ["uos", "serve", "--port", str(port), "--model", args.model, "--no-refine", "--status-every", "5"]
    serve += ["--session-expiry", "0"]  # no session left behind to queue the next runs' traffic
    commands = {"echo": [sys.executable, __file__, "--echo", str(port)]}
    for runtime in args.runtimes.split(","):
        commands["serve" if runtime == "torch" else f"serve-{runtime}"] = [*serve, "--runtime", runtime]
    return commands


def _rounds(
    commands: dict[str, list[str]], port: int, files: list[str], repeat: int, args: argparse.Namespace, env
) -> dict[str, list[dict]]:
    """Every round: each mode, each command in turn (alternating, so that a slower moment of the
    machine does not favour one); the results by `name mode`, one per round."""
    from uos.serve.replay import prepare

    results: dict[str, list[dict]] = {}
    runs = 0
    for round_index in range(args.rounds):
        for mode in ("capacity", "latency"):
            for name, command in commands.items():
                runs += 1
                # Fresh result ids each run, so that serve does not take them for re-sent holes.
                items, _ = prepare(files, tools=args.tools, repeat=repeat, first_result_id=10_000_000 * runs)
                items = _traffic(items, args)
                window, rate = (args.window, 0.0) if mode == "capacity" else (0, args.rate)
                result = run_once(command, port, items, window, rate, env)
                results.setdefault(f"{name} {mode}", []).append(result)
                print(
                    f"  round {round_index + 1} {name:<5} {mode:<8} {result['holes_per_s']:7.1f} holes/s  "
                    f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  lost {result['lost']}  "
                    f"errors {result['errors']}  peak RSS {result['peak_rss_mb']:.0f} MB",
                    file=sys.stderr,
                )
    return results


def _summary(holes: int, kilobytes: float, args: argparse.Namespace, results: dict[str, list[dict]]) -> dict:
    """The setting, then per `name mode` the medians over rounds and the holes lost or in error
    over all rounds, and serve's capacity as a share of echo's."""
    summary = {
        "holes": holes,
        "trace_kb_mean": round(kilobytes, 1),
        "window": args.window,
        "rate": args.rate,
        "tools": args.tools,
        "rounds": args.rounds,
        "order": "file order" if args.in_file_order else "shuffled",
    }
    for name, runs_of in results.items():
        summary[name] = {
            key: round(statistics.median(r[key] for r in runs_of), 1)
            for key in ("holes_per_s", "p50_ms", "p99_ms", "peak_rss_mb")
        }
        summary[name]["lost"] = sum(r["lost"] for r in runs_of)
        summary[name]["errors"] = sum(r["errors"] for r in runs_of)
    summary["capacity serve/echo"] = round(
        summary["serve capacity"]["holes_per_s"] / summary["echo capacity"]["holes_per_s"], 3
    )
    return summary


def main() -> None:
    args = _parse_args()
    if args.echo is not None:
        echo(args.echo)
        return

    from uos.serve import broker
    from uos.serve.replay import prepare

    files = sorted(str(p) for p in args.setitec.rglob("*.xls"))
    repeat = -(-args.holes // len(files))
    print(f"Preparing {args.holes} holes from {len(files)} real files ({args.tools} tools)...", file=sys.stderr)
    items, _ = prepare(files, tools=args.tools, repeat=repeat)
    items = _traffic(items, args)
    kilobytes = statistics.mean(len(i.payloads["trace"]) for i in items) / 1000
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with tempfile.TemporaryDirectory(prefix="uos-serve-bench-") as scratch:
        port = broker.free_port()
        mosquitto = broker.start_mosquitto(port, Path(scratch) / "broker")
        try:
            results = _rounds(_commands(port, args), port, files, repeat, args, env)
        finally:
            mosquitto.terminate()
            mosquitto.wait(timeout=10)
    # len(items): the holes each run replays (every run prepares the same files, with fresh ids).
    print(json.dumps(_summary(len(items), kilobytes, args, results), indent=2))


if __name__ == "__main__":
    main()
