"""ThreadGovernor: torch threads follow the cores other processes leave free, read from a fake /proc."""
import os

import pytest

from s3d_det.engine.threads import ThreadGovernor, cpu_times, own_cpu_time


class FakeProc:
    """A /proc with /proc/stat (cpu0, cpu1, cpu2) and this process plus one child and one stranger."""

    def __init__(self, root):
        self.root = root
        self.pid = os.getpid()
        self.write(busy=(0, 0, 0), idle=(0, 0, 0), own=0, child=0, stranger=0)

    def write(self, *, busy, idle, own, child, stranger, reaped=0):
        lines = ["cpu  999 0 0 999 0 0 0 0 0 0"]  # the all-CPU line is not read
        for n, (b, i) in enumerate(zip(busy, idle)):
            # user nice system idle iowait irq softirq steal: busy split over user, system and steal
            lines.append(f"cpu{n} {b - 2} 0 1 {i} 0 0 0 1 0 0")
        (self.root / "stat").write_text("\n".join(lines) + "\nintr 0\n")
        for pid, ppid, ticks, children in ((self.pid, 1, own, reaped), (self.pid + 100001, self.pid, child, 0),
                                           (self.pid + 100002, 1, stranger, 0)):
            if ticks is None:  # the process has ended
                if (self.root / str(pid) / "stat").exists():
                    (self.root / str(pid) / "stat").unlink()
                continue
            (self.root / str(pid)).mkdir(exist_ok=True)
            # pid (comm) state ppid ... utime(14) stime(15) cutime(16) cstime(17): comm with a space and a ")"
            fields = (["S", str(ppid)] + ["0"] * 9 + [str(ticks - ticks // 2), str(ticks // 2)]
                      + [str(children - children // 2), str(children // 2)] + ["0"] * 3)
            (self.root / str(pid) / "stat").write_text(f"{pid} (py thon) x) " + " ".join(fields) + "\n")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # cpu2 is not ours
    return FakeProc(tmp_path)


def test_reads_proc(fake):
    fake.write(busy=(30, 50, 1000), idle=(70, 50, 0), own=40, child=15, stranger=99)
    assert cpu_times({0, 1}, str(fake.root)) == (80.0, 200.0)
    assert own_cpu_time(str(fake.root)) == 55.0  # the process and its child, not the stranger


def test_threads_follow_the_free_cores(fake):
    calls, now = [], [0.0]
    threads = [4]

    def set_threads(n):
        calls.append(n)
        threads[0] = n

    gov = ThreadGovernor(max_threads=2, interval=10, set_threads=set_threads, get_threads=lambda: threads[0],
                         clock=lambda: now[0], proc=str(fake.root))
    assert gov.supported and calls == [2]
    # 10 s = 1000 ticks a CPU later (2000 on our two): 1300 busy, 1000 of them ours (800 + a worker's 200) ->
    # others 300 ticks = 0.3 core -> 1.7 free, nearest 2 threads: unchanged
    fake.write(busy=(650, 650, 1000), idle=(350, 350, 0), own=800, child=200, stranger=0)
    now[0] = 5.0
    assert gov.step() is None and gov.history == []  # before the interval: no look
    now[0] = 10.0
    assert gov.step() is None and calls == [2] and gov.history[-1][1:] == (0.3, 2)
    # the next 10 s: 1700 busy of 2000, 1000 ours -> others 0.7 core -> 1.3 free -> 1 thread
    fake.write(busy=(1500, 1500, 2000), idle=(500, 500, 0), own=1600, child=400, stranger=5000)
    now[0] = 20.0
    assert gov.step() == 1 and calls == [2, 1] and gov.history[-1][1:] == (0.7, 1)
    # the next 10 s: 1950 busy, 950 ours -> others 1.0 core -> 1 thread, unchanged
    fake.write(busy=(2475, 2475, 3000), idle=(525, 525, 0), own=2350, child=600, stranger=0)
    now[0] = 30.0
    assert gov.step() is None and gov.history[-1][1:] == (1.0, 1)
    # the other process stops: 1000 busy, all ours -> 2 threads again
    fake.write(busy=(2975, 2975, 4000), idle=(1025, 1025, 0), own=3100, child=850, stranger=0)
    now[0] = 40.0
    assert gov.step() == 2 and calls == [2, 1, 2] and gov.history[-1][1:] == (0.0, 2)
    # the worker ends (its 850 ticks and 50 more now count as the parent's cutime + cstime): still no others
    fake.write(busy=(3475, 3475, 5000), idle=(1525, 1525, 0), own=4050, child=None, stranger=0, reaped=900)
    now[0] = 50.0
    assert gov.step() is None and gov.history[-1][1:] == (0.0, 2)


def test_without_proc_it_keeps_max_threads(tmp_path):
    calls = []
    gov = ThreadGovernor(max_threads=3, interval=0.001, set_threads=calls.append, get_threads=lambda: 3,
                         proc=str(tmp_path / "nothing"))
    assert not gov.supported and gov.step() is None and calls == [3]


def test_bad_arguments():
    for kwargs in ({"max_threads": 0}, {"max_threads": 1, "interval": 0}, {"max_threads": 1, "headroom": 1.0}):
        with pytest.raises(ValueError):
            ThreadGovernor(set_threads=lambda n: None, **kwargs)
