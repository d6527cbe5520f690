"""The watcher holds the pod (README "Design"): it makes the pod's cgroup and namespaces in
its own process, and the PID 1 of a shared PID namespace as its child."""

from __future__ import annotations

import os

from nsbox import kube, native

# `nsbox.sandbox` and `nsbox.network` (making things) are imported where they are used: a
# watcher exec'd back from nsbox-idle needs neither.
TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from nsbox.model import PodSpec
    from nsbox.watcher import Watcher

DEFAULT_POD_PIDS_LIMIT = 4096  # per pod: a fork bomb stays inside its pod
CGROUP_ROOT_XATTR = "trusted.nsbox.root"  # which root a pod cgroup belongs to (for gc)
PAUSE_CGROUP = ".pause"  # below the pod cgroup: PID 1 of a shared PID namespace (no container name starts with ".")


def create_sandbox(w: Watcher) -> None:
    from nsbox import sandbox

    pod = w.pod
    pod_cg = w.cg.pod_path(w.uid)
    w.cg.create(pod_cg)
    for path in w.cg.paths(pod_cg).values():
        try:
            os.setxattr(path, CGROUP_ROOT_XATTR, w.root.path.encode())
        except OSError:
            pass
    pids = int(pod.annotations.get("nsbox.io/pids-limit", DEFAULT_POD_PIDS_LIMIT))
    w.cg.set_limits(pod_cg, pids_max=pids, **_pod_limits(pod))
    if pod.network != "host":
        # Kept for the bridge's veth, and for image pulls, which need the host's network.
        w.state.host_netns_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    if not pod.host_users:
        from nsbox import userns

        w.state.userns_first = userns.allocate(w.root.path, pod)  # released at teardown, or by gc
    sandbox.enter(pod, w.paths, w.state.userns_first)
    if not pod.host_users:
        _check_idmapped_mounts(w)
    if pod.network == "bridge":
        # Before any container starts: they find eth0 configured (network.py).
        from nsbox import network

        w.state.pod_ip = network.attach(pod, w.root.path, w.state.host_netns_fd).ip
    sandbox.set_sysctls(pod)  # after the network: net.ipv4.conf.eth0.* needs eth0
    w.state.etc_files = sandbox.write_etc_files(pod, w.paths, w.state.pod_ip, owner=w.state.userns_first)
    w.config.mount()
    if pod.share_process_namespace:
        _start_pause(w)
    w.event("Normal", "SandboxReady", f"namespaces, hostname {pod.effective_hostname!r} and /dev/shm ready")


def _check_idmapped_mounts(w: Watcher) -> None:
    """Before any container starts: every file system a container of a hostUsers: false pod
    gets must take an idmapped mount (Linux 5.12+, and per file system), or the pod fails
    at create with the reason, rather than each container at its start."""
    from nsbox import security, userns
    from nsbox.errors import NsboxError

    sources = {w.paths.dir: "the pod's directory (emptyDir volumes)"}
    for v in w.pod.volumes:
        if v.kind == "hostPath" and os.path.exists(v.host_path):
            sources.setdefault(v.host_path, f'hostPath volume "{v.name}"')
        elif v.kind == "emptyDir" and v.medium == "Memory":
            sources.setdefault(w.paths.volume(v.name), f'emptyDir volume "{v.name}" (tmpfs)')
    for c in [*w.pod.init_containers, *w.pod.containers]:
        if not c.runs_image:
            sources.setdefault(security.container_root(c), f'the root of container "{c.name}"')
    if any(c.runs_image for c in [*w.pod.init_containers, *w.pod.containers]) and os.path.isdir(w.images.store.path):
        sources.setdefault(w.images.store.path, "the image store")
    fd = userns.pod_userns_fd()
    try:
        for path, what in sources.items():
            try:
                native.idmap_probe(path, fd)
            except OSError as e:
                raise NsboxError(
                    f"hostUsers: false: {what} ({path}) cannot be mounted idmapped: {e.strerror} "
                    "(idmapped mounts need Linux 5.12 or later and a file system that supports them)"
                ) from None
    finally:
        os.close(fd)


def _start_pause(w: Watcher) -> None:
    """PID 1 of the pod-wide PID namespace, in a cgroup of the pod's (so teardown and gc kill it)."""
    from nsbox import sandbox

    userns_fd = -1
    if not w.pod.host_users:
        from nsbox import userns

        userns_fd = userns.pod_userns_fd()
    try:
        pid = sandbox.start_shared_pid_namespace(userns_fd)
    finally:
        if userns_fd >= 0:
            os.close(userns_fd)
    reap_pause(w, pid)
    cg_path = w.cg.container_path(w.uid, PAUSE_CGROUP)
    w.cg.create(cg_path)
    w.cg.add_process(cg_path, pid)
    _hold_pid_namespace(w, pid, native.process_start_time(pid) or 0)


def adopt_pause(w: Watcher) -> None:
    """Hold the PID namespace of the pause process a dead watcher left, if it still runs."""
    pid, start = w.state.pause_pid, w.state.pause_start
    w.state.pause_pid, w.state.pause_start = 0, 0
    if pid and native.process_start_time(pid) == start:
        _hold_pid_namespace(w, pid, start)


def _hold_pid_namespace(w: Watcher, pid: int, start: int) -> None:
    w.state.pause_pid, w.state.pause_start = pid, start
    w.state.pid_ns_fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)


def reap_pause(w: Watcher, pid: int) -> None:
    """The pause process is our child: tell when it exits."""
    w.loop.children[pid] = lambda status: _pause_exited(w, status)


def _pause_exited(w: Watcher, status: int) -> None:
    w.state.pause_pid = 0
    if w.termination.deletion is None:
        # The kernel has killed every process of the namespace with it.
        w.event(
            "Warning",
            "PauseExited",
            "PID 1 of the shared PID namespace exited "
            f"(status {os.waitstatus_to_exitcode(status)}): the pod's processes were killed",
        )


def _pod_limits(pod: PodSpec) -> dict[str, int | None]:
    """`pod create --cpu/--memory` set the pod's own limits; otherwise the kubelet's sum rule."""
    cpu, mem = pod.annotations.get("nsbox.io/pod-cpu"), pod.annotations.get("nsbox.io/pod-memory")
    if cpu or mem:
        return {
            "cpu_millis": kube.parse_cpu(cpu) if cpu else None,
            "memory_bytes": kube.parse_memory(mem) if mem else None,
        }
    return {
        "cpu_millis": kube.pod_resource_limit(
            [c.resources.cpu_millis for c in pod.containers], [c.resources.cpu_millis for c in pod.init_containers]
        ),
        "memory_bytes": kube.pod_resource_limit(
            [c.resources.memory_bytes for c in pod.containers], [c.resources.memory_bytes for c in pod.init_containers]
        ),
    }


def set_process_name(name: str) -> None:
    """`ps` and `top` show the watcher as `name` (its comm is cut to 15 bytes)."""
    try:
        import prctl

        prctl.set_name(name[:15])
        prctl.set_proctitle(name)
    except (ImportError, OSError):
        pass


def become_subreaper() -> None:
    """Orphans of the pod's processes are reparented to the watcher, which reaps them."""
    try:
        import prctl

        prctl.set_child_subreaper(1)
    except ImportError:
        pass
