"""The cross-validation folds and the final model, trained side by side in worker processes.

The folds are independent, and so is the final model (it trains on every hole): each is a task
for a worker process with one torch thread (`train._torch_setup`). A process of its own rather
than intra-op threads, because a thread pool collapses when a team-mate's job takes a core (its
threads wait for the descheduled one at every step: 2.7 times slower beside one busy process).
How many workers: `[train] workers`, 0 = our share of the cores (`uos.cores`).

The results are those of a sequential run for the same seed, whatever the number of workers: a
task's numbers depend on its holes and the seed only (one thread: the same sums in the same
order), and the parent puts them back in fold order. Progress lines come back to the parent
(a queue) and are said there as they come; each fold's MLflow nested run is logged by the parent,
in fold order (`on_fold`). Ctrl-C stops the workers at once (they ignore SIGINT; the parent
terminates them and raises KeyboardInterrupt as a sequential run would); a worker that dies (out
of memory, killed) is an error that says so; a killed parent takes its workers with it. The work
goes to the workers, and their results come back, as files in a scratch folder: only small
messages cross the pool's pipes.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from uos.errors import UosError, gist
from uos.outputs import write_atomic
from uos.training.infer import ModelConfig
from uos.training.train import (
    CrossValidation,
    Examples,
    FinalModel,
    FoldResult,
    TrainParams,
    fold_error,
    gather,
    train_final,
    train_fold,
)

FINAL = "final"  # the task that trains the final model, on every hole (the others: fold numbers)
WORK_FILE = "work.pickle"  # in the scratch folder: what every task reads
SCRATCH_PREFIX = "uos-train-"  # then the parent's pid: a folder whose process is gone is removed

Task = int | str
OnFold = Callable[[int, dict[str, Any], list], None]


@dataclass
class Trained:
    """What the tasks made: the cross-validation (folds in order) and the final model, if asked."""

    cv: CrossValidation
    final: FinalModel | None
    workers: int


@dataclass
class _Work:
    """What every task reads (sent once to each worker, not with every task)."""

    examples: Examples
    folds: np.ndarray
    params: TrainParams
    base: ModelConfig


_WORKER: dict[str, Any] = {}  # in a worker: its _Work, its scratch folder, where its progress lines go


def _run_task(task: Task, work: _Work, say: Callable[[str], None] | None) -> FoldResult | FinalModel:
    if task == FINAL:
        return train_final(work.examples, work.params, say)
    return train_fold(work.examples, work.folds, task, work.params, work.base, say)


def _start_worker(scratch: str, lines, parent: int) -> None:
    """In each worker, once: its work (read from the scratch folder), its progress queue."""
    _die_with_parent(parent)
    with open(Path(scratch) / WORK_FILE, "rb") as handle:
        _WORKER.update(work=pickle.load(handle), scratch=Path(scratch), lines=lines)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the parent dies (a `kill -9` of `uos train` would
    otherwise leave its workers training for nobody on a shared server, then waiting forever:
    each holds its own end of the pool's pipes). A parent already gone (killed while this worker
    started): exit now."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # (not Linux)
        pass
    if os.getppid() != parent:
        os._exit(1)


def _task_in_worker(task: Task) -> str:
    """Run `task`; its result goes to a file, and only that file's name through the pool's pipe:
    a worker killed while writing a big message to the pipe would leave the pool's reader
    waiting for the rest of it forever (the pool would never see the worker die)."""
    result = _run_task(task, _WORKER["work"], _WORKER["lines"].put)
    path = _WORKER["scratch"] / f"task-{task}.pickle"
    try:
        with write_atomic(path) as tmp, open(tmp, "wb") as handle:
            pickle.dump(result, handle, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as exc:
        raise UosError(f"cannot write the training's scratch files in {path.parent.parent}: {gist(exc)}") from None
    return str(path)


def _read_result(path: str) -> FoldResult | FinalModel:
    with open(path, "rb") as handle:
        return pickle.load(handle)


def train_all(
    examples: Examples,
    folds: np.ndarray,
    params: TrainParams,
    base: ModelConfig,
    workers: int,
    progress: Callable[[str], None] | None = None,
    on_fold: OnFold | None = None,
    final: bool = True,
) -> Trained:
    """Every fold (and, with `final`, the final model) trained and its held-out holes answered,
    on `workers` processes (1: here, one after the other). `on_fold(fold, errors, history)` is
    called for each fold in fold order, as soon as it and the folds before it are done."""
    started = time.perf_counter()
    fold_names: list[int] = sorted(set(folds.tolist()))
    final_task: list[Task] = [FINAL] if final else []
    # Side by side the longest task first (the final model trains on every hole); one after the
    # other the folds first, as before there were workers.
    tasks = final_task + fold_names if workers > 1 else fold_names + final_task
    work = _Work(examples, folds, params, base)
    in_order = _InOrder(examples, fold_names, on_fold)
    results: dict[Task, FoldResult | FinalModel] = {}
    if workers <= 1:
        for task in tasks:
            results[task] = _run_task(task, work, progress)
            in_order.done(task, results[task])
    else:
        results = _in_workers(tasks, work, workers, progress, in_order)
    cv = gather(examples, [results[fold] for fold in fold_names], time.perf_counter() - started)
    return Trained(cv, results.get(FINAL), workers)


class _InOrder:
    """Calls `on_fold` for each fold in fold order, whatever order the folds finish in."""

    def __init__(self, examples: Examples, folds: list[int], on_fold: OnFold | None):
        self.examples, self.waiting, self.on_fold = examples, list(folds), on_fold
        self.finished: dict[int, FoldResult] = {}

    def done(self, task: Task, result: FoldResult | FinalModel) -> None:
        if task == FINAL:
            return
        self.finished[task] = result
        while self.waiting and self.waiting[0] in self.finished:
            fold = self.waiting.pop(0)
            if self.on_fold:
                done = self.finished[fold]
                self.on_fold(fold, fold_error(self.examples, done), done.history)


def _in_workers(
    tasks: list[Task], work: _Work, workers: int, progress: Callable[[str], None] | None, in_order: _InOrder
) -> dict[Task, FoldResult | FinalModel]:
    with _scratch(work) as scratch:
        # spawn: a fresh interpreter (torch is not safe across a fork once its threads have started).
        context = get_context("spawn")
        lines, finished = context.Queue(), threading.Event()
        relay = threading.Thread(target=_relay, args=(lines, finished, progress), name="progress", daemon=True)
        relay.start()
        initargs = (str(scratch), lines, os.getpid())
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=initargs)
        try:
            results = _collect(pool, tasks, in_order)
        except BrokenProcessPool:
            _stop(pool)
            raise UosError("a training worker process died (out of memory, or killed?): nothing was written") from None
        except BaseException:  # Ctrl-C, or a task's error: no worker goes on training for nobody
            _stop(pool)
            raise
        else:
            pool.shutdown(wait=True)  # (the workers' last lines are in the queue once they have exited)
            finished.set()
            relay.join()
        finally:
            finished.set()
            pool.shutdown(wait=False, cancel_futures=True)
    return results


@contextmanager
def _scratch(work: _Work) -> Iterator[Path]:
    """A folder of this process's own in the temporary folder, holding the work every worker
    reads (a file, not the pipe that starts a worker: the workers would start one after the other,
    each waiting for the last to read ~90 MB), removed at the end; those of runs killed before
    they could remove theirs (kill -9, SIGTERM) are removed first."""
    _remove_stale_scratch()
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        with open(folder / WORK_FILE, "wb") as handle:
            pickle.dump(work, handle, protocol=pickle.HIGHEST_PROTOCOL)
    except OSError as exc:
        raise UosError(f"cannot write the training's scratch files in {tempfile.gettempdir()}: {gist(exc)}") from None
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_stale_scratch() -> None:
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:  # (its process is gone)
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # (not ours to look at, or alive)
            continue


def _collect(pool: ProcessPoolExecutor, tasks: list[Task], in_order: _InOrder) -> dict[Task, FoldResult | FinalModel]:
    """Submit every task and gather the results as they come. The workers are started here, with
    SIGINT ignored: they inherit that (a Ctrl-C reaches the whole process group, and the parent
    decides), and a Python started so never turns SIGINT into KeyboardInterrupt."""
    with _sigint_ignored():
        pending: dict[Future, Task] = {pool.submit(_task_in_worker, task): task for task in tasks}
    results: dict[Task, FoldResult | FinalModel] = {}
    while pending:
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            task = pending.pop(future)
            results[task] = _read_result(future.result())
            in_order.done(task, results[task])
    return results


@contextmanager
def _sigint_ignored():
    if threading.current_thread() is not threading.main_thread():  # (only the main thread may set handlers)
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _relay(lines, finished: threading.Event, progress: Callable[[str], None] | None) -> None:
    """The workers' progress lines, said here in the order they come, until `finished` and none
    is left."""
    import queue

    while True:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if finished.is_set():
                return
            continue
        if progress:
            progress(line)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers now and wait for them to be gone (Python 3.14 has
    `terminate_workers`; 3.11 has none)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
