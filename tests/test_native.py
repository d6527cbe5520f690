"""The native spawn path against the real kernel (root only).

Every claim is checked by an independent observer: /proc/PID/ns, /proc/PID/
status, /proc/PID/cgroup, /proc/self/mountinfo, or what the child prints.
Every child is killed and reaped, every temporary directory removed.
"""

import errno
import fcntl
import os
import resource
import select
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid

import pytest
from conftest import sleeping_fds

from nsbox import native
from nsbox.native import CapSets, MountOp, SpawnError, SpawnRequest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

DEADLINE = 20.0  # generous: the machine may be loaded

CAP_CHOWN = 0
CAP_KILL = 5
CAP_NET_BIND_SERVICE = 10
SMALL_MASK = (1 << CAP_CHOWN) | (1 << CAP_KILL) | (1 << CAP_NET_BIND_SERVICE)


# ---- helpers -------------------------------------------------------------


def request(argv, **kw) -> SpawnRequest:
    path = shutil.which(argv[0]) or argv[0]
    return SpawnRequest(argv=list(argv), exec_paths=[path], env=["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], **kw)


class Children:
    """Spawns through nsbox.native and guarantees every child is reaped."""

    def __init__(self):
        self.live: dict[int, int] = {}  # pid -> pidfd

    def spawn(self, req: SpawnRequest) -> int:
        pid, pidfd = native.spawn(req)
        self.live[pid] = pidfd
        return pid

    def wait(self, pid: int, timeout: float = DEADLINE) -> int:
        """Exit status of pid, polling its pidfd until the deadline."""
        pidfd = self.live[pid]
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"pid {pid} still running")
            if pidfd >= 0:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(0.01)
        del self.live[pid]
        if pidfd >= 0:
            os.close(pidfd)
        return status

    def kill_all(self):
        """SIGKILL everything, then reap in whatever order children finish.

        Not one by one: a dead pid-ns init is only reapable once every
        other process of its namespace has been reaped, even one whose
        parent is us (a joiner), so waiting on the init first deadlocks.
        """
        for pid in self.live:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + DEADLINE
        while self.live:
            for pid, pidfd in list(self.live.items()):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    del self.live[pid]
                    if pidfd >= 0:
                        os.close(pidfd)
            if self.live:
                assert time.monotonic() < deadline, f"unreaped: {self.live}"
                time.sleep(0.01)


@pytest.fixture
def children():
    c = Children()
    try:
        yield c
    finally:
        c.kill_all()


@pytest.fixture
def tmpdir_clean():
    path = tempfile.mkdtemp(prefix="nsbox-native-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Output:
    """The read end of a pipe given to a child as stdout."""

    def __init__(self):
        self.r, self.w = os.pipe()
        self.data = b""

    def child_end(self) -> int:
        return self.w

    def started(self):
        """Call after spawn: only the child holds the write end now."""
        os.close(self.w)
        self.w = -1

    def read_until(self, needle: bytes = None, timeout: float = DEADLINE) -> str:
        """Reads until needle is seen (or EOF when needle is None)."""
        deadline = time.monotonic() + timeout
        while needle is None or needle not in self.data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"child output so far: {self.data!r}")
            if not select.select([self.r], [], [], left)[0]:
                continue
            chunk = os.read(self.r, 65536)
            if not chunk:
                if needle is None:
                    break
                raise EOFError(f"child output: {self.data!r}")
            self.data += chunk
        return self.data.decode()

    def close(self):
        for fd in (self.r, self.w):
            if fd >= 0:
                os.close(fd)


@pytest.fixture
def output():
    out = Output()
    try:
        yield out
    finally:
        out.close()


def ns_inode(pid, name) -> int:
    return os.stat(f"/proc/{pid}/ns/{name}").st_ino


def status(pid) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f.read().splitlines())}


def our_children() -> set[int]:
    """Children of every thread of this process, zombies included."""
    kids = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            kids.update(int(p) for p in f.read().split())
    return kids


def mountpoints_under(path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == path or p.startswith(path + "/")]


def cgroup2_mount() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            _, target, fstype = line.split()[:3]
            if fstype == "cgroup2":
                return target
    return None


# ---- namespaces ----------------------------------------------------------


def test_child_in_new_mnt_pid_ns_is_pid_1_with_its_own_namespaces(children, output):
    flags = native.CLONE_NEWNS | native.CLONE_NEWPID | native.CLONE_NEWCGROUP
    pid = children.spawn(request(["sh", "-c", "echo $$; exec sleep 30"], clone_flags=flags, stdout=output.child_end()))
    output.started()

    assert output.read_until(b"\n").strip() == "1"
    for name in ("mnt", "pid", "cgroup"):
        assert ns_inode(pid, name) != ns_inode("self", name), name
    for name in ("net", "uts", "ipc"):
        assert ns_inode(pid, name) == ns_inode("self", name), name


def test_joining_net_and_uts_shares_the_holders_namespaces_and_hostname(children, output):
    holder = children.spawn(
        request(["sleep", "30"], clone_flags=native.CLONE_NEWNET | native.CLONE_NEWUTS, hostname="hx")
    )
    net = os.open(f"/proc/{holder}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    uts = os.open(f"/proc/{holder}/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
    try:
        joiner = children.spawn(
            request(
                ["sh", "-c", "hostname; exec sleep 30"],
                join=[(net, native.CLONE_NEWNET), (uts, native.CLONE_NEWUTS)],
                stdout=output.child_end(),
            )
        )
        output.started()
    finally:
        os.close(net)
        os.close(uts)

    assert output.read_until(b"\n").strip() == "hx"
    for name in ("net", "uts"):
        assert ns_inode(joiner, name) == ns_inode(holder, name) != ns_inode("self", name)
    assert os.uname().nodename != "hx"


def test_joining_a_pid_ns_goes_through_the_parent_which_then_restores_its_own(children, output):
    holder = children.spawn(request(["sleep", "30"], clone_flags=native.CLONE_NEWPID))
    pidns = os.open(f"/proc/{holder}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        joiner = children.spawn(
            request(
                ["sh", "-c", "echo $$; exec sleep 30"], join=[(pidns, native.CLONE_NEWPID)], stdout=output.child_end()
            )
        )
        output.started()
    finally:
        os.close(pidns)

    assert ns_inode(joiner, "pid") == ns_inode(holder, "pid") != ns_inode("self", "pid")
    assert int(output.read_until(b"\n")) > 1  # the holder is PID 1 there
    assert os.stat("/proc/thread-self/ns/pid_for_children").st_ino == ns_inode("self", "pid")


# ---- errors --------------------------------------------------------------


def test_missing_executable_is_an_exec_error_and_leaves_nothing_running():
    before = our_children()
    with pytest.raises(SpawnError) as info:
        native.spawn(request(["/nonexistent/nsbox-nope"], clone_flags=native.CLONE_NEWPID))
    err = info.value
    assert (err.step, err.errno, err.detail) == ("exec", errno.ENOENT, "/nonexistent/nsbox-nope")
    assert str(err) == 'exec "/nonexistent/nsbox-nope": No such file or directory'
    assert our_children() == before


def test_mount_onto_missing_target_names_the_step_and_the_target():
    target = "/nonexistent-nsbox-test/mnt"
    before = our_children()
    with pytest.raises(SpawnError) as info:
        native.spawn(
            request(
                ["true"],
                clone_flags=native.CLONE_NEWNS,
                ops=[
                    MountOp("mount", "/", flags=native.MS_REC | native.MS_PRIVATE),
                    MountOp("mount", target, source="tmpfs", fstype="tmpfs"),
                ],
            )
        )
    err = info.value
    assert (err.step, err.errno, err.detail) == ("mount", errno.ENOENT, target)
    assert str(err) == f"mount of {target} failed: No such file or directory"
    assert our_children() == before


def test_optional_mount_step_tolerates_a_missing_target(children):
    pid = children.spawn(
        request(
            ["true"],
            clone_flags=native.CLONE_NEWNS,
            ops=[
                MountOp("mount", "/", flags=native.MS_REC | native.MS_PRIVATE),
                MountOp("mount", "/proc/nsbox-no-such-file", source="/dev/null", flags=native.MS_BIND, optional=True),
            ],
        )
    )
    assert children.wait(pid) == 0


def _bind_beneath_ops(volume: str, sub: str, target: str) -> list[MountOp]:
    return [
        MountOp("mount", "/", flags=native.MS_REC | native.MS_PRIVATE),
        MountOp("bind-beneath", target, source=volume, data=sub, flags=native.MS_BIND),
    ]


def test_bind_beneath_mounts_the_directory_it_resolved(children, output, tmpdir_clean):
    os.makedirs(f"{tmpdir_clean}/vol/sub")
    with open(f"{tmpdir_clean}/vol/sub/marker", "w") as f:
        f.write("inside")
    os.mkdir(f"{tmpdir_clean}/mnt")
    req = request(
        ["cat", f"{tmpdir_clean}/mnt/marker"],
        clone_flags=native.CLONE_NEWNS,
        ops=_bind_beneath_ops(f"{tmpdir_clean}/vol", "sub", f"{tmpdir_clean}/mnt"),
    )
    req.stdout = output.child_end()
    pid = children.spawn(req)
    output.started()
    assert output.read_until() == "inside"
    assert children.wait(pid) == 0


@pytest.mark.parametrize("link", ["/", "../..", "sub2"])
def test_bind_beneath_refuses_a_symbolic_link_wherever_it_points(tmpdir_clean, link):
    # What a pod could put in its volume between nsbox's check of a subPath and the mount:
    # the child resolves it again, follows no link, and mounts nothing.
    os.makedirs(f"{tmpdir_clean}/vol/sub2")
    os.symlink(link, f"{tmpdir_clean}/vol/sub")
    os.mkdir(f"{tmpdir_clean}/mnt")
    before = our_children()
    with pytest.raises(SpawnError) as info:
        native.spawn(
            request(
                ["true"],
                clone_flags=native.CLONE_NEWNS,
                ops=_bind_beneath_ops(f"{tmpdir_clean}/vol", "sub", f"{tmpdir_clean}/mnt"),
            )
        )
    assert (info.value.step, info.value.errno) == ("mount", errno.ELOOP)
    assert our_children() == before


def test_bind_beneath_refuses_a_path_out_of_the_directory(tmpdir_clean):
    os.makedirs(f"{tmpdir_clean}/vol")
    os.mkdir(f"{tmpdir_clean}/mnt")
    with pytest.raises(SpawnError) as info:
        native.spawn(
            request(
                ["true"],
                clone_flags=native.CLONE_NEWNS,
                ops=_bind_beneath_ops(f"{tmpdir_clean}/vol", "../vol/../..", f"{tmpdir_clean}/mnt"),
            )
        )
    assert (info.value.step, info.value.errno) == ("mount", errno.EXDEV)


def test_later_exec_candidate_runs_when_earlier_ones_are_missing(children):
    req = request(["true"])
    req.exec_paths = ["/nonexistent/true", shutil.which("true")]
    pid = children.spawn(req)
    assert children.wait(pid) == 0


# ---- privileges ----------------------------------------------------------


def test_root_child_has_exactly_the_bounding_mask(children):
    pid = children.spawn(
        request(["sleep", "30"], caps=CapSets(bounding=SMALL_MASK, effective=SMALL_MASK, permitted=SMALL_MASK))
    )
    st = status(pid)
    expected = f"{SMALL_MASK:016x}"
    assert (st["CapBnd"], st["CapEff"], st["CapPrm"]) == (expected,) * 3
    assert (st["CapInh"], st["CapAmb"]) == ("0" * 16,) * 2


def test_switch_to_nobody_clears_groups_and_capabilities(children):
    pid = children.spawn(
        request(
            ["sleep", "30"],
            uid=65534,
            gid=65534,
            groups=[],
            caps=CapSets(bounding=SMALL_MASK, effective=0, permitted=0),
        )
    )
    st = status(pid)
    assert st["Uid"].split() == ["65534"] * 4
    assert st["Gid"].split() == ["65534"] * 4
    assert st["Groups"] == ""
    assert (st["CapEff"], st["CapPrm"]) == ("0" * 16,) * 2
    assert st["CapBnd"] == f"{SMALL_MASK:016x}"


def test_ambient_capability_survives_the_switch_to_a_non_root_uid(children):
    bind = 1 << CAP_NET_BIND_SERVICE
    pid = children.spawn(
        request(
            ["sleep", "30"],
            uid=65534,
            gid=65534,
            groups=[],
            caps=CapSets(bounding=SMALL_MASK, effective=bind, permitted=bind, inheritable=bind, ambient=bind),
        )
    )
    st = status(pid)
    assert st["Uid"].split() == ["65534"] * 4
    expected = f"{bind:016x}"
    assert (st["CapAmb"], st["CapEff"], st["CapPrm"]) == (expected,) * 3


def test_identity_switch_works_from_a_threaded_parent_and_spares_its_threads(children):
    # glibc's setresuid would try to broadcast to the parent's threads from
    # the child; the spawn path must use the raw system calls.
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait) for _ in range(3)]
    for t in workers:
        t.start()
    pids = []
    try:

        def spawn_one():
            pids.append(children.spawn(request(["sleep", "30"], uid=65534, gid=65534, groups=[])))

        spawners = [threading.Thread(target=spawn_one) for _ in range(4)]
        for t in spawners:
            t.start()
        for t in spawners:
            t.join(DEADLINE)
    finally:
        stop.set()
        for t in workers:
            t.join(DEADLINE)
    assert len(pids) == 4
    for pid in pids:
        assert status(pid)["Uid"].split() == ["65534"] * 4
    for tid in os.listdir("/proc/self/task"):
        assert status(f"self/task/{tid}")["Uid"].split() == ["0"] * 4


def test_pdeathsig_survives_the_identity_switch(children):
    # The signal fires when the spawning *thread* exits; spawn from one.
    pids = []
    spawner = threading.Thread(
        target=lambda: pids.append(
            children.spawn(request(["sleep", "30"], uid=65534, gid=65534, groups=[], pdeathsig=signal.SIGKILL))
        )
    )
    spawner.start()
    spawner.join(DEADLINE)
    status_ = children.wait(pids[0])
    assert os.WIFSIGNALED(status_) and os.WTERMSIG(status_) == signal.SIGKILL


def test_no_new_privs_is_set(children):
    pid = children.spawn(request(["sleep", "30"], no_new_privs=True))
    assert status(pid)["NoNewPrivs"] == "1"


def test_child_starts_with_default_signals_unblocked(children):
    # Python itself ignores SIGPIPE; the child must not inherit that.
    pid = children.spawn(request(["sleep", "30"]))
    st = status(pid)
    assert (st["SigIgn"], st["SigBlk"]) == ("0" * 16,) * 2


# ---- mounts --------------------------------------------------------------


def test_mount_plan_pivots_into_a_tmpfs_root_and_leaves_no_host_mount(children, output, tmpdir_clean):
    root = tmpdir_clean
    ro_bind = native.MS_REMOUNT | native.MS_BIND | native.MS_RDONLY
    ops = [
        MountOp("mount", "/", flags=native.MS_REC | native.MS_PRIVATE),
        MountOp("mount", root, source="tmpfs", fstype="tmpfs", data="mode=0755"),
    ]
    for d in ("/bin", "/lib", "/lib64", "/usr"):
        if os.path.islink(d):  # merged /usr: /bin -> usr/bin
            ops.append(MountOp("symlink", root + d, source=os.readlink(d)))
        elif os.path.isdir(d):
            ops += [
                MountOp("mkdir", root + d),
                MountOp("mount", root + d, source=d, flags=native.MS_BIND | native.MS_REC),
                MountOp("mount", root + d, flags=ro_bind),
            ]
    ops += [
        MountOp("mkdir", root + "/var/empty", mode=0o700),
        MountOp("touch", root + "/etc/marker", mode=0o644),
        MountOp("pivot", root),
    ]
    script = (
        "ls /; test -d /var/empty && echo dir-ok; "
        "test -f /etc/marker && echo file-ok; "
        "(echo x > /usr/nsbox-probe) 2>/dev/null && echo writable || echo readonly"
    )
    assert mountpoints_under(root) == []

    pid = children.spawn(
        request(
            ["/bin/sh", "-c", script],
            clone_flags=native.CLONE_NEWNS | native.CLONE_NEWPID,
            ops=ops,
            stdout=output.child_end(),
        )
    )
    output.started()
    lines = output.read_until(None).split()
    assert children.wait(pid) == 0

    assert {"bin", "etc", "usr", "var"} <= set(lines)
    assert {"dir-ok", "file-ok", "readonly"} <= set(lines)
    assert mountpoints_under(root) == []
    assert os.listdir(root) == []


def test_pivot_failure_names_pivot_root_and_the_new_root(tmpdir_clean):
    # Not a mount point: pivot_root refuses it (EINVAL, or EBUSY when the
    # directory is on the current root's own mount).
    with pytest.raises(SpawnError) as info:
        native.spawn(
            request(
                ["true"],
                clone_flags=native.CLONE_NEWNS,
                ops=[MountOp("mount", "/", flags=native.MS_REC | native.MS_PRIVATE), MountOp("pivot", tmpdir_clean)],
            )
        )
    assert (info.value.step, info.value.detail) == ("pivot_root", tmpdir_clean)
    assert info.value.errno in (errno.EINVAL, errno.EBUSY)


# ---- stdio and fds -------------------------------------------------------


def test_stdio_sources_on_0_1_2_are_not_clobbered_and_only_kept_fds_survive(children):
    r, w = os.pipe()
    stray_r, stray_w = os.pipe()
    os.set_inheritable(stray_w, True)  # inheritable, but not asked for
    try:
        pid = children.spawn(request(["sleep", "30"], stdout=2, stderr=1, keep_fds=[r]))
    finally:
        for fd in (w, stray_r, stray_w):
            os.close(fd)
    try:

        def same(child_fd, ours):
            a, b = os.stat(f"/proc/{pid}/fd/{child_fd}"), os.fstat(ours)
            return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

        assert same(1, 2) and same(2, 1)
        assert sorted(sleeping_fds(pid)) == [0, 1, 2, r]
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    finally:
        os.close(r)


@pytest.mark.parametrize("keep", [False, True], ids=["nothing-kept", "one-kept-between"])
def test_fds_the_caller_left_open_without_cloexec_are_closed_in_the_child(children, tmpdir_clean, keep):
    path = os.path.join(tmpdir_clean, "caller-only")
    stray = [os.open(path, os.O_RDWR | os.O_CREAT, 0o600), *os.pipe(), *(s.detach() for s in socket.socketpair())]
    stray.append(os.dup(stray[0]))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    stray.append(os.dup2(stray[0], min(1000, limit - 1)))  # far above the others
    for fd in stray:
        os.set_inheritable(fd, True)  # no FD_CLOEXEC: an exec would keep it
        assert not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    kept = stray[2:3] if keep else []  # a pipe end, with strays on both sides
    try:
        pid = children.spawn(request(["sleep", "30"], keep_fds=kept))
        assert sleeping_fds(pid) == {0, 1, 2, *kept}
        assert path not in {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    finally:
        for fd in stray:
            os.close(fd)


def test_ctty_makes_the_pty_the_controlling_terminal(children):
    master, slave = os.openpty()
    try:
        pid = children.spawn(request(["sleep", "30"], stdin=slave, stdout=slave, stderr=slave, ctty=True))
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        assert int(fields[3]) == pid  # session leader (field 6)
        assert int(fields[4]) == os.fstat(slave).st_rdev  # tty_nr (field 7)
    finally:
        os.close(master)
        os.close(slave)


# ---- cgroups -------------------------------------------------------------


@pytest.fixture
def cgroup_dir():
    """Makes fresh cgroups; request it before `children` so the children
    are reaped before the cgroups are removed."""
    made = []

    def make(parent):
        path = os.path.join(parent, f"nsbox-test-{uuid.uuid4().hex[:12]}")
        os.mkdir(path)
        made.append(path)
        return path

    try:
        yield make
    finally:
        for path in made:
            deadline = time.monotonic() + DEADLINE
            while True:  # the killed child may take a moment to leave
                try:
                    os.rmdir(path)
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)


def test_cgroup_fd_puts_the_child_in_that_v2_cgroup(cgroup_dir, children):
    mnt = cgroup2_mount()
    if mnt is None:
        pytest.skip("no cgroup2 hierarchy")
    path = cgroup_dir(mnt)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pid = children.spawn(request(["sleep", "30"], cgroup_fd=fd))
    finally:
        os.close(fd)
    with open(f"/proc/{pid}/cgroup") as f:
        assert f"0::/{os.path.basename(path)}\n" in f.read()


def test_cgroup_procs_puts_the_child_in_a_v1_cgroup(cgroup_dir, children):
    if not os.path.isdir("/sys/fs/cgroup/pids/") or cgroup2_mount() == "/sys/fs/cgroup":
        pytest.skip("no cgroup v1 pids hierarchy")
    path = cgroup_dir("/sys/fs/cgroup/pids")
    pid = children.spawn(request(["sleep", "30"], cgroup_procs=[path + "/cgroup.procs"]))
    with open(f"/proc/{pid}/cgroup") as f:
        assert f":pids:/{os.path.basename(path)}\n" in f.read()


# ---- signalling ----------------------------------------------------------


def test_pidfd_open_and_send_signal_kill_a_sleeping_child(children):
    pid = children.spawn(request(["sleep", "30"]))
    pidfd = native.pidfd_open(pid)
    assert pidfd is not None
    try:
        native.pidfd_send_signal(pidfd, signal.SIGKILL)
        status_ = children.wait(pid)
    finally:
        os.close(pidfd)
    assert os.WIFSIGNALED(status_) and os.WTERMSIG(status_) == signal.SIGKILL


def test_pidfd_open_of_a_missing_process_is_esrch(children):
    pid = children.spawn(request(["true"]))
    children.wait(pid)
    with pytest.raises(ProcessLookupError):
        native.pidfd_open(pid)


def test_send_signal_reaches_the_right_process_and_refuses_a_reaped_one(children):
    pid = children.spawn(request(["sleep", "30"]))
    start = native.process_start_time(pid)
    assert start is not None

    assert native.send_signal(pid, signal.SIGTERM, start_time=start)
    assert os.WTERMSIG(children.wait(pid)) == signal.SIGTERM

    assert native.process_start_time(pid) is None
    assert native.send_signal(pid, signal.SIGTERM, start_time=start) is False


def test_send_signal_through_a_pidfd_of_a_reaped_process_is_false(children):
    pid = children.spawn(request(["true"]))
    pidfd = native.pidfd_open(pid)
    try:
        children.wait(pid)
        assert native.send_signal(pid, signal.SIGKILL, pidfd=pidfd) is False
    finally:
        os.close(pidfd)


def test_send_signal_refuses_a_recycled_pid(children):
    pid = children.spawn(request(["sleep", "30"]))
    start = native.process_start_time(pid)
    assert native.send_signal(pid, 0, start_time=start + 1) is False
    assert native.send_signal(pid, 0, start_time=start) is True


# ---- the tiny init -------------------------------------------------------


def children_of(pid) -> list[int]:
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            kids += [int(p) for p in f.read().split()]
    return sorted(kids)


def proc_state(pid) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def comm(pid) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def wait_until(predicate, what, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)
    return value


def main_process(init_pid) -> int:
    """The command the init runs: its first child once it exists."""
    return wait_until(lambda: children_of(init_pid), "the init's child")[0]


def in_new_pid_ns(argv, **kw) -> SpawnRequest:
    return request(argv, clone_flags=native.CLONE_NEWPID, **kw)


def test_pid_1_without_init_ignores_sigterm(children):
    pid = children.spawn(in_new_pid_ns(["sleep", "100"]))
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.3)
    assert proc_state(pid) != "Z"


def test_init_is_pid_1_named_nsbox_init_and_runs_the_command_as_its_child(children, output):
    pid = children.spawn(
        in_new_pid_ns(["sh", "-c", "echo $$ $PPID; exec sleep 100"], init=True, stdout=output.child_end())
    )
    output.started()
    assert output.read_until(b"\n").split() == ["2", "1"]
    # The command is forked before the init execs (from a memfd: `memfd:nsbox-ini` until it
    # names itself), so it may print first.
    wait_until(lambda: comm(pid) == "nsbox-init", "the init to name itself")
    main = main_process(pid)
    wait_until(lambda: comm(main) == "sleep", "the command to exec sleep")
    # Its own process group, in the init's session.
    assert os.getpgid(main) == main and os.getsid(main) == os.getsid(pid) == pid


def test_sigterm_to_the_init_stops_the_command(children):
    pid = children.spawn(in_new_pid_ns(["sleep", "100"], init=True))
    main_process(pid)
    os.kill(pid, signal.SIGTERM)
    assert os.waitstatus_to_exitcode(children.wait(pid)) == 128 + signal.SIGTERM


def test_init_forwards_other_signals_to_the_command(children, output):
    script = 'trap "echo got-usr1; exit 0" USR1; echo ready; while :; do sleep 0.05; done'
    pid = children.spawn(in_new_pid_ns(["sh", "-c", script], init=True, stdout=output.child_end()))
    output.started()
    output.read_until(b"ready")
    os.kill(pid, signal.SIGUSR1)
    assert "got-usr1" in output.read_until(b"got-usr1")
    assert children.wait(pid) == 0


def test_exit_code_of_the_command_is_the_inits(children):
    pid = children.spawn(in_new_pid_ns(["sh", "-c", "exit 7"], init=True))
    assert os.waitstatus_to_exitcode(children.wait(pid)) == 7


def test_command_killed_by_a_signal_makes_the_init_exit_128_plus_n(children):
    pid = children.spawn(in_new_pid_ns(["sleep", "100"], init=True))
    os.kill(main_process(pid), signal.SIGKILL)
    assert os.waitstatus_to_exitcode(children.wait(pid)) == 128 + signal.SIGKILL


ORPHAN_TREE = "(sleep 1 &); exec sleep 100"  # the subshell leaves `sleep 1` orphaned


def test_orphans_stay_zombies_under_a_pid_1_that_does_not_reap(children):
    pid = children.spawn(in_new_pid_ns(["sh", "-c", ORPHAN_TREE]))
    wait_until(lambda: any(proc_state(k) == "Z" for k in children_of(pid)), "a zombie under PID 1")


def test_init_reaps_orphaned_grandchildren(children):
    pid = children.spawn(in_new_pid_ns(["sh", "-c", ORPHAN_TREE], init=True))
    main = main_process(pid)
    wait_until(lambda: len(children_of(pid)) == 2, "the orphan to be reparented")
    wait_until(lambda: children_of(pid) == [main], "the orphan to be reaped")
    assert proc_state(main) != "Z"


def test_exec_failure_under_init_is_reported_and_leaves_nothing_running():
    before = our_children()
    with pytest.raises(SpawnError) as info:
        native.spawn(in_new_pid_ns(["/nonexistent/nsbox-nope"], init=True))
    assert (info.value.step, info.value.errno, info.value.detail) == ("exec", errno.ENOENT, "/nonexistent/nsbox-nope")
    assert our_children() == before


def test_with_a_terminal_the_command_is_in_the_foreground(children):
    master, slave = os.openpty()
    try:
        pid = children.spawn(
            in_new_pid_ns(["sleep", "100"], init=True, stdin=slave, stdout=slave, stderr=slave, ctty=True)
        )
        main = main_process(pid)
        wait_until(lambda: os.tcgetpgrp(master) == main, "the command in the foreground")
    finally:
        os.close(master)
        os.close(slave)


# ---- wrappers ------------------------------------------------------------


def test_wrappers_raise_oserror_with_errno():
    with pytest.raises(FileNotFoundError):
        native.umount("/nonexistent-nsbox-test")
    with pytest.raises(OSError) as info:
        native.setns(-1, native.CLONE_NEWNET)
    assert info.value.errno == errno.EBADF
    assert native.cap_last_cap() >= 37


def test_malloc_trim_runs():
    native.malloc_trim()


def test_targets_in_a_root_follow_links_only_inside_it(children, tmpdir_clean):
    # A volume in the new root holds links planted by a container, to a host directory by its
    # absolute path and by enough "..": what is made goes below the root, never on the host.
    root, host = f"{tmpdir_clean}/root", f"{tmpdir_clean}/host"
    os.makedirs(f"{root}/data")
    os.mkdir(host)
    os.makedirs(f"{root}{host}")  # as the host view shows it (an image need not have it: see below)
    os.symlink(host, f"{root}/data/abs")
    os.symlink("../" * 10 + host.lstrip("/"), f"{root}/data/up")
    ops = [
        MountOp("mount", "/", flags=native.MS_REC | native.MS_PRIVATE),
        MountOp("mkdir", f"{root}/data/abs/made", root=root),
        MountOp("touch", f"{root}/data/up/file", root=root),
        MountOp("mkdir", f"{root}/data/up/dir", root=root),
        MountOp("mount", f"{root}/data/up/dir", source="tmpfs", fstype="tmpfs", root=root),
    ]
    pid = children.spawn(request(["true"], clone_flags=native.CLONE_NEWNS, ops=ops))
    assert children.wait(pid) == 0
    assert os.listdir(host) == []
    assert sorted(os.listdir(f"{root}{host}")) == ["dir", "file", "made"]


def test_a_target_outside_its_root_dangling_or_through_a_magic_link_is_refused(tmpdir_clean):
    root = f"{tmpdir_clean}/root"
    os.makedirs(f"{root}/proc")
    os.symlink(tmpdir_clean, f"{root}/dangling")  # no such directory in the root
    cases = (
        (f"{tmpdir_clean}/elsewhere", errno.EXDEV),
        ("/dangling/x", errno.ENOENT),
        ("/proc/self/fd/0/x", errno.ELOOP),
    )
    for target, err in cases:
        path = target if target.startswith(tmpdir_clean) else root + target
        ops = [
            MountOp("mount", "/", flags=native.MS_REC | native.MS_PRIVATE),
            MountOp("mount", f"{root}/proc", source="proc", fstype="proc", root=root),
            MountOp("mkdir", path, root=root),
        ]
        with pytest.raises(SpawnError) as info:
            native.spawn(request(["true"], clone_flags=native.CLONE_NEWNS, ops=ops))
        assert (info.value.step, info.value.errno) == ("mkdir", err), info.value


def test_the_init_program_copy_is_sealed_and_shared():
    fd = native.init_program_fd()
    assert native.init_program_fd() == fd  # made once per process
    assert os.readlink(f"/proc/self/fd/{fd}") == "/memfd:nsbox-init (deleted)"
    assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & 0xF == 0xF  # SEAL, SHRINK, GROW, WRITE
    with open(native.INIT_PROGRAM, "rb") as f:
        assert os.pread(fd, 1 << 20, 0) == f.read()
    for flags in (os.O_WRONLY, os.O_RDWR):
        w = os.open(f"/proc/self/fd/{fd}", flags)
        try:
            with pytest.raises(PermissionError):
                os.pwrite(w, b"\x7f", 0)
        finally:
            os.close(w)
