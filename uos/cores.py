"""How many worker processes a command starts when told `workers = 0`: one home for the choice.

The users train on a server they share. A worker is a process with one thread of its own (no
intra-op thread pool: a pool's threads wait for each other at every step, so one descheduled
thread stalls them all, and a team-mate's busy process made training 2.7 times slower). The
number of workers is our fair share of the cores this process may use:

- the cores: this process's CPU affinity (`taskset`, a cpuset), capped by a cgroup CPU quota
  (a container's `--cpus`, systemd's `CPUQuota=`);
- the load: the tasks running elsewhere right now (the kernel's count of runnable tasks, sampled
  for a quarter of a second; not the load average, which still carries the previous stage of a
  `dvc repro`, i.e. our own work), as many on our cores as their share of the machine's;
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
    """The tightest CPU quota, in cores, of this process's cgroup and those above it (cgroup v2
    `cpu.max`, v1 `cpu.cfs_quota_us`; a container sees its own cgroup as the mount's root), or
    None when there is none or it cannot be read."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            roots = [Path("/sys/fs/cgroup")]
        elif "cpu" in controllers.split(","):
            roots = [Path("/sys/fs/cgroup") / name for name in (controllers, "cpu", "cpu,cpuacct")]
        else:
            continue
        for root in dict.fromkeys(roots):
            relative = Path(path.lstrip("/"))
            for folder in [root / relative, *(root / parent for parent in relative.parents)]:
                if (quota := _quota_of(folder, v2=controllers == "")) is not None:
                    quotas.append(quota)
    return min(quotas, default=None)


def _quota_of(folder: Path, v2: bool) -> float | None:
    try:
        if v2:  # "max 100000" or "150000 100000"
            quota, period = (folder / "cpu.max").read_text().split()
            return None if quota == "max" else int(quota) / int(period)
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        return quota / int((folder / "cpu.cfs_period_us").read_text()) if quota > 0 else None
    except (OSError, ValueError):
        return None


def running_elsewhere() -> float:
    """Tasks running on the machine now besides the one asking (the median of a few samples of
    /proc/stat's procs_running, which counts every CPU; 0 where it cannot be read)."""
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
    if tasks == 1:
        return 1, "one task"
    cores = usable_cores()
    # The machine's running tasks, as many on our cores as their share of the machine's.
    elsewhere = running_elsewhere() * cores / max(os.cpu_count() or cores, cores)
    workers = min(fair_share(cores, elsewhere), tasks)
    return workers, f"{cores} usable core{'s' * (cores != 1)}, {elsewhere:.2g} task(s) running elsewhere on them"
