"""Deleting a pod from the CLI's side: record the deletion, hand it to the pod's watcher
(starting a new watcher if the old one died), and wait until the pod is gone
(docs/lifecycle.md, "Termination")."""

from __future__ import annotations

import json
import os
import socket
import time

from nsbox import kube
from nsbox.errors import NotFound, NsboxError
from nsbox.model import PodSpec
from nsbox.state import FileLock, PodPaths, read_json, write_state

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.pods import Runtime

MAX_WATCHER_REPLACEMENTS = 5  # a delete gives up on a pod whose watchers keep dying


def request(rt: Runtime, namespace: str, name: str, *, grace: int | None, force: bool) -> PendingDelete:
    """Record the deletion and hand it to the pod's watcher (docs/lifecycle.md, Termination 1, 2, 7)."""
    paths = rt.root.require(namespace, name)
    with FileLock(paths.lock):
        spec_raw = read_json(paths.pod_json)
        if spec_raw is None or rt.root.lookup(namespace, name) != paths.uid:
            raise NotFound(f'pod "{name}" not found')
        spec = PodSpec.from_dict(spec_raw)
        g = kube.effective_grace_period(grace, force, spec.termination_grace_period)
        deletion = read_json(paths.deletion_json)
        if deletion is None or g < deletion["gracePeriodSeconds"]:
            deletion = {"deletionTimestamp": kube.rfc3339(g), "gracePeriodSeconds": g, "force": force}
            write_state(paths.deletion_json, deletion)
        if force:
            # The name is free at once; the pod is torn down behind it (docs/lifecycle.md, Termination 7).
            rt.root.release(namespace, name, paths.uid)
        sock = ask(rt, paths, g, force)
    return PendingDelete(rt, paths, name, g, force, sock)


def ask(rt: Runtime, paths: PodPaths, grace: int, force: bool) -> socket.socket | None:
    """A connection to the pod's watcher once it has taken the deletion on; None if the pod is gone."""
    from nsbox import control

    for _ in range(MAX_WATCHER_REPLACEMENTS):
        sock = connect_or_adopt(rt, paths)
        if sock is None:
            return None
        try:
            sock.send(json.dumps({"op": "delete", "grace": grace, "force": force}).encode())
            if control.recv(sock) is not None:
                return sock
        except OSError:
            pass  # it died, or does not answer: look again
        sock.close()
    raise NsboxError(f"the watcher of pod {paths.uid} does not answer (see {paths.watcher_log})")


def connect_or_adopt(rt: Runtime, paths: PodPaths) -> socket.socket | None:
    """A connection to the pod's watcher, starting a new one if it died. None if the pod is gone."""
    from nsbox import control

    for _ in range(3):
        if not paths.exists():
            return None
        if paths.watcher_alive():
            try:
                return control.connect(paths.ctl)
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.05)
                continue
        from nsbox import watcher

        try:
            watcher.launch(rt.root, paths.uid, adopt=True)
        except NsboxError:
            if paths.watcher_alive():
                continue
            raise
    raise NsboxError(f"cannot reach the watcher of pod {paths.uid}")


class PendingDelete:
    """A pod whose watcher has taken its deletion on (or that was already gone: no socket)."""

    def __init__(self, rt: Runtime, paths: PodPaths, name: str, grace: int, force: bool, sock: socket.socket | None):
        self.rt, self.paths, self.name, self.grace, self.force = rt, paths, name, grace, force
        self.sock = sock

    def finish(self, wait: bool) -> None:
        """Wait until the pod is gone, or (`--wait=false`) only hang up."""
        if wait:
            self.wait()
        else:
            self.close()

    def wait(self) -> None:
        """Until the pod is gone. A watcher that dies on the way (killed, OOM) says nothing:
        its pod is still there, so a new watcher takes the termination over (docs/lifecycle.md, Termination 6)."""
        for _ in range(MAX_WATCHER_REPLACEMENTS):
            if self.sock is None:
                return
            try:
                self.sock.settimeout(None)
                while (msg := self._recv()) is not None:
                    if msg.get("gone"):
                        return
                    if msg.get("teardown"):
                        self._tear_down(msg["fds"])
                        return
            except OSError:
                pass
            finally:
                self.close()
            try:
                with FileLock(self.paths.lock):
                    self.sock = ask(self.rt, self.paths, self.grace, self.force)
            except FileNotFoundError:
                return  # it went with its last words unsaid: the pod is gone
        raise NsboxError(f'pod "{self.name}": its watcher keeps going away (see {self.paths.watcher_log})')

    def _recv(self) -> dict[str, Any] | None:
        """The watcher's next message (None: it hung up), with the descriptors that came with it."""
        assert self.sock is not None
        data, fds, _, _ = socket.recv_fds(self.sock, 65536, 3)
        if not data:
            for fd in fds:
                os.close(fd)
            return None
        return {**json.loads(data), "fds": fds}

    def _tear_down(self, fds: list[int]) -> None:
        """nsbox-idle ended the pod's containers and handed over its control socket, the
        watcher's lock and the host netns (docs/design.md §3): the rest of the end is ours."""
        from nsbox.watcher.termination import finish_handed_over

        listener, lock, netns = (*fds, -1, -1, -1)[:3]
        for fd in fds[3:]:
            os.close(fd)
        try:
            finish_handed_over(self.rt.root, self.paths.uid, lock, listener, netns)
        except OSError as e:
            raise NsboxError(f'pod "{self.name}": its teardown failed: {e} (`nsbox gc` finishes it)') from None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
