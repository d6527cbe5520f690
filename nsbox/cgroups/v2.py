"""The cgroup v2 (unified) backend (see the layout in nsbox/cgroups/__init__.py)."""

import os

from nsbox import kube
from nsbox.cgroups import (
    CPU_PERIOD_US,
    V2_CONTROLLERS,
    Cgroups,
    _attach_device_filter,
    _mkdir,
    _read,
    _read_int,
    _read_keyed,
    _strerror,
    _write,
)
from nsbox.errors import NsboxError


class CgroupV2(Cgroups):
    version = 2

    def __init__(self, root):
        self.root = root

    def __repr__(self):
        return f"CgroupV2({self.root!r})"

    def _roots(self):
        return [self.root]

    def _tracking_root(self):
        return self.root

    def _create_in(self, root, rel):
        # Every ancestor of the new cgroup passes the controllers down; the
        # last component is the one that may hold processes.
        path = root
        for part in rel.split("/"):
            self._enable_controllers(path)
            path = os.path.join(path, part)
            _mkdir(path)

    def _enable_controllers(self, path):
        available = (_read(os.path.join(path, "cgroup.controllers")) or "").split()
        enabled = (_read(os.path.join(path, "cgroup.subtree_control")) or "").split()
        wanted = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
        if not wanted:
            return
        try:
            _write(os.path.join(path, "cgroup.subtree_control"), " ".join("+" + c for c in wanted))
        except NsboxError:
            if path == self.root:
                # Best effort at the host's root: what stays off shows up in
                # missing_controllers() and as a clear error in set_limits().
                return
            raise

    def set_limits(self, rel, *, cpu_millis=None, memory_bytes=None, pids_max=None):
        d = self._tracking_dir(rel)
        if cpu_millis is not None:
            self._set(d, "cpu", "cpu.max", f"{kube.cpu_quota_us(int(cpu_millis))} {CPU_PERIOD_US}")
        if memory_bytes is not None:
            self._set(d, "memory", "memory.max", int(memory_bytes))
            # A limit that swap can dodge is no limit.
            if os.path.exists(os.path.join(d, "memory.swap.max")):
                _write(os.path.join(d, "memory.swap.max"), 0)
        if pids_max is not None:
            self._set(d, "pids", "pids.max", int(pids_max))

    def set_devices(self, rel, rules):
        # No devices controller in v2: an eBPF program attached to the cgroup
        # decides (as runc and systemd do). No rules = no program.
        if rules is not None:
            _attach_device_filter(self._tracking_dir(rel), rules)

    def _set(self, d, controller, name, value):
        path = os.path.join(d, name)
        if not os.path.exists(path) and os.path.isdir(d):
            raise NsboxError(
                f"cannot set {name}: the {controller} controller is not enabled for {d} (see nsbox doctor)"
            )
        _write(path, value)

    def join_targets(self, rel):
        """(cgroup dir fd for clone3's CLONE_INTO_CGROUP, []). The caller closes
        the fd; without clone3, write "0" to cgroup.procs opened relative to it."""
        d = self._tracking_dir(rel)
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise NsboxError(f"cannot open cgroup {d}: {_strerror(e)}") from None
        return fd, []

    def _freeze(self, rel, on):
        path = os.path.join(self._tracking_dir(rel), "cgroup.freeze")
        if not os.path.exists(path):
            return False
        _write(path, 1 if on else 0)
        return True

    def _is_frozen(self, rel):
        events = _read_keyed(os.path.join(self._tracking_dir(rel), "cgroup.events"))
        return events.get("frozen", 1) == 1

    def oom_killed(self, rel):
        return _read_keyed(os.path.join(self._tracking_dir(rel), "memory.events")).get("oom_kill", 0)

    def stats(self, rel):
        d = self._tracking_dir(rel)
        usage_us = _read_keyed(os.path.join(d, "cpu.stat")).get("usage_usec")
        return {
            "cpu_usage_ns": None if usage_us is None else usage_us * 1000,
            "memory_bytes": _read_int(os.path.join(d, "memory.current")),
            "pids": _read_int(os.path.join(d, "pids.current")),
        }

    def paths(self, rel):
        return {"unified": self._tracking_dir(rel)}

    def missing_controllers(self):
        available = (_read(os.path.join(self.root, "cgroup.controllers")) or "").split()
        return [c for c in V2_CONTROLLERS if c not in available]


# --- cgroup v1, and hybrid ---------------------------------------------------
