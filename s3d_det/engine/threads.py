"""CPU threads for a busy machine: torch's intra-op threads set to the cores other processes leave free.

OpenMP threads spin-wait for each other at the end of every parallel region. When another process holds one of
the cores, a thread waits for a core it does not get, and the step runs far slower than on the cores that are
free, not just half as fast (``benchmarks/bench_load.py``; figures in docs/benchmarks.md, "A busy machine").
``ThreadGovernor`` reads, every few seconds, how much CPU time the cores this process may use (its affinity)
spent on other processes, and sets ``torch.set_num_threads`` to the cores left free, between 1 and
``max_threads``: fewer threads while another process runs, all of them again when it stops. Linux only
(``/proc``); elsewhere it keeps ``max_threads``. Data-loading workers (this process's children) count as its own.

Changing the thread count changes the order of floating-point reductions: a run that adapts is not bit-for-bit
reproducible. Fix the count (``CPU_THREADS``) for that.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional, Tuple

import torch

from s3d_det.utils.io import available_cores

__all__ = ["ThreadGovernor", "cpu_times", "own_cpu_time"]

_PROC = "/proc"


def cpu_times(cpus, proc: str = _PROC) -> Optional[Tuple[float, float]]:
    """(busy, total) clock ticks of the CPUs ``cpus`` since boot, summed over the ``cpuN`` lines of
    ``/proc/stat``; busy is all but idle and iowait (steal counts as busy: another VM had the core). None
    without ``/proc/stat``."""
    try:
        with open(os.path.join(proc, "stat")) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        values = [float(v) for v in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(values)
        busy += sum(values) - values[3] - values[4]
    return busy, total


def _process_ticks(stat: str) -> Tuple[int, float, float]:
    """(parent pid, utime + stime, cutime + cstime) from a ``/proc/<pid>/stat`` line (the name may hold spaces and
    parentheses); cutime + cstime is the time of its children that have ended and been waited for."""
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), float(fields[11]) + float(fields[12]), float(fields[13]) + float(fields[14])


def own_cpu_time(proc: str = _PROC, pid: Optional[int] = None) -> Optional[float]:
    """Clock ticks of CPU time used by this process (all its threads) and its children (data-loading workers:
    the living ones' own time, the ended ones' as this process's cutime + cstime, so that the time of a worker
    that ends stays counted as ours), from ``/proc``; None without it."""
    pid = os.getpid() if pid is None else pid
    try:
        with open(os.path.join(proc, str(pid), "stat")) as f:
            _, own, reaped = _process_ticks(f.read())
    except OSError:
        return None
    total = own + reaped
    for entry in os.listdir(proc):
        if not entry.isdigit() or int(entry) == pid:
            continue
        try:
            with open(os.path.join(proc, entry, "stat")) as f:
                parent, ticks, _ = _process_ticks(f.read())
        except (OSError, ValueError, IndexError):
            continue  # the process ended, or is not readable
        if parent == pid:
            total += ticks
    return total


class ThreadGovernor:
    """Keeps ``torch.get_num_threads()`` at the cores of this process's affinity that other processes leave free.

    Args:
        max_threads (int): the most threads (e.g. the cores less one per data-loading worker); at least 1.
        interval (float): seconds between two looks at the machine (each reads ``/proc``: about a millisecond).
        headroom (float): threads = floor(free cores + headroom), clamped to 1..max_threads (default 0.5, the
            nearest whole number: on two cores, others using 0.7 of a core leave 1.3 free, so 1 thread; others
            using 0.3 leave 1.7, so 2).
        set_threads, get_threads (callable): torch's by default (tests pass their own).
        clock (callable): seconds (``time.monotonic``).
        proc (str): the ``/proc`` folder (tests pass a fake one).

    Call ``step()`` often (every training iteration): it returns at once until ``interval`` has passed since the
    last look, then measures the others' share over that span and sets the thread count. ``history`` lists
    ``(time, others' cores, threads)`` of each look.
    """

    def __init__(self, *, max_threads: int, interval: float = 10.0, headroom: float = 0.5,
                 set_threads: Callable[[int], None] = torch.set_num_threads,
                 get_threads: Callable[[], int] = torch.get_num_threads,
                 clock: Callable[[], float] = time.monotonic, proc: str = _PROC):
        if max_threads < 1 or interval <= 0 or not 0 <= headroom < 1:
            raise ValueError(f"need max_threads >= 1, interval > 0, headroom in [0, 1); got {max_threads}, "
                             f"{interval}, {headroom}")
        self.max_threads, self.interval, self.headroom = int(max_threads), float(interval), float(headroom)
        self._set, self._get, self._clock, self._proc = set_threads, get_threads, clock, proc
        try:
            self.cpus = set(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            self.cpus = set(range(available_cores()))
        self.history: list = []
        self._last: Optional[Dict[str, float]] = self._sample()
        self._set(self.max_threads)

    @property
    def supported(self) -> bool:
        """Whether ``/proc`` can be read here (else the count stays at ``max_threads``)."""
        return self._last is not None

    def _sample(self) -> Optional[Dict[str, float]]:
        times, own = cpu_times(self.cpus, self._proc), own_cpu_time(self._proc)
        if times is None or own is None:
            return None
        return {"time": self._clock(), "busy": times[0], "total": times[1], "own": own}

    def step(self) -> Optional[int]:
        """Looks at the machine if ``interval`` has passed; returns the new thread count when it changed."""
        if self._last is None or self._clock() - self._last["time"] < self.interval:
            return None
        now = self._sample()
        if now is None:
            return None
        d_total = now["total"] - self._last["total"]
        if d_total <= 0:
            return None
        others = max(0.0, (now["busy"] - self._last["busy"]) - (now["own"] - self._last["own"]))
        others_cores = others / d_total * len(self.cpus)  # ticks of all our CPUs -> cores
        self._last = now
        threads = max(1, min(self.max_threads, int(len(self.cpus) - others_cores + self.headroom)))
        self.history.append((now["time"], round(others_cores, 3), threads))
        if threads != self._get():
            self._set(threads)
            return threads
        return None
