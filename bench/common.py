"""Timing, statistics, process memory and clean-up helpers shared by every suite.

Nothing here imports nsbox: the harness measures nsbox only through its
command line, exactly as a user runs it.
"""

from __future__ import annotations

import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

NS = "nsbench"  # the Kubernetes namespace every nsbox pod of the bench lives in
TRAP_WAIT = "trap 'exit 0' TERM; sleep 1000000 & wait"  # a container that exits on SIGTERM,
#                                                          without waking up (unlike a sleep-0.1 loop)


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(
    argv: list[str], env: dict[str, str] | None = None, check: bool = True, timeout: float = 120, capture: bool = False
) -> subprocess.CompletedProcess:
    """Run a command quietly; with capture, its stdout is kept (text).

    Output goes to files, not pipes: a detached container (runc run -d) inherits them
    and would hold a pipe open for ever. The exit is waited for on a pidfd, which wakes
    at once: subprocess's own wait with a timeout polls with a growing back-off (1, 2, 4,
    … 50 ms between looks) and would round every time up to its next look — a command
    of 70 ms measured 113.
    """
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out if capture else subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        try:
            wait_exact(p, timeout)
        except BaseException:
            p.kill()
            p.wait()
            raise
        if check and p.returncode != 0:
            err.seek(0)
            raise BenchError(f"{' '.join(argv)} exited {p.returncode}: {err.read().strip()[-600:]}")
        out.seek(0)
        return subprocess.CompletedProcess(argv, p.returncode, out.read() if capture else None, None)


def wait_exact(p: subprocess.Popen, timeout: float | None = None) -> int:
    """Wait for `p` to exit, woken by the kernel the moment it does (pidfd), not by polling."""
    fd = os.pidfd_open(p.pid)
    try:
        if not select.select([fd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(p.args, timeout or 0)
    finally:
        os.close(fd)
    return p.wait()


def timed(argv: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> float:
    """Wall time of one command in ms (fork + exec + wait, as a shell would see it)."""
    t0 = time.perf_counter()
    run(argv, env=env, timeout=timeout)
    return (time.perf_counter() - t0) * 1000


def timed_fn(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


@dataclass
class Series:
    """The samples of one (operation, runtime) cell."""

    op: str
    runtime: str
    samples: list[float] = field(default_factory=list)
    unit: str = "ms"
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def lo(self) -> float:
        return min(self.samples) if self.samples else float("nan")

    @property
    def hi(self) -> float:
        return max(self.samples) if self.samples else float("nan")


@dataclass
class Case:
    """One runtime's way of doing an operation, for interleaved timing.

    prepare(i) -> ctx is untimed (e.g. make the pod to delete); measure(ctx) -> ms is the
    timed part; after(ctx) is untimed clean-up of what the measured step left.
    """

    runtime: str
    measure: Callable[[object], float]
    prepare: Callable[[int], object] = lambda i: i
    after: Callable[[object], None] = lambda ctx: None


def interleave(op: str, cases: list[Case], reps: int, warmup: int = 2) -> list[Series]:
    """A B C, B C A, C A B, ...: every runtime sees the same noise; warm-up rounds are dropped."""
    series = [Series(op, c.runtime) for c in cases]
    failures = {c.runtime: 0 for c in cases}
    for rep in range(warmup + reps):
        k = rep % len(cases)
        for idx in list(range(k, len(cases))) + list(range(k)):
            c = cases[idx]
            if failures[c.runtime] >= 3:
                continue
            ctx = None
            try:
                ctx = c.prepare(rep)
                ms = c.measure(ctx)
                if rep >= warmup:
                    series[idx].samples.append(ms)
            except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                failures[c.runtime] += 1
                log(f"{op} / {c.runtime}: {e}")
                series[idx].note = f"failed: {str(e)[:160]}"
            finally:
                try:
                    c.after(ctx)
                except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                    log(f"{op} / {c.runtime} clean-up: {e}")
    return series


# ---------------------------------------------------------------- processes and memory


def smaps_rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from /proc/PID/smaps_rollup; (0, 0) if it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return rss, pss


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def argv0(pid: int) -> str:
    """The first word of a process's command line (a process title such as `nsbox-watch ns/pod`)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return ""


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for p in all_pids():
        kids.setdefault(ppid(p), []).append(p)
    return kids


def descendants(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def pids_matching(prefix: str) -> list[int]:
    return [p for p in all_pids() if cmdline(p).startswith(prefix)]


def mem_available_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def kill_pids(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
