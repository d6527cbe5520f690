"""The native module: namespace system calls and the container spawn path.

Policy lives in the callers (which mounts, which capabilities, which ids);
this module turns a `SpawnRequest` into the C struct of csrc/nsbox.h, and
`nsbox_spawn` carries it out between clone and exec, reporting the step that
failed as a `SpawnError`.

Imported on every CLI start: keep it to os, errno, nsbox.record and the
compiled `nsbox._native`.
"""

from __future__ import annotations

import errno
import os

from nsbox._native import ffi, lib
from nsbox.record import field, record

CLONE_NEWNS = lib.CLONE_NEWNS
CLONE_NEWPID = lib.CLONE_NEWPID
CLONE_NEWNET = lib.CLONE_NEWNET
CLONE_NEWIPC = lib.CLONE_NEWIPC
CLONE_NEWUTS = lib.CLONE_NEWUTS
CLONE_NEWCGROUP = lib.CLONE_NEWCGROUP
CLONE_NEWUSER = lib.CLONE_NEWUSER

MS_RDONLY = lib.MS_RDONLY
MS_NOSUID = lib.MS_NOSUID
MS_NODEV = lib.MS_NODEV
MS_NOEXEC = lib.MS_NOEXEC
MS_REMOUNT = lib.MS_REMOUNT
MS_BIND = lib.MS_BIND
MS_REC = lib.MS_REC
MS_PRIVATE = lib.MS_PRIVATE
MS_SLAVE = lib.MS_SLAVE
MS_SHARED = lib.MS_SHARED
MS_STRICTATIME = lib.MS_STRICTATIME
MS_RELATIME = lib.MS_RELATIME
MNT_DETACH = lib.MNT_DETACH

# Namespace types by the names /proc/PID/ns uses.
NAMESPACES = {
    "mnt": CLONE_NEWNS,
    "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "cgroup": CLONE_NEWCGROUP,
    "user": CLONE_NEWUSER,
}

_OP_KINDS = {
    "mount": lib.NSBOX_OP_MOUNT,
    "mkdir": lib.NSBOX_OP_MKDIR,
    "touch": lib.NSBOX_OP_TOUCH,
    "symlink": lib.NSBOX_OP_SYMLINK,
    "pivot": lib.NSBOX_OP_PIVOT,
    "umount": lib.NSBOX_OP_UMOUNT,
    "bind-beneath": lib.NSBOX_OP_BIND_BENEATH,
    "chdir": lib.NSBOX_OP_CHDIR,
    "bind-idmapped": lib.NSBOX_OP_BIND_IDMAP,
    "chown": lib.NSBOX_OP_CHOWN,
}


@record
class MountOp:
    """One step of the mount plan, executed in order in the child.

    kind: "mount"; "mkdir" (mkdir -p target with mode); "touch" (empty
    regular file, parents created); "symlink" (source -> target, EEXIST ok);
    "pivot" (pivot_root into target, old root detached); "umount"
    (umount2(target, flags)); "bind-beneath" (bind `data`, a path resolved
    beneath the directory `source` without following symbolic links, at
    target, with flags: a subPath); "chdir" (to target, so that a later op's
    relative paths start there: an overlay's many lowerdirs in one page);
    "bind-idmapped" (bind source at target, recursively with MS_REC, seen
    through the ID mapping of the request's `userns_fd`; a "bind-beneath"
    is idmapped the same way when the request has one); "chown" (target to
    `owner`:`owner` if it is owned by 0:0, i.e. the plan made it as the host's root).
    """

    kind: str
    target: str
    source: str = ""
    fstype: str = ""
    flags: int = 0
    data: str = ""
    mode: int = 0o755
    optional: bool = False  # ENOENT on this step is ignored
    # A new root that `target` lies below: the target is resolved inside it (openat2
    # RESOLVE_IN_ROOT), so that a symbolic link in it never leads to a host path.
    root: str = ""
    owner: int = 0  # chown


@record
class CapSets:
    """Capability sets as 64-bit masks, bit N = capability N."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int = 0
    ambient: int = 0


# The tiny init of `run --init` and the pause of a shared PID namespace (csrc/init.c),
# an executable built and installed beside this module.
INIT_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nsbox-init")
# A pod's watcher while nothing happens (csrc/idle.c): the watcher execs it and is exec'd back.
IDLE_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nsbox-idle")


@record
class SpawnRequest:
    argv: list[str]
    exec_paths: list[str]  # tried in order with execve; last errno wins
    env: list[str]  # "K=V"
    cwd: str = "/"
    clone_flags: int = 0  # CLONE_NEW* created for the child
    join: list[tuple[int, int]] = field(factory=list)  # (fd, nstype)
    cgroup_fd: int = -1  # cgroup v2 directory: CLONE_INTO_CGROUP
    unshare_flags: int = 0  # CLONE_NEW* made after joining the cgroup (CLONE_NEWCGROUP: rooted at it)
    cgroup_procs: list[str] = field(factory=list)  # v1 joins
    ops: list[MountOp] = field(factory=list)
    hostname: str | None = None
    uid: int | None = None  # None = keep
    gid: int | None = None
    groups: list[int] | None = None  # None = keep, [] = clear
    caps: CapSets | None = None  # None = unchanged
    no_new_privs: bool = False
    stdin: int = -1  # -1 = /dev/null
    stdout: int = -1
    stderr: int = -1
    setsid: bool = True
    ctty: bool = False  # stdin becomes the controlling terminal
    pdeathsig: int = 0
    keep_fds: list[int] = field(factory=list)
    # The child becomes a tiny init (INIT_PROGRAM: signal forwarding, reaping)
    # and argv runs as its child: spawn() returns the init's pid, whose exit
    # code is argv's, or 128+N if signal N killed it.
    init: bool = False
    # Join a new anonymous session keyring (every process nsbox puts in a container):
    # the host's session keyring stays out of reach.
    new_session_keyring: bool = False
    # A seccomp filter (nsbox.seccomp: struct sock_filter[]), b"" = none; installed by the child
    # last before exec (with no_new_privs) or before the capabilities drop (without).
    seccomp: bytes = b""
    seccomp_path: str = ""  # where it is cached: recorded in the container's status for exec
    # The pod's user namespace (hostUsers: false), joined after the mounts and before the ids
    # are set; its mapping is the one "bind-idmapped" and "bind-beneath" mounts get.
    userns_fd: int = -1


class SpawnError(OSError):
    """A step before execve failed in the child (or clone itself failed).

    `errno` is the error, `step` names the step ("mount", "setns", "exec",
    ...), `detail` the path or name concerned.
    """

    def __init__(self, err: int, step: str, detail: str = ""):
        super().__init__(err, os.strerror(err))
        self.step = step
        self.detail = detail

    def __str__(self) -> str:
        if self.step == "exec":
            return f'exec "{self.detail}": {self.strerror}'
        if self.detail.startswith("/"):
            return f"{self.step} of {self.detail} failed: {self.strerror}"
        if self.detail:
            return f"{self.step} ({self.detail}) failed: {self.strerror}"
        return f"{self.step} failed: {self.strerror}"

    def __reduce__(self):
        return (type(self), (self.errno, self.step, self.detail))


def _check(result: int, filename: str | None = None) -> int:
    if result < 0:
        raise OSError(-result, os.strerror(-result), filename)
    return result


def _text(keep: list, s: str | None):
    """A NUL-terminated C string (or NULL) kept alive by `keep`."""
    if s is None:
        return ffi.NULL
    buf = ffi.new("char[]", os.fsencode(s))
    keep.append(buf)
    return buf


def _text_array(keep: list, items: list[str]):
    """A NULL-terminated char*[] kept alive by `keep`."""
    array = ffi.new("const char *[]", len(items) + 1)
    keep.append(array)
    for i, item in enumerate(items):
        array[i] = _text(keep, item)
    return array


def _mask(value: int) -> int:
    return value & 0xFFFF_FFFF_FFFF_FFFF


def _build(req: SpawnRequest, keep: list):
    c = ffi.new("struct nsbox_spawn *")
    keep.append(c)
    c.argv = _text_array(keep, req.argv)
    c.envp = _text_array(keep, req.env)
    c.exec_paths = _text_array(keep, req.exec_paths)
    c.n_exec_paths = len(req.exec_paths)
    c.cwd = _text(keep, req.cwd or None)

    c.clone_flags = req.clone_flags
    joins = ffi.new("struct nsbox_join[]", max(len(req.join), 1))
    keep.append(joins)
    for i, (fd, nstype) in enumerate(req.join):
        joins[i].fd = fd
        joins[i].nstype = nstype
    c.join = joins
    c.n_join = len(req.join)
    c.cgroup_fd = req.cgroup_fd
    c.unshare_flags = req.unshare_flags
    c.cgroup_procs = _text_array(keep, req.cgroup_procs)
    c.n_cgroup_procs = len(req.cgroup_procs)

    ops = ffi.new("struct nsbox_mount_op[]", max(len(req.ops), 1))
    keep.append(ops)
    for i, op in enumerate(req.ops):
        try:
            ops[i].kind = _OP_KINDS[op.kind]
        except KeyError:
            raise ValueError(f"unknown mount op kind {op.kind!r}") from None
        ops[i].target = _text(keep, op.target)
        ops[i].source = _text(keep, op.source)
        ops[i].fstype = _text(keep, op.fstype)
        ops[i].data = _text(keep, op.data)
        ops[i].flags = op.flags
        ops[i].mode = op.mode
        ops[i].optional = int(op.optional)
        ops[i].root = _text(keep, op.root)
        ops[i].fd = req.userns_fd if op.kind in ("bind-idmapped", "bind-beneath") else -1
        ops[i].owner = op.owner
    c.ops = ops
    c.n_ops = len(req.ops)
    c.hostname = _text(keep, req.hostname)

    c.set_uid = req.uid is not None
    c.uid = req.uid if req.uid is not None else 0
    c.set_gid = req.gid is not None
    c.gid = req.gid if req.gid is not None else 0
    c.set_groups = req.groups is not None
    groups = ffi.new("uint32_t[]", list(req.groups or []) or [0])
    keep.append(groups)
    c.groups = groups
    c.n_groups = len(req.groups or [])

    c.set_caps = req.caps is not None
    c.cap_last = cap_last_cap()
    if req.caps is not None:
        c.cap_bounding = _mask(req.caps.bounding)
        c.cap_effective = _mask(req.caps.effective)
        c.cap_permitted = _mask(req.caps.permitted)
        c.cap_inheritable = _mask(req.caps.inheritable)
        c.cap_ambient = _mask(req.caps.ambient)
    c.no_new_privs = int(req.no_new_privs)

    c.stdio = [req.stdin, req.stdout, req.stderr]
    c.setsid = int(req.setsid)
    c.ctty = int(req.ctty)
    c.pdeathsig = req.pdeathsig
    keep_fds = ffi.new("int[]", list(req.keep_fds) or [-1])
    keep.append(keep_fds)
    c.keep_fds = keep_fds
    c.n_keep_fds = len(req.keep_fds)
    c.init = int(req.init)
    c.init_exe_fd = -1
    c.new_session_keyring = int(req.new_session_keyring)
    if req.seccomp:
        program = ffi.from_buffer(req.seccomp)
        keep.append(program)
        c.seccomp_filter = program
        c.seccomp_len = len(req.seccomp) // 8
    c.userns_fd = req.userns_fd
    return c


_init_fd: int | None = None


def init_program_fd() -> int:
    """A sealed memfd copy of INIT_PROGRAM, made once per process and kept (close-on-exec).

    The tiny init and the pause are exec'd from it, never from the host file: their
    /proc/PID/exe is this copy, which nothing can write, so a container cannot reach
    nsbox-init through it and overwrite it (docs/security.md §12). Sealed, it is
    safe to share between all the processes exec'd from it."""
    global _init_fd
    if _init_fd is None:
        _init_fd = _check(lib.nsbox_sealed_copy(os.fsencode(INIT_PROGRAM), b"nsbox-init"), INIT_PROGRAM)
    return _init_fd


def drop_privileges() -> None:
    """Empty every capability set and set no_new_privs (for a root process about to exec)."""
    _check(lib.nsbox_drop_privileges(cap_last_cap()))


def spawn(req: SpawnRequest) -> tuple[int, int]:
    """Start req.argv as planned; returns (pid, pidfd or -1).

    Blocks only until the child has exec'd or reported a failed step; in the
    latter case the child has been reaped and SpawnError is raised.
    """
    if not req.argv:
        raise ValueError("argv must not be empty")
    keep: list = []
    c = _build(req, keep)
    pidfd = ffi.new("int *", -1)
    err = ffi.new("struct nsbox_spawn_error *")
    if req.init:
        try:
            c.init_exe_fd = init_program_fd()
        except OSError as e:
            raise SpawnError(e.errno, "init", INIT_PROGRAM) from None  # type: ignore[arg-type]  # set by open(2)
    pid = lib.nsbox_spawn(c, pidfd, err)
    if pid < 0:
        raise SpawnError(
            err.err or errno.EIO,
            ffi.string(err.step_name).decode(),
            os.fsdecode(ffi.string(err.detail)),
        )
    return pid, pidfd[0]


def unshare(flags: int) -> None:
    _check(lib.nsbox_unshare(flags))


def setns(fd: int, nstype: int) -> None:
    _check(lib.nsbox_setns(fd, nstype))


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    _check(
        lib.nsbox_mount(os.fsencode(source), os.fsencode(target), os.fsencode(fstype), flags, os.fsencode(data)), target
    )


def umount(target: str, flags: int = 0) -> None:
    _check(lib.nsbox_umount2(os.fsencode(target), flags), target)


def pidfd_open(pid: int) -> int | None:
    """A pidfd for pid, or None when the kernel has no pidfd_open."""
    fd = lib.nsbox_pidfd_open(pid, 0)
    if fd == -errno.ENOSYS:
        return None
    return _check(fd)


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _check(lib.nsbox_pidfd_send_signal(pidfd, sig))


def idmap_probe(path: str, userns_fd: int, recursive: bool = False) -> None:
    """Raise OSError unless `path` can be mounted idmapped by the user namespace `userns_fd`
    (nothing is mounted: the idmapped copy is made and dropped)."""
    _check(lib.nsbox_idmap_probe(os.fsencode(path), userns_fd, int(recursive)), path)


def malloc_trim() -> None:
    """Give free heap memory back to the kernel (glibc's malloc_trim(0))."""
    lib.nsbox_malloc_trim()


def send_signal(pid: int, sig: int, pidfd: int | None = None, start_time: int | None = None) -> bool:
    """Signal pid without ever hitting a recycled PID.

    With a pidfd (given, or opened here) the kernel guarantees the target;
    a freshly opened one is first checked against start_time. Without
    pidfds, start_time is compared just before kill(). Returns False if the
    process is gone or is not the one meant.
    """
    try:
        if pidfd is not None:
            pidfd_send_signal(pidfd, sig)
            return True
        own = pidfd_open(pid)
        if own is None:
            if start_time is not None and process_start_time(pid) != start_time:
                return False
            os.kill(pid, sig)
            return True
        try:
            # The pid may have been recycled before we opened the pidfd.
            if start_time is not None and process_start_time(pid) != start_time:
                return False
            pidfd_send_signal(own, sig)
            return True
        finally:
            os.close(own)
    except ProcessLookupError:
        return False


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the
    # last ')'; field 3 is then index 0, so field 22 is index 19.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


_cap_last: int | None = None


def cap_last_cap() -> int:
    """The highest capability number this kernel knows."""
    global _cap_last
    if _cap_last is None:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            _cap_last = int(f.read())
    return _cap_last
