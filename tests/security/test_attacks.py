"""A hostile, unprivileged container attacks the host and other pods; every attempt fails.

Each test runs one attack from inside a default (unprivileged, root) container
and asserts two things: the attack reports failure, and an observer outside
the container (the host's own tools, /proc, the other pod) sees nothing
changed. test_privileged.py runs the same attacks from a privileged container.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import tempfile
import time
import uuid

import attacks
import pytest
from attacks import attempt
from conftest import NSBOX, alive, ns_inode, private_root, processes_naming, wait_for

CAP_SYS_MODULE = 16


@pytest.fixture(scope="module")
def box():
    """One root and one attacker pod for the attacks that need nothing else (pods are slow to make)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with private_root() as n:
        n("run", "attacker", "--", "sleep", "600")
        n.pid("attacker")
        yield n


@pytest.fixture
def attacker() -> str:
    return "attacker"


@pytest.fixture
def host_sleep():
    p = subprocess.Popen(["sleep", "300"])
    yield p.pid
    p.kill()
    p.wait()


@contextlib.contextmanager
def other_pod(n, name: str, *command: str):
    n("run", name, "--", *command)
    try:
        yield
    finally:
        n("delete", "pod", name, "--grace-period", "0", "--force", check=False)


def failed(verdict: str) -> bool:
    return verdict.startswith("FAILED")


def own_mounts(pid: int) -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return [line.split()[4] for line in f]


def test_mounting_a_tmpfs_fails(box, attacker):
    pid = box.pid(attacker)
    verdict = attempt(box, attacker, attacks.MOUNT_TMPFS)
    assert failed(verdict) and "EPERM" in verdict, verdict
    assert "/mnt" not in own_mounts(pid)
    assert subprocess.run(["findmnt", "/mnt"], capture_output=True).returncode != 0


def test_adding_a_network_link_fails(box, attacker):
    pid = box.pid(attacker)
    verdict = attempt(box, attacker, attacks.IP_LINK_ADD)
    assert failed(verdict) and "not permitted" in verdict, verdict
    assert attacks.ip_links(pid) == ["lo"]
    assert subprocess.run(["ip", "link", "show", "nsbxatk0"], capture_output=True).returncode != 0


def test_setting_the_hostname_fails_for_the_host_and_the_pod(box, attacker):
    host = os.uname().nodename
    pid = box.pid(attacker)
    verdict = attempt(box, attacker, attacks.SET_HOSTNAME)
    assert failed(verdict) and "EPERM" in verdict, verdict
    assert os.uname().nodename == host
    seen = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True)
    assert seen.stdout.strip() == "attacker"


def test_writing_a_host_file_changes_only_the_containers_copy(box, attacker):
    fd, path = tempfile.mkstemp(prefix="nsbx-victim-", dir="/var/tmp")
    try:
        os.write(fd, b"original")
        os.close(fd)
        verdict = attempt(box, attacker, attacks.WRITE_FILE, path, "pwned")
        # The write lands in the container's copy-on-write layer ...
        assert verdict.startswith("SUCCEEDED"), verdict
        assert box("exec", attacker, "--", "cat", path).stdout == "pwned"
        # ... and never reaches the host.
        with open(path) as f:
            assert f.read() == "original"
        for victim in ("/etc/passwd", "/usr/bin/true"):
            before = os.stat(victim)
            box("exec", attacker, "--", "sh", "-c", f"echo pwned > {victim}; chmod 777 {victim}")
            after = os.stat(victim)
            assert (after.st_size, after.st_mode, after.st_mtime) == (before.st_size, before.st_mode, before.st_mtime)
    finally:
        os.unlink(path)


@pytest.mark.cgroupv2
def test_no_host_device_can_be_opened_by_path_or_by_mknod(box, attacker):
    devices = attacks.host_block_and_char_devices()
    assert any(":b:" in d for d in devices), "no block device on this host"
    reachable = attacks.openable_on_host(devices)
    assert reachable, "the host's root can open none of its devices: the test would prove nothing"
    verdict = attempt(box, attacker, attacks.READ_DEVICES, *devices)
    assert failed(verdict), verdict


@pytest.mark.cgroupv2
def test_the_minimal_dev_still_works(box, attacker):
    out = box(
        "exec",
        attacker,
        "--",
        "sh",
        "-c",
        "ls /dev; head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; echo x > /dev/null && echo null-ok; "
        "python3 -c 'import os; m, s = os.openpty(); print(\"pty\", os.ttyname(s))'",
    ).stdout.split()
    assert set(out) >= {
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "tty",
        "ptmx",
        "pts",
        "shm",
        "mqueue",
        "fd",
        "stdin",
        "stdout",
        "stderr",
        "null-ok",
        "pty",
        "/dev/pts/0",
    }
    assert not {"vda", "sda", "loop0", "kmsg", "mem", "kvm"} & set(out)


def test_kcore_cannot_be_read(box, attacker):
    verdict = attempt(box, attacker, attacks.OPEN_KCORE)
    # Masked with /dev/null where the kernel has /proc/kcore, absent where it has not.
    assert failed(verdict), verdict


def test_sysrq_trigger_cannot_be_written(box, attacker):
    verdict = attempt(box, attacker, attacks.WRITE_SYSRQ)
    assert failed(verdict) and ("EROFS" in verdict or "ENOENT" in verdict), verdict


def test_global_sysctls_and_sysfs_cannot_be_written(box, attacker):
    with open("/proc/sys/kernel/core_pattern") as f:
        core_pattern = f.read()
    for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/overcommit_memory", "/sys/kernel/mm/ksm/run"):
        if os.path.exists(path):
            verdict = attempt(box, attacker, attacks.REWRITE_FILE, path)
            assert failed(verdict) and "EROFS" in verdict, (path, verdict)
    with open("/proc/sys/kernel/core_pattern") as f:
        assert f.read() == core_pattern


def test_loading_a_kernel_module_fails(box, attacker):
    pid = box.pid(attacker)
    modules = open("/proc/modules").read() if os.path.exists("/proc/modules") else None
    verdict = attempt(box, attacker, attacks.LOAD_MODULE)
    assert failed(verdict), verdict
    # The wall is the missing capability (a kernel without modules says ENOSYS to everyone).
    with open(f"/proc/{pid}/status") as f:
        eff = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    assert not eff & (1 << CAP_SYS_MODULE)
    if modules is not None:
        assert open("/proc/modules").read() == modules


def test_a_host_process_cannot_be_killed(box, attacker, host_sleep):
    verdict = attempt(box, attacker, attacks.KILL, str(host_sleep))
    assert failed(verdict) and "ESRCH" in verdict, verdict
    time.sleep(0.1)
    assert alive(host_sleep)


def test_a_process_of_another_pod_cannot_be_killed(box, attacker):
    with other_pod(box, "victim-kill", "sleep", "300"):
        victim = box.pid("victim-kill")
        verdict = attempt(box, attacker, attacks.KILL, str(victim))
        assert failed(verdict) and "ESRCH" in verdict, verdict
        time.sleep(0.1)
        assert alive(victim)
        assert "running" in box.container_state("victim-kill")["state"]


def test_a_sibling_container_cannot_be_traced(nsbox):
    nsbox("pod", "create", "duo")
    nsbox("run", "victim", "--pod", "duo", "--", "sleep", "300")
    nsbox("run", "attacker", "--pod", "duo", "--", "sleep", "300")
    victim = nsbox.pid("duo", "victim")
    # Its own PID namespace: the sibling is not even visible.
    listed = nsbox("exec", "duo", "-c", "attacker", "--", "ls", "/proc").stdout.split()
    assert str(victim) not in listed
    verdict = attempt(nsbox, "duo", attacks.PTRACE, str(victim), container="attacker")
    assert failed(verdict) and "ESRCH" in verdict and "ENOENT" in verdict, verdict
    with open(f"/proc/{victim}/status") as f:
        assert "TracerPid:\t0\n" in f.read()
    assert alive(victim)


def test_setns_into_the_hosts_namespaces_fails(box, attacker, host_sleep):
    pid = box.pid(attacker)
    before = {ns: ns_inode(pid, ns) for ns in ("mnt", "pid", "net", "ipc", "uts")}
    # /proc/1 is the container's own init: setns needs CAP_SYS_ADMIN even there.
    verdict = attempt(box, attacker, attacks.SETNS, "1")
    assert failed(verdict) and "EPERM" in verdict, verdict
    # The host's processes are not in its /proc at all.
    verdict = attempt(box, attacker, attacks.SETNS, str(host_sleep))
    assert failed(verdict) and "ENOENT" in verdict, verdict
    assert {ns: ns_inode(pid, ns) for ns in before} == before


def test_another_pods_ipc_sockets_and_ports_are_out_of_reach(box, attacker):
    key, shm, name, port = "0x6e736263", f"nsbx-{uuid.uuid4().hex[:8]}", f"nsbx-{uuid.uuid4().hex[:8]}", "8181"
    with other_pod(box, "victim-ipc", "python3", "-c", attacks.VICTIM, key, shm, name, port):

        def log() -> str:
            return box("logs", "victim-ipc").stdout

        wait_for(lambda: "ready" in log(), what="victim ready")
        # The victim's own pod can reach all four (the test would prove nothing otherwise).
        assert (
            attempt(box, "victim-ipc", attacks.REACH_OTHER_POD, key, shm, name, port)
            == "SUCCEEDED reached sysv-shm posix-shm abstract-socket tcp"
        )
        wait_for(lambda: log().count("connection") == 2, what="victim to see its own pod")

        verdict = attempt(box, attacker, attacks.REACH_OTHER_POD, key, shm, name, port)
        assert failed(verdict), verdict
        time.sleep(0.2)
        assert log().count("connection") == 2
        # Nor does the host see them.
        assert not os.path.exists(f"/dev/shm/{shm}")
        assert f"@{name}" not in open("/proc/net/unix").read()


@pytest.mark.cgroupv2
def test_a_fork_bomb_is_held_by_the_pids_limit(nsbox):
    manifest = f"""
apiVersion: v1
kind: Pod
metadata:
  name: bomb
  annotations:
    nsbox.io/pids-limit: "64"
spec:
  containers:
  - name: bomb
    command: ["python3", "-c", {json.dumps(attacks.FORK_BOMB)}]
"""
    nsbox("apply", "-f", "-", input=manifest)
    uid = nsbox.uid("bomb")
    pids_dir = next(
        d for d in (f"/sys/fs/cgroup/pids/nsbox/pod{uid}", f"/sys/fs/cgroup/nsbox/pod{uid}") if os.path.isdir(d)
    )
    assert open(f"{pids_dir}/pids.max").read().strip() == "64"

    def current() -> int:
        return int(open(f"{pids_dir}/pids.current").read())

    wait_for(lambda: current() >= 60, timeout=20, what="the bomb to fill its pod")
    # The host stays responsive: it can start processes, and nsbox answers.
    t0 = time.monotonic()
    for _ in range(10):
        subprocess.run(["true"], check=True)
    assert time.monotonic() - t0 < 5
    assert current() <= 64
    assert nsbox("get", "pods", "bomb").returncode == 0
    t0 = time.monotonic()
    nsbox("delete", "pod", "bomb", "--grace-period", "1")
    assert time.monotonic() - t0 < 15
    assert not os.path.isdir(pids_dir)


def test_a_symlink_subpath_cannot_reach_the_hosts_files(nsbox):
    """An init container plants a symlink to /etc in an emptyDir; the next mounts it by subPath."""
    manifest = """
apiVersion: v1
kind: Pod
metadata:
  name: escape
spec:
  restartPolicy: Never
  volumes:
  - name: data
    emptyDir: {}
  initContainers:
  - name: plant
    command: ["sh", "-c", "ln -s /etc /data/etc && ln -s ../../../../../../.. /data/up && mkdir /data/ok"]
    volumeMounts: [{name: data, mountPath: /data}]
  containers:
  - name: absolute
    command: ["sh", "-c", "ls /x; cat /x/hostname"]
    volumeMounts: [{name: data, mountPath: /x, subPath: etc}]
  - name: relative
    command: ["sh", "-c", "ls /x"]
    volumeMounts: [{name: data, mountPath: /x, subPath: up}]
  - name: inside
    command: ["sh", "-c", "echo fine > /x/f"]
    volumeMounts: [{name: data, mountPath: /x, subPath: ok}]
"""
    nsbox("apply", "-f", "-", input=manifest)
    wait_for(lambda: nsbox.container_state("escape", "inside")["state"].get("terminated"), what="inside")
    for name in ("absolute", "relative"):
        st = wait_for(
            lambda: (
                nsbox.container_state("escape", name)["state"].get("terminated")
                or nsbox.container_state("escape", name)["state"].get("waiting", {}).get("message")
            ),
            what=f"{name} to be refused",
        )
        assert "is a symbolic link" in str(st), st  # no link in a subPath, as the kubelet
        assert st.get("reason") == "StartError", st
        assert os.uname().nodename not in nsbox("logs", "escape", "-c", name, check=False).stdout
    assert nsbox.container_state("escape", "inside")["state"]["terminated"]["exitCode"] == 0


def test_a_dotdot_subpath_is_refused(nsbox):
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: dotdot}
spec:
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: c
    command: ["sleep", "300"]
    volumeMounts: [{name: data, mountPath: /x, subPath: ../../../../etc}]
"""
    p = nsbox("apply", "-f", "-", input=manifest, check=False)
    assert p.returncode != 0 and "subPath" in p.stderr, p


def test_a_process_left_behind_by_exec_cannot_write_to_the_callers_stdout(box, attacker, tmp_path):
    """`exec` relays through pipes: once it has returned, what it started cannot reach the caller's file."""
    out = tmp_path / "operator-output"
    script = (
        "echo early; ( trap '' PIPE; while [ ! -e /tmp/exec-returned ]; do sleep 0.05; done;"
        " i=0; while [ $i -lt 600 ]; do sleep 0.05; echo late$i; echo late$i >&2;"
        " echo $i > /tmp/late-tries; i=$((i+1)); done ) & echo launched"
    )
    with open(out, "wb") as f:
        p = subprocess.run(
            [*NSBOX, *box.global_args, "exec", attacker, "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=f,
            timeout=60,
        )
    assert p.returncode == 0
    inside = f"/proc/{box.pid(attacker)}/root/tmp"
    open(f"{inside}/exec-returned", "w").close()
    tries = f"{inside}/late-tries"

    def count() -> int:
        with contextlib.suppress(OSError, ValueError):
            return int(open(tries).read())
        return -1

    wait_for(lambda: count() >= 0, what="the process left behind to write")
    first = count()
    wait_for(lambda: count() >= first + 5, what="the process left behind to go on writing")
    assert out.read_text().split() == ["early", "launched"]


def sleeping(marker: str) -> list[int]:
    """The processes that run `sleep MARKER` itself: not the CLI, nor a clone of it that has not
    exec'd yet (their command lines hold the marker too)."""
    found = []
    for pid in processes_naming(marker):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read() == b"sleep\0%s\0" % marker.encode():
                found.append(pid)
    return found


def test_the_exec_d_process_holds_pipes_never_the_callers_terminal_or_file(box, attacker, tmp_path):
    master, slave = os.openpty()
    out = open(tmp_path / "operator-output", "wb")
    marker = f"300.{uuid.uuid4().int % 100000:05d}"
    cli = subprocess.Popen(
        [*NSBOX, *box.global_args, "exec", "-i", attacker, "--", "sleep", marker], stdin=slave, stdout=out, stderr=slave
    )
    try:
        (pid,) = wait_for(lambda: sleeping(marker), what="the exec'd sleep")
        for fd in (0, 1, 2):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            assert target.startswith("pipe:"), (fd, target)
        assert os.getsid(pid) == pid  # a session of its own: /dev/tty inside is not the caller's terminal
        os.kill(pid, 9)
        assert cli.wait(timeout=30) == 137
    finally:
        cli.kill()
        cli.wait()
        out.close()
        os.close(master)
        os.close(slave)


BAD_NAMESPACES = ["..", "../..", "../x", "a/b", "/tmp"]
BAD_NAMES = ["..", "../x", "a/b", "evil/../.."]


def commands_naming(namespace: str, name: str) -> list[list[str]]:
    """Every command that takes a namespace and a name, with those two."""
    n = ["-n", namespace]
    return [
        ["get", "pods", *n],
        ["get", "pods", name, *n],
        ["get", "configmaps", name, *n],
        ["get", "secrets", *n],
        ["logs", name, *n],
        ["logs", "ok", "-c", name, *n],
        ["describe", "pod", name, *n],
        ["inspect", name, *n],
        ["exec", name, *n, "--", "true"],
        ["exec", "ok", "-c", name, *n, "--", "true"],
        ["delete", "pod", name, *n, "--grace-period", "0"],
        ["delete", "configmap", name, *n],
        ["delete", "pods", "--all", *n],
        ["wait", f"pod/{name}", "--for", "delete", "--timeout", "1s", *n],
        ["top", "pod", name, *n],
        ["create", "configmap", name, "--from-literal", "a=b", *n],
        ["run", name, *n, "--", "true"],
        ["pod", "create", name, *n],
    ]


def test_a_namespace_or_name_with_dots_or_slashes_never_leaves_the_root(tmp_path):
    """`-n ../..` would make root/names/../../evil the name claim: a link, planted beside the
    root, to a canary directory that a delete would remove. Every command refuses first."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tmp_path / "root"
    (root / "names" / "default").mkdir(parents=True)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "precious").write_text("keep me\n")
    os.symlink("../../canary", tmp_path / "evil")
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(root))
    cases = [(ns, "evil") for ns in BAD_NAMESPACES] + [("default", name) for name in BAD_NAMES]
    for namespace, name in cases:
        for argv in commands_naming(namespace, name):
            if namespace == "default" and name not in argv:
                continue  # the namespace is fine and the name is not in this command
            p = subprocess.run(
                [*NSBOX, "--root", str(root), *argv],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=60,
            )
            assert p.returncode == 1, (argv, p.stdout, p.stderr)
            assert p.stderr.startswith("error: invalid ") and p.stderr.count("\n") == 1, (argv, p.stderr)
            assert p.stdout == "", (argv, p.stdout)
    assert (canary / "precious").read_text() == "keep me\n"
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(root))) == before


def mount_of(pid: int, target: str) -> tuple[str, str]:
    """(filesystem type, super options) of the mount at `target` in the mount namespace of `pid`."""
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                after = fields[fields.index("-") + 1 :]
                found = (after[0], after[2])
    return found


def disk_usage(path: str) -> int:
    """Bytes of disk the files under `path` use, as `du` counts them (on the host's view)."""
    return int(subprocess.run(["du", "-sxB1", path], capture_output=True, text=True, check=True).stdout.split()[0])


def test_writing_etc_hosts_stops_at_the_pods_small_tmpfs_not_the_hosts_disk(box, attacker):
    pid = box.pid(attacker)
    fstype, options = mount_of(pid, "/etc/hosts")
    assert fstype == "tmpfs" and "size=1024k" in options, (fstype, options)
    assert mount_of(pid, "/etc/hostname")[0] == "tmpfs"
    used = disk_usage(box.root)
    p = box(
        "exec",
        attacker,
        "--",
        "sh",
        "-c",
        "cp /etc/hosts /tmp/hosts.saved; head -c 10000000 /dev/zero >> /etc/hosts; echo exit=$?;"
        " wc -c < /etc/hosts; cp /tmp/hosts.saved /etc/hosts",
        check=False,
    )
    assert "No space left on device" in p.stderr, p.stderr
    assert "exit=1" in p.stdout
    size = int(p.stdout.split()[-1])
    assert size <= 1024 * 1024 < 10_000_000
    assert disk_usage(box.root) < used + 512 * 1024  # the host's disk held none of it


def writable_layer_size(pid: int) -> int:
    """Bytes of the container's writable layer, seen from outside. The tmpfs that holds the
    overlay's upper layer is detached from the container's mount table by pivot_root, but an
    overlay reports its upper file system's statfs: `df` on /proc/PID/root."""
    st = os.statvfs(f"/proc/{pid}/root/")
    return st.f_blocks * st.f_frsize


def test_the_writable_layer_is_1_gib_by_default(box, attacker):
    assert writable_layer_size(box.pid(attacker)) == 1 << 30


def test_the_writable_layer_is_the_ephemeral_storage_limit_and_a_write_beyond_it_gets_enospc(nsbox):
    manifest = """
apiVersion: v1
kind: Pod
metadata:
  name: filler
spec:
  containers:
  - name: fill
    command: ["sleep", "300"]
    resources:
      limits:
        ephemeral-storage: 32Mi
"""
    nsbox("apply", "-f", "-", input=manifest)
    pid = nsbox.pid("filler")
    assert writable_layer_size(pid) == 32 << 20
    p = nsbox("exec", "filler", "--", "sh", "-c", "head -c 40000000 /dev/zero > /fill; echo exit=$?", check=False)
    assert "No space left on device" in p.stderr and "exit=1" in p.stdout, (p.stdout, p.stderr)
    assert os.stat(f"/proc/{pid}/root/fill").st_size <= 32 << 20
    described = nsbox("describe", "pod", "filler").stdout
    assert "ephemeral-storage:  32Mi" in described.expandtabs(), described


def test_run_i_feeds_the_container_through_a_pipe_never_the_callers_terminal(nsbox):
    p = nsbox("run", "-i", "--rm", "fed", "--", "sh", "-c", "cat; readlink /proc/self/fd/0", input="typed\n")
    assert p.stdout.startswith("typed\npipe:"), p.stdout
    master, slave = os.openpty()
    marker = f"300.{uuid.uuid4().int % 100000:05d}"
    cli = nsbox.popen("run", "-i", "--rm", "held", "--", "sleep", marker, stdin=slave)
    try:
        (pid,) = wait_for(lambda: sleeping(marker), what="the container's sleep")
        assert os.readlink(f"/proc/{pid}/fd/0").startswith("pipe:")  # not the caller's pty
        os.kill(pid, 9)
        assert cli.wait(timeout=60) == 137
    finally:
        cli.kill()
        cli.communicate()
        os.close(master)
        os.close(slave)


def test_exec_from_a_terminal_gives_no_way_to_the_users_terminal(box, attacker):
    """The CLI on a terminal that is its controlling one: what it execs is in a session of its
    own, so /dev/tty inside is no terminal at all (ENXIO), let alone the user's."""
    import pty

    script = "if printf x > /dev/tty; then echo TTY-OPENED; else echo TTY-REFUSED; fi; readlink /proc/self/fd/1"
    pid, master = pty.fork()  # the child: a new session whose controlling terminal is the pty
    if pid == 0:
        os.execv(NSBOX[0], [*NSBOX, *box.global_args, "exec", attacker, "--", "sh", "-c", script])
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the CLI has ended
                break
            if not chunk:
                break
            screen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(master)
    assert os.waitstatus_to_exitcode(status) == 0, screen
    assert b"TTY-REFUSED" in screen and b"TTY-OPENED" not in screen, screen
    assert b"pipe:" in screen, screen
