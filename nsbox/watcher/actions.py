"""The handlers probes and lifecycle hooks run (docs/lifecycle.md, "Probes"): one
implementation of exec, httpGet, tcpSocket, grpc and sleep, none of which blocks the loop.

- exec: the command is spawned into the container (as `nsbox exec` does), its combined
  output read through a pipe (the first 10 KiB kept); on timeout it is killed (kubelet ≥ 1.20).
- httpGet, tcpSocket, grpc: a short-lived fork of the watcher does the exchange with
  ordinary blocking sockets and reports one JSON line. The watcher lives in the pod's
  network namespace (holder.py), so the fork's 127.0.0.1 is the pod's. A fork costs about
  a millisecond per probe; in exchange HTTPS, redirects of the socket state and gRPC need
  no non-blocking protocol code in the loop, and a stuck peer can only stall the fork.
- sleep: a timer of the loop (the kubelet sleeps itself: the image needs no `sleep`).

`on_done(ok, output)` is called once, on a later turn of the loop.
"""

from __future__ import annotations

import json
import os
import signal
from functools import partial

from nsbox import native
from nsbox.errors import NsboxError
from nsbox.kube.probes import PROBE_OUTPUT_LIMIT

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable

    from nsbox.model import Handler
    from nsbox.watcher import Watcher
    from nsbox.watcher.containers import Running
    from nsbox.watcher.loop import Timer

    Done = Callable[[bool, str], None]

LOOPBACK_POD_IP = "127.0.0.1"  # a loopback pod has no IP of its own: its probes go to its loopback


def run(w: Watcher, r: Running, handler: Handler, timeout: float | None, on_done: Done) -> None:
    """Run `handler` for container `r`; `timeout` None = as long as it takes (hooks)."""
    if handler.kind == "sleep":
        w.loop.at(handler.seconds, partial(on_done, True, ""))
    elif handler.kind == "exec":
        _exec(w, r, handler.command, timeout, on_done)
    else:
        _network(w, handler, timeout, on_done)


class _Output:
    """A pipe the loop reads into a bounded buffer, and the one call of `on_done`."""

    def __init__(self, w: Watcher, fd: int, on_done: Done):
        self.w, self.fd, self.on_done = w, fd, on_done
        self.data = bytearray()
        self.timer: Timer | None = None
        self.finished = False
        os.set_blocking(fd, False)
        w.loop.watch(fd, self._readable)

    def _readable(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self._close()
        elif len(self.data) < PROBE_OUTPUT_LIMIT:
            self.data += chunk[: PROBE_OUTPUT_LIMIT - len(self.data)]

    def _close(self) -> None:
        if self.fd >= 0:
            self.w.loop.unwatch(self.fd)
            os.close(self.fd)
            self.fd = -1

    def drain(self) -> None:
        """Take what is there without waiting for the end (a child of the command may hold the pipe)."""
        while self.fd >= 0:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            if len(self.data) < PROBE_OUTPUT_LIMIT:
                self.data += chunk[: PROBE_OUTPUT_LIMIT - len(self.data)]
        self._close()

    def finish(self, ok: bool, output: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.w.loop.cancel(self.timer)
        self.drain()
        self.on_done(ok, output)


def _exec(w: Watcher, r: Running, command: list[str], timeout: float | None, on_done: Done) -> None:
    from nsbox import container

    try:
        req, fds = container.exec_request(w.pod, r.spec, r.pid, command, pod_ip=w.state.pod_ip, started=r.to_status())
    except NsboxError as e:
        w.loop.at(0, partial(on_done, False, str(e)))
        return
    rd, wr = os.pipe2(os.O_CLOEXEC)
    cg_fd, procs = w.cg.join_targets(w.cg.container_path(w.uid, r.spec.name))
    req.cgroup_fd, req.cgroup_procs = cg_fd, procs
    req.stdout = req.stderr = wr  # the kubelet keeps the combined output
    try:
        pid, pidfd = native.spawn(req)
    except native.SpawnError as e:
        os.close(rd)
        w.loop.at(0, partial(on_done, False, str(e)))
        return
    finally:
        os.close(wr)
        for fd in fds:
            os.close(fd)
        if cg_fd >= 0:
            os.close(cg_fd)
    if pidfd >= 0:
        os.close(pidfd)
    out = _Output(w, rd, on_done)

    def exited(status: int) -> None:
        out.drain()
        text = out.data.decode(errors="replace")
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            out.finish(True, text)
        else:
            out.finish(False, text or f"command {' '.join(command)!r} exited with {os.waitstatus_to_exitcode(status)}")

    def timed_out() -> None:
        w.loop.children.pop(pid, None)
        _kill_child(w, pid)
        out.finish(False, f'command "{" ".join(command)}" timed out')

    w.loop.children[pid] = exited
    if timeout is not None:
        out.timer = w.loop.at(timeout, timed_out)


def _kill_child(w: Watcher, pid: int) -> None:
    """SIGKILL a child whose result no longer matters; it is reaped (and ignored) when it has gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    w.loop.children[pid] = lambda status: None


def _network(w: Watcher, handler: Handler, timeout: float | None, on_done: Done) -> None:
    rd, wr = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the fork: one exchange, one line, and out without the watcher's cleanups
        code = 0
        try:
            os.close(rd)
            signal.set_wakeup_fd(-1)
            # Hold nothing of the watcher's: its flock says whether it is alive (state.FileLock).
            os.closerange(3, wr)
            os.closerange(wr + 1, os.sysconf("SC_OPEN_MAX"))
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            from nsbox.watcher import netprobe

            result = netprobe.check(handler, w.state.pod_ip or LOOPBACK_POD_IP, timeout or 30.0)
            os.write(wr, json.dumps(result).encode() + b"\n")
        except BaseException:
            code = 1
        os._exit(code)
    os.close(wr)
    out = _Output(w, rd, on_done)

    def exited(status: int) -> None:
        out.drain()
        try:
            result = json.loads(out.data.decode())
            out.finish(bool(result["ok"]), str(result["output"]))
        except (ValueError, KeyError):
            out.finish(False, f"{handler.kind} check failed (status {os.waitstatus_to_exitcode(status)})")

    def timed_out() -> None:  # the fork keeps its own deadline; this is for one that hangs anyway
        w.loop.children.pop(pid, None)
        _kill_child(w, pid)
        out.finish(False, f"{handler.kind} check timed out")

    w.loop.children[pid] = exited
    out.timer = w.loop.at((timeout or 30.0) + 2.0, timed_out)
