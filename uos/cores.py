"""How many worker processes a command starts when told `workers = 0`: one home for the choice.

The users train on a server they share. A worker is a process with one thread of its own (no
intra-op thread pool: a pool's threads wait for each other at every step, so one descheduled
thread stalls them all, and a team-mate's busy process made training 2.7 times slower). The
number of workers is our fair share of the cores this process may use:

- the cores: this process's CPU affinity (`taskset`, a cpuset), capped by a cgroup CPU quota
  (a container's `--cpus`, systemd's `CPUQuota=`);
- the load: the tasks running elsewhere right now (the kernel's count of runnable tasks, sampled
  for a quarter of a second; not the load average, which still carries the previous stage of a
  `dvc repro`, i.e. our own work);
- the share: the idle cores, plus an equal share of the busy ones with the tasks running on them
  (we become one more of them), rounded up: 2 on an idle 2-core machine, still 2 beside one busy
  process (1 idle core and half of the other), 1 beside two or more.

Plain standard library: `uos --help` and the headless commands import this.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

SAMPLES, SAMPLE_GAP_S = 6, 0.05


def usable_cores() -> int:
    """The cores this process may run on, capped by its cgroup's CPU quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (not Linux)
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota - 1e-9)))
    return max(cores, 1)


def _cgroup_quota() -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or
    None when it has none or it cannot be read."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        try:
            if controllers == "":  # v2: "max 100000" or "150000 100000"
                quota, period = (Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.max").read_text().split()
                if quota != "max":
                    return int(quota) / int(period)
            elif "cpu" in controllers.split(","):
                folder = Path("/sys/fs/cgroup") / controllers / path.lstrip("/")
                if not folder.exists():  # (mounted as cpu,cpuacct)
                    folder = Path("/sys/fs/cgroup/cpu,cpuacct") / path.lstrip("/")
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                if quota > 0:
                    return quota / int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
    return None


def running_elsewhere() -> float:
    """Tasks running on the machine now besides the one asking (the median of a few samples of
    /proc/stat's procs_running; 0 where it cannot be read)."""
    counts = []
    for sample in range(SAMPLES):
        if sample:
            time.sleep(SAMPLE_GAP_S)
        try:
            for line in Path("/proc/stat").read_text().splitlines():
                if line.startswith("procs_running "):
                    counts.append(int(line.split()[1]) - 1)  # (the reading process is running)
                    break
        except (OSError, ValueError):
            return 0.0
    return max(statistics.median(counts), 0.0) if counts else 0.0


def fair_share(cores: int, elsewhere: float) -> int:
    """Workers for our share of `cores` with `elsewhere` tasks running: the idle cores, and an
    equal share of the busy ones with the tasks on them, rounded up; at least 1."""
    busy = min(elsewhere, cores)
    share = (cores - busy) + busy / (elsewhere + 1)
    return max(1, min(cores, math.ceil(share - 1e-9)))


def choose_workers(requested: int, tasks: int) -> tuple[int, str]:
    """The workers to start for `tasks` independent tasks: `requested` when it is not 0, else
    our fair share of the usable cores (see the module's doc); never more than the tasks. With
    the reason, for the progress line."""
    tasks = max(tasks, 1)
    if requested > 0:
        return min(requested, tasks), f"workers = {requested}"
    cores = usable_cores()
    elsewhere = running_elsewhere()
    workers = min(fair_share(cores, elsewhere), tasks)
    return workers, f"{cores} usable core{'s' * (cores != 1)}, {elsewhere:g} task(s) running elsewhere"
