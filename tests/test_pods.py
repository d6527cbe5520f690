"""The pod runtime core on the real kernel, checked with observers that are not nsbox."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from conftest import NSBOX, alive, cgroup_dirs, leftovers, mounts_under, ns_inode, sleeping_fds, wait_for

SERVER = (
    "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('127.0.0.1', 8080)); s.listen(); print('listening', flush=True)\n"
    "while True:\n c, _ = s.accept(); c.sendall(b'hello from ' + socket.gethostname().encode()); c.close()"
)
CLIENT = "import socket, sys; s = socket.create_connection(('127.0.0.1', 8080), timeout=2); print(s.recv(100).decode())"


def shared(pid_a: int, pid_b: int, ns: str) -> bool:
    return ns_inode(pid_a, ns) == ns_inode(pid_b, ns)


@pytest.mark.cgroupv2
def test_containers_of_a_pod_share_net_ipc_uts_but_not_mnt_and_pid(nsbox):
    nsbox("pod", "create", "duo")
    nsbox("run", "a", "--pod", "duo", "--", "sleep", "300")
    nsbox("run", "b", "--pod", "duo", "--", "sleep", "300")
    a, b = nsbox.pid("duo", "a"), nsbox.pid("duo", "b")
    me = os.getpid()
    for ns in ("net", "ipc", "uts"):
        assert shared(a, b, ns), ns
        assert not shared(a, me, ns), f"{ns} is the host's"
    for ns in ("mnt", "pid"):
        assert not shared(a, b, ns), ns
        assert not shared(a, me, ns), ns


@pytest.mark.cgroupv2
def test_on_cgroup_v2_each_container_has_its_own_cgroup_namespace_rooted_at_its_cgroup(nsbox):
    from nsbox import cgroups

    if cgroups.detect().version != 2:
        pytest.skip("cgroup namespaces are private on cgroup v2 only (docs/pods.md section 5)")
    nsbox("pod", "create", "cgns")
    nsbox("run", "a", "--pod", "cgns", "--", "sleep", "300")
    nsbox("run", "b", "--pod", "cgns", "--", "sleep", "300")
    a, b = nsbox.pid("cgns", "a"), nsbox.pid("cgns", "b")
    assert not shared(a, b, "cgroup") and not shared(a, os.getpid(), "cgroup")
    # Seen from the host, the container is deep in the hierarchy; from inside, at the root.
    with open(f"/proc/{a}/cgroup") as f:
        assert f.read().strip().endswith(f"/nsbox/pod{nsbox.uid('cgns')}/a")
    assert nsbox("exec", "cgns", "-c", "a", "--", "cat", "/proc/self/cgroup").stdout == "0::/\n"
    inside = subprocess.run(
        ["nsenter", "-t", str(a), "-C", "-m", "cat", "/proc/1/cgroup"], capture_output=True, text=True, check=True
    )
    assert inside.stdout == "0::/\n"


def test_containers_talk_over_localhost_and_other_pods_cannot_reach(nsbox):
    nsbox("pod", "create", "web")
    nsbox("run", "server", "--pod", "web", "--", "python3", "-c", SERVER)
    wait_for(lambda: "listening" in nsbox("logs", "web", "-c", "server").stdout, what="server")
    p = nsbox("exec", "web", "-c", "server", "--", "python3", "-c", CLIENT)
    assert p.stdout.strip() == "hello from web"

    nsbox("run", "client", "--pod", "web", "--restart", "Never", "--", "python3", "-c", CLIENT)
    wait_for(lambda: "hello from web" in nsbox("logs", "web", "-c", "client").stdout, what="client output")

    nsbox("run", "other", "--", "python3", "-c", CLIENT)
    st = wait_for(lambda: nsbox.container_state("other")["state"].get("terminated"), what="other pod's client")
    assert st["exitCode"] != 0
    assert "refused" in nsbox("logs", "other").stderr + nsbox("logs", "other").stdout
    # And the host itself does not see the server either (nothing listens on its loopback:8080).
    ss = subprocess.run(["ss", "-Hltn", "sport = :8080"], capture_output=True, text=True).stdout
    assert "127.0.0.1:8080" not in ss


def test_containers_of_two_pods_share_nothing(nsbox):
    nsbox("run", "one", "--", "sleep", "300")
    nsbox("run", "two", "--", "sleep", "300")
    one, two = nsbox.pid("one"), nsbox.pid("two")
    for ns in ("net", "ipc", "uts", "mnt", "pid"):
        assert not shared(one, two, ns), ns


def test_hostname_is_the_pod_name(nsbox):
    nsbox("run", "named-pod", "--", "sleep", "300")
    pid = nsbox.pid("named-pod")
    seen = subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True, text=True)
    assert seen.stdout.strip() == "named-pod"
    assert nsbox("exec", "named-pod", "--", "cat", "/etc/hostname").stdout.strip() == "named-pod"
    assert "named-pod" in nsbox("exec", "named-pod", "--", "cat", "/etc/hosts").stdout
    assert os.uname().nodename != "named-pod"


@pytest.mark.cgroupv2
def test_sysv_shared_memory_is_seen_by_the_sibling_only(nsbox):
    nsbox("pod", "create", "ipc")
    nsbox("run", "maker", "--pod", "ipc", "--", "sleep", "300")
    nsbox("run", "user", "--pod", "ipc", "--", "sleep", "300")
    nsbox("run", "stranger", "--", "sleep", "300")
    key = "0x6e736278"
    nsbox(
        "exec",
        "ipc",
        "-c",
        "maker",
        "--",
        "python3",
        "-c",
        f"import ctypes; assert ctypes.CDLL(None).shmget({int(key, 16)}, 4096, 0o1666) >= 0",
    )

    def keys(pid: int) -> str:
        return subprocess.run(["nsenter", "-t", str(pid), "-i", "ipcs", "-m"], capture_output=True, text=True).stdout

    assert key in keys(nsbox.pid("ipc", "maker"))
    assert key in keys(nsbox.pid("ipc", "user"))
    assert key in nsbox("exec", "ipc", "-c", "user", "--", "ipcs", "-m").stdout
    assert key not in keys(nsbox.pid("stranger"))
    assert key not in subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout


def test_dev_shm_is_one_tmpfs_per_pod(nsbox):
    nsbox("pod", "create", "shm")
    nsbox("run", "a", "--pod", "shm", "--", "sleep", "300")
    nsbox("run", "b", "--pod", "shm", "--", "sleep", "300")
    nsbox("run", "c", "--", "sleep", "300")
    nsbox("exec", "shm", "-c", "a", "--", "sh", "-c", "echo shared > /dev/shm/seg")
    assert nsbox("exec", "shm", "-c", "b", "--", "cat", "/dev/shm/seg").stdout.strip() == "shared"
    assert nsbox("exec", "c", "--", "ls", "/dev/shm").stdout.strip() == ""
    assert not os.path.exists("/dev/shm/seg")

    # The kernel's own view of the container's mounts: /dev/shm is a tmpfs, the same one in a and b.
    def shm_mount(pid: int) -> tuple[str, str]:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                if fields[4] == "/dev/shm":
                    return fields[2], fields[fields.index("-") + 1]  # (device, fstype)
        raise AssertionError("no /dev/shm mount")

    a, b, c = shm_mount(nsbox.pid("shm", "a")), shm_mount(nsbox.pid("shm", "b")), shm_mount(nsbox.pid("c"))
    assert a == b and a[1] == "tmpfs"
    assert c[1] == "tmpfs" and c[0] != a[0]


def test_each_container_has_its_own_pid_namespace_and_proc(nsbox):
    nsbox("run", "solo", "--", "sleep", "300")
    out = nsbox(
        "exec", "solo", "--", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'"
    )
    cmdline, count = out.stdout.splitlines()
    assert cmdline.strip() == "sleep 300"
    assert int(count) <= 4  # sleep, sh, and the ls and grep of this very command


def test_writes_go_to_a_private_copy_of_the_host_files(nsbox, tmp_path):
    marker = tmp_path / "host-file"
    marker.write_text("host")
    nsbox("run", "cow", "--", "sleep", "300")
    nsbox("exec", "cow", "--", "sh", "-c", f"echo container > {marker}; echo new > /etc/nsbox-test-file")
    assert nsbox("exec", "cow", "--", "cat", str(marker)).stdout.strip() == "container"
    assert marker.read_text() == "host"
    assert not os.path.exists("/etc/nsbox-test-file")


def test_exit_codes_and_restart_counts_are_recorded(nsbox):
    nsbox("run", "fails", "--", "sh", "-c", "exit 3")
    st = wait_for(lambda: nsbox.container_state("fails")["state"].get("terminated"), what="exit")
    assert st["exitCode"] == 3 and st["reason"] == "Error"
    assert nsbox.pod("fails")["status"]["phase"] == "Failed"

    nsbox("run", "ok", "--", "true")
    st = wait_for(lambda: nsbox.container_state("ok")["state"].get("terminated"), what="exit")
    assert st["exitCode"] == 0 and st["reason"] == "Completed"
    assert nsbox.pod("ok")["status"]["phase"] == "Succeeded"

    nsbox("run", "loop", "--restart", "Always", "--", "sh", "-c", "echo run; exit 1")
    # The first restart is immediate (kubelet back-off starts at the second).
    st = wait_for(lambda: (s := nsbox.container_state("loop"))["restartCount"] >= 1 and s, what="a restart")
    assert st["lastState"]["terminated"]["exitCode"] == 1


def test_signal_deaths_report_128_plus_n(nsbox):
    nsbox("run", "killed", "--", "sh", "-c", "kill -USR1 $$; sleep 5")
    # PID 1 of a PID namespace ignores signals it has no handler for, so kill it from outside.
    pid = nsbox.pid("killed")
    os.kill(pid, signal.SIGKILL)
    st = wait_for(lambda: nsbox.container_state("killed")["state"].get("terminated"), what="exit")
    assert st["exitCode"] == 137 and st["signal"] == 9


@pytest.mark.cgroupv2
def test_delete_leaves_nothing_behind(nsbox):
    nsbox("pod", "create", "full", "--volume", "data")
    nsbox("run", "a", "--pod", "full", "--mount", "data:/data", "--", "sh", "-c", "echo x > /data/f; sleep 300")
    nsbox("run", "b", "--pod", "full", "--", "sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait")
    uid = nsbox.uid("full")
    pids = [c["pid"] for c in nsbox.inspect("full")["containers"]] + [nsbox.inspect("full")["watcher"]["pid"]]
    assert cgroup_dirs(uid)
    p = nsbox("delete", "pod", "full", "--grace-period", "2")
    assert p.stdout.strip() == 'pod "full" deleted'
    for pid in pids:
        wait_for(lambda: not alive(pid), timeout=5, what=f"pid {pid} to be gone")
    assert cgroup_dirs(uid) == []
    assert mounts_under(nsbox.root) == []
    assert leftovers(nsbox.root) == []
    assert nsbox("get", "pods", "full", check=False).returncode == 1


def test_recreated_pod_gets_a_new_uid_and_fresh_namespaces(nsbox):
    nsbox("run", "again", "--", "sleep", "300")
    first = nsbox.uid("again")
    nsbox("exec", "again", "--", "sh", "-c", "ipcmk -M 1024 && echo old > /dev/shm/old")
    nsbox("delete", "pod", "again", "--grace-period", "0")
    nsbox("run", "again", "--", "sleep", "300")
    assert nsbox.uid("again") != first
    segments = nsbox("exec", "again", "--", "sh", "-c", "ipcs -m | grep -c '^0x' || true").stdout.strip()
    assert segments == "0"
    assert nsbox("exec", "again", "--", "ls", "/dev/shm").stdout.strip() == ""


def test_sigterm_ignoring_process_is_killed_after_the_grace_period_and_not_before(nsbox):
    # A shell that ignores SIGTERM, as PID 1 without a handler does anyway.
    nsbox("run", "stubborn", "--", "sh", "-c", "trap '' TERM; while :; do sleep 0.2; done")
    pid = nsbox.pid("stubborn")
    t0 = time.monotonic()
    d = nsbox.popen("delete", "pod", "stubborn", "--grace-period", "4")
    wait_for(
        lambda: "Terminating" in nsbox("get", "pods", "stubborn", check=False).stdout, timeout=3, what="Terminating"
    )
    # Well inside the grace period the process must still be there...
    while time.monotonic() - t0 < 2.0:
        assert alive(pid), "killed before the grace period ended"
        time.sleep(0.1)
    # ...and gone soon after it.
    wait_for(lambda: not alive(pid), timeout=10, what="SIGKILL after the grace period")
    assert time.monotonic() - t0 >= 4.0
    assert d.wait(timeout=15) == 0


def test_cooperative_pod_is_deleted_as_soon_as_it_exits(nsbox):
    nsbox("run", "coop", "--", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    nsbox.pid("coop")
    t0 = time.monotonic()
    nsbox("delete", "pod", "coop", "--grace-period", "30")
    assert time.monotonic() - t0 < 10


def test_each_pod_has_its_own_scratch_tmpfs_at_the_same_path_and_the_host_sees_none(nsbox):
    scratch = os.path.join(nsbox.root, "scratch")
    for name in ("sa", "sb"):
        nsbox("run", name, "--", "sleep", "300")
    for name in ("sa", "sb"):
        watcher = nsbox.inspect(name)["watcher"]["pid"]
        fs = subprocess.run(
            ["findmnt", "--task", str(watcher), "-n", "-o", "FSTYPE,OPTIONS", "--mountpoint", scratch],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert fs[0] == "tmpfs" and "size=1024k" in fs[1].split(","), fs
        with open(f"/proc/{watcher}/root{scratch}/etc/hostname") as f:  # in the watcher's mount namespace
            assert f.read() == f"{name}\n"
    assert os.listdir(scratch) == [] and mounts_under(nsbox.root) == []


def test_the_watcher_has_a_session_of_its_own_and_outlives_the_clis_terminal(nsbox):
    # The CLI runs on a terminal of its own (script(1) gives it a pty as controlling terminal),
    # which hangs up when the command is done: the watcher has no controlling terminal, leads
    # its own session, and its pod runs on once the terminal is gone.
    command = " ".join([*NSBOX, *nsbox.global_args, "run", "tty", "--", "sleep", "300"])
    out = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    watcher = nsbox.inspect("tty")["watcher"]["pid"]
    with open(f"/proc/{watcher}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    session, tty_nr = int(fields[3]), int(fields[4])
    assert (session, tty_nr) == (watcher, 0)
    assert nsbox.pod("tty")["status"]["phase"] == "Running"


def test_killed_cli_during_run_leaves_nothing_delete_and_gc_cannot_clean(nsbox):
    for i, delay in enumerate((0.0, 0.02, 0.05, 0.1, 0.2, 0.4)):
        name = f"k{i}"
        p = nsbox.popen("run", name, "--", "sleep", "300")
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        nsbox("delete", "pod", name, "--grace-period", "0", check=False)
        nsbox("gc")
        assert leftovers(nsbox.root) == [], f"after kill at {delay}s"


@pytest.mark.cgroupv2
def test_exec_exit_code_user_and_cgroup(nsbox):
    nsbox("run", "ex", "--", "sleep", "300")
    assert nsbox("exec", "ex", "--", "sh", "-c", "exit 42", check=False).returncode == 42
    uid = nsbox.uid("ex")
    out = nsbox("exec", "ex", "--", "cat", "/proc/self/cgroup").stdout
    from nsbox import cgroups

    if cgroups.detect().version == 2:
        # The container's own cgroup namespace is rooted at its cgroup: a process anywhere
        # else would read a path with `..` in it.
        assert out == "0::/\n"
    else:
        assert f"/nsbox/pod{uid}/ex" in out
    assert nsbox("exec", "ex", "--", "sh", "-c", "echo $$").stdout.strip() != "1"


def test_exec_passes_output_stdin_and_a_closed_reader_on_as_a_direct_command_would(nsbox, tmp_path):
    """exec relays through pipes (docs/security.md section 7): both streams, stdin with -i to its
    end, and a reader that goes away kills the command with SIGPIPE (141), as `yes | head` does."""
    nsbox("run", "relay", "--", "sleep", "300")
    p = nsbox("exec", "relay", "--", "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (5, "out\n", "err\n")
    p = nsbox("exec", "-i", "relay", "--", "sh", "-c", "wc -l", input="a\nb\nc\n")
    assert p.stdout.strip() == "3"
    with open(tmp_path / "lines", "w+") as f:  # a regular file as stdin (epoll cannot watch one)
        f.write("a\nb\n")
        f.seek(0)
        p = subprocess.run(
            [*NSBOX, "--root", nsbox.root, "exec", "-i", "relay", "--", "wc", "-l"],
            stdin=f,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert p.stdout.strip() == "2", p.stderr
    shell = f"{' '.join(NSBOX)} --root {nsbox.root} exec relay -- yes | head -1; exit ${{PIPESTATUS[0]}}"
    p = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout) == (141, "y\n"), p.stderr


def test_logs_are_cri_files_with_tail_timestamps_and_follow(nsbox):
    nsbox("run", "talker", "--", "sh", "-c", "echo one; echo two >&2; printf three; sleep 1; echo four")
    wait_for(lambda: nsbox.container_state("talker")["state"].get("terminated"), what="exit")
    log = nsbox.inspect("talker")["containers"][0]["logPath"]
    lines = open(log).read().splitlines()
    records = [line.split(" ", 1)[1] for line in lines]
    assert records in (
        ["stdout F one", "stderr F two", "stdout F threefour"],
        ["stdout F one", "stderr F two", "stdout P three", "stdout F four"],
    )
    for line in lines:
        assert line.split(" ")[0].endswith("Z") and "T" in line.split(" ")[0]
    p = nsbox("logs", "talker")
    assert p.stdout == "one\ntwo\nthreefour\n" and p.stderr == ""  # both streams on stdout, as kubectl
    assert nsbox("logs", "talker", "--tail", "1").stdout.strip() in ("four", "threefour")
    assert nsbox("logs", "talker", "--timestamps").stdout.split()[0].endswith("Z")

    nsbox("run", "ticker", "--", "sh", "-c", "for i in 1 2 3; do echo tick$i; sleep 0.3; done")
    follow = nsbox("logs", "ticker", "-f", timeout=30)
    assert "tick3" in follow.stdout


def test_run_attach_rm_streams_output_and_removes_the_pod(nsbox):
    p = nsbox("run", "once", "--rm", "-a", "--", "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert p.returncode == 5
    assert p.stdout == "out\n" and "err" in p.stderr
    assert nsbox("get", "pods", "once", check=False).returncode == 1
    assert leftovers(nsbox.root) == []


@pytest.mark.cgroupv2
def test_container_cgroups_and_limits(nsbox):
    nsbox("run", "lim", "--memory", "64Mi", "--cpu", "250m", "--", "sleep", "300")
    uid, pid = nsbox.uid("lim"), nsbox.pid("lim")
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert any(line.endswith(f"/nsbox/pod{uid}/lim") for line in lines), lines
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):  # pure v2
        base = f"/sys/fs/cgroup/nsbox/pod{uid}/lim"
        assert open(f"{base}/memory.max").read().strip() == str(64 << 20)
        assert open(f"{base}/cpu.max").read().split() == ["25000", "100000"]
    else:
        assert open(f"/sys/fs/cgroup/memory/nsbox/pod{uid}/lim/memory.limit_in_bytes").read().strip() == str(64 << 20)
        assert open(f"/sys/fs/cgroup/cpu/nsbox/pod{uid}/lim/cpu.cfs_quota_us").read().strip() == "25000"


def test_errors_are_one_line_and_create_nothing(nsbox):
    def err(*args: str) -> str:
        p = nsbox(*args, check=False)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        assert p.stderr.startswith("error: ") and "Traceback" not in p.stderr, p.stderr
        return p.stderr.strip()

    assert err("get", "pods", "nope") == 'error: pod "nope" not found'
    assert err("delete", "pod", "nope") == 'error: pod "nope" not found'
    assert "invalid pod name" in err("run", "Web_1", "--", "true")
    assert "command is required" in err("run", "nocmd")
    assert "not found" in err("run", "badexe", "--", "/no/such/binary")
    assert "not found" in err("run", "badexe2", "--", "no-such-command-xyz")
    assert leftovers(nsbox.root) == []
    nsbox("run", "dup", "--", "sleep", "300")
    assert err("run", "dup", "--", "sleep", "1") == 'error: pod "dup" already exists'
    assert "not found" in err("exec", "dup", "-c", "ghost", "--", "true")
    assert "not found" in err("logs", "dup", "-c", "ghost")
    p = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *NSBOX, "--root", nsbox.root, "get", "pods"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and p.stderr.strip() == "error: nsbox must run as root"


# ---------------------------------------------------------------- descriptors


def joined(container_pid: int, argv: list[str]) -> int | None:
    """Host PID of a process running `argv` in the mount namespace of `container_pid`, read from /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == container_pid:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:-1] != [a.encode() for a in argv]:
                    continue
            if ns_inode(int(entry), "mnt") == ns_inode(container_pid, "mnt"):
                return int(entry)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return None


def test_main_and_exec_processes_hold_only_stdio_even_when_the_cli_inherited_more(nsbox, tmp_path):
    marker = str(tmp_path / "the-cli-only")
    extra = os.open(marker, os.O_RDWR | os.O_CREAT, 0o600)
    os.set_inheritable(extra, True)  # no FD_CLOEXEC: every exec on the way keeps it
    try:
        for name, flags in (("plain", []), ("with-init", ["--init"])):
            p = subprocess.run(
                [*NSBOX, "--root", nsbox.root, "run", name, *flags, "--", "sleep", "300"],
                pass_fds=(extra,),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert p.returncode == 0, p.stderr
        main = nsbox.pid("plain")
        assert sleeping_fds(main) == {0, 1, 2}
        init = nsbox.pid("with-init")
        assert sleeping_fds(init, asleep_in=frozenset({"do_sigtimedwait"})) == {0, 1, 2}
        with open(f"/proc/{init}/task/{init}/children") as f:
            (under_init,) = [int(x) for x in f.read().split()]
        assert sleeping_fds(under_init) == {0, 1, 2}

        cli = nsbox.popen("exec", "plain", "--", "sleep", "301", pass_fds=(extra,))
        try:
            assert os.readlink(f"/proc/{cli.pid}/fd/{extra}") == marker  # the CLI has it ...
            exec_pid = wait_for(lambda: joined(main, ["sleep", "301"]), what="the exec'd sleep")
            assert sleeping_fds(exec_pid) == {0, 1, 2}  # ... what it started does not
            os.kill(exec_pid, signal.SIGKILL)
            assert cli.wait(timeout=30) == 137
        finally:
            cli.kill()
            cli.communicate()
    finally:
        os.close(extra)
