"""Control groups: one front (`Cgroups`) over a cgroup v2 and a v1/hybrid backend.

Layout (docs/pods.md §5). nsbox owns one top-level cgroup, `nsbox`, directly under the
root of each hierarchy it uses (as podman's cgroupfs manager does), whatever
cgroup the CLI itself runs in:

    <hierarchy>/nsbox/pod<UID>/<container>

- v2 (unified): one hierarchy, the cgroup2 mount. `nsbox` and `pod<UID>` only
  pass controllers down (+cpu +memory +pids in their cgroup.subtree_control)
  and never hold processes, because a v2 cgroup that enables controllers for
  its children may hold none itself ("no internal processes" rule,
  Documentation/admin-guide/cgroup-v2.rst). Processes live in the leaves.
- v1: the same relative path under every controller hierarchy we use: cpu,
  cpuacct (often co-mounted as cpu,cpuacct), memory, pids, freezer, devices,
  blkio. cpuset alone is skipped (a new cpuset cgroup is unusable until
  cpus/mems are seeded), and so is the name=systemd hierarchy (systemd's).
- hybrid: v1 as above for the limits, plus the same path in the cgroup2 mount
  (which holds no controllers, usually at /sys/fs/cgroup/unified). That one
  tracks membership with v2 semantics: cgroup.procs, cgroup.events
  "populated", cgroup.freeze and cgroup.kill.

Which mode (the rule of opencontainers' cgroups.IsCgroup2UnifiedMode and
IsCgroup2HybridMode, read from /proc/self/mountinfo instead of statfs):
a cgroup2 filesystem mounted at /sys/fs/cgroup means unified (v2); otherwise
v1 controller hierarchies mean v1, and hybrid if a cgroup2 filesystem is also
mounted somewhere else. The v1 controllers' mount points come from the super
options of each `cgroup` mount, never from assumed paths. nsbox never changes
the host's cgroup mounts.

This module is on the CLI's start-up path: standard library only, no
subprocess.
"""

import errno
import os
import signal
import time

from nsbox import kube
from nsbox.errors import NsboxError
from nsbox.mountinfo import MOUNTINFO, unescape

CGROUP_MOUNT = "/sys/fs/cgroup"
TOP = "nsbox"

CPU_PERIOD_US = kube.CPU_PERIOD_US  # the kubelet's 100 ms period (docs/pods.md §5)

V2_CONTROLLERS = ("cpu", "memory", "pids")
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids", "freezer", "devices", "blkio")

# How long kill() waits for a cgroup to freeze before signalling anyway.
FREEZE_TIMEOUT = 2.0

# The devices an unprivileged container may use (docs/security.md §5), in devices.allow
# syntax: runc's default allow list (libcontainer/specconv AllowedDevices) —
# creating any node is allowed (mknod "m"), opening only these: null, zero,
# full, random, urandom, tty, ptmx and the pty slaves (major 136).
DEFAULT_DEVICE_RULES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
)


# --- small file helpers: every error names the file -------------------------


def _strerror(e: OSError) -> str:
    """The message of an OSError raised by a system call (its errno is set)."""
    return os.strerror(e.errno)  # type: ignore[arg-type]


# A cgroup removed by someone else (a pod's watcher and `gc` both reclaim a pod whose state
# is lost) is gone between two calls: open(2) fails with ENOENT, and a file opened before the
# rmdir answers ENODEV (kernfs deactivates it).
_GONE = (errno.ENOENT, errno.ENODEV)


def _write(path, value, missing_ok=False):
    """Write one value with a single write(2); cgroup files take it whole.
    With `missing_ok`, a file whose cgroup is gone is not an error."""
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        if missing_ok and e.errno in _GONE:
            return
        raise NsboxError(f"cannot write {value!r} to {path}: {_strerror(e)}") from None


def _read(path):
    """The file's text, or None if it does not exist (or its cgroup went while reading)."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError as e:
        if e.errno in _GONE:
            return None
        raise NsboxError(f"cannot read {path}: {_strerror(e)}") from None


def _read_int(path):
    text = _read(path)
    return None if text is None else int(text.split()[0])


def _read_keyed(path):
    """A flat keyed file ("key value" lines: cgroup.events, cpu.stat, ...)."""
    values = {}
    for line in (_read(path) or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def _read_pids(path):
    text = _read(path)
    return [int(p) for p in text.split()] if text else []


def _subtree(top, bottom_up=False):
    """Every cgroup directory from `top` down (nothing if `top` is missing)."""
    return [dirpath for dirpath, _, _ in os.walk(top, topdown=not bottom_up)]


def _procs_below(top):
    pids = set()
    for d in _subtree(top):
        pids.update(_read_pids(os.path.join(d, "cgroup.procs")))
    return sorted(pids)


# --- detection --------------------------------------------------------------


def parse_mountinfo(text):
    """[(mount point, fstype, super options)] of the cgroup and cgroup2 mounts."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split(maxsplit=2)
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] in ("cgroup", "cgroup2"):
            mounts.append((unescape(fields[4]), tail[0], frozenset(tail[2].split(","))))
    return mounts


def from_mountinfo(text):
    """Choose the backend for these mounts (see the rule at the top)."""
    # Mounts under /sys/fs/cgroup first: bind mounts elsewhere are copies.
    mounts = sorted(parse_mountinfo(text), key=lambda m: not m[0].startswith(CGROUP_MOUNT + "/"))
    cgroup2 = [point for point, fstype, _ in mounts if fstype == "cgroup2"]
    if CGROUP_MOUNT in cgroup2:
        return CgroupV2(CGROUP_MOUNT)

    hierarchies = {}  # mount point -> controllers of ours it carries
    seen = set()
    for point, fstype, options in mounts:
        ours = [c for c in V1_CONTROLLERS if c in options and c not in seen]
        if fstype == "cgroup" and ours:
            hierarchies[point] = (tuple(ours), "cpuset" in options)
            seen.update(ours)
    if hierarchies:
        unified = CGROUP_MOUNT + "/unified"
        return CgroupV1(hierarchies, unified if unified in cgroup2 else (cgroup2[0] if cgroup2 else None))
    if cgroup2:
        return CgroupV2(cgroup2[0])
    raise NsboxError(f"no cgroup filesystem mounted (no cgroup or cgroup2 mount in {MOUNTINFO})")


_detected = None


def detect():
    """The host's cgroup backend, decided once per process."""
    global _detected
    if _detected is None:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
            _detected = from_mountinfo(f.read())
    return _detected


# --- the front --------------------------------------------------------------


class Cgroups:
    """What the rest of nsbox uses; `rel` is a path below each hierarchy root."""

    version = 0
    hybrid = False

    # naming

    def pod_path(self, pod_uid):
        return f"{TOP}/pod{_component(pod_uid, 'pod UID')}"

    def container_path(self, pod_uid, name):
        return f"{self.pod_path(pod_uid)}/{_component(name, 'container name')}"

    # what each backend provides

    def _roots(self):
        """Every hierarchy root (mount point) nsbox writes to."""
        raise NotImplementedError

    def _tracking_root(self):
        """The hierarchy whose cgroup.procs tells which processes are in a pod."""
        raise NotImplementedError

    def _create_in(self, root, rel):
        raise NotImplementedError

    def set_limits(self, rel, *, cpu_millis=None, memory_bytes=None, pids_max=None):
        """CPU (millicores, 100 ms period), memory (bytes, swap included) and
        pids limits of `rel`; None leaves that limit unchanged."""
        raise NotImplementedError

    def join_targets(self, rel):
        """What a new process needs to be born in `rel`: (a directory fd for
        clone3's CLONE_INTO_CGROUP, or -1; cgroup.procs files to write "0" to).
        The caller closes the fd."""
        raise NotImplementedError

    def set_devices(self, rel, rules):
        """Limit the device nodes the processes of `rel` may open or create to
        `rules` (devices.allow lines); None lifts the limit (privileged)."""
        raise NotImplementedError

    def oom_killed(self, rel):
        """How many processes of `rel` the OOM killer killed (0 if unknown)."""
        raise NotImplementedError

    def stats(self, rel):
        """{"cpu_usage_ns", "memory_bytes", "pids"}, each None if unknown."""
        raise NotImplementedError

    def paths(self, rel):
        """controller (or "unified") -> absolute directory, for inspect/describe."""
        raise NotImplementedError

    def usage(self, rel, interval=0.2):
        """`top`: (CPU in millicores over `interval` seconds, memory in bytes), each None if unknown."""
        import time

        a = self.stats(rel).get("cpu_usage_ns")
        t0 = time.monotonic()
        memory = self.stats(rel).get("memory_bytes")
        if a is None:
            return None, memory
        time.sleep(interval)
        b = self.stats(rel).get("cpu_usage_ns") or a
        return int((b - a) / 1e6 / (time.monotonic() - t0 + 1e-9)), memory

    def missing_controllers(self):
        """What `nsbox doctor` reports: needed controllers that are absent."""
        raise NotImplementedError

    def prime_migrations(self):
        """Start now the wait that the next process to join a cgroup will make, so that it
        overlaps with the caller's own wait for a container (docs/design.md §12).

        A process joins a v1 cgroup by a write to cgroup.procs, and the first such write
        after a quiet spell waits for an RCU grace period (8-19 ms measured here) before it
        takes the kernel's lock of all migrations; writes in the grace period after it do
        not wait. A CLI that has just asked a watcher to start a container calls this, and
        moves itself into the cgroup it is already in while the watcher sets the container
        up. Only a hint: returns the cgroup.procs file written, or None (a v2 host, whose
        containers are cloned into their cgroup without a migration; or the write failed)."""
        return None

    # shared behaviour

    def _dirs(self, rel):
        return [os.path.join(root, _checked(rel)) for root in self._roots()]

    def _tracking_dir(self, rel):
        return os.path.join(self._tracking_root(), _checked(rel))

    def create(self, rel):
        """mkdir -p in every hierarchy used; safe to repeat and to race."""
        _checked(rel)
        for root in self._roots():
            for attempt in range(3):
                try:
                    self._create_in(root, rel)
                    break
                except NsboxError:
                    # The last pod's removal may have taken the empty top cgroup away
                    # between our mkdirs (remove() below): make it again.
                    if attempt == 2 or os.path.isdir(os.path.join(root, TOP)):
                        raise

    def add_process(self, rel, pid):
        for d in self._dirs(rel):
            _write(os.path.join(d, "cgroup.procs"), pid)

    def procs(self, rel):
        """Every process in `rel` and below."""
        return _procs_below(self._tracking_dir(rel))

    def populated(self, rel):
        events = _read_keyed(os.path.join(self._tracking_dir(rel), "cgroup.events"))
        if "populated" in events:
            return events["populated"] == 1
        return bool(self.procs(rel))

    def kill(self, rel, sig=signal.SIGKILL):
        """Signal every process in `rel` and below, none escaping by forking."""
        kill_file = os.path.join(self._tracking_dir(rel), "cgroup.kill")
        if sig == signal.SIGKILL and self._has_kill_file(kill_file):
            _write(kill_file, 1, missing_ok=True)  # a cgroup gone meanwhile has no one to kill
            return
        if not os.path.isdir(self._tracking_dir(rel)):
            return
        frozen = self._freeze(rel, True)
        try:
            if frozen:
                self._wait_frozen(rel)
            # Frozen processes cannot fork or exit, so this list is complete
            # and no pid in it can be reused before the thaw.
            for pid in self.procs(rel):
                _signal(pid, sig)
        finally:
            if frozen:
                self._freeze(rel, False)
        if not frozen:
            # No freezer: signal again until no new process shows up.
            signalled: set[int] = set()
            for _ in range(10):
                fresh = set(self.procs(rel)) - signalled
                if not fresh:
                    break
                for pid in fresh:
                    _signal(pid, sig)
                signalled |= fresh

    def _has_kill_file(self, path):
        return os.path.exists(path)

    def _freeze(self, rel, on):
        """Freeze or thaw; False if there is no freezer."""
        return False

    def _is_frozen(self, rel):
        return True

    def _wait_frozen(self, rel):
        deadline = time.monotonic() + FREEZE_TIMEOUT
        delay = 0.001
        while not self._is_frozen(rel) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def remove(self, rel, timeout=5.0, children=()):
        """rmdir the subtree bottom-up everywhere; waits for leaving processes.

        `children`: the names of the cgroups expected right below `rel` (a pod's containers):
        removed without listing `rel` first, which in a v1 hierarchy means reading a
        directory of dozens of control files; anything else below is found by the walk.
        The shared top cgroup goes too once no pod is left in it, so that a
        host without pods has no trace of nsbox (create() makes it again)."""
        deadline = time.monotonic() + timeout
        for top in self._dirs(rel):
            if children and self._remove_known(top, children):
                continue
            for d in _subtree(top, bottom_up=True):
                _rmdir_waiting(d, deadline)
        if os.path.dirname(rel) == TOP:
            tops = [os.path.join(root, TOP) for root in self._roots()]
            if all(map(_childless, tops)):  # one stat while other pods are there, not a failed rmdir each
                for top in tops:
                    try:
                        os.rmdir(top)
                    except OSError:
                        pass  # a pod came meanwhile (EBUSY), or it is gone already

    @staticmethod
    def _remove_known(top, children):
        """rmdir `top`'s expected children, then `top`; False (nothing lost) if that is not
        all there is, or a process is still leaving: the caller then walks and waits."""
        try:
            for name in children:
                try:
                    os.rmdir(os.path.join(top, name))
                except FileNotFoundError:
                    pass
            os.rmdir(top)
        except FileNotFoundError:
            return True
        except OSError:
            return False  # EBUSY: another child, or a process not gone yet
        return True

    def list_pods(self):
        """UIDs of the pods that have a pod<UID> cgroup in any hierarchy."""
        uids: set[str] = set()
        for root in self._roots():
            try:
                with os.scandir(os.path.join(root, TOP)) as entries:
                    uids.update(e.name[3:] for e in entries if e.name.startswith("pod") and e.is_dir())
            except FileNotFoundError:
                pass
        return sorted(uids)


def _component(value, what):
    if not value or "/" in value or value in (".", "..") or "\0" in value:
        raise ValueError(f"invalid {what} for a cgroup path: {value!r}")
    return value


def _checked(rel):
    """Only paths inside nsbox's own top cgroup are ever touched."""
    parts = rel.split("/")
    if parts[0] != TOP or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not an nsbox cgroup path: {rel!r}")
    return rel


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _childless(path):
    """No cgroup below `path` (a cgroupfs directory counts its subdirectories in st_nlink, as
    every kernfs one does); True if it is gone."""
    try:
        return os.stat(path).st_nlink <= 2
    except FileNotFoundError:
        return True


def _rmdir_waiting(path, deadline):
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            # EBUSY: processes just killed take a moment to leave the cgroup.
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                left = _read_pids(os.path.join(path, "cgroup.procs"))
                still = f" (processes still in it: {' '.join(map(str, left))})" if left else ""
                raise NsboxError(f"cannot remove cgroup {path}: {_strerror(e)}{still}") from None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _mkdir(path):
    """True if this call created it."""
    try:
        os.mkdir(path)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        raise NsboxError(f"cannot create cgroup {path}: {_strerror(e)}") from None


def _attach_device_filter(path, rules):
    from nsbox import devicefilter  # ctypes: only when a v2 container is made

    try:
        devicefilter.attach(path, list(rules))
    except OSError as e:
        raise NsboxError(f"cannot attach the device filter to {path}: {_strerror(e)}") from None


# The backends (they use the front and the helpers above).
from nsbox.cgroups.v1 import CgroupV1  # noqa: E402
from nsbox.cgroups.v2 import CgroupV2  # noqa: E402
