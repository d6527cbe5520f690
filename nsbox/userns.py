"""User namespaces: `hostUsers: false` (docs/security.md, "User namespaces").

Such a pod gets a user namespace of its own that maps the IDs 0..65535 inside to a
range of 65536 host IDs that no other pod holds. Its net, IPC and UTS namespaces
are made *by* that user namespace, so that root inside holds its capabilities over
them (binding port 80, raw sockets), while outside it is an ID nobody uses.

Who does what, in which order:

- the watcher allocates a range (host-wide, below), then forks a helper that
  unshares the user namespace together with the net, IPC and UTS namespaces (the
  kernel makes the user namespace first and the others owned by it); the watcher
  writes the helper's uid_map and gid_map, joins its net, IPC and UTS namespaces,
  and lets it exit. The watcher itself stays in the host's user namespace: it keeps
  every privilege it needs over the pod (the bridge, cgroups, mounts), and the
  pod's user namespace lives as long as the namespaces it owns;
- a container is set up by host root exactly as in any pod (mount namespace, PID
  namespace, the mount plan), except that its volumes, /etc files and the lower
  layers of its root are mounted idmapped by the pod's user namespace; last, the
  child joins the user namespace (`SpawnRequest.userns_fd`) and sets its IDs in it.
  Its mount namespace stays the host's: root inside can never mount, whatever
  capabilities it is given;
- `exec`, hooks and probes join the container's user namespace the same way.

The ranges: block k holds the host IDs k*65536 .. k*65536+65535 (the kubelet's
multiples of 65536), k from 1 (0..65535 stay the host's) to 32767 (every ID stays
below 2^31, which some tools read as signed). A block that overlaps a range that
/etc/subuid or /etc/subgid hands to a host user (for its own rootless containers)
is never used. The pool is host-wide, not per --root (nsbox.hostpool):

    /run/nsbox-userns/lock, last
    /run/nsbox-userns/ranges/<first host ID>   {"first", "root", "uid", "namespace", "name"}

An allocation is written before the namespace exists and removed once the pod's
last process is gone (teardown: after its cgroup is removed); `gc` reclaims those
whose pod is gone. Handing out ranges round-robin keeps a range that was just
freed from going at once to the next pod.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal

from nsbox import native
from nsbox.errors import NsboxError
from nsbox.hostpool import HostPool

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

STATE_DIR = "/run/nsbox-userns"
RANGE_SIZE = 65536  # IDs 0..65535 inside, as the kubelet maps a pod
FIRST_BLOCK, LAST_BLOCK = 1, 32767
SUBID_FILES = ("/etc/subuid", "/etc/subgid")
NS_GET_USERNS = 0xB701  # ioctl on a namespace fd: its owning user namespace (linux/nsfs.h)


def pool() -> HostPool:
    return HostPool(STATE_DIR, "ranges")


def subid_blocks(files: tuple[str, ...] = SUBID_FILES) -> set[int]:
    """The blocks that overlap a subordinate ID range given to a host user ("name:start:count" lines)."""
    blocks: set[int] = set()
    for path in files:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit() or int(parts[2]) == 0:
                continue
            start, count = int(parts[1]), int(parts[2])
            blocks.update(range(start // RANGE_SIZE, (start + count - 1) // RANGE_SIZE + 1))
    return blocks


def allocate(root: str, pod: Any) -> int:
    """The first host ID of a free range, recorded as the pod's."""
    reserved = subid_blocks()
    p = pool()
    with p.locked():
        first = p.claim(
            FIRST_BLOCK,
            LAST_BLOCK - FIRST_BLOCK + 1,
            name=lambda k: str(k * RANGE_SIZE),
            number=lambda text: int(text) // RANGE_SIZE,
            allocation={"root": root, "uid": pod.uid, "namespace": pod.namespace, "name": pod.name},
            key="first",
            usable=lambda k: k not in reserved,
        )
    if first is None:
        raise NsboxError(
            "no free user namespace range left (every block of 65536 host IDs is held by a pod or "
            "listed in /etc/subuid or /etc/subgid; `nsbox gc` reclaims those of pods that are gone)"
        )
    return int(first)


def release(root: str, uid: str) -> list[int]:
    """Free the range(s) of pod `uid` of `root`; the first host IDs freed."""
    freed = []
    p = pool()
    with p.locked(create=False) as exists:
        if exists:
            for rec in p.records("first"):
                if rec.get("uid") == uid and rec.get("root") == root:
                    p.free(rec["first"])
                    freed.append(int(rec["first"]))
    return freed


def first_id(root: str, uid: str) -> int:
    """The first host ID of pod `uid`'s range, 0 if it has none."""
    for rec in pool().records("first"):
        if rec.get("uid") == uid and rec.get("root") == root:
            return int(rec["first"])
    return 0


def collect() -> list[str]:
    """`gc`: free the ranges (host-wide, any root) whose pod is gone."""
    from nsbox.state import Root

    done: list[str] = []
    p = pool()
    with p.locked(create=False) as exists:
        if not exists:
            return done
        for rec in p.records("first"):
            root, uid = rec.get("root"), rec.get("uid")
            if root and uid and os.path.exists(Root(root).pod(uid).pod_json):
                continue
            p.free(rec["first"])
            done.append(f"user namespace range {rec['first']}+{RANGE_SIZE} (pod {uid or 'unknown'}): released")
    return done


def id_map(first: int) -> str:
    return f"0 {first} {RANGE_SIZE}\n"


def enter(flags: int, first: int) -> None:
    """Make a user namespace that maps 0..65535 to first.., and the namespaces in `flags`
    (CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS) owned by it; the calling process joins
    those, not the user namespace. Must be single-threaded (see the top)."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(done_w)  # or it would never see the parent close it
        _helper(flags, ready_w, done_r)
    os.close(ready_w)
    os.close(done_r)
    try:
        report = os.read(ready_r, 64)
        if report != b"ok":
            err = int(report) if report.isdigit() else 0
            why = os.strerror(err) if err else "the helper process died"
            raise NsboxError(
                f"cannot create the pod's user namespace: {why}"
                + (" (is user.max_user_namespaces 0?)" if err in (28, 1) else "")
            )
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(id_map(first))
        for name, nstype in (("net", native.CLONE_NEWNET), ("ipc", native.CLONE_NEWIPC), ("uts", native.CLONE_NEWUTS)):
            if flags & nstype:
                fd = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    native.setns(fd, nstype)
                finally:
                    os.close(fd)
    finally:
        os.close(done_w)  # the helper's cue to exit
        os.close(ready_r)
        os.waitpid(pid, 0)


def probe(path: str = "/") -> str | None:
    """Can this kernel give a pod a user namespace and mount `path` idmapped by it? None if
    so, else why not (`nsbox doctor`). A throwaway namespace, no range taken, nothing mounted."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(done_w)
        _helper(0, ready_w, done_r)
    os.close(ready_w)
    os.close(done_r)
    try:
        report = os.read(ready_r, 64)
        if report != b"ok":
            return "cannot create a user namespace: " + (
                os.strerror(int(report)) if report.isdigit() else "helper died"
            )
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(id_map(FIRST_BLOCK * RANGE_SIZE))
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            native.idmap_probe(path, fd)
        except OSError as e:
            return f"cannot mount {path} idmapped: {e.strerror}"
        finally:
            os.close(fd)
        return None
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def _helper(flags: int, ready_w: int, done_r: int) -> None:
    """In the forked child: unshare, say so (or the errno), wait until the parent has joined."""
    try:
        signal.set_wakeup_fd(-1)
        try:
            native.unshare(native.CLONE_NEWUSER | flags)
            os.write(ready_w, b"ok")
        except OSError as e:
            os.write(ready_w, str(e.errno or 0).encode())
        os.read(done_r, 1)
    finally:
        os._exit(0)


def owner_fd(ns_path: str) -> int:
    """A descriptor of the user namespace that owns the namespace at `ns_path` (a /proc/PID/ns file)."""
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return fcntl.ioctl(fd, NS_GET_USERNS)
    finally:
        os.close(fd)


def pod_userns_fd() -> int:
    """In the watcher of a hostUsers: false pod: the pod's user namespace (it owns the pod's IPC namespace)."""
    return owner_fd("/proc/self/ns/ipc")


def process_userns_fd(pid: int) -> int:
    """The user namespace of process `pid` if it is not the caller's, else -1."""
    with contextlib.suppress(FileNotFoundError):
        if os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
            return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    return -1
