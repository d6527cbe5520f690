"""The watcher's control socket, both ends: a SOCK_SEQPACKET unix socket under the pod's
state directory, one JSON object per packet.

Kept apart from `nsbox.watcher` so that the commands that only talk to a watcher
(delete, exec, adding a container) do not import the watcher's machinery.
"""

from __future__ import annotations

import json
import os
import socket

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def listen(path: str) -> socket.socket:
    """A non-blocking listening socket at `path` (a stale socket file there is replaced)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    _by_path(sock.bind, path)
    sock.listen(16)
    sock.setblocking(False)
    return sock


def connect(path: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        _by_path(sock.connect, path)
    except BaseException:
        sock.close()
        raise
    return sock


def recv(sock: socket.socket) -> dict[str, Any] | None:
    """The next message, or None when the other end has closed."""
    data = sock.recv(65536)
    return json.loads(data) if data else None


def _by_path(op: Callable[[str], None], path: str) -> None:
    """bind() or connect() to a path that may exceed sun_path's 108 bytes: go through /proc/self/fd."""
    if len(path.encode()) < 100:
        op(path)
        return
    dfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
    try:
        op(f"/proc/self/fd/{dfd}/{os.path.basename(path)}")
    finally:
        os.close(dfd)
