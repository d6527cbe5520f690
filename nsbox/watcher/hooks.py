"""Lifecycle hooks (postStart, preStop): a command exec'd into a running container, as a
child of the watcher, whose exit status decides what happens next."""

from __future__ import annotations

import os
import signal

from nsbox import native
from nsbox.errors import NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable

    from nsbox.watcher import Watcher
    from nsbox.watcher.containers import Running


def run(w: Watcher, r: Running, command: list[str], kind: str, on_done: Callable[[bool], None] | None = None) -> None:
    """Run hook `kind` ("PostStart", "PreStop") of container `r`; `on_done(ok)` when it has ended.
    A failure is a Failed<kind>Hook event; a failed postStart kills the container (as the kubelet does)."""
    from nsbox import container

    try:
        req, fds = container.exec_request(w.pod, r.spec, r.pid, command, pod_ip=w.state.pod_ip, started=r.to_status())
    except NsboxError as e:
        w.event("Warning", f"Failed{kind}Hook", str(e), r.spec.name)
        if on_done:
            on_done(False)
        return
    cg_fd, procs = w.cg.join_targets(w.cg.container_path(w.uid, r.spec.name))
    req.cgroup_fd, req.cgroup_procs = cg_fd, procs
    try:
        pid, pidfd = native.spawn(req)
    except native.SpawnError as e:
        w.event("Warning", f"Failed{kind}Hook", str(e), r.spec.name)
        if on_done:
            on_done(False)
        return
    finally:
        for fd in fds:
            os.close(fd)
        if cg_fd >= 0:
            os.close(cg_fd)
    if pidfd >= 0:
        os.close(pidfd)

    def exited(status: int) -> None:
        ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if not ok:
            w.event(
                "Warning",
                f"Failed{kind}Hook",
                f"{kind} hook {command!r} exited with status {os.waitstatus_to_exitcode(status)}",
                r.spec.name,
            )
            if kind == "PostStart" and r.running and w.termination.deletion is None:
                w.containers.signal(r, signal.SIGKILL)
        if on_done:
            on_done(ok)

    w.loop.children[pid] = exited
