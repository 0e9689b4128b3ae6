"""Measuring while the machine is otherwise idle. On a shared machine any other busy thread slows the
servers' thread pools far beyond its share (their workers spin at each barrier, and wait for the one
that lost its core): a run that overlapped other work is measured again, a while later."""

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

LIMIT = 0.10  # the share of all CPUs that other processes may take during a kept run
PATIENCE_S = 600.0  # how long one measurement keeps trying for a quiet machine
PAUSE_S = 15.0
T = TypeVar("T")


def cpu_ticks() -> tuple[int, int]:
    """Busy and total ticks of all CPUs since boot (steal left out: it is not this machine's work)."""
    user, nice, system, idle, iowait, irq, softirq = (int(v) for v in Path("/proc/stat").read_text().split()[1:8])
    return user + nice + system + irq + softirq, user + nice + system + idle + iowait + irq + softirq


def process_ticks(pid: int) -> int:
    """User and system ticks of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def others_share(run: Callable[[], T], pids: list[int]) -> tuple[T, float]:
    """`run`'s result, and the share of all CPUs that processes other than `pids` took meanwhile."""
    busy, total = cpu_ticks()
    mine = sum(process_ticks(pid) for pid in pids)
    result = run()
    busy_after, total_after = cpu_ticks()
    mine_after = sum(process_ticks(pid) for pid in pids)
    return result, max(0, busy_after - busy - (mine_after - mine)) / max(1, total_after - total)


def family(pid: int) -> list[int]:
    """`pid` and every process below it: vLLM computes in processes the server starts."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):  # a process that ended meanwhile
            continue
    found = [pid]
    for member in found:
        found += [child for child, parent in parents.items() if parent == member]
    return found


def quietly(run: Callable[[], T], server_pid: int, invited: tuple[int, ...] = ()) -> tuple[T, float]:
    """`run` again until other processes took under LIMIT of the CPUs during it, or PATIENCE_S is
    spent; the quietest run's result and the share others took of it. `invited` are processes the
    measurement itself put there (bench.neighbour's), which do not count as others."""
    deadline = time.monotonic() + PATIENCE_S
    best = None
    while True:
        result, share = others_share(run, [*family(server_pid), os.getpid(), *invited])
        if best is None or share < best[1]:
            best = (result, share)
        if share < LIMIT or time.monotonic() > deadline:
            return best
        print(f"    other processes took {share:.0%} of the CPUs: measuring again", flush=True)
        time.sleep(PAUSE_S)
