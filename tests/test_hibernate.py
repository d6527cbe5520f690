"""A quiet pod's watcher hibernates: it execs nsbox-idle (csrc/idle.c) in its own process
and execs the Python watcher back when something happens.

Observed from outside: /proc/PID/exe of the watcher's PID (status.json's), its memory,
its namespaces, the pod's logs and states as the CLI reports them. Each test first
waits until the watcher is nsbox-idle, so what follows is handled by the idle program
or by a Python watcher it woke.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest
from conftest import alive, cgroup_dirs, ns_inode, wait_for

pytestmark = pytest.mark.cgroupv2  # every watcher hibernates: worth running on pure v2 too
IDLE = 20.0  # seconds to wait for a watcher to hibernate (it does after 0.5 s quiet)


def exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except FileNotFoundError:
        return ""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def idle_watcher(nsbox, pod: str) -> int:
    """The PID of the pod's watcher, once it is nsbox-idle."""
    wpid = nsbox.inspect(pod)["watcher"]["pid"]
    wait_for(lambda: exe(wpid) == "nsbox-idle", timeout=IDLE, what=f"watcher {wpid} to hibernate")
    return wpid


def trigger_pod(
    nsbox, tmp_path, name: str, script: str, restart: str = "Never", annotations: str = "", spec_extra: str = ""
) -> None:
    """A pod whose container runs `script`; the test's tmp_path is /t inside it."""
    nsbox(
        "apply",
        "-f",
        "-",
        input=f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 5
{spec_extra}  containers:
  - name: c
    command: ["sh", "-c", {script!r}]
    volumeMounts: [{{name: t, mountPath: /t}}]
  volumes:
  - name: t
    hostPath: {{path: {str(tmp_path)!r}}}
""".replace("'", '"'),
    )


def test_a_quiet_watcher_becomes_nsbox_idle_and_keeps_the_pod(nsbox):
    nsbox("run", "quiet", "--", "sleep", "300")
    wpid = idle_watcher(nsbox, "quiet")
    c = nsbox.pid("quiet")
    assert ns_inode(wpid, "net") == ns_inode(c, "net")  # it still holds the pod's namespaces
    assert ns_inode(wpid, "ipc") == ns_inode(c, "ipc")
    assert rss_kib(wpid) < 2048, f"nsbox-idle RSS {rss_kib(wpid)} KiB"
    pod = nsbox.pod("quiet")
    assert pod["status"]["phase"] == "Running"  # its flock is held across exec: alive
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    start = time.monotonic()
    nsbox("delete", "pod", "quiet", "--grace-period", "0")
    assert time.monotonic() - start < 10
    wait_for(lambda: not os.path.exists(f"/proc/{wpid}"), what="watcher to end")


def test_output_while_idle_is_logged_and_an_exit_wakes_the_watcher(nsbox, tmp_path):
    trigger_pod(
        nsbox,
        tmp_path,
        "talk",
        "echo before; while [ ! -e /t/go ]; do sleep 0.05; done; "
        "echo after; printf partial; while [ ! -e /t/end ]; do sleep 0.05; done; exit 3",
    )
    wpid = idle_watcher(nsbox, "talk")
    (tmp_path / "go").touch()
    wait_for(lambda: "after" in nsbox("logs", "talk").stdout, what="output written while idle")
    assert exe(wpid) == "nsbox-idle"  # nsbox-idle copied it, nothing woke
    (tmp_path / "end").touch()
    wait_for(lambda: "terminated" in nsbox.container_state("talk")["state"], what="the exit to be recorded")
    assert nsbox.container_state("talk")["state"]["terminated"]["exitCode"] == 3
    # The line without a newline was flushed when the watcher woke; `logs` joins nothing to it.
    assert nsbox("logs", "talk").stdout == "before\nafter\npartial"
    assert idle_watcher(nsbox, "talk") == wpid  # and it hibernates again


def test_a_container_added_to_an_idle_pod_is_started_and_logged(nsbox, tmp_path):
    trigger_pod(nsbox, tmp_path, "host", "exec sleep 300")
    wpid = idle_watcher(nsbox, "host")
    nsbox(
        "run",
        "late",
        "--pod",
        "host",
        "--mount",
        "t:/t",
        "--",
        "sh",
        "-c",
        "echo added; while [ ! -e /t/go ]; do sleep 0.05; done; echo again; exec sleep 300",
    )
    assert "running" in nsbox.container_state("host", "late")["state"]
    assert idle_watcher(nsbox, "host") == wpid
    (tmp_path / "go").touch()
    wait_for(
        lambda: nsbox("logs", "host", "-c", "late").stdout == "added\nagain\n", what="the added container's output"
    )


def test_a_restart_back_off_runs_out_while_the_watcher_is_idle(nsbox, tmp_path):
    trigger_pod(nsbox, tmp_path, "crash", "exit 1", restart="Always", annotations='nsbox.io/backoff-base-seconds: "3"')
    wpid = nsbox.inspect("crash")["watcher"]["pid"]
    seen_idle_in_back_off = False
    deadline = time.monotonic() + 40

    def restarts() -> int:
        return nsbox.pod("crash")["status"]["containerStatuses"][0]["restartCount"]

    while restarts() < 2:
        assert time.monotonic() < deadline, "timed out waiting for two restarts"
        seen_idle_in_back_off |= exe(wpid) == "nsbox-idle"
        time.sleep(0.1)
    assert seen_idle_in_back_off


def test_the_active_deadline_comes_while_the_watcher_is_idle(nsbox, tmp_path):
    trigger_pod(nsbox, tmp_path, "late", "exec sleep 300", spec_extra="  activeDeadlineSeconds: 3\n")
    idle_watcher(nsbox, "late")
    status = wait_for(
        lambda: (s := nsbox.pod("late")["status"])["phase"] == "Failed" and s, timeout=30, what="DeadlineExceeded"
    )
    assert status["reason"] == "DeadlineExceeded"


def test_an_idle_watcher_that_is_killed_is_replaced_by_the_next_command(nsbox):
    nsbox("run", "orphan", "--", "sleep", "300")
    wpid = idle_watcher(nsbox, "orphan")
    os.kill(wpid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{wpid}"), what="the watcher to die")
    nsbox("delete", "pod", "orphan", "--grace-period", "0")
    assert "orphan" not in nsbox("get", "pods").stdout


def test_an_idle_watcher_ends_its_pod_when_the_pod_state_is_wiped(nsbox):
    nsbox("run", "amnesia", "--", "sleep", "300")
    uid, pid = nsbox.uid("amnesia"), nsbox.pid("amnesia")
    wpid = idle_watcher(nsbox, "amnesia")
    for sub in ("pods", "names", "logs"):  # a reboot-like loss of the root's state
        shutil.rmtree(os.path.join(nsbox.root, sub))
    # nsbox-idle checks every 2 s and wakes the watcher, which ends what nobody can manage any more.
    wait_for(lambda: not alive(pid), timeout=15, what="the container to be killed")
    wait_for(lambda: not alive(wpid), timeout=10, what="the watcher to end")
    wait_for(lambda: not cgroup_dirs(uid), timeout=10, what="the cgroups to go")
