"""The mount plan of a container: which file system it sees.

Describe first, execute second: `container_root_plan` returns a list of
`native.MountOp`s, and the native spawn path carries them out in the child's
new mount namespace, between clone and exec. Nothing here touches the kernel.

A container sees the host's files through an overlay whose upper layer is a
tmpfs private to the container, of the size of its ephemeral-storage limit
(DEFAULT_UPPER_SIZE without one): it can write anywhere, and its writes vanish
with it and never reach the host (docs/pods.md §7). The overlay's upper layer must not
live on the lower file system (the kernel refuses overlapping layers), hence
the tmpfs. On top come a fresh /proc for its PID namespace, a minimal /dev, a
read-only /sys, the pod's /dev/shm, /etc/hostname and /etc/hosts, and the
volumes. Finally the root is pivoted into the overlay.

Every step that acts on a path of the new root (mkdir, touch, symlink, mount) is
resolved inside that root (`MountOp.root`: openat2 RESOLVE_IN_ROOT in the child): a
volume keeps what a container put in it, and a symbolic link planted there in an
earlier run must not turn a mount point or a working directory into a host path
(docs/security.md §12).

An unprivileged container may create device nodes (CAP_MKNOD is in the
default set, as in Docker) but must not open any beyond the minimal /dev. The
device cgroup (v1) or filter (v2) is one wall; the mount plan is the second:
everything the container can write to is mounted nodev (the overlay root, the
/dev tmpfs, the volumes), so a node it makes opens nowhere. The only mounts
where device nodes work are the binds of the default devices and devpts.
"""

from __future__ import annotations

import errno
import os
import stat

from nsbox import native
from nsbox.native import MountOp

# What runc masks and makes read-only by default (runc libcontainer/specconv
# defaults, the OCI runtime-spec's "maskedPaths"/"readonlyPaths").
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# The devices of a minimal /dev (the OCI runtime-spec's default devices).
DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

# The steps that can resolve their target inside the new root (MountOp.root).
IN_ROOT_KINDS = ("mount", "mkdir", "touch", "symlink", "bind-beneath", "bind-idmapped")

NOSUID_NODEV_NOEXEC = native.MS_NOSUID | native.MS_NODEV | native.MS_NOEXEC

# What a container may write to its root when its manifest sets no
# `resources.limits.ephemeral-storage`: its overlay's upper layer is a tmpfs of this size
# (the tmpfs default, half the RAM, would let one container take the machine's memory).
# Decision recorded in docs/manifests.md ("ephemeral-storage"); the limit raises or lowers it.
DEFAULT_UPPER_SIZE = 1024 * 1024 * 1024


def upper_size(ephemeral_storage_bytes: int | None) -> int:
    """The size of a container's writable layer: its ephemeral-storage limit, else the default."""
    return ephemeral_storage_bytes or DEFAULT_UPPER_SIZE


# Per-mount flags a bind remount must restate to keep them: statvfs's ST_* -> mount's MS_*
# (MS_NOATIME and MS_NODIRATIME have the ST_ values).
_KEPT_BY_REMOUNT = (
    (os.ST_RDONLY, native.MS_RDONLY),
    (os.ST_NOSUID, native.MS_NOSUID),
    (os.ST_NODEV, native.MS_NODEV),
    (os.ST_NOEXEC, native.MS_NOEXEC),
    (os.ST_NOATIME, os.ST_NOATIME),
    (os.ST_NODIRATIME, os.ST_NODIRATIME),
    (os.ST_RELATIME, native.MS_RELATIME),
)


class Volume:
    """A resolved volume mount: host path (and a subPath below it) -> path in the container.
    `mapped=False`: bound as it is even with a user namespace (a file of the pod's scratch
    tmpfs, already its root's: tmpfs takes idmapped mounts only from Linux 6.3)."""

    def __init__(self, source: str, target: str, read_only: bool, sub_path: str = "", mapped: bool = True):
        self.source = source
        self.target = target
        self.read_only = read_only
        self.sub_path = sub_path
        self.mapped = mapped


def open_beneath(directory: str, path: str, create: bool = False) -> int:
    """An O_PATH descriptor of directory/path, walked one component at a time
    without following symbolic links (a link is an error, ELOOP); with
    `create`, missing directories are made (mode 0777 less the umask)."""
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(directory, flags | os.O_DIRECTORY)
    try:
        for name in path.split("/"):
            if name in ("", "."):
                continue
            try:
                child = os.open(name, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: opened like any other
                child = os.open(name, flags, dir_fd=fd)
            os.close(fd)
            fd = child
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, f'"{name}" is a symbolic link')
        return fd
    except BaseException:
        os.close(fd)
        raise


def container_root_plan(
    *,
    scratch: str,
    lower: str,
    lower_cwd: str = "",
    privileged: bool,
    read_only_root: bool,
    shm: str,
    etc_files: dict[str, str],
    volumes: list[Volume],
    hide: list[str],
    console: str = "",
    upper_size: int = DEFAULT_UPPER_SIZE,
    userns_owner: int = 0,
) -> list[MountOp]:
    """The mounts that build a container's root at `scratch`/root and pivot into it.

    scratch:    an empty host directory where the container's tmpfs goes
    lower:      "/" (the host's view), a local directory used as the image, or an image's
                layers (overlay lowerdirs, top first, relative to `lower_cwd`)
    lower_cwd:  where the overlay is mounted from, so that many layers fit in the one page
                of mount options (docs/images.md, "Store")
    shm:        the pod's /dev/shm tmpfs (mounted in the watcher's namespace)
    etc_files:  path in the container -> host file to bind over it (hostname, hosts, ...)
    hide:       host directories to cover with an empty read-only tmpfs (nsbox's own state)
    console:    the host pty given to a `run -t` container, shown as its /dev/console (as LXC does),
                since the container's own devpts instance does not have it
    upper_size: bytes the container may write to its root (the tmpfs of its overlay's upper layer)
    userns_owner: with a user namespace (hostUsers: false), the host ID its root maps to: the
                lower layers, the volumes and the /etc files are mounted idmapped (overlay
                itself cannot be, its layers can), so that what is root's on disk is root's
                inside; the upper layer's top belongs to that ID, so that the root directory is
                root's inside too (docs/security.md, "User namespaces")
    """
    root = os.path.join(scratch, "root")
    nodev = 0 if privileged else native.MS_NODEV
    idmapped = bool(userns_owner)
    lower_ops: list[MountOp] = [MountOp("chdir", lower_cwd)] if lower_cwd else []
    if idmapped:
        # A detached copy of the lower file system, seen through the pod's mapping; an image's
        # layers are reached as before, by the relative names of the store's link directory.
        mapped = f"{scratch}/lower"
        source = os.path.dirname(lower_cwd.rstrip("/")) if lower_cwd else lower
        lower_ops = [
            MountOp("mkdir", mapped),
            MountOp("bind-idmapped", mapped, source=source, flags=native.MS_BIND),
            MountOp("chown", f"{scratch}/upper", owner=userns_owner),  # the root directory, inside
        ]
        if lower_cwd:
            lower_ops.append(MountOp("chdir", os.path.join(mapped, os.path.basename(lower_cwd.rstrip("/")))))
        else:
            lower = mapped
    ops = [
        # Mounts made for this container must never propagate back to the pod's namespace.
        MountOp("mount", "/", flags=native.MS_REC | native.MS_SLAVE),
        MountOp("mount", scratch, source="tmpfs", fstype="tmpfs", data=f"mode=0755,size={upper_size}"),
        MountOp("mkdir", f"{scratch}/upper"),
        MountOp("mkdir", f"{scratch}/work"),
        MountOp("mkdir", root),
        *lower_ops,
    ]
    overlay = MountOp(
        "mount",
        root,
        source="overlay",
        fstype="overlay",
        flags=nodev,
        data=f"lowerdir={lower},upperdir={scratch}/upper,workdir={scratch}/work",
    )
    ops.append(overlay)
    for path in hide:
        ops.append(
            MountOp(
                "mount",
                root + path,
                source="tmpfs",
                fstype="tmpfs",
                flags=native.MS_RDONLY | NOSUID_NODEV_NOEXEC,
                data="size=0",
                optional=True,
            )
        )

    # An image directory need not have the mount points (runc creates them too); in the
    # overlay they are made in the container's upper layer, never in the image.
    ops += [MountOp("mkdir", f"{root}/{d}") for d in ("proc", "dev", "sys")]
    ops.append(MountOp("mount", f"{root}/proc", source="proc", fstype="proc", flags=NOSUID_NODEV_NOEXEC))
    ops += _dev_plan(root, shm, privileged)
    sys_flags = NOSUID_NODEV_NOEXEC | (0 if privileged else native.MS_RDONLY)
    ops.append(MountOp("mount", f"{root}/sys", source="sysfs", fstype="sysfs", flags=sys_flags))

    # Never idmapped: with a user namespace they are already its root's (sandbox.write_etc_files).
    for target, etc_source in etc_files.items():
        ops.append(MountOp("touch", root + target, mode=0o644))
        ops.append(MountOp("mount", root + target, source=etc_source, flags=native.MS_BIND))

    for v in volumes:
        ops += bind_plan(
            v.source,
            root + v.target,
            v.read_only,
            nodev=not privileged,
            sub_path=v.sub_path,
            idmapped=idmapped and v.mapped,
        )

    if console:
        ops.append(MountOp("touch", f"{root}/dev/console", mode=0o620))
        ops.append(MountOp("mount", f"{root}/dev/console", source=console, flags=native.MS_BIND))

    if idmapped:
        # The directories the plan made above its mount points belong to the host's root,
        # which the pod's namespace does not map: give them to the pod's root, as if it had
        # made them (the op leaves alone whatever comes from the image or the host).
        targets = [*etc_files, *(v.target for v in volumes)]
        ops += [MountOp("chown", root + d, owner=userns_owner) for d in made_parents(targets)]
    if not privileged:
        ops += _mask_plan(root)
    if read_only_root:
        ops.append(MountOp("mount", root, flags=native.MS_REMOUNT | native.MS_BIND | native.MS_RDONLY))
    # Everything after the overlay that acts below its root is resolved inside it.
    for op in ops[ops.index(overlay) + 1 :]:
        if op.kind in IN_ROOT_KINDS and op.target.startswith(root + "/"):
            op.root = root
    ops.append(MountOp("pivot", root))
    return ops


def in_root(root: str, path: str) -> str:
    """`path` of the container (absolute) as a path below `root`, as the plan spells targets."""
    return os.path.join(root, path.lstrip("/"))


def made_parents(targets: list[str]) -> list[str]:
    """The parent directories of container paths `targets`, outermost first, without "/"."""
    seen: dict[str, None] = {}
    for target in targets:
        parts = target.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            seen.setdefault("/" + "/".join(parts[:i]), None)
    return list(seen)


def bind_plan(
    source: str, target: str, read_only: bool, nodev: bool = False, sub_path: str = "", idmapped: bool = False
) -> list[MountOp]:
    """Bind `source` (a file or a directory), or `sub_path` beneath it, at `target`,
    creating the mount point; `idmapped`: through the ID mapping of the pod's user namespace
    (a bind-beneath is, whenever the spawn request has one)."""
    if sub_path:
        # Looked at through a descriptor, as the child will mount it (bind-beneath).
        fd = open_beneath(source, sub_path)
        try:
            is_dir, fs_flags = stat.S_ISDIR(os.fstat(fd).st_mode), os.fstatvfs(fd).f_flag
        finally:
            os.close(fd)
        bind = MountOp("bind-beneath", target, source=source, data=sub_path, flags=native.MS_BIND | native.MS_REC)
    else:
        is_dir, fs_flags = os.path.isdir(source), None
        kind = "bind-idmapped" if idmapped else "mount"
        bind = MountOp(kind, target, source=source, flags=native.MS_BIND | native.MS_REC)
    make = MountOp("mkdir", target) if is_dir else MountOp("touch", target, mode=0o644)
    ops = [make, bind]
    extra = (native.MS_RDONLY if read_only else 0) | (native.MS_NODEV if nodev else 0)
    if extra:
        # A bind remount sets the per-mount flags to exactly those given: restate the source's.
        st = fs_flags if fs_flags is not None else os.statvfs(source).f_flag
        kept = sum(ms for st_flag, ms in _KEPT_BY_REMOUNT if st & st_flag)
        ops.append(MountOp("mount", target, flags=native.MS_REMOUNT | native.MS_BIND | kept | extra))
    return ops


def _dev_plan(root: str, shm: str, privileged: bool) -> list[MountOp]:
    dev = f"{root}/dev"
    if privileged:
        # Privileged containers get the host's devices (docs/security.md §10), but the pod's own shm and ptys.
        ops = [MountOp("mount", dev, source="/dev", flags=native.MS_BIND | native.MS_REC)]
    else:
        # nodev: the default devices below are binds, mounts of their own that keep working.
        ops = [
            MountOp(
                "mount", dev, source="tmpfs", fstype="tmpfs", flags=NOSUID_NODEV_NOEXEC, data="mode=0755,size=65536k"
            )
        ]
        for name in DEFAULT_DEVICES:
            ops.append(MountOp("touch", f"{dev}/{name}", mode=0o666))
            ops.append(MountOp("mount", f"{dev}/{name}", source=f"/dev/{name}", flags=native.MS_BIND))
        for name, target in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("core", "/proc/kcore"),
        ):
            ops.append(MountOp("symlink", f"{dev}/{name}", source=target))
        ops.append(MountOp("mkdir", f"{dev}/pts"))
        ops.append(MountOp("mkdir", f"{dev}/mqueue"))
        ops.append(MountOp("mkdir", f"{dev}/shm"))
    # A private devpts instance: the container's ptys are its own.
    ops.append(
        MountOp(
            "mount",
            f"{dev}/pts",
            source="devpts",
            fstype="devpts",
            flags=native.MS_NOSUID | native.MS_NOEXEC,
            data="newinstance,ptmxmode=0666,mode=0620,gid=5",
        )
    )
    if not privileged:
        ops.append(MountOp("symlink", f"{dev}/ptmx", source="pts/ptmx"))
    # POSIX message queues of the pod's IPC namespace.
    ops.append(
        MountOp("mount", f"{dev}/mqueue", source="mqueue", fstype="mqueue", flags=NOSUID_NODEV_NOEXEC, optional=True)
    )
    ops.append(MountOp("mount", f"{dev}/shm", source=shm, flags=native.MS_BIND))
    return ops


def _mask_plan(root: str) -> list[MountOp]:
    ops = []
    for path in MASKED_PATHS:
        if os.path.isdir(path):
            ops.append(
                MountOp(
                    "mount",
                    root + path,
                    source="tmpfs",
                    fstype="tmpfs",
                    flags=native.MS_RDONLY,
                    data="size=0",
                    optional=True,
                )
            )
        elif os.path.exists(path):
            ops.append(MountOp("mount", root + path, source="/dev/null", flags=native.MS_BIND, optional=True))
    for path in READONLY_PATHS:
        if os.path.exists(path):
            ops.append(
                MountOp("mount", root + path, source=root + path, flags=native.MS_BIND | native.MS_REC, optional=True)
            )
            ops.append(
                MountOp(
                    "mount", root + path, flags=native.MS_REMOUNT | native.MS_BIND | native.MS_RDONLY, optional=True
                )
            )
    return ops
