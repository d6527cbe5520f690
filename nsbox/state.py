"""Where pods live on disk, and how the CLI and the watchers share it safely.

Layout under the root (default /run/nsbox, a tmpfs on most hosts):

    names/<namespace>/<name>  -> symlink to the pod's UID: the name claim
    pods/<uid>/pod.json       the PodSpec (written by the CLI, under the pod lock)
    pods/<uid>/status.json    container states and events (written by the watcher only)
    pods/<uid>/deletion.json  deletionTimestamp and grace period (written by `delete`)
    pods/<uid>/lock           flock: serialises CLI calls on this pod
    pods/<uid>/watcher.lock   flock held by the live watcher for its whole life
    pods/<uid>/ctl            the watcher's control socket
    pods/<uid>/volumes/<v>/   emptyDir volumes (the directory only for a pod with volumes)
    scratch/                  where each watcher mounts its pod's scratch, a 1 MiB tmpfs, in its
                              own mount namespace (one empty directory on disk for all pods):
        etc/                  hostname, hosts shown to the containers
        termination/<c>       the file bound at a container's terminationMessagePath
        shm/, containers/<c>/ mount points of the pod's /dev/shm and the containers' roots
    logs/<namespace>_<pod>_<uid>/<container>/<restartCount>.log   CRI-format logs

A pod is keyed by its UID, not its name, so a force-deleted pod can still be
torn down while a new pod of the same name exists. Claiming a name is one
atomic symlink(2); every file is replaced with write + rename, so a
reader never sees half a file and a killed writer leaves the old one (no fsync:
the root does not outlive a reboot; write_state).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os

from nsbox.errors import AlreadyExists, NotFound, NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


DEFAULT_ROOT = "/run/nsbox"


def write_atomic(path: str, data: bytes | str, mode: int = 0o600, durable: bool = True) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix,
    whenever a writer is killed (the rename). `durable`: fsync first, so that a power loss
    cannot leave the new name with no data, which is what a store that outlives a reboot
    needs (images, the seccomp cache); a root's state does not (write_state)."""
    if isinstance(data, str):
        data = data.encode()
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def write_json(path: str, obj: Any) -> None:
    """A JSON file of a store that outlives a reboot: atomic and durable."""
    write_atomic(path, json.dumps(obj, separators=(",", ":")))


def write_state(path: str, obj: Any) -> None:
    """A JSON file of the root's state (pod.json, status.json, deletion.json, objects): atomic,
    not synced. Pods do not survive a reboot, so what a power loss does to these files
    matters only to the clean-up after it, and an fsync cost ≈ 1 ms per write on a disk root
    (none on a tmpfs). A power loss may leave such a file empty: read_json says None, as
    for a file that is not there (docs/design.md §10)."""
    write_atomic(path, json.dumps(obj, separators=(",", ":")), durable=False)


def lock_holder(path: str) -> bytes | None:
    """What the lock file at `path` says (its holder writes its PID there), while a live
    process holds it (flock: a dead holder's lock is gone with it); None if none does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.read(fd, 64)
    finally:
        os.close(fd)


def read_json(path: str) -> Any:
    """The parsed file, or None when it does not exist or is empty (a root's state file after
    a power loss: write_state)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return json.loads(data) if data else None


class FileLock:
    """An flock(2) on a file; released when closed, or when the holder dies."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def acquire(self, exclusive: bool = True, blocking: bool = True) -> bool:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if not blocking:
            op |= fcntl.LOCK_NB
        try:
            fcntl.flock(self.fd, op)
            return True
        except BlockingIOError:
            return False

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class PodPaths:
    """The files of one pod, by UID."""

    def __init__(self, root: Root, uid: str):
        self.root = root
        self.uid = uid
        # Plain concatenation: `get pods` makes one of these per pod, and os.path.join is slow.
        self.dir = d = f"{root.path}/pods/{uid}"
        self.pod_json = f"{d}/pod.json"
        self.status_json = f"{d}/status.json"
        self.deletion_json = f"{d}/deletion.json"
        self.lock = f"{d}/lock"
        self.watcher_lock = f"{d}/watcher.lock"
        self.watcher_log = f"{d}/watcher.log"
        self.ctl = f"{d}/ctl"
        # The pod's scratch: a tmpfs in the watcher's mount namespace (sandbox.enter), so that
        # none of it is a directory on the host's disk to make and remove per pod. Every
        # watcher mounts its own at the same path: each sees only its own.
        self.scratch = r = f"{root.path}/scratch"
        self.etc = f"{r}/etc"
        self.shm = f"{r}/shm"
        self.containers = f"{r}/containers"

    def volume(self, name: str) -> str:
        return os.path.join(self.dir, "volumes", name)

    def container_dir(self, name: str) -> str:
        return f"{self.containers}/{name}"

    def termination_message(self, name: str) -> str:
        """The file bound at a container's terminationMessagePath (beside, not in, its
        directory: that one is covered by the container's tmpfs when it starts)."""
        return f"{self.scratch}/termination/{name}"

    def log_dir(self, namespace: str, pod: str) -> str:
        return os.path.join(self.root.path, "logs", f"{namespace}_{pod}_{self.uid}")

    def log_file(self, namespace: str, pod: str, container: str, restart_count: int) -> str:
        return os.path.join(self.log_dir(namespace, pod), container, f"{restart_count}.log")

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def watcher_alive(self) -> bool:
        """True while a watcher holds this pod's watcher.lock (dead holders release it)."""
        return lock_holder(self.watcher_lock) is not None


class Root:
    """One independent world of pods: every path nsbox writes is below `path`."""

    def __init__(self, path: str = DEFAULT_ROOT):
        self.path = os.path.abspath(path)

    def ensure(self) -> None:
        for sub in ("", "pods", "names", "logs", "scratch"):
            d = os.path.join(self.path, sub)
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                pass
            except OSError as e:
                raise NsboxError(f"cannot create {d}: {e.strerror}") from None

    def pod(self, uid: str) -> PodPaths:
        return PodPaths(self, uid)

    def _name_link(self, namespace: str, name: str) -> str:
        return os.path.join(self.path, "names", namespace, name)

    def lookup(self, namespace: str, name: str) -> str | None:
        """The UID that currently owns namespace/name, or None."""
        try:
            return os.readlink(self._name_link(namespace, name))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def require(self, namespace: str, name: str) -> PodPaths:
        uid = self.lookup(namespace, name)
        if uid is None:
            raise NotFound(
                f'pod "{name}" not found' + ("" if namespace == "default" else f' in namespace "{namespace}"')
            )
        return self.pod(uid)

    def claim(self, namespace: str, name: str, uid: str) -> None:
        """Make namespace/name point at uid; fails if the name is taken (atomic: symlink(2))."""
        d = os.path.join(self.path, "names", namespace)
        os.makedirs(d, 0o700, exist_ok=True)
        try:
            os.symlink(uid, os.path.join(d, name))
        except FileExistsError:
            raise AlreadyExists(f'pod "{name}" already exists') from None

    def release(self, namespace: str, name: str, uid: str) -> None:
        """Free the name, but only if it still belongs to uid (a new pod may have taken it)."""
        link = self._name_link(namespace, name)
        try:
            if os.readlink(link) == uid:
                os.unlink(link)
        except FileNotFoundError:
            pass
        try:
            os.rmdir(os.path.dirname(link))
        except OSError:
            pass

    def names(self, namespace: str | None = None) -> Iterator[tuple[str, str, str]]:
        """(namespace, name, uid) of every named pod, sorted; all namespaces when namespace is None."""
        base = os.path.join(self.path, "names")
        try:
            namespaces = [namespace] if namespace else sorted(os.listdir(base))
        except FileNotFoundError:
            return
        for ns in namespaces:
            try:
                entries = sorted(os.listdir(os.path.join(base, ns)))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in entries:
                uid = self.lookup(ns, name)
                if uid:
                    yield ns, name, uid

    def pod_uids(self) -> list[str]:
        try:
            return sorted(os.listdir(os.path.join(self.path, "pods")))
        except FileNotFoundError:
            return []


def remove_tree(path: str) -> None:
    """rm -rf that never crosses into a mount point (a volume still mounted is an error, not data loss).
    The mount points come from mountinfo, which sees bind mounts of the same file system too, in
    one read rather than a walk of the tree first."""
    if not os.path.lexists(path):
        return
    from nsbox import mountinfo

    mounted = mountinfo.points_under(os.path.realpath(path))
    if mounted:
        raise NsboxError(f"refusing to remove {path}: {mounted[0]} is a mount point")

    def onerror(func: Any, p: str, exc: Any) -> None:
        e = exc[1] if isinstance(exc, tuple) else exc
        if isinstance(e, FileNotFoundError):
            return
        if isinstance(e, OSError) and e.errno == errno.EBUSY:
            raise NsboxError(f"cannot remove {p}: still mounted") from None
        raise e

    import shutil  # here: most commands never remove a tree

    shutil.rmtree(path, onerror=onerror)
