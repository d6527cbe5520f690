"""The pod sandbox: the namespaces, hostname, loopback, /dev/shm and /etc files all containers share.

The sandbox is made by the pod's watcher in its own process: it unshares the
pod's net, IPC and UTS namespaces (docs/pods.md §2) and a mount namespace of its own,
and then *is* the namespace holder. Every container is cloned from the watcher
and inherits them; `exec` joins a container through /proc/PID/ns. Nothing is
bind-mounted in the host's mount namespace: mounts there make every later
mount namespace on the host slower (docs/design.md §2), and a process holding the
namespaces cannot leak them — they die with their last process.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct

from nsbox import native, volumes
from nsbox.errors import NsboxError
from nsbox.model import PodSpec
from nsbox.state import PodPaths

SHM_SIZE = "64m"  # Docker's and the kubelet's default /dev/shm
# The pod's scratch tmpfs (enter): its /etc/hosts and /etc/hostname, writable inside as in
# Kubernetes, and the containers' termination messages (the kubelet reads 4 KiB of each); a
# container cannot fill the host's disk through them (docs/security.md §4).
SCRATCH_SIZE = "1m"
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def namespace_flags(pod: PodSpec) -> int:
    flags = native.CLONE_NEWNS
    if pod.network != "host":
        flags |= native.CLONE_NEWNET | native.CLONE_NEWUTS
    if not pod.host_ipc:
        flags |= native.CLONE_NEWIPC
    return flags


def loopback_up() -> None:
    """`ip link set lo up`, with one ioctl: the kernel then adds 127.0.0.1 and ::1 itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def write_etc_files(pod: PodSpec, paths: PodPaths, pod_ip: str = "", owner: int = 0) -> dict[str, str]:
    """The pod's /etc/hostname and /etc/hosts, on the pod's small tmpfs (enter); returns
    container path -> the file in the pod's mount namespace. With `owner` (the host ID of a
    hostUsers: false pod's root) the files are that ID's, so root's inside.

    /etc/hosts is written as the kubelet writes it (kube.managed_hosts_file),
    with spec.hostAliases at the end; a hostNetwork pod keeps the host's
    hostname and gets a copy of the host's /etc/hosts with the aliases added
    (README "Groups, sysctls and /etc/hosts")."""
    from nsbox import kube

    if pod.network == "host":
        try:
            with open("/etc/hosts") as f:
                host_hosts = f.read()
        except OSError as e:
            raise NsboxError(f"cannot read the host's /etc/hosts: {e.strerror}") from None
        files = {"/etc/hosts": kube.host_network_hosts_file(host_hosts, pod.host_aliases)}
    else:
        hostname = pod.effective_hostname
        files = {
            "/etc/hostname": hostname + "\n",
            "/etc/hosts": kube.managed_hosts_file(pod_ip, hostname, pod.host_aliases),
        }
    result = {}
    for target, content in files.items():
        path = os.path.join(paths.etc, os.path.basename(target))
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, 0o644)
        if owner:
            os.chown(path, owner, owner)
        result[target] = path
    return result


def set_sysctls(pod: PodSpec) -> None:
    """Set the pod's sysctls (spec.securityContext.sysctls, in order) in its namespaces.

    Called in the watcher, which is in the pod's net and IPC namespaces and
    has made its network: /proc/sys/net and the IPC sysctls are those of the
    namespaces of the process that writes them. The manifest reader has
    allowed only namespaced sysctls, never net.* with hostNetwork nor IPC
    ones with hostIPC (kube.sysctl_namespace)."""
    from nsbox import kube

    for name, value in pod.sysctls.items():
        path = "/proc/sys/" + kube.sysctl_path(name)
        try:
            with open(path, "w") as f:
                f.write(value)
        except FileNotFoundError:
            raise NsboxError(f'sysctl "{name}": this kernel has no {path}') from None
        except OSError as e:
            raise NsboxError(f'sysctl "{name}" = "{value}": {e.strerror}') from None


def enter(pod: PodSpec, paths: PodPaths, userns_first: int = 0) -> None:
    """Turn the calling (watcher) process into the pod's sandbox. Must be single-threaded.

    With `userns_first` (hostUsers: false) the net, IPC and UTS namespaces are made by a
    user namespace mapping 0..65535 to userns_first.. (nsbox/userns.py); the watcher's
    own mount namespace stays the host's."""
    flags = namespace_flags(pod)
    if userns_first:
        from nsbox import userns

        if pod.network == "host" or pod.host_ipc:
            raise NsboxError("a pod with hostUsers: false cannot share the host's network or IPC namespace")
        userns.enter(flags & ~native.CLONE_NEWNS, userns_first)
        flags = native.CLONE_NEWNS
    native.unshare(flags)
    # Mounts made by the pod stay in the pod; host mounts still appear in it.
    native.mount("", "/", "", native.MS_REC | native.MS_SLAVE)
    if pod.network != "host":
        socket.sethostname(pod.effective_hostname)
        loopback_up()
    # The pod's scratch (/etc/hosts and /etc/hostname, termination messages, the mount points
    # of /dev/shm and of the containers' roots), in the pod's mount namespace only, like
    # /dev/shm: it goes with the pod's last process, whatever way the pod ends; the host's disk
    # never holds what a container writes there, nor a directory per pod to make and remove.
    # With a user namespace it is the pod's root's, and bound without an ID mapping (tmpfs
    # takes idmapped mounts only from Linux 6.3; docs/security.md, "User namespaces").
    owner = f",uid={userns_first},gid={userns_first}" if userns_first else ""
    native.mount(
        "nsbox-run",
        paths.scratch,
        "tmpfs",
        native.MS_NOSUID | native.MS_NODEV | native.MS_NOEXEC,
        f"mode=0755,size={SCRATCH_SIZE}{owner}",
    )
    for d in (paths.etc, paths.shm, paths.containers):
        os.mkdir(d, 0o755)
    native.mount("shm", paths.shm, "tmpfs", native.MS_NOSUID | native.MS_NODEV, f"mode=1777,size={SHM_SIZE}")
    for v in pod.volumes:
        if v.kind == "emptyDir" and v.medium == "Memory":
            data = "mode=0777" + (f",size={v.size_limit}" if v.size_limit else "")
            native.mount("tmpfs", paths.volume(v.name), "tmpfs", native.MS_NOSUID | native.MS_NODEV, data)
        if v.kind == "emptyDir":
            # The kubelet gives an emptyDir to the pod's fsGroup when it sets the volume up (volumes.py);
            # a Memory one only once its tmpfs is mounted, here in the pod's mount namespace.
            volumes.set_volume_ownership(paths.volume(v.name), pod.fs_group, policy=pod.fs_group_change_policy)


def start_shared_pid_namespace(userns_fd: int = -1) -> int:
    """Start PID 1 of the pod-wide PID namespace (shareProcessNamespace); returns its PID.

    Kubernetes runs a pause container for this; ours is `nsbox-init --pause`
    (native.INIT_PROGRAM), which only reaps orphans. Containers join its
    namespace (`container.start_request(pid_ns_fd=...)`), so none of them is
    PID 1 and each gets SIGTERM like any process. If it dies, the kernel kills
    every process of the namespace: it must live as long as the pod. In a pod with
    hostUsers: false (`userns_fd`) it runs as the pod's root, in the pod's user namespace.

    It is exec'd from the sealed memfd copy of the program (native.init_program_fd),
    with no capabilities and no_new_privs, and it is not dumpable (csrc/init.c):
    the pod's processes see it in their PID namespace but can neither write its
    executable nor reach the host's files through it (docs/security.md §12).
    """
    try:
        exe = native.init_program_fd()
    except OSError:
        raise NsboxError(
            f"cannot start the pod's shared PID namespace: {native.INIT_PROGRAM} is missing "
            "(reinstall nsbox: sudo ./setup.sh demo)"
        ) from None
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        # unshare(CLONE_NEWPID) moves only our *next* children into a new namespace, and the
        # first of them is its PID 1; setns() back so the watcher's later children are not.
        native.unshare(native.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            _exec_pause(exe, userns_fd)
        native.setns(own, native.CLONE_NEWPID)
    finally:
        os.close(own)
    return pid


def _exec_pause(exe: int, userns_fd: int = -1) -> None:
    """In the forked child: become nsbox-init --pause (from `exe`, its sealed copy), with
    nothing of the watcher's: no descriptor but 0-2, no capability (in the pod's user
    namespace, as the pod's root, with `userns_fd`)."""
    try:
        if userns_fd >= 0:
            native.setns(userns_fd, native.CLONE_NEWUSER)
            os.setgroups([])
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        signal.set_wakeup_fd(-1)
        for sig in signal.valid_signals():
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        # The watcher's sockets and, above all, its lock; `exe` closes on exec.
        os.closerange(3, exe)
        os.closerange(exe + 1, 1 << 16)
        native.drop_privileges()
        os.execve(exe, ["nsbox-pause", "--pause"], {})
    finally:
        os._exit(127)
