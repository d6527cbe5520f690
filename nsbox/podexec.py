"""`exec`: run a command in a running container, and pass its exit code on."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from nsbox import kube, native
from nsbox.errors import NsboxError
from nsbox.pods import pick_container

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Iterator
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
    ours: list[int] = []  # our ends: the pty's master, or the pipes' read ends and stdin's write end
    theirs: list[int] = [devnull]  # the process's ends, closed here once it has them
    from nsbox import tty as terminal

    if tty:
        master, slave = terminal.open_pty(f"/proc/{pid}/root/dev/ptmx")
        ours.append(master)
        theirs.append(slave)
        req.stdin = req.stdout = req.stderr = slave
        req.ctty = True  # its own session, with the pty as controlling terminal
    else:
        # Never our own descriptors: a terminal handed in could be driven with TIOCSTI and
        # a file kept after we return. Pipes, relayed while the command runs; and a session
        # of its own, so that /dev/tty inside is not the user's terminal either.
        out_rd, out_wr = os.pipe2(os.O_CLOEXEC)
        err_rd, err_wr = os.pipe2(os.O_CLOEXEC)
        ours += [out_rd, err_rd]
        theirs += [out_wr, err_wr]
        req.stdin = devnull
        if stdin:
            in_rd, in_wr = os.pipe2(os.O_CLOEXEC)
            ours.append(in_wr)
            theirs.append(in_rd)
            req.stdin = in_rd
        req.stdout, req.stderr = out_wr, err_wr
        req.setsid = True
    try:
        pid, pidfd = native.spawn(req)
    except BaseException:
        _close_all(ours)
        raise
    finally:
        _close_all(fds + theirs + ([cg_fd] if cg_fd >= 0 else []))
    status: list[int] = []

    def exited() -> bool:
        if not status:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status.append(st)
        return bool(status)

    try:
        with contextlib.nullcontext() if tty else forwarding_signals(pid, pidfd):
            if tty:
                terminal.relay(ours[0], exited, forward_stdin=stdin)
            else:
                terminal.copy_streams(
                    {ours[0]: sys.stdout.fileno(), ours[1]: sys.stderr.fileno()},
                    exited,
                    stdin_to=ours[2] if stdin else -1,
                    end_of_input=lambda: _close_input(ours),
                )
            if not status:
                status.append(os.waitpid(pid, 0)[1])
    finally:
        _close_all(ours)
        if pidfd >= 0:
            os.close(pidfd)
    return exit_code(status[0])


def _close_input(ours: list[int]) -> None:
    """End of our stdin: the command reads end of file."""
    os.close(ours[2])
    ours[2] = -1


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        if fd >= 0:
            os.close(fd)


@contextlib.contextmanager
def forwarding_signals(pid: int, pidfd: int) -> Iterator[None]:
    """While we wait for our child `pid`, pass SIGTERM, SIGHUP and SIGINT on (in a session
    of its own, it does not get the terminal's Ctrl-C itself)."""

    def forward(sig: int, _frame: Any) -> None:
        native.send_signal(pid, sig, pidfd if pidfd >= 0 else None)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def exit_code(wait_status: int) -> int:
    """What a shell (and Kubernetes) reports: the exit code, or 128+N when killed by signal N."""
    if os.WIFSIGNALED(wait_status):
        return kube.exit_code_for_signal(os.WTERMSIG(wait_status))
    return os.waitstatus_to_exitcode(wait_status)
