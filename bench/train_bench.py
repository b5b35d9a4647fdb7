"""Training on a shared server: the pipeline idle and beside a competing busy process, in one run.

Two workloads, each timed on an idle machine and beside one busy process that this benchmark
starts (a pure-Python loop: one core, as a team-mate's job), rounds alternating idle and busy so
that the machine's own noise hits both alike:
- real: the whole pipeline on the shared files (`uos parse` with an empty cache, `uos label`,
  `uos split`, `uos train` with the project's params.toml), each stage timed and the total; then
  `uos predict` of every shared file with the model just trained (not in the total);
- demo: `uos train --profile ci` on the demo data (`uos synth` with [synth] of params.toml,
  parsed, labelled and split once beforehand).

The competitor runs two ways (`--competitors`): `same`, a process of this login's session (or of
a server without the kernel's autogroup), which the scheduler weighs like each of ours; `session`,
a session of its own, as a job started from another SSH login, which the kernel's autogroup
gives half of the machine however many processes we run: then the best we can have is one core.

`--baseline DIR[,table.key=value...]` (repeatable) runs the same workloads, in the same rounds,
with the code and params.toml of another checkout (e.g. `git worktree add /tmp/before REV`),
with keys of its params.toml changed: the figures before and after a change, side by side
(`--baseline-competitors`: beside fewer kinds of competitor). `--cap S` stops a command after S
seconds (code whose threads collapse took more than ten times its idle time): its figure is then
a lower bound, shown with '>'.

Prints the medians, the ratio busy / idle and the targets (real pipeline <= 180 s idle on two
cores; busy <= 1.5 x idle), and a JSON line with every figure.

    python bench/train_bench.py [--rounds 3] [--only real|demo] [--competitors same,session] [--cap 600]
                                [--baseline /tmp/before --baseline /tmp/before,train.threads=1]
                                [--baseline-competitors same]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETITEC = ROOT.parent / "shared" / "setitec"
TARGET_IDLE_S = 180.0
TARGET_RATIO = 1.5
PIPELINE = ("parse", "label", "split", "train")


@dataclass(frozen=True, eq=False)
class Code:
    """A version of uos to run: a checkout (None: this one) and changes to its params.toml."""

    name: str
    checkout: Path | None = None
    changes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Code:
        folder, *settings = text.split(",")
        changes = dict(s.split("=", 1) for s in settings)
        name = "before" + "".join(f" {k}={v}" for k, v in changes.items())
        return cls(name, Path(folder).resolve(), changes)

    def params(self) -> str:
        """Its params.toml, with the changes made key by key (`table.key=value`)."""
        text = ((self.checkout or ROOT) / "params.toml").read_text()
        for key, value in self.changes.items():
            table, name = key.rsplit(".", 1)
            section = re.search(rf"^\[{re.escape(table)}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
            body, count = re.subn(rf"^{re.escape(name)} = \S+", f"{name} = {value}", section.group(1), flags=re.M)
            if not count:
                raise SystemExit(f"{key} is not in {self.checkout}/params.toml")
            text = text[: section.start(1)] + body + text[section.end(1) :]
        return text

    def environment(self, work: Path) -> dict[str, str]:
        """The stages' environment: their own MLflow store and parse cache, this code."""
        env = dict(
            os.environ,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
            UOS_CACHE_DIR=str(work / "cache"),
        )
        if self.checkout is not None:
            env["PYTHONPATH"] = str(self.checkout)
        return env


@contextmanager
def competitor(kind: str | None):
    """One process that keeps one core busy while the block runs: in this session (`same`) or in
    a session of its own (`session`); none for None."""
    if kind is None:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=kind == "session")
    try:
        time.sleep(0.5)  # (it is running before the timed work starts)
        yield
    finally:
        process.kill()
        process.wait()


class Capped(Exception):
    """A command stopped at the time cap: its time is at least the cap."""


CAP_S = [float("inf")]  # --cap: no command runs longer (a collapsed run could take an hour)


def run(command: list[str], work: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    # A process group of its own (to stop it whole at the cap), in this session: a session of its
    # own would put it in an autogroup apart from the `same` competitor.
    process = subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, process_group=0
    )
    try:
        _, stderr = process.communicate(timeout=CAP_S[0])
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.communicate()
        raise Capped(command[1]) from None
    # (parse and predict exit 1 when some inputs are refused, as 4 shared files are: their report)
    if process.returncode not in (0, 1) or (process.returncode == 1 and command[1] not in ("parse", "predict")):
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{stderr[-3000:]}")
    return time.perf_counter() - started


def real_pipeline(work: Path, setitec: Path, code: Code) -> dict[str, float]:
    """The four stages from nothing (an empty parse cache), each timed; then predict."""
    env = code.environment(work)
    for name in ("cache", "parsed", "labels", "folds", "model"):
        shutil.rmtree(work / name, ignore_errors=True)
    stages = {
        "parse": ["uos", "parse", str(setitec), "--out", "parsed"],
        "label": ["uos", "label", "parsed", "--out", "labels"],
        "split": ["uos", "split", "parsed", "labels", "--out", "folds"],
        "train": ["uos", "train", "parsed", "labels", "folds", "--out", "model"],
    }
    times: dict[str, float] = {}
    try:
        for stage, command in stages.items():
            times[stage] = run(command, work, env)
    except Capped:  # the stage took at least the cap, and the pipeline at least that much more
        times[stage] = CAP_S[0]
        times.update({later: 0.0 for later in stages if later not in times}, capped=1.0)
        times["total"] = sum(v for k, v in times.items() if k in stages)
        times["predict"] = float("nan")
        return times
    times["total"] = sum(times.values())
    predict = ["uos", "predict", str(setitec), "--model", "models:/uos-depth@candidate"]
    times["predict"] = run(predict, work, env)
    return times


def prepare_demo(work: Path, code: Code) -> None:
    env = code.environment(work)
    for command in (
        ["uos", "synth", "raw"],
        ["uos", "parse", "raw", "--out", "parsed"],
        ["uos", "label", "parsed", "--out", "labels"],
        ["uos", "split", "parsed", "labels", "--out", "folds"],
    ):
        run(command, work, env)


def demo_training(work: Path, code: Code) -> dict[str, float]:
    shutil.rmtree(work / "model", ignore_errors=True)
    command = ["uos", "train", "parsed", "labels", "folds", "--out", "model", "--profile", "ci"]
    try:
        return {"train": run(command, work, code.environment(work))}
    except Capped:
        return {"train": CAP_S[0], "capped": 1.0}


def project_folder(parent: Path, name: str, code: Code) -> Path:
    """A folder with the code's params.toml, where the stages run as in the project."""
    folder = parent / re.sub(r"\W+", "-", name)
    folder.mkdir()
    (folder / "params.toml").write_text(code.params())
    return folder


Key = tuple[str, str, str]  # code, workload (real, demo), competitor (idle, same, session)


def _median(runs: list[dict[str, float]], stage: str) -> tuple[float, str]:
    """The median of a stage's times, and '>' when a capped run makes it a lower bound."""
    value = statistics.median(r[stage] for r in runs)
    return value, ">" if any(r.get("capped") for r in runs) and stage in ("train", "total") else ""


def report(results: dict[Key, list[dict[str, float]]], competitors: list[str]) -> None:
    columns = "".join(f"{kind + ' s':>12}{'ratio':>9}" for kind in competitors)
    print(f"\n{'code':<26}{'workload':<9}{'stage':<8}{'idle s':>9}{columns}   (medians; ratio: busy / idle)")
    for code, workload in dict.fromkeys((c, w) for c, w, _ in results):
        idle = results[(code, workload, "idle")]
        for stage in (k for k in idle[0] if k != "capped"):
            a, _ = _median(idle, stage)
            line = f"{code:<26}{workload:<9}{stage:<8}{a:>9.1f}"
            for kind in competitors:
                if (code, workload, kind) not in results:
                    line += f"{'-':>12}{'-':>9}"
                    continue
                b, bound = _median(results[(code, workload, kind)], stage)
                line += f"{bound + format(b, '.1f'):>12}{bound + format(b / a, '.2f'):>8}x"
            print(line)
    for code in dict.fromkeys(c for c, w, _ in results if w == "real"):
        idle_s, _ = _median(results[(code, "real", "idle")], "total")
        verdicts = [f"{code}: real pipeline {idle_s:.0f} s idle (target <= {TARGET_IDLE_S:.0f} s: "]
        verdicts[0] += f"{'met' if idle_s <= TARGET_IDLE_S else 'MISSED'})"
        for kind in (k for k in competitors if (code, "real", k) in results):
            busy, bound = _median(results[(code, "real", kind)], "total")
            verdict = "met" if busy / idle_s <= TARGET_RATIO and not bound else "MISSED"
            verdicts.append(
                f"beside a busy process ({kind}) {bound}{busy / idle_s:.2f}x (target <= {TARGET_RATIO}: {verdict})"
            )
        print(", ".join(verdicts))
    print(f"cores this process may use: {len(os.sched_getaffinity(0))}; load average now {os.getloadavg()[0]:.2f}")
    print(json.dumps({"|".join(key): runs for key, runs in results.items()}))


def measure(workload: str, folder: Path, setitec: Path, code: Code, kind: str) -> dict[str, float]:
    with competitor(None if kind == "idle" else kind):
        return real_pipeline(folder, setitec, code) if workload == "real" else demo_training(folder, code)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["real", "demo"], default=None)
    parser.add_argument("--competitors", default="same,session", help="same, session or both (comma-separated)")
    parser.add_argument("--baseline", action="append", default=[], help="DIR[,table.key=value...]: another checkout")
    parser.add_argument("--baseline-competitors", default=None, help="the baselines' competitors (default: the same)")
    parser.add_argument("--cap", type=float, default=float("inf"), help="seconds; a command stopped there: '>'")
    parser.add_argument("--setitec", type=Path, default=SETITEC)
    args = parser.parse_args()
    args.competitors = [kind for kind in args.competitors.split(",") if kind]
    theirs = args.baseline_competitors
    args.baseline_competitors = args.competitors if theirs is None else [k for k in theirs.split(",") if k]
    kinds = set(args.competitors) | set(args.baseline_competitors)
    if args.rounds < 1 or not kinds <= {"same", "session"} or not set(args.baseline_competitors) <= kinds:
        parser.error("--rounds must be at least 1; --competitors: same and/or session (the baselines': some of them)")
    return args


def main() -> None:
    args = arguments()
    CAP_S[0] = args.cap
    workloads = [w for w in ("demo", "real") if args.only in (None, w)]
    codes = [Code("this"), *(Code.parse(b) for b in args.baseline)]
    results: dict[Key, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="uos-train-bench-") as scratch:
        folders = {(c, w): project_folder(Path(scratch), f"{c.name}-{w}", c) for c in codes for w in workloads}
        for (code, workload), folder in folders.items():
            if workload == "demo":
                print(f"preparing the demo data for {code.name} (synth, parse, label, split)...", file=sys.stderr)
                prepare_demo(folder, code)
        for round_ in range(1, args.rounds + 1):
            for (code, workload), folder in folders.items():
                kinds = ["idle", *(args.competitors if code.checkout is None else args.baseline_competitors)]
                for kind in kinds if round_ % 2 else kinds[::-1]:
                    times = measure(workload, folder, args.setitec, code, kind)
                    results.setdefault((code.name, workload, kind), []).append(times)
                    shown = ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
                    print(f"round {round_}: {code.name} {workload} {kind}: {shown}", file=sys.stderr, flush=True)
    report(results, args.competitors)


if __name__ == "__main__":
    main()
