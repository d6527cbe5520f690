"""The cgroup layer on real cgroups: this hybrid host, and pure v2 in the testbox VM.

Every test works on its own fake pod UID and removes everything it made, even
when it fails. Observations go around the module where they can: the cgroup
files themselves, /proc/PID/cgroup, os.path.isdir.
"""

import errno
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from conftest import alive, wait_for

from nsbox import cgroups
from nsbox.errors import NsboxError

MiB = 1 << 20
ROOT = "/sys/fs/cgroup"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cgroup_mounts():
    """{mount point: fstype} of every cgroup filesystem, read independently."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0]
            if fstype in ("cgroup", "cgroup2"):
                mounts[left.split()[4]] = fstype
    return mounts


MOUNTS = cgroup_mounts()
UNIFIED = MOUNTS.get(ROOT) == "cgroup2"
HYBRID = not UNIFIED and "cgroup2" in MOUNTS.values() and os.path.isdir(ROOT + "/memory")

pytestmark = pytest.mark.cgroupv2  # all of it runs in the cgroup-v2 VM too

only_v2 = pytest.mark.skipif(not UNIFIED, reason="pure cgroup v2 only")
only_v1 = pytest.mark.skipif(UNIFIED, reason="cgroup v1 / hybrid only")
if not os.path.isdir(ROOT) or os.geteuid() != 0:
    pytest.skip("needs root and a cgroup filesystem", allow_module_level=True)


def controller_dir(controller, rel):
    """Where `controller`'s files for `rel` live, by the host's layout."""
    return f"{ROOT}/{rel}" if UNIFIED else f"{ROOT}/{controller}/{rel}"


def read(path):
    with open(path) as f:
        return f.read().strip()


def pids_in(path):
    """Every pid in the cgroup directory `path` and below, from its files."""
    found = set()
    for d, _, _ in os.walk(path):
        try:
            found.update(int(p) for p in read(f"{d}/cgroup.procs").split())
        except FileNotFoundError:
            pass
    return found


def proc_cgroup(pid):
    """/proc/PID/cgroup as {controller: path}; the v2 hierarchy's key is ""."""
    where = {}
    for line in read(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            where[c] = path
    return where


def join_in_child(fd, paths):
    """What the spawn helper does between fork and exec, without clone3."""

    def join():
        if fd >= 0:
            procs = os.open("cgroup.procs", os.O_WRONLY, dir_fd=fd)
            os.write(procs, b"0")
            os.close(procs)
        for path in paths:
            procs = os.open(path, os.O_WRONLY)
            os.write(procs, b"0")
            os.close(procs)

    return join


class Pod:
    """A fake pod: its UID, one container cgroup, and the processes started."""

    def __init__(self, cg):
        self.cg = cg
        self.uid = "test-" + uuid.uuid4().hex
        self.rel = cg.pod_path(self.uid)
        self.ctr = cg.container_path(self.uid, "c")
        self.started = []

    def spawn(self, script, rel=None, **popen):
        """`sh -c script`, born in the cgroup through join_targets()."""
        fd, paths = self.cg.join_targets(rel or self.ctr)
        try:
            p = subprocess.Popen(["/bin/sh", "-c", script], preexec_fn=join_in_child(fd, paths), **popen)
        finally:
            if fd >= 0:
                os.close(fd)
        self.started.append(p)
        return p

    def cleanup(self):
        """Kill and remove by hand, not trusting the module under test."""
        dirs = [f"{mp}/nsbox/pod{self.uid}" for mp in MOUNTS]
        for d in dirs:
            for pid in pids_in(d):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.started:
            if p.poll() is None:
                p.kill()
            p.wait()
            for stream in (p.stdout, p.stderr):
                if stream:
                    stream.close()
        deadline = time.monotonic() + 10
        for d in dirs:
            for sub, _, _ in list(os.walk(d, topdown=False)):
                while True:
                    try:
                        os.rmdir(sub)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.02)


@pytest.fixture
def cg():
    return cgroups.detect()


@pytest.fixture
def pod(cg):
    p = Pod(cg)
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture
def running(pod, cg):
    """A pod with a container cgroup holding one `sleep 60` (added after start)."""
    cg.create(pod.ctr)
    p = subprocess.Popen(["sleep", "60"])
    pod.started.append(p)
    cg.add_process(pod.ctr, p.pid)
    return pod, p


def record_writes(monkeypatch):
    """Spy on the package's writes (the front's and the backends'): a list of (path, value)."""
    writes = []
    real = cgroups._write

    def spy(path, value, **kwargs):
        writes.append((path, str(value)))
        real(path, value, **kwargs)

    for module in (cgroups, cgroups.v1, cgroups.v2):
        monkeypatch.setattr(module, "_write", spy)
    return writes


# --- detection --------------------------------------------------------------


@only_v1
def test_detect_sees_this_host_as_hybrid_v1_with_its_controller_mounts(cg):
    assert (cg.version, cg.hybrid) == (1, HYBRID)
    for controller in ("memory", "pids", "cpu", "cpuacct", "freezer"):
        assert cg.mounts[controller] == f"{ROOT}/{controller}"
    assert "cpuset" not in cg.mounts
    if HYBRID:
        assert cg.unified == f"{ROOT}/unified"


@only_v2
def test_detect_sees_pure_v2(cg):
    assert (cg.version, cg.hybrid, cg.root) == (2, False, ROOT)


def test_detect_is_cached_per_process():
    assert cgroups.detect() is cgroups.detect()


def mountinfo(*mounts):
    return "".join(
        f"{30 + i} 23 0:{30 + i} / {point} rw,relatime - {fstype} {fstype} {opts}\n"
        for i, (point, fstype, opts) in enumerate(mounts)
    )


def test_cgroup2_at_sys_fs_cgroup_means_unified():
    cg = cgroups.from_mountinfo(mountinfo(("/sys/fs/cgroup", "cgroup2", "rw,nsdelegate")))
    assert (cg.version, cg.hybrid, cg.root) == (2, False, "/sys/fs/cgroup")


def test_v1_controllers_plus_cgroup2_elsewhere_means_hybrid():
    cg = cgroups.from_mountinfo(
        mountinfo(
            ("/sys/fs/cgroup", "tmpfs", "rw"),
            ("/sys/fs/cgroup/unified", "cgroup2", "rw"),
            ("/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,name=systemd"),
            ("/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
            ("/sys/fs/cgroup/cpuset", "cgroup", "rw,cpuset"),
            ("/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
        )
    )
    assert (cg.version, cg.hybrid, cg.unified) == (1, True, "/sys/fs/cgroup/unified")
    assert cg.mounts == {
        "cpu": "/sys/fs/cgroup/cpu,cpuacct",
        "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
        "memory": "/sys/fs/cgroup/memory",
    }
    assert cg.missing_controllers() == ["pids", "freezer", "devices"]


def test_v1_mount_points_come_from_mountinfo_not_assumed_paths():
    cg = cgroups.from_mountinfo(mountinfo(("/cg/my\\040memory", "cgroup", "rw,memory,pids")))
    assert (cg.version, cg.hybrid) == (1, False)
    assert cg.mounts == {"memory": "/cg/my memory", "pids": "/cg/my memory"}


def test_no_cgroup_filesystem_is_an_error():
    with pytest.raises(NsboxError, match="no cgroup filesystem mounted"):
        cgroups.from_mountinfo(mountinfo(("/sys/fs/cgroup", "tmpfs", "rw")))


def test_importing_cgroups_loads_only_the_standard_library():
    out = subprocess.run(
        [
            sys.executable,
            "-S",
            "-B",
            "-c",
            "import sys, nsbox.cgroups; print(' '.join(sorted(m for m in sys.modules "
            "if m.startswith('nsbox') or m in ('subprocess', 'threading'))))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    # kube holds the shared Kubernetes rules (the CPU quota), mountinfo reads /proc/self/mountinfo;
    # they are standard library only too.
    kube = ["nsbox.kube"] + [
        f"nsbox.kube.{m}"
        for m in ("hosts", "images", "lifecycle", "names", "podstatus", "quantities", "securitycontext")
    ]
    expected = [
        "nsbox",
        "nsbox.cgroups",
        "nsbox.cgroups.v1",
        "nsbox.cgroups.v2",
        "nsbox.errors",
        *kube,
        "nsbox.mountinfo",
    ]
    assert out.stdout.split() == expected


# --- naming and creation ----------------------------------------------------


def test_paths_are_named_after_the_pod_uid_and_container(cg):
    assert cg.pod_path("1234") == "nsbox/pod1234"
    assert cg.container_path("1234", "web") == "nsbox/pod1234/web"
    with pytest.raises(ValueError):
        cg.container_path("1234", "../../x")
    with pytest.raises(ValueError):
        cg.remove("system.slice")


def test_create_makes_the_path_in_every_hierarchy_used(cg, pod):
    cg.create(pod.ctr)
    cg.create(pod.ctr)  # again: idempotent
    if UNIFIED:
        assert os.path.isdir(f"{ROOT}/{pod.ctr}")
        assert cg.paths(pod.ctr) == {"unified": f"{ROOT}/{pod.ctr}"}
        return
    for controller in ("cpu", "cpuacct", "memory", "pids", "freezer", "devices", "blkio"):
        assert os.path.isdir(f"{ROOT}/{controller}/{pod.ctr}"), controller
        assert cg.paths(pod.ctr)[controller] == f"{ROOT}/{controller}/{pod.ctr}"
    for skipped in ("cpuset", "systemd"):
        assert not os.path.exists(f"{ROOT}/{skipped}/{pod.rel}")
    if HYBRID:
        assert os.path.isdir(f"{ROOT}/unified/{pod.ctr}")
        assert cg.paths(pod.ctr)["unified"] == f"{ROOT}/unified/{pod.ctr}"


@only_v2
def test_v2_parents_pass_cpu_memory_pids_down_and_hold_no_process(cg, pod):
    cg.create(pod.ctr)
    for parent in ("nsbox", pod.rel):
        assert set(read(f"{ROOT}/{parent}/cgroup.subtree_control").split()) >= {"cpu", "memory", "pids"}
        assert read(f"{ROOT}/{parent}/cgroup.procs") == ""
    assert cg.missing_controllers() == []


def test_list_pods_finds_the_pod_cgroup(cg, pod):
    cg.create(pod.rel)
    assert pod.uid in cg.list_pods()


# --- limits -----------------------------------------------------------------


def test_limits_are_written_to_the_cgroup_files(cg, pod):
    cg.create(pod.ctr)
    cg.set_limits(pod.ctr, cpu_millis=250, memory_bytes=64 * MiB, pids_max=50)
    if UNIFIED:
        d = f"{ROOT}/{pod.ctr}"
        assert read(f"{d}/cpu.max") == "25000 100000"
        assert read(f"{d}/memory.max") == str(64 * MiB)
        if os.path.exists(f"{d}/memory.swap.max"):
            assert read(f"{d}/memory.swap.max") == "0"
        assert read(f"{d}/pids.max") == "50"
    else:
        assert read(controller_dir("cpu", pod.ctr) + "/cpu.cfs_period_us") == "100000"
        assert read(controller_dir("cpu", pod.ctr) + "/cpu.cfs_quota_us") == "25000"
        memory = controller_dir("memory", pod.ctr)
        assert read(f"{memory}/memory.limit_in_bytes") == str(64 * MiB)
        if os.path.exists(f"{memory}/memory.memsw.limit_in_bytes"):
            assert read(f"{memory}/memory.memsw.limit_in_bytes") == str(64 * MiB)
        assert read(controller_dir("pids", pod.ctr) + "/pids.max") == "50"


def test_none_leaves_a_limit_unchanged(cg, pod):
    cg.create(pod.ctr)
    cg.set_limits(pod.ctr, pids_max=50)
    cg.set_limits(pod.ctr, memory_bytes=64 * MiB)
    assert read(controller_dir("pids", pod.ctr) + "/pids.max") == "50"


def test_memory_limit_can_grow_and_shrink(cg, pod):
    cg.create(pod.ctr)
    limit_file = "memory.max" if UNIFIED else "memory.limit_in_bytes"
    for limit in (64 * MiB, 256 * MiB, 32 * MiB):
        cg.set_limits(pod.ctr, memory_bytes=limit)
        assert read(controller_dir("memory", pod.ctr) + "/" + limit_file) == str(limit)


def test_a_tiny_cpu_limit_is_raised_to_the_kernel_minimum(cg, pod):
    cg.create(pod.ctr)
    cg.set_limits(pod.ctr, cpu_millis=1)
    if UNIFIED:
        assert read(f"{ROOT}/{pod.ctr}/cpu.max") == "1000 100000"
    else:
        assert read(controller_dir("cpu", pod.ctr) + "/cpu.cfs_quota_us") == "1000"


# --- membership -------------------------------------------------------------


def test_an_added_process_is_in_the_cgroup(cg, running):
    pod, p = running
    where = proc_cgroup(p.pid)
    assert where["" if UNIFIED else "memory"] == "/" + pod.ctr
    if HYBRID:
        assert where[""] == "/" + pod.ctr
        assert where["pids"] == where["cpu"] == "/" + pod.ctr
    assert cg.procs(pod.ctr) == [p.pid]
    assert cg.procs(pod.rel) == [p.pid]  # recursive
    assert cg.populated(pod.rel)


def test_a_process_born_through_join_targets_starts_in_the_cgroup(cg, pod):
    cg.create(pod.ctr)
    fd, paths = cg.join_targets(pod.ctr)
    if UNIFIED:
        assert fd >= 0 and paths == []
    else:
        assert fd == -1
        assert f"{ROOT}/memory/{pod.ctr}/cgroup.procs" in paths
        assert (f"{ROOT}/unified/{pod.ctr}/cgroup.procs" in paths) == HYBRID
    pid = os.fork()
    if pid == 0:
        try:
            join_in_child(fd, paths)()
            os.execv("/bin/sleep", ["sleep", "60"])
        finally:
            os._exit(127)
    try:
        if fd >= 0:
            os.close(fd)
        wait_for(lambda: read(f"/proc/{pid}/comm") == "sleep", what="exec")
        assert proc_cgroup(pid)["" if UNIFIED else "memory"] == "/" + pod.ctr
        assert pids_in(controller_dir("pids", pod.ctr)) == {pid}
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_populated_is_false_for_an_empty_pod(cg, pod):
    cg.create(pod.ctr)
    assert not cg.populated(pod.rel)
    assert cg.procs(pod.rel) == []


def tracking_dir(rel):
    """The cgroup directory that holds cgroup.events and cgroup.kill (v2 or hybrid)."""
    return f"{ROOT}/{rel}" if UNIFIED else f"{ROOT}/unified/{rel}"


@pytest.mark.skipif(not (UNIFIED or HYBRID), reason="needs a cgroup2 hierarchy")
def test_a_cgroup_removed_by_someone_else_while_read_reads_as_gone(cg, pod, monkeypatch):
    # A pod whose state is lost is reclaimed by its own watcher and by `gc` at once: one of
    # them may rmdir the cgroup between the other's open and read.
    cg.create(pod.rel)
    events = f"{tracking_dir(pod.rel)}/cgroup.events"
    with open(events) as f:  # the kernel's answer, seen without nsbox
        os.rmdir(tracking_dir(pod.rel))
        with pytest.raises(OSError) as e:
            f.read()
    assert e.value.errno == errno.ENODEV
    cg.create(pod.rel)

    def open_then_lose_the_cgroup(path, *args, **kwargs):
        f = open(path, *args, **kwargs)
        os.rmdir(os.path.dirname(path))
        return f

    monkeypatch.setattr(cgroups, "open", open_then_lose_the_cgroup, raising=False)
    assert cg.populated(pod.rel) is False
    assert not os.path.exists(tracking_dir(pod.rel))


@pytest.mark.skipif(not (UNIFIED or HYBRID), reason="needs a cgroup2 hierarchy")
def test_kill_of_a_cgroup_removed_by_someone_else_meanwhile_does_nothing(cg, pod, monkeypatch):
    cg.create(pod.rel)
    found = cg._has_kill_file

    def found_then_lost(path):
        there = found(path)
        os.rmdir(os.path.dirname(path))
        return there

    monkeypatch.setattr(cg, "_has_kill_file", found_then_lost)
    cg.kill(pod.rel)
    assert not os.path.exists(tracking_dir(pod.rel))


def test_stats_report_usage(cg, running):
    pod, _ = running
    stats = cg.stats(pod.ctr)
    assert stats["pids"] == 1
    assert stats["memory_bytes"] is not None and stats["memory_bytes"] >= 0
    assert isinstance(stats["cpu_usage_ns"], int)


# --- killing ----------------------------------------------------------------

TREE = """trap 'echo got TERM' TERM
for i in 1 2 3 4 5; do sleep 60 & done
while :; do sleep 0.2; done"""


def start_tree(pod):
    pod.cg.create(pod.ctr)
    sh = pod.spawn(TREE, stdout=subprocess.PIPE)
    tracker = controller_dir("pids", pod.ctr) if not UNIFIED else f"{ROOT}/{pod.ctr}"
    # Wait for the exec: a forked shell not yet turned into sleep still runs
    # the TERM trap, which would make SIGTERM look lost.
    wait_for(lambda: len(sleeping(tracker)) == 5, what="the process tree")
    return sh, tracker


def sleeping(tracker):
    """The tree's `sleep 60` processes."""
    found = set()
    for pid in pids_in(tracker):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == b"sleep\x0060\x00":
                    found.add(pid)
        except (FileNotFoundError, ProcessLookupError):  # gone before open, or between open and read
            pass
    return found


def assert_all_killed(sh, tracker):
    wait_for(lambda: not pids_in(tracker), what="every process to leave")
    assert sh.wait(timeout=10) == -signal.SIGKILL


def test_kill_kills_a_process_tree_through_cgroup_kill(cg, pod, monkeypatch):
    sh, tracker = start_tree(pod)
    writes = record_writes(monkeypatch)
    cg.kill(pod.rel)
    assert_all_killed(sh, tracker)
    if UNIFIED or HYBRID:
        unified = ROOT if UNIFIED else f"{ROOT}/unified"
        assert writes == [(f"{unified}/{pod.rel}/cgroup.kill", "1")]


def test_kill_without_cgroup_kill_freezes_signals_and_thaws(cg, pod, monkeypatch):
    sh, tracker = start_tree(pod)
    monkeypatch.setattr(cg, "_has_kill_file", lambda path: False)
    writes = record_writes(monkeypatch)
    cg.kill(pod.rel)
    assert_all_killed(sh, tracker)
    freezes = [(os.path.basename(p), v) for p, v in writes]
    assert freezes in (
        [("cgroup.freeze", "1"), ("cgroup.freeze", "0")],
        [("freezer.state", "FROZEN"), ("freezer.state", "THAWED")],
    )


@only_v1
def test_kill_through_the_v1_freezer(cg, pod, monkeypatch):
    sh, tracker = start_tree(pod)
    monkeypatch.setattr(cg, "_has_kill_file", lambda path: False)
    monkeypatch.setattr(cg, "_v2_freeze_file", lambda rel: None)
    writes = record_writes(monkeypatch)
    cg.kill(pod.rel)
    assert_all_killed(sh, tracker)
    assert writes == [
        (f"{ROOT}/freezer/{pod.rel}/freezer.state", "FROZEN"),
        (f"{ROOT}/freezer/{pod.rel}/freezer.state", "THAWED"),
    ]
    assert read(f"{ROOT}/freezer/{pod.ctr}/freezer.state") == "THAWED"


@only_v1
def test_pure_v1_tracks_and_kills_through_the_pids_and_freezer_hierarchies(cg, monkeypatch):
    v1 = cgroups.CgroupV1(cg.hierarchies)  # this host, minus the unified mount
    pod = Pod(v1)
    try:
        sh, tracker = start_tree(pod)
        assert not any("unified" in path for path in v1.join_targets(pod.ctr)[1])
        assert v1.procs(pod.rel) == sorted(pids_in(tracker)) and v1.populated(pod.rel)
        writes = record_writes(monkeypatch)
        v1.kill(pod.rel)
        assert_all_killed(sh, tracker)
        assert [os.path.basename(path) for path, _ in writes] == ["freezer.state"] * 2
        assert not v1.populated(pod.rel)
        v1.remove(pod.rel)
        for mount_point in MOUNTS:
            assert not os.path.exists(f"{mount_point}/{pod.rel}"), mount_point
    finally:
        pod.cleanup()


@only_v1
def test_prime_migrations_moves_the_caller_into_the_cgroup_it_is_in(cg):
    """A CLI waiting for its watcher primes the next cgroup migration by writing itself into
    its own cgroup (docs/design.md §12): it lands where it was, in every hierarchy."""
    script = (
        "import sys; from nsbox import cgroups\n"
        "print(cgroups.detect().prime_migrations(), flush=True)\n"
        "sys.stdin.readline()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        before = proc_cgroup(child.pid)
        written = child.stdout.readline().strip()
        assert proc_cgroup(child.pid) == before
        pids_mount = next(point for point in MOUNTS if point.endswith("/pids"))
        assert written == os.path.join(pids_mount, before["pids"].lstrip("/"), "cgroup.procs")
        assert child.pid in pids_in(os.path.dirname(written))
    finally:
        child.communicate("\n", timeout=10)


@only_v1
def test_prime_migrations_writes_only_into_a_cgroup_that_lists_the_caller(tmp_path):
    """/proc/self/cgroup names a path below the cgroup namespace's root, which a mount need
    not share: a cgroup.procs that does not list the caller is never written."""
    own = proc_cgroup(os.getpid())["pids"]
    fake = cgroups.CgroupV1({str(tmp_path): (("pids",), False)})
    procs = tmp_path / own.lstrip("/") / "cgroup.procs"
    procs.parent.mkdir(parents=True, exist_ok=True)
    procs.write_text("1\n")
    assert fake.prime_migrations() is None
    assert procs.read_text() == "1\n"
    procs.write_text(f"1\n{os.getpid()}\n")
    assert fake.prime_migrations() == str(procs)
    assert procs.read_text().startswith("0\n")  # the one write of "0" (a regular file here, not cgroupfs)
    assert cgroups.CgroupV2(str(tmp_path)).prime_migrations() is None  # v2 clones into the cgroup


def test_kill_with_sigterm_reaches_every_process_and_thaws(cg, pod):
    sh, tracker = start_tree(pod)
    sleepers = sleeping(tracker)
    cg.kill(pod.rel, signal.SIGTERM)
    assert sh.stdout.readline() == b"got TERM\n"  # it runs, so it was thawed
    wait_for(lambda: not any(alive(p) for p in sleepers), what="the sleeps to die")
    assert sh.poll() is None


def test_kill_of_a_missing_cgroup_does_nothing(cg, pod):
    cg.kill(pod.rel)
    cg.kill(pod.rel, signal.SIGTERM)


# --- removal ----------------------------------------------------------------


def test_remove_leaves_nothing_in_any_hierarchy(cg, running):
    pod, p = running
    cg.kill(pod.rel)
    p.wait(timeout=10)
    cg.remove(pod.rel)
    for mount_point in MOUNTS:
        assert not os.path.exists(f"{mount_point}/{pod.rel}"), mount_point
    assert pod.uid not in cg.list_pods()
    cg.remove(pod.rel)  # already gone: fine


def test_remove_with_the_expected_children_still_finds_one_it_was_not_told_of(cg, pod):
    # The containers a teardown names are removed without a walk; one more cgroup below
    # the pod (not named) makes remove() walk, so that it goes too.
    cg.create(pod.ctr)
    cg.create(cg.container_path(pod.uid, "other"))
    cg.remove(pod.rel, children=["c", "absent"])
    assert not any(os.path.exists(f"{mp}/{pod.rel}") for mp in MOUNTS)


def test_remove_with_a_named_child_still_waits_for_its_leaving_process(cg, running):
    pod, p = running
    cg.kill(pod.rel)  # SIGKILL: the process leaves the cgroup a moment later
    cg.remove(pod.rel, children=["c"])
    p.wait(timeout=10)
    assert not any(os.path.exists(f"{mp}/{pod.rel}") for mp in MOUNTS)


def test_the_shared_top_cgroup_goes_with_its_last_pod_and_not_before(cg, monkeypatch):
    # Under a top of the test's own (other tests' pods share "nsbox"), in every hierarchy.
    top = "nsboxtest" + uuid.uuid4().hex[:8]
    monkeypatch.setattr(cgroups, "TOP", top)
    first, second = Pod(cg), Pod(cg)
    try:
        for pod in (first, second):
            cg.create(pod.ctr)
        used = [mp for mp in MOUNTS if os.path.isdir(f"{mp}/{first.rel}")]
        assert used
        cg.remove(first.rel)
        assert [os.path.isdir(f"{mp}/{top}") for mp in used] == [True] * len(used)
        assert not any(os.path.exists(f"{mp}/{first.rel}") for mp in MOUNTS)
        cg.remove(second.rel)
        assert not any(os.path.exists(f"{mp}/{top}") for mp in MOUNTS)
    finally:
        for mp in MOUNTS:  # bottom-up, by hand: whatever the code under test left
            for rel in (second.ctr, second.rel, first.ctr, first.rel, top):
                if os.path.isdir(f"{mp}/{rel}"):
                    os.rmdir(f"{mp}/{rel}")


def test_remove_names_the_cgroup_that_still_holds_a_process(cg, running):
    pod, p = running
    with pytest.raises(NsboxError, match=f"cannot remove cgroup .*{pod.ctr}.*{p.pid}"):
        cg.remove(pod.rel, timeout=0.2)


# --- the limits hold --------------------------------------------------------


def test_a_process_over_its_memory_limit_is_oom_killed_and_counted(cg, pod):
    cg.create(pod.ctr)
    cg.set_limits(pod.ctr, memory_bytes=32 * MiB)
    assert cg.oom_killed(pod.ctr) == 0
    hog = pod.spawn(f"exec {sys.executable} -S -c 'b = bytearray(200 << 20)'")
    assert hog.wait(timeout=60) == -signal.SIGKILL
    assert cg.oom_killed(pod.ctr) >= 1


def test_a_pids_limit_stops_a_fork_bomb(cg, pod):
    cg.create(pod.ctr)
    cg.set_limits(pod.ctr, pids_max=20)
    sh = pod.spawn("i=0; while [ $i -lt 50 ]; do sleep 60 >/dev/null 2>&1 & i=$((i+1)); done", stderr=subprocess.PIPE)
    _, err = sh.communicate(timeout=60)
    assert err, "no fork failed"
    assert int(read(controller_dir("pids", pod.ctr) + "/pids.current")) <= 20
    assert len(cg.procs(pod.ctr)) < 50


# --- devices -----------------------------------------------------------------


def openable_by_root(candidates=("loop0", "zram0", "kmsg", "kvm", "vda", "sda", "nvme0n1")):
    """A host device (other than the default list) that root may open here, or skip."""
    for name in candidates:
        try:
            os.close(os.open(f"/dev/{name}", os.O_RDONLY | os.O_NONBLOCK))
            return f"/dev/{name}"
        except OSError:
            pass
    pytest.skip("no device that root can open on this host")


OPEN_EACH = 'for d in "$@"; do if (: <"$d") 2>/dev/null; then echo "$d open"; else echo "$d denied"; fi; done'


def opens_in(pod, rel, *devices):
    p = pod.spawn(f"set -- {' '.join(devices)}; {OPEN_EACH}", rel=rel, stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=30)
    return dict(line.split() for line in out.splitlines())


def test_device_rules_let_a_container_open_only_the_default_devices(cg, pod):
    other = openable_by_root()
    cg.create(pod.ctr)
    cg.set_devices(pod.ctr, cgroups.DEFAULT_DEVICE_RULES)
    seen = opens_in(pod, pod.ctr, "/dev/null", "/dev/zero", "/dev/urandom", other)
    assert seen == {"/dev/null": "open", "/dev/zero": "open", "/dev/urandom": "open", other: "denied"}


def test_no_device_rules_leave_every_device_open(cg, pod):
    other = openable_by_root()
    cg.create(pod.ctr)
    cg.set_devices(pod.ctr, None)
    assert opens_in(pod, pod.ctr, other) == {other: "open"}


@only_v1
def test_v1_device_rules_are_the_devices_list(cg, pod):
    cg.create(pod.ctr)
    cg.set_devices(pod.ctr, cgroups.DEFAULT_DEVICE_RULES)
    listed = read(controller_dir("devices", pod.ctr) + "/devices.list").split("\n")
    assert sorted(listed) == sorted(cgroups.DEFAULT_DEVICE_RULES)


def test_the_v2_device_filter_allows_only_its_rules(pod):
    """The eBPF filter, on the cgroup2 hierarchy of this host (unified or hybrid) alone."""
    from nsbox import devicefilter

    unified = [mp for mp, fstype in MOUNTS.items() if fstype == "cgroup2"]
    if not unified:
        pytest.skip("no cgroup2 hierarchy")
    other = openable_by_root()
    d = os.path.join(unified[0], "nsbox", f"pod{pod.uid}")
    os.makedirs(d)
    devicefilter.attach(d, ["c 1:3 rwm", "c 1:5 r", "b *:* m"])
    devicefilter.attach(d, ["c 1:3 rwm", "c 1:5 r", "b *:* m"])  # again: replaces, not stacks
    script = (
        "(: >/dev/null) && echo null-w; (: </dev/zero) && echo zero-r; "
        "(: >/dev/zero) 2>/dev/null || echo zero-w-denied; "
        f"(: <{other}) 2>/dev/null || echo other-denied; "
        "mknod /tmp/nsbx-b$$ b 7 0 && echo mknod-b; "
        "(: </tmp/nsbx-b$$) 2>/dev/null || echo open-b-denied; rm -f /tmp/nsbx-b$$; "
        "mknod /tmp/nsbx-c$$ c 1 7 2>/dev/null || echo mknod-c-denied; rm -f /tmp/nsbx-c$$"
    )
    p = subprocess.Popen(
        ["/bin/sh", "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=join_in_child(-1, [os.path.join(d, "cgroup.procs")]),
    )
    pod.started.append(p)
    out, _ = p.communicate(timeout=30)
    assert out.split() == [
        "null-w",
        "zero-r",
        "zero-w-denied",
        "other-denied",
        "mknod-b",
        "open-b-denied",
        "mknod-c-denied",
    ]
