"""Containers a dead watcher left running, taken over by its successor.

They are not the new watcher's children, so it cannot wait for them: their
pidfds tell when they end (or, on a kernel without pidfd_open, a poll of their
start time), and their exit status is unknown (docs/lifecycle.md, "The
watcher, lost and adopted")."""

from __future__ import annotations

from functools import partial

from nsbox import kube, native

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.watcher.containers import Containers, Running


def adopt(containers: Containers, old: dict[str, Any]) -> None:
    """Take over the processes a dead watcher left running (its status.json is `old`)."""
    for st in old.get("containers", []):
        r = containers.by_name.get(st["name"])
        if r is None:
            continue
        r.load_status(st)
        pid, start = st.get("pid", 0), st.get("procStart", 0)
        if pid and start and native.process_start_time(pid) == start:
            pidfd = native.pidfd_open(pid)
            r.pid, r.proc_start, r.child = pid, start, False
            if pidfd is not None:
                r.pidfd = pidfd
                watch(containers, r)
            else:
                containers.w.loop.every(0.1, partial(_poll, containers, r))
            containers.w.probes.started(r)  # probed afresh: not ready until its readiness probe says so
        elif "running" in r.state:
            r.state = {
                "terminated": {
                    "exitCode": 137,
                    "reason": "Unknown",
                    "message": "exited while the pod had no watcher",
                    "finishedAt": kube.rfc3339(),
                }
            }


def watch(containers: Containers, r: Running) -> None:
    """An adopted process is not our child: its pidfd tells when it ends."""
    containers.w.loop.watch(r.pidfd, lambda _fd: exited(containers, r))


def exited(containers: Containers, r: Running) -> None:
    r.state = {
        "terminated": {
            "exitCode": 137 if r.term_at else 0,
            "reason": "Unknown",
            "message": "exit status unknown (the process was adopted)",
            "finishedAt": kube.rfc3339(),
        }
    }
    containers.process_gone(r)
    containers.after_exit(r, -1)


def _poll(containers: Containers, r: Running) -> None:
    if r.running and native.process_start_time(r.pid) != r.proc_start:
        exited(containers, r)
