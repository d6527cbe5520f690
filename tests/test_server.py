"""The warm command server (docs/design.md §11): what it runs is what the command would have
done on its own, it runs it with the caller's descriptors, and it is never needed.

Each test has a server directory of its own and stops its servers at the end. The whole suite
also runs through servers (NSBOX_SERVER=1, CI's second pass): that is the "identical results"
proof; these tests check what only the server path has.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import threading

import pytest
from conftest import NSBOX, cgroup_pids, root_cgroups, server_pid, stop_servers, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLEEP = ["sleep", "1000"]


@pytest.fixture
def served(nsbox):
    """(nsbox, run): `run(*args, server=...)` runs a command with NSBOX_SERVER set as asked,
    against a private server directory (`run.popen` starts one and leaves it running); the
    servers started there are stopped afterwards."""
    directory = tempfile.mkdtemp(prefix="nsbox-srv-")
    env = dict(os.environ, NSBOX_SERVER_DIR=directory, NSBOX_SERVER="1")

    def run(*args, server="1", input=None, cwd=None, extra=None, check=True):
        p = subprocess.run(
            NSBOX + ["--root", nsbox.root, *args],
            env={**env, "NSBOX_SERVER": server, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=60,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            cwd=cwd,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"nsbox {args} exited {p.returncode}: {p.stderr}")
        return p

    def popen(*args, server="1"):
        """The command left running (binary pipes for stdout and stderr)."""
        return subprocess.Popen(
            NSBOX + ["--root", nsbox.root, *args],
            env={**env, "NSBOX_SERVER": server},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )

    run.dir, run.env, run.popen = directory, env, popen
    try:
        yield nsbox, run
    finally:
        stop_servers(directory)
        shutil.rmtree(directory, ignore_errors=True)


def lock_and_log(directory: str) -> tuple[str, str]:
    """The files of the one server of `directory` (started in the background: waited for; it
    takes its lock before it opens its log, nsbox/server.py `main`)."""

    def both() -> tuple[str, str] | None:
        locks = glob.glob(os.path.join(directory, "*.lock"))
        if len(locks) != 1:
            return None
        log = locks[0][: -len(".lock")] + ".log"
        return (locks[0], log) if os.path.exists(log) else None

    return wait_for(both, timeout=30, what="the server's lock and log")


def started(run) -> int:
    """Start the server (explicitly) and return its PID."""
    assert run("server", "start").stdout.startswith("running (pid ")
    lock, _ = lock_and_log(run.dir)
    return wait_for(lambda: server_pid(lock), what="the server's lock")


def server_log(run) -> str:
    _, log = lock_and_log(run.dir)
    with open(log) as f:
        return f.read()


def served_count(run) -> int:
    _, log = lock_and_log(run.dir)
    with open(log) as f:
        return sum(line.rstrip().endswith(": running") for line in f)


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def titled_as_server(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().startswith(b"nsbox-server ")
    except FileNotFoundError:
        return False


def forks(server: int) -> list[int]:
    """The server's forks that took a command (retitled `nsbox ARGS`), not the spare waiting for the next."""
    return [c for c in children(server) if not titled_as_server(c)]


def spares(server: int) -> list[int]:
    return [c for c in children(server) if titled_as_server(c)]


def the_spare(run, server: int) -> int:
    """The spare fork of a server `started` just now. The fork that took `server start`'s probe
    connection is titled as the server too until it is reaped; the spare after it was forked
    when it took that connection, so once the log says the probe's fork exited, the one titled
    child left is the spare."""

    def find() -> int:
        ended = {int(pid) for pid in re.findall(r"command (\d+) exited", server_log(run))}
        found = [c for c in spares(server) if c not in ended]
        return found[0] if ended and len(found) == 1 else 0

    return wait_for(find, what="the spare fork")


def test_the_next_commands_fork_is_made_before_it_comes(served):
    """A spare fork waits in accept() for the next command (docs/design.md §11): a command
    runs in the fork that was there before it, and the server makes the next one."""
    nsbox, run = served
    master = started(run)
    spare = the_spare(run, master)
    run("version")
    assert f"command {spare}: running" in server_log(run)
    wait_for(lambda: [c for c in spares(master) if c != spare], what="the next spare")
    wait_for(lambda: spare not in children(master), what="the fork that ran the command to be reaped")


def test_a_command_runs_in_a_fork_of_the_server_with_the_callers_descriptors(served):
    nsbox, run = served
    master = started(run)
    run("pod", "create", "web")
    run("run", "app", "--pod", "web", "--", "sh", "-c", "echo ready; exec sleep 1000")
    wait_for(lambda: "ready" in run("logs", "web", "-c", "app").stdout, what="the container's output")
    before = served_count(run)
    follower = run.popen("logs", "-f", "web", "-c", "app")
    try:
        assert follower.stdout.readline() == b"ready\n"
        (worker,) = wait_for(lambda: forks(master), what="the server's fork")
        with open(f"/proc/{worker}/cmdline", "rb") as f:
            assert f.read().startswith(b"nsbox --root"), "the fork runs the command"
        # Its output is the caller's own pipe, passed over the socket, not a copy relayed by it.
        assert os.stat(f"/proc/{worker}/fd/1").st_ino == os.fstat(follower.stdout.fileno()).st_ino
        assert os.readlink(f"/proc/{worker}/cwd") == os.getcwd()
        # ^C reaches the caller; it is forwarded, and the command ends as `logs -f` does on ^C.
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 130
    finally:
        follower.kill()
        follower.wait()
    assert served_count(run) == before + 1
    cold = run.popen("logs", "-f", "web", "-c", "app", server="0")
    assert cold.stdout.readline() == b"ready\n"
    cold.send_signal(signal.SIGINT)
    assert cold.wait(timeout=30) == 130, "the same without the server"
    cold.stdout.close()
    cold.stderr.close()


def imported_modules(argv: list[str], env: dict[str, str]) -> set[str]:
    """What a Python command imports, start-up included (-X importtime)."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=True)
    return {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}


def test_a_served_command_imports_only_c_modules_beyond_the_interpreters_start_up(served):
    """The client half runs before every command (nsbox/client.py): through a warm server it
    adds to a bare `python -I -S` only itself and C modules — no `os`, no `socket`."""
    nsbox, run = served
    lean = [sys.executable, "-I", "-S", "-X", "importtime"]
    # -I -S leave the repository and the packages off sys.path: put there, as the launcher does
    path = f"sys.path[:0] = [{REPO!r}]; sys.path += {site.getsitepackages()!r}"
    boot = f"import sys; {path}; from nsbox.client import main; main()"
    command = [*lean, "-c", boot, "--root", nsbox.root, "version"]
    imported_modules(command, run.env)  # no server for this identity yet: runs here, starts one

    def served_imports() -> set[str] | None:
        before = served_count(run)
        modules = imported_modules(command, run.env)
        return modules if served_count(run) > before else None

    imported = wait_for(served_imports, timeout=30, what="the command to be served")
    bare = imported_modules([*lean, "-c", "pass"], run.env)
    assert imported - bare == {"nsbox", "nsbox.client", "_socket", "zlib", "resource"}


def test_results_are_the_same_with_and_without_the_server(served, tmp_path):
    nsbox, run = served
    started(run)
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: fromfile}\n"
        "spec: {containers: [{name: c, image: busybox, command: [sleep, '1000']}]}\n"
    )
    cases = [
        (["version"], None, None, None),
        (["get", "pods"], None, None, None),
        (["get", "pods", "-o", "json"], None, None, None),
        (["get", "pod", "nope"], None, None, None),  # error: one line, exit 1
        (["get", "pods", "-n", "../x"], None, None, None),
        (["frobnicate"], None, None, None),  # usage error, exit 2
        (["run", "--help"], None, None, None),
        (["run", "--rm", "-a", "once", "--", "sh", "-c", "echo out; echo err >&2; exit 7"], None, None, None),
        (["run", "--rm", "-i", "-a", "cat", "--", "cat"], "through stdin\n", None, None),
        (["run", "--rm", "-a", "env", "--", "sh", "-c", "echo $PWD; umask"], None, None, None),
        # relative to the caller's working directory (`-m nsbox` needs the repository as its cwd)
        (["apply", "-f", os.path.relpath(manifest, REPO), "--dry-run=client", "-o", "yaml"], None, REPO, None),
        (["get", "pods"], None, None, {"COLUMNS": "40"}),
    ]
    for args, stdin, cwd, extra in cases:
        before = served_count(run)
        warm = run(*args, input=stdin, cwd=cwd, extra=extra, check=False)
        assert served_count(run) == before + 1, f"{args} was not served: {warm.stderr}\n{server_log(run)}"
        cold = run(*args, server="0", input=stdin, cwd=cwd, extra=extra, check=False)
        assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr), args
    assert run("get", "pod", "nope", check=False).returncode == 1
    assert run("frobnicate", check=False).returncode == 2


def test_environment_umask_and_limits_are_the_callers(served, tmp_path):
    nsbox, run = served
    started(run)
    script = "ulimit -n; umask; echo $MARK"
    command = f"{' '.join(NSBOX)} run --rm -a lim -- sh -c '{script}'"
    shell = f"ulimit -n 777; umask 0027; MARK=caller NSBOX_ROOT={nsbox.root} exec {command}"
    outputs = {}
    for mode in ("1", "0"):
        before = served_count(run)
        p = subprocess.run(
            ["bash", "-c", shell],
            env={**run.env, "NSBOX_SERVER": mode},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )
        assert p.returncode == 0, p.stderr
        assert served_count(run) == before + (mode == "1"), f"{p.stderr}\n{server_log(run)}"
        outputs[mode] = p.stdout
    # The container inherits the open-files limit through the CLI and the watcher it forks;
    # the container's own umask and environment are its spec's, not the caller's.
    assert outputs["1"] == outputs["0"]
    assert outputs["1"].split()[0] == "777"


def test_a_changed_module_is_not_served_and_the_server_makes_way(served, tmp_path):
    """A server runs the modules it imported: once one of their files changes it serves
    nothing more (the command runs cold, with the new code) and exits."""
    nsbox, run = served
    tree = tmp_path / "tree"
    shutil.copytree(os.path.join(REPO, "nsbox"), tree / "nsbox", ignore=shutil.ignore_patterns("__pycache__"))

    def in_copy(*args, mode="1"):
        return subprocess.run(
            NSBOX + ["--root", nsbox.root, *args],
            env={**run.env, "NSBOX_SERVER": mode},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tree,
            stdin=subprocess.DEVNULL,
            check=True,
        )

    in_copy("version")  # cold; starts a server for the copy's identity
    lock, log = lock_and_log(run.dir)
    pid = wait_for(lambda: server_pid(lock), timeout=30, what="the copy's server")
    wait_for(lambda: os.path.exists(lock[:-5] + ".sock"), what="its socket")
    before = served_count(run)
    assert in_copy("version").stdout.startswith("nsbox ")
    assert served_count(run) == before + 1
    cli = tree / "nsbox" / "cli" / "system.py"
    cli.write_text(cli.read_text().replace('print(f"nsbox {__version__}")', 'print(f"nsbox {__version__} (changed)")'))
    assert in_copy("version", mode="").stdout.startswith("nsbox 0.1.0 (changed)\n"), "the new code ran"
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30, what="the stale server to exit")
    with open(log) as f:
        assert f"{cli} changed: exiting" in f.read()


def test_a_caller_in_another_mount_namespace_is_refused_and_runs_the_command_itself(served):
    nsbox, run = served
    started(run)
    before = served_count(run)
    p = subprocess.run(
        ["unshare", "-m", "--propagation", "unchanged", *NSBOX, "--root", nsbox.root, "version"],
        env=run.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0 and p.stdout.startswith("nsbox "), p.stderr
    _, log = lock_and_log(run.dir)
    with open(log) as f:
        refusals = [line for line in f if "refused a command from pid" in line]
    assert refusals and refusals[-1].rstrip().endswith(": mnt namespace"), server_log(run)
    assert served_count(run) == before


def test_root_does_not_hand_its_descriptors_to_a_socket_in_a_directory_others_control(nsbox, tmp_path):
    """A directory that is not root's alone (here: another user's) is never trusted, even
    with a listening socket of the right name in it."""
    directory = tmp_path / "servers"
    directory.mkdir()

    def nsbox_with(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """The CLI with its server directory in `directory`."""
        return subprocess.run(
            [*NSBOX, *args],
            env=dict(os.environ, NSBOX_SERVER_DIR=str(directory), **env),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )

    probe = nsbox_with("server", "status")
    assert probe.stdout.startswith("not running")
    # the name the client will look for: ask it the way it computes it
    name = subprocess.run(
        [sys.executable, "-c", "from nsbox import client; print(client.socket_name(client.identity()))"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout.strip()
    os.chown(directory, 65534, 65534)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(directory / f"{name}.sock"))
    listener.listen(1)
    listener.settimeout(0.2)
    connected = []

    def accept():
        try:
            connected.append(listener.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    p = nsbox_with("--root", nsbox.root, "version", NSBOX_SERVER="1")
    t.join()
    listener.close()
    assert p.returncode == 0 and p.stdout.startswith("nsbox ")
    assert not connected, "the client connected to a socket in a directory root does not own alone"
    assert sorted(os.listdir(directory)) == [f"{name}.sock"], "and started no server there"
    refused = nsbox_with("server", "start")
    assert refused.returncode == 1 and refused.stderr == (
        f"error: {directory}: not a directory that root alone can write in (the command server's)\n"
    )
    assert sorted(os.listdir(directory)) == [f"{name}.sock"]


def test_pods_outlive_the_server_and_hold_none_of_its_descriptors(served):
    nsbox, run = served
    master = started(run)
    run("run", "survivor", "--", *SLEEP)
    watcher = nsbox.inspect("survivor")["watcher"]["pid"]
    server_sockets = {os.readlink(f"/proc/{master}/fd/{fd}") for fd in os.listdir(f"/proc/{master}/fd")}
    server_sockets = {link for link in server_sockets if link.startswith("socket:")}
    assert server_sockets, "the server's listening socket"
    held = {os.readlink(f"/proc/{watcher}/fd/{fd}") for fd in os.listdir(f"/proc/{watcher}/fd")}
    assert not held & server_sockets, "the watcher holds a descriptor of the server"
    spare = the_spare(run, master)
    os.kill(master, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{master}"), what="the server to die")
    wait_for(lambda: not os.path.exists(f"/proc/{spare}"), what="its spare to die with it (no one takes commands)")
    assert os.path.exists(f"/proc/{watcher}")
    assert nsbox.pod("survivor")["status"]["phase"] == "Running"
    p = run("exec", "survivor", "--", "echo", "alive")  # no server answers now: it runs cold
    assert p.stdout == "alive\n"


@contextlib.contextmanager
def exec_in_server(served):
    """(caller, fork, server): an `exec -- sleep 1000` the server runs, once its process runs in the pod
    (not before: a fork that dies before it took the command on is a refusal, and the caller
    would run the command itself). The caller is killed afterwards."""
    nsbox, run = served
    master = started(run)
    run("run", "target", "--", *SLEEP)
    caller = run.popen("exec", "target", "--", "sleep", "1000")
    try:
        (fork,) = wait_for(lambda: forks(master), what="the server's fork")
        wait_for(lambda: len(sleeps(nsbox.root)) == 2, timeout=30, what="the exec'd process")
        yield caller, fork, master
    finally:
        caller.kill()
        caller.wait()


def test_a_command_killed_in_the_server_kills_its_caller_with_the_same_signal(served):
    with exec_in_server(served) as (caller, fork, _):
        os.kill(fork, signal.SIGKILL)
        assert caller.wait(timeout=30) == -signal.SIGKILL, caller.stderr.read()


def test_a_command_whose_caller_is_killed_is_killed_too(served):
    """SIGKILL cannot be forwarded: the server sees the caller's end of the socket close and
    kills the fork, as the command would have died with its process without a server."""
    with exec_in_server(served) as (caller, fork, master):
        caller.kill()
        caller.wait()
        wait_for(lambda: fork not in children(master), timeout=30, what="the fork to be killed")


def sleeps(root: str) -> set[int]:
    """The `sleep 1000` processes of the root's pods (each is in every hierarchy of a v1 host)."""
    found = set()
    for d in root_cgroups(root):
        for pid in cgroup_pids(d):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == b"sleep\x001000\x00":
                    found.add(pid)
    return found


def test_the_server_stops_when_idle_and_on_request(served):
    nsbox, run = served
    run("version", extra={"NSBOX_SERVER_IDLE": "1"})  # cold, and starts a server that idles out after 1 s
    lock, log = lock_and_log(run.dir)
    pid = wait_for(lambda: server_pid(lock), timeout=30, what="the server")
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=30, what="the idle server to exit")
    assert not glob.glob(os.path.join(run.dir, "*.sock")), "its socket is gone"
    with open(log) as f:
        assert "idle: exiting" in f.read()
    pid = started(run)
    spare = the_spare(run, pid)
    assert run("server", "status").stdout.startswith(f"running (pid {pid}")
    assert run("server", "stop").stdout == f"stopped (pid {pid})\n"
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="the stopped server to exit")
    assert not os.path.exists(f"/proc/{spare}"), "its spare is gone (the server reaped it)"
    assert run("server", "status").stdout == "not running\n"
    assert not glob.glob(os.path.join(run.dir, "*.sock"))
