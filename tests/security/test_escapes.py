"""Ways out through what nsbox itself hands a container (issue 17): its binaries, descriptors,
mount targets and keyring. Each attack runs from inside a default container; what decides
is seen from outside (/proc/PID/exe, /proc/PID/fd and cwd, the host's files, the keyring).

docs/security.md §12 says what nsbox does against each.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid

import pytest
from attacks import program
from conftest import NSBOX, processes_naming, sleeping_fds, wait_for

# Opens the exe of a process of the shared PID namespace (args: its PID there) by O_PATH, ends
# that process, waits until nothing executes the file any more, then reopens it for writing
# through /proc/self/fd and writes back its first byte: the runc CVE-2019-5736 attack, harmless
# if it succeeds (the same byte).
REOPEN_EXE_FOR_WRITING = program("""
import signal, time
pid = int(args[0])
fd = os.open(f"/proc/{pid}/exe", os.O_PATH)
os.kill(pid, signal.SIGKILL)
deadline = time.monotonic() + 20
while os.path.exists(f"/proc/{pid}/exe") and time.monotonic() < deadline:
    time.sleep(0.02)
for flags in (os.O_WRONLY, os.O_RDWR):
    try:
        w = os.open(f"/proc/self/fd/{fd}", flags)
    except OSError as e:
        print("open", e)
        continue
    first = os.pread(os.open(f"/proc/self/fd/{fd}", os.O_RDONLY), 1, 0)
    os.pwrite(w, first, 0)
    print("SUCCEEDED wrote", os.readlink(f"/proc/self/fd/{fd}"))
    break
else:
    raise OSError(errno.EPERM, "no open for writing")
""")

# Is a key the caller put on its session keyring (args: its description) reachable?
# KEYCTL_SEARCH (10) of the session keyring (-3), then KEYCTL_DESCRIBE (6) of that keyring.
SEARCH_SESSION_KEYRING = program("""
SYS_keyctl = 250
ses = check(libc.syscall(SYS_keyctl, 0, -3, 0))
buf = ctypes.create_string_buffer(256)
check(libc.syscall(SYS_keyctl, 6, ses, buf, 256))
print("session keyring", buf.value.decode())
key = check(libc.syscall(SYS_keyctl, 10, -3, b"user", args[0].encode(), 0))
print("SUCCEEDED found key", key)
""")


def host_file(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def last_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert lines and lines[-1].split()[0] in ("SUCCEEDED", "FAILED"), f"attack did not run: {p}"
    return lines[-1]


def ns_pid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("NSpid:")).split()[-1])


def sleep_process(seconds: str) -> list[int]:
    """The `sleep SECONDS` processes (not the nsbox CLI that asked for one)."""
    found = []
    for pid in processes_naming(f"sleep\x00{seconds}"):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "sleep":
                    found.append(pid)
        except OSError:
            pass
    return found


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


# ---------------------------------------------------------------- binaries (CVE-2019-5736)


def test_nsbox_init_cannot_be_overwritten_from_a_container(nsbox):
    """A container of a shared PID namespace holds the exe of its neighbour's nsbox-init,
    ends it, and reopens the exe for writing once nothing runs it."""
    from nsbox import native

    host_init = native.INIT_PROGRAM
    before = sha256(host_init), os.stat(host_init).st_mtime_ns
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: exe, annotations: {nsbox.io/init: "true"}}
spec:
  shareProcessNamespace: true
  restartPolicy: Never
  containers:
  - {name: victim, command: [sleep, "600"]}
  - {name: attacker, command: [sleep, "600"]}
"""
    nsbox("apply", "-f", "-", input=manifest)
    victim, attacker = nsbox.pid("exe", "victim"), nsbox.pid("exe", "attacker")
    pause = wait_for(lambda: [p for p in processes_naming("nsbox-pause") if ns_pid(p) == 1], what="the pause")[0]
    attacker_main = wait_for(lambda: children(attacker), what="the attacker's main process")[0]

    # Every process nsbox put there, seen from outside: none runs the host's nsbox-init or Python.
    python = host_file(os.path.realpath(sys.executable))
    for pid in (pause, victim, attacker):
        assert os.readlink(f"/proc/{pid}/exe") == "/memfd:nsbox-init (deleted)"
        assert host_file(f"/proc/{pid}/exe") not in (host_file(host_init), python)
    assert host_file(f"/proc/{attacker_main}/exe") not in (host_file(host_init), python)

    p = nsbox("exec", "exe", "-c", "attacker", "--", "python3", "-c", REOPEN_EXE_FOR_WRITING, str(ns_pid(victim)))
    verdict = last_line(p)
    assert verdict.startswith("FAILED"), p.stdout
    assert any(e in p.stdout for e in ("EPERM", "ETXTBSY", "EACCES", "Operation not permitted")), p.stdout
    assert (sha256(host_init), os.stat(host_init).st_mtime_ns) == before


def test_the_pause_has_no_capabilities_and_cannot_be_reached(nsbox):
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: paused}
spec:
  shareProcessNamespace: true
  containers:
  - {name: c, command: [sleep, "600"]}
"""
    nsbox("apply", "-f", "-", input=manifest)
    nsbox.pid("paused")
    pause = wait_for(lambda: [p for p in processes_naming("nsbox-pause") if ns_pid(p) == 1], what="the pause")[0]
    with open(f"/proc/{pause}/status") as f:
        status = dict(line.split(":\t", 1) for line in f.read().splitlines())
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[name], 16) == 0, (name, status[name])
    assert status["NoNewPrivs"].strip() == "1"
    assert sorted(os.listdir(f"/proc/{pause}/fd")) == ["0", "1", "2"]
    # Root in the container cannot follow its links into the host's files (not dumpable).
    p = nsbox("exec", "paused", "--", "sh", "-c", "ls /proc/1/root/ || echo REFUSED", check=False)
    assert "REFUSED" in p.stdout and "Permission denied" in p.stderr, p


# ---------------------------------------------------------------- descriptors (CVE-2024-21626)


def no_host_directories(pid: int) -> None:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        assert not stat.S_ISDIR(os.stat(f"/proc/{pid}/fd/{fd}").st_mode), (pid, fd, os.readlink(f"/proc/{pid}/fd/{fd}"))


def test_processes_in_a_container_hold_only_stdio(nsbox):
    """The main process, the init, an exec'd process, a postStart hook and an exec probe."""
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: fds}
spec:
  containers:
  - name: main
    command: [sleep, "600"]
    lifecycle:
      postStart: {exec: {command: [sleep, "601"]}}
  - name: probed
    command: [sleep, "600"]
    livenessProbe:
      exec: {command: [sleep, "602"]}
      periodSeconds: 1
      timeoutSeconds: 60
      failureThreshold: 100
"""
    nsbox("apply", "-f", "-", input=manifest)
    hook = wait_for(lambda: sleep_process("601"), what="the postStart hook")[0]
    assert sleeping_fds(hook) == {0, 1, 2}
    main = nsbox.pid("fds", "main")
    probe = wait_for(lambda: sleep_process("602"), timeout=30, what="the exec probe")[0]
    assert sleeping_fds(probe) == {0, 1, 2}
    assert sleeping_fds(main) == {0, 1, 2}
    execd = nsbox.popen("exec", "fds", "-c", "probed", "--", "sleep", "603")
    try:
        pid = wait_for(lambda: sleep_process("603"), what="the exec'd process")[0]
        assert sleeping_fds(pid) == {0, 1, 2}
    finally:
        execd.kill()
        execd.wait()

    nsbox("delete", "pod", "fds", "--grace-period", "0", "--force")

    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: initc}
spec:
  initContainers:
  - {name: first, command: [sleep, "606"]}
  containers:
  - {name: c, command: [sleep, "600"]}
"""
    nsbox("apply", "-f", "-", input=manifest)
    assert sleeping_fds(wait_for(lambda: sleep_process("606"), what="the init container")[0]) == {0, 1, 2}

    nsbox("run", "init", "--init", "--", "sleep", "605")
    init = nsbox.pid("init")
    assert sleeping_fds(wait_for(lambda: children(init), what="the init's child")[0]) == {0, 1, 2}
    no_host_directories(init)
    assert sorted(os.listdir(f"/proc/{init}/fd")) == ["0", "1", "2"]


@pytest.fixture
def host_dir():
    """A host directory with a marker file in it: what an escape would land in."""
    d = tempfile.mkdtemp(prefix="nsbx-host-", dir="/tmp")
    marker = f"host-marker-{uuid.uuid4().hex[:8]}"
    open(os.path.join(d, marker), "w").close()
    yield d, marker
    shutil.rmtree(d)


# A magic link is refused (ELOOP); a descriptor the process does not have is not there (ENOENT).
REFUSED = "(Too many levels of symbolic links|No such file or directory)"


def with_dir_on_fds(d: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The nsbox CLI run with the host directory `d` open on every descriptor from 3 to 20."""
    wrapper = (
        "import os, sys\n"
        "d = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)\n"
        "for n in range(3, 21):\n"
        "    if n != d: os.dup2(d, n)\n"
        "os.set_inheritable(d, True)\n"
        "os.execv(sys.argv[2], sys.argv[2:])\n"
    )
    p = subprocess.run([sys.executable, "-c", wrapper, d, *NSBOX, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, p
    return p


def test_exec_in_a_working_directory_that_names_a_descriptor_never_lands_on_the_host(nsbox, host_dir):
    """The container turns its working directory into a link to /proc/self/fd/N, and `nsbox exec`
    (which starts there) is given a host directory on N."""
    d, marker = host_dir
    nsbox("run", "wd", "-w", "/w", "--", "sleep", "600")
    w = f"/proc/{nsbox.pid('wd')}/root/w"  # what the container's root could do, done from outside
    os.rmdir(w)
    for n in range(3, 21):
        os.symlink(f"/proc/self/fd/{n}", w)
        p = with_dir_on_fds(d, *nsbox.global_args, "exec", "wd", "--", "ls", "-a", check=False)
        assert marker not in p.stdout, p
        assert p.returncode == 1 and p.stderr.startswith("error:") and "/w" in p.stderr, p
        assert "Traceback" not in p.stderr, p
        os.unlink(w)


def test_a_working_directory_that_names_a_descriptor_is_a_start_error(nsbox, host_dir):
    d, marker = host_dir
    for n in (3, 4, 5, 8, 13, 20):
        p = with_dir_on_fds(
            d, *nsbox.global_args, "run", "-a", f"w{n}", "-w", f"/proc/self/fd/{n}", "--", "ls", "-a", check=False
        )
        assert marker not in p.stdout, p
        assert p.returncode == 1 and p.stderr.startswith("error:") and "Traceback" not in p.stderr, p
        assert re.search(f"of /proc/self/fd/{n} failed: {REFUSED}", p.stderr), p
    containers = "\n".join(
        f"  - {{name: c{n}, command: [ls, -a], workingDir: /proc/self/fd/{n}}}" for n in range(3, 21)
    )
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: wds}}
spec:
  restartPolicy: Never
  containers:
{containers}
"""
    p = subprocess.run(
        [*NSBOX, *nsbox.global_args, "apply", "-f", "-"], input=manifest, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p
    for n in range(3, 21):

        def refused(n: int = n) -> dict | None:
            st = nsbox.container_state("wds", f"c{n}")["state"]
            return st.get("terminated") or (st.get("waiting") if st.get("waiting", {}).get("message") else None)

        st = wait_for(refused, what=f"container c{n} to be refused")
        assert st.get("reason") in ("StartError", "CreateContainerError", "RunContainerError"), st
        assert re.search(f"of /proc/self/fd/{n} failed: {REFUSED}", st.get("message", "")), st
        assert marker not in nsbox("logs", "wds", "-c", f"c{n}", check=False).stdout


# ---------------------------------------------------------------- symlinks planted in volumes


def test_mount_targets_and_working_directory_never_follow_a_planted_link_out(nsbox, host_dir):
    """An init container plants links in an emptyDir where the next container's mount points
    (a directory, a file) and working directory will be made, pointing at a host directory."""
    d, marker = host_dir
    up = "../" * 12 + d.lstrip("/")
    manifest = f"""
apiVersion: v1
kind: Pod
metadata: {{name: planted}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: data, emptyDir: {{}}}}
  - {{name: two, emptyDir: {{}}}}
  initContainers:
  - name: plant
    command: [sh, -c, "ln -s {d} /data/sub && ln -s {d} /data/work && ln -s {up} /data/msg"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  containers:
  - name: app
    command: [sh, -c, "pwd; ls -a /data/sub/inner; ls -a; echo ran > /data/msg/log; sleep 600"]
    workingDir: /data/work/deeper
    terminationMessagePath: /data/msg/log
    volumeMounts:
    - {{name: data, mountPath: /data}}
    - {{name: two, mountPath: /data/sub/inner}}
"""
    nsbox("apply", "-f", "-", input=manifest)
    pid = nsbox.pid("planted", "app")
    logs = wait_for(lambda: nsbox("logs", "planted", "-c", "app").stdout.strip() or None, what="app's output")
    assert logs.splitlines()[0] == f"{d}/deeper", logs  # /data/work -> d, in the container's root
    assert marker not in logs
    # Inside the container's root: the links were followed as the container sees them.
    root = f"/proc/{pid}/root"
    assert os.path.isdir(f"{root}{d}/inner") and os.path.isdir(f"{root}{d}/deeper")

    def message() -> bool:  # the termination message file, bound through ../../..
        with open(f"{root}{d}/log") as f:
            return f.read() == "ran\n"

    wait_for(message, what="the app to write its termination message")
    assert os.readlink(f"/proc/{pid}/cwd") == f"{d}/deeper"
    assert sorted(os.listdir(d)) == [marker]


def test_a_link_planted_before_a_restart_is_followed_inside_the_root(nsbox, host_dir):
    """The container replaces the directory above its working directory, in its volume, with a
    link to a host directory and exits; restarted, its working directory is made again."""
    d, marker = host_dir
    plant = f"cd / && rm -rf /data/work && ln -s {d} /data/work && exit 1"
    manifest = f"""
apiVersion: v1
kind: Pod
metadata:
  name: again
  annotations: {{nsbox.io/backoff-base-seconds: "0.5", nsbox.io/backoff-max-seconds: "1"}}
spec:
  restartPolicy: Always
  volumes: [{{name: data, emptyDir: {{}}}}]
  containers:
  - name: app
    command: [sh, -c, "if [ -L /data/work ]; then pwd; exec sleep 600; fi; {plant}"]
    workingDir: /data/work/deeper
    volumeMounts: [{{name: data, mountPath: /data}}]
"""
    nsbox("apply", "-f", "-", input=manifest)
    wait_for(lambda: nsbox.container_state("again", "app")["restartCount"] >= 1, timeout=30, what="a restart")
    wait_for(lambda: nsbox.container_state("again", "app")["state"].get("running"), what="the restarted app")
    pid = nsbox.pid("again", "app")
    assert os.readlink(f"/proc/{pid}/cwd") == f"{d}/deeper"  # the link, followed inside its root
    assert os.path.isdir(f"/proc/{pid}/root{d}/deeper")
    assert sorted(os.listdir(d)) == [marker]


# ---------------------------------------------------------------- keyring


def test_the_hosts_session_keyring_is_out_of_reach(nsbox):
    """The CLI runs in a session keyring of the test's holding a key; the container must not see it.

    The default seccomp profile refuses keyctl altogether (test_seccomp.py); the container runs
    Unconfined here so that what is shown is the keyring it joined, not the filter.
    """
    name = f"nsbx-secret-{uuid.uuid4().hex[:8]}"
    wrapper = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.syscall(250, 1, sys.argv[1].encode()) > 0  # KEYCTL_JOIN_SESSION_KEYRING\n"
        "assert libc.syscall(248, b'user', sys.argv[1].encode(), b'secret', 6, -3) > 0  # add_key\n"
        "os.execv(sys.argv[2], sys.argv[2:])\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", wrapper, name, *NSBOX, *nsbox.global_args, "run", "--rm", "-a",
         "--seccomp-profile", "Unconfined", "keys", "--", "python3", "-c", SEARCH_SESSION_KEYRING, name],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    verdict = last_line(p)
    assert verdict.startswith("FAILED") and "ENOKEY" in verdict, p.stdout
    assert "session keyring" in p.stdout and name not in p.stdout.split("session keyring", 1)[1].splitlines()[0], p
