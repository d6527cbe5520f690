"""The watcher's end of the control socket (nsbox/control.py): the CLI's requests
`ping`, `start`, `sync-config`, `delete` and `wait-exit`, and the replies that come later."""

from __future__ import annotations

import json
import os
import socket

from nsbox import control
from nsbox.errors import NsboxError
from nsbox.model import PodSpec
from nsbox.state import read_json
from nsbox.watcher.containers import Running

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.watcher import Watcher


class ControlServer:
    def __init__(self, w: Watcher):
        self.w = w
        self.listener: socket.socket | None = None
        self.clients: dict[socket.socket, str] = {}  # socket -> what it waits for

    def listen(self) -> None:
        self.listener = control.listen(self.w.paths.ctl)
        self.w.loop.watch(self.listener, self._on_accept)

    def take_over(self, fd: int) -> None:
        """The listening socket a hibernated watcher kept open."""
        self.listener = socket.socket(fileno=fd)
        self.listener.setblocking(False)
        self.w.loop.watch(self.listener, self._on_accept)

    def take_client(self, fd: int) -> None:
        """A connection nsbox-idle accepted (to see whether it could answer it itself: a
        `delete` of a pod that ends without Python) and left to us, its request unread."""
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        sock.setblocking(False)
        self.clients[sock] = ""
        self.w.loop.watch(sock, self._on_request)

    def _on_accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self.clients[sock] = ""
        self.w.loop.watch(sock, self._on_request)

    def _on_request(self, sock: socket.socket) -> None:
        w = self.w
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 65536, 3)
        except BlockingIOError:
            return
        except OSError:
            msg, fds = b"", []
        if not msg:
            w.loop.unwatch(sock)
            self.clients.pop(sock, None)
            sock.close()
            return
        try:
            reply = self.handle(json.loads(msg), fds, sock)
        except (NsboxError, OSError) as e:
            reply = {"error": str(e)}
        finally:
            for fd in fds:
                os.close(fd)
        if reply is not None:
            self.send(sock, reply)
        if w.dirty and not w.done:
            w.save()

    def handle(self, req: dict[str, Any], fds: list[int], sock: socket.socket) -> dict[str, Any] | None:
        w = self.w
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "start":
            # A container added to the running pod (`run --pod`): the CLI wrote it into pod.json.
            w.pod = PodSpec.from_dict(read_json(w.paths.pod_json))
            c = w.pod.container(req["container"])
            by_name = w.containers.by_name
            if c is None or c.name in by_name and by_name[c.name].running:
                raise NsboxError(f'container "{req["container"]}" cannot be started')
            r = by_name.setdefault(c.name, Running(c, False))
            saved = w.attach
            if fds:
                w.attach = tuple(fds) if len(fds) == 3 else (fds[0], -1, -1)
            try:
                error = w.containers.try_start(r)
            finally:
                w.attach = saved
            if error:
                raise NsboxError(f'container "{c.name}": {error}')
            return {"ok": True, "pid": r.pid}
        if op == "sync-config":
            w.config.changed()
            return {"ok": True}
        if op == "delete":
            w.termination.deletion = read_json(w.paths.deletion_json) or {}
            w.termination.begin(int(req.get("grace", 30)), bool(req.get("force")))
            self.clients[sock] = "delete"
            return {"ok": True}
        if op == "wait-exit":
            # `run --attach`: told when the named container has terminated for good.
            name = req["container"]
            self.clients[sock] = "exit:" + name
            if name in w.state.exit_codes and not w.pod.auto_remove:
                return {"exited": w.state.exit_codes[name]}
            return {"ok": True}
        raise NsboxError(f"unknown request {op!r}")

    def container_exited(self, name: str, code: int) -> None:
        """Tell those who wait for container `name` (wait-exit) that it has ended for good."""
        for sock, waits in list(self.clients.items()):
            if waits == "exit:" + name:
                self.send(sock, {"exited": code})

    def finish(self, exit_codes: dict[str, int]) -> None:
        """The pod is gone: tell every client, then hang up."""
        for sock in list(self.clients):
            self.send(sock, {"gone": True, "exitCodes": exit_codes})
            sock.close()

    @staticmethod
    def send(sock: socket.socket, msg: dict[str, Any]) -> None:
        try:
            sock.send(json.dumps(msg).encode())
        except OSError:
            pass
