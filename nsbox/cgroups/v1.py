"""The cgroup v1 and hybrid backend (see the layout in nsbox/cgroups/__init__.py)."""

import os

from nsbox import kube
from nsbox.cgroups import (
    CPU_PERIOD_US,
    V2_CONTROLLERS,
    Cgroups,
    _checked,
    _mkdir,
    _read,
    _read_int,
    _read_keyed,
    _write,
)
from nsbox.errors import NsboxError


class CgroupV1(Cgroups):
    version = 1

    def __init__(self, hierarchies, unified=None):
        """hierarchies: mount point -> (our controllers on it, has cpuset);
        unified: the cgroup2 mount of a hybrid host, or None."""
        self.hierarchies = dict(hierarchies)
        self.unified = unified
        self.hybrid = unified is not None
        self.mounts = {c: point for point, (ours, _) in self.hierarchies.items() for c in ours}

    def __repr__(self):
        return f"CgroupV1({self.mounts!r}, unified={self.unified!r})"

    def _roots(self):
        return list(self.hierarchies) + ([self.unified] if self.unified else [])

    def _tracking_root(self):
        return self.unified or self._tracking_v1_root()

    def _tracking_v1_root(self):
        return self.mounts.get("pids") or self.mounts.get("freezer") or next(iter(self.hierarchies))

    def _dir(self, controller, rel):
        root = self.mounts.get(controller)
        return None if root is None else os.path.join(root, _checked(rel))

    def _create_in(self, root, rel):
        seeds_cpuset = root in self.hierarchies and self.hierarchies[root][1]
        path = root
        for part in rel.split("/"):
            parent, path = path, os.path.join(path, part)
            if _mkdir(path) and seeds_cpuset:
                # A new cpuset cgroup has no cpus or mems: no task could join.
                for name in ("cpuset.cpus", "cpuset.mems"):
                    if not (_read(os.path.join(path, name)) or "").strip():
                        _write(os.path.join(path, name), _read(os.path.join(parent, name)).strip())

    def set_limits(self, rel, *, cpu_millis=None, memory_bytes=None, pids_max=None):
        if cpu_millis is not None:
            d = self._require("cpu", rel)
            _write(os.path.join(d, "cpu.cfs_period_us"), CPU_PERIOD_US)
            _write(os.path.join(d, "cpu.cfs_quota_us"), kube.cpu_quota_us(int(cpu_millis)))
        if memory_bytes is not None:
            self._set_memory(self._require("memory", rel), int(memory_bytes))
        if pids_max is not None:
            _write(os.path.join(self._require("pids", rel), "pids.max"), int(pids_max))

    def set_devices(self, rel, rules):
        d = self._dir("devices", rel)
        if d is None:
            if rules is None:
                return
            raise NsboxError("cannot limit devices: no cgroup v1 devices hierarchy is mounted (see nsbox doctor)")
        if rules is None:
            _write(os.path.join(d, "devices.allow"), "a")
            return
        # Deny everything, then allow the list: a new v1 cgroup inherits its
        # parent's list (allow all), and a child can never allow more.
        _write(os.path.join(d, "devices.deny"), "a")
        for rule in rules:
            _write(os.path.join(d, "devices.allow"), rule)

    def _require(self, controller, rel):
        d = self._dir(controller, rel)
        if d is None:
            raise NsboxError(
                f"cannot set a {controller} limit: no cgroup v1 {controller} hierarchy is mounted (see nsbox doctor)"
            )
        return d

    def _set_memory(self, d, limit):
        # memory.memsw.limit_in_bytes (memory + swap) may never be below
        # memory.limit_in_bytes, so the order of the two writes depends on
        # whether the limit grows or shrinks. Equal values: no swap at all.
        limit_file = os.path.join(d, "memory.limit_in_bytes")
        memsw_file = os.path.join(d, "memory.memsw.limit_in_bytes")
        if not os.path.exists(memsw_file):
            _write(limit_file, limit)
        elif limit > (_read_int(memsw_file) or 0):
            _write(memsw_file, limit)
            _write(limit_file, limit)
        else:
            _write(limit_file, limit)
            _write(memsw_file, limit)

    def join_targets(self, rel):
        """(-1, cgroup.procs files the new process writes "0" into)."""
        return -1, [os.path.join(d, "cgroup.procs") for d in self._dirs(rel)]

    # Freezing: the unified hierarchy's cgroup.freeze when it tracks
    # membership (hybrid), else the v1 freezer controller.

    def _v2_freeze_file(self, rel):
        if self.unified:
            path = os.path.join(self.unified, _checked(rel), "cgroup.freeze")
            if os.path.exists(path):
                return path
        return None

    def _freeze(self, rel, on):
        v2 = self._v2_freeze_file(rel)
        if v2:
            _write(v2, 1 if on else 0)
            return True
        d = self._dir("freezer", rel)
        if d is None or not os.path.exists(os.path.join(d, "freezer.state")):
            return False
        _write(os.path.join(d, "freezer.state"), "FROZEN" if on else "THAWED")
        return True

    def _is_frozen(self, rel):
        if self._v2_freeze_file(rel):
            events = _read_keyed(os.path.join(self.unified, rel, "cgroup.events"))
            return events.get("frozen", 1) == 1
        state = _read(os.path.join(self._dir("freezer", rel), "freezer.state"))
        return state is None or state.strip() == "FROZEN"

    def oom_killed(self, rel):
        d = self._dir("memory", rel)
        if d is None:
            return 0
        # The "oom_kill" line exists from Linux 4.13 on.
        return _read_keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0)

    def stats(self, rel):
        def read(controller, name):
            d = self._dir(controller, rel)
            return None if d is None else _read_int(os.path.join(d, name))

        return {
            "cpu_usage_ns": read("cpuacct", "cpuacct.usage"),
            "memory_bytes": read("memory", "memory.usage_in_bytes"),
            "pids": read("pids", "pids.current"),
        }

    def paths(self, rel):
        found = {c: os.path.join(root, _checked(rel)) for c, root in self.mounts.items()}
        if self.unified:
            found["unified"] = os.path.join(self.unified, rel)
        return found

    def missing_controllers(self):
        return [c for c in V2_CONTROLLERS + ("freezer", "devices") if c not in self.mounts]

    def prime_migrations(self):
        point = self._tracking_v1_root()
        controller = self.hierarchies[point][0][0]
        try:
            with open("/proc/self/cgroup", encoding="utf-8", errors="surrogateescape") as f:
                lines = [line.rstrip("\n").split(":", 2) for line in f]
            own = next(path for _, names, path in lines if controller in names.split(","))
            procs = os.path.join(point, own.lstrip("/"), "cgroup.procs")
            # The path is relative to a cgroup namespace's root, which the mount may not share:
            # write only where we are listed, so the caller cannot land in another cgroup.
            if str(os.getpid()) not in (_read(procs) or "").split():
                return None
            _write(procs, 0)  # "0": the writer itself
        except (OSError, StopIteration, ValueError, NsboxError):
            return None  # no gain, no harm
        return procs
