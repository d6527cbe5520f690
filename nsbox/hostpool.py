"""Host-wide allocations that every --root shares: the bridge's addresses (network.py) and the
user namespaces' ID ranges (userns.py).

A pool is a directory under /run (gone at reboot, like everything it hands out):

    <dir>/lock            flock: every change to the pool
    <dir>/last            the last name handed out (round-robin: no quick reuse)
    <dir>/<entries>/<n>   one allocation, named by what it holds: {"root", "uid", ...}

An allocation is written before what it names is used, and removed after that is gone,
both under the lock, so nothing is handed out twice. It names the pod by root and UID:
`gc` reclaims the allocations whose <root>/pods/<uid>/pod.json is gone (a pod's state is
written before it allocates anything, and removed after it has released everything).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any


class HostPool:
    """The allocations in `directory`/`entries`. Use only inside `locked()`."""

    def __init__(self, directory: str, entries: str):
        self.dir = directory
        self.lock_path = os.path.join(directory, "lock")
        self.last_path = os.path.join(directory, "last")
        self.entries = os.path.join(directory, entries)

    @contextlib.contextmanager
    def locked(self, create: bool = True) -> Iterator[bool]:
        """Hold the pool's flock; yields False (unlocked) when the pool does not exist and create is False."""
        while True:
            if create:
                os.makedirs(self.entries, 0o755, exist_ok=True)
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
            except FileNotFoundError:
                if create:
                    continue  # removed by `gc --all` between makedirs and open
                yield False
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            # `gc --all` may have removed the pool while we waited: then this lock guards nothing.
            try:
                if os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            yield True
        finally:
            os.close(fd)

    def records(self, key: str) -> list[dict[str, Any]]:
        """Every allocation, its name under `key` (a record that cannot be read still holds its name)."""
        out = []
        for entry in sorted(os.listdir(self.entries)) if os.path.isdir(self.entries) else []:
            if entry.startswith("."):
                continue
            rec = read_json(os.path.join(self.entries, entry))
            rec = rec if isinstance(rec, dict) else {}
            rec[key] = entry
            out.append(rec)
        return out

    def claim(
        self,
        first: int,
        count: int,
        name: Callable[[int], str],
        number: Callable[[str], int],
        allocation: dict[str, Any],
        key: str,
        usable: Callable[[int], bool] = lambda n: True,
        start: int | None = None,
    ) -> str | None:
        """Record the first usable, untaken number of first..first+count-1 after the last one
        handed out (round-robin, from `start` the first time) as taken by `allocation`; its
        name, or None when all are taken."""
        taken = set(os.listdir(self.entries))
        try:
            with open(self.last_path) as f:
                start = number(f.read().strip())
        except (OSError, ValueError):
            start = first - 1 if start is None else start
        for step in range(1, count + 1):
            candidate = first + (start - first + step) % count
            n = name(candidate)
            if usable(candidate) and n not in taken:
                self.write(os.path.join(self.entries, n), dict(allocation, **{key: n}))
                self.write(self.last_path, n)
                return n
        return None

    def free(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.entries, name))

    def remove(self, extra: tuple[str, ...] = ()) -> None:
        """Forget the pool unless something is still allocated. Waiters on the old lock notice
        that it was removed and start over."""
        if os.path.isdir(self.entries) and any(not e.startswith(".") for e in os.listdir(self.entries)):
            return
        torn = [os.path.join(self.dir, e) for e in os.listdir(self.dir) if e.startswith(".tmp")]
        for path in [*extra, self.last_path, *torn]:  # torn: writers that were killed
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.entries)
        os.unlink(self.lock_path)
        with contextlib.suppress(OSError):
            os.rmdir(self.dir)

    def write(self, path: str, obj: Any) -> None:
        """Atomically (a temporary name starting with '.', then rename), so readers never see half a record."""
        tmp = os.path.join(self.dir, f".tmp{os.getpid()}")
        data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
        with open(tmp, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)


def read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
