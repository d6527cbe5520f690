"""`exec`: run a command in a running container, and pass its exit code on."""

from __future__ import annotations

import os
import signal

from nsbox import kube, native
from nsbox.errors import NsboxError
from nsbox.pods import pick_container

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.pods import Runtime


def run(
    rt: Runtime,
    namespace: str,
    pod_name: str,
    container_name: str | None,
    command: list[str],
    *,
    stdin: bool = False,
    tty: bool = False,
) -> int:
    """`nsbox exec`: a new process in the container's namespaces, cgroup and security context,
    attached to our terminal (or a pty of the container's with `tty`); its exit code."""
    v = rt.repair(rt.get(namespace, pod_name))
    c = pick_container(v, container_name)
    st = v.container_status(c.name) or {}
    pid, start = st.get("pid", 0), st.get("procStart", 0)
    if not pid or native.process_start_time(pid) != start:
        raise NsboxError(f'container "{c.name}" is not running')
    from nsbox import container

    req, fds = container.exec_request(v.spec, c, pid, command, pod_ip=v.status.get("podIP", ""), started=st)
    from nsbox import cgroups

    cg = cgroups.detect()
    cg_fd, procs = cg.join_targets(cg.container_path(v.spec.uid, c.name))
    req.cgroup_fd, req.cgroup_procs = cg_fd, procs
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    master = slave = -1
    if tty:
        from nsbox import tty as terminal

        master, slave = terminal.open_pty(f"/proc/{pid}/root/dev/ptmx")
        req.stdin = req.stdout = req.stderr = slave
        req.ctty = True  # its own session, with the pty as controlling terminal
    else:
        req.stdin = 0 if stdin else devnull
        req.stdout, req.stderr = 1, 2
        req.setsid = False  # stay in the terminal's foreground process group
    try:
        pid, pidfd = native.spawn(req)
    finally:
        for fd in fds + [devnull, slave] + ([cg_fd] if cg_fd >= 0 else []):
            if fd >= 0:
                os.close(fd)
    if master < 0:
        return wait_forwarding_signals(pid, pidfd)
    status: list[int] = []

    def exited() -> bool:
        if not status:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status.append(st)
        return bool(status)

    try:
        terminal.relay(master, exited, forward_stdin=stdin)
    finally:
        os.close(master)
    if not status:
        status.append(os.waitpid(pid, 0)[1])
    if pidfd >= 0:
        os.close(pidfd)
    return exit_code(status[0])


def wait_forwarding_signals(pid: int, pidfd: int) -> int:
    """Wait for our child `pid`, passing on SIGTERM/SIGHUP; returns its exit code (128+N if killed)."""

    def forward(sig: int, _frame: Any) -> None:
        native.send_signal(pid, sig, pidfd if pidfd >= 0 else None)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal sends it to the child too
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if pidfd >= 0:
            os.close(pidfd)
    return exit_code(status)


def exit_code(wait_status: int) -> int:
    """What a shell (and Kubernetes) reports: the exit code, or 128+N when killed by signal N."""
    if os.WIFSIGNALED(wait_status):
        return kube.exit_code_for_signal(os.WTERMSIG(wait_status))
    return os.waitstatus_to_exitcode(wait_status)
