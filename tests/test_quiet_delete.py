"""Deleting a quiet pod without waking Python (issue 18; docs/design.md §3, "Ending a quiet
pod"): a hibernated watcher (nsbox-idle) whose pod needs no Python to end carries out the
`delete` itself, and the deleting CLI tears the pod down.

Observed from outside: /proc/PID/exe of the watcher's PID, polled from before the delete
until the PID is gone (a Python wake-up is an exec of python for at least the ≈ 30 ms of
its start-up, seen by a poll every millisecond); nsbox-idle's command line (what Python
decided at hibernation); files the containers' traps write; the container's PID; and the
fixture's leftover check (state, names, logs, mounts, cgroups).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time

import pytest
from conftest import alive, leftovers, wait_for

IDLE = 20.0  # seconds to wait for a watcher to hibernate (it does after 0.5 s quiet)
# Logs each SIGTERM to /t/term, then exits 0 (or, IGNORING, carries on until SIGKILL).
EXITS_ON_TERM = "trap 'echo TERM >> /t/term; exit 0' TERM; sleep 1000000 & wait"
IGNORES_TERM = "trap 'echo TERM >> /t/term' TERM; sleep 1000000 & while :; do wait; done"
USERNS_POOL = "/run/nsbox-userns/ranges"  # nsbox/userns.py's host-wide pool, one file per range taken
TRAP_EXIT = "trap 'exit 0' TERM; sleep 1000000 & wait"  # the bench's container (no volume)


def exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except (FileNotFoundError, ProcessLookupError):
        return ""


class ExeWatch:
    """Every program the process `pid` runs, from now until it is gone: /proc/PID/exe, polled
    every millisecond on a thread."""

    def __init__(self, pid: int):
        self.pid = pid
        self.seen: set[str] = set()
        self.gone = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            name = exe(self.pid)
            if not name and not alive(self.pid):  # gone, or a zombie for its parent to reap
                self.gone.set()
                return
            if name:
                self.seen.add(name)
            time.sleep(0.001)

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.seen


def pod_yaml(name: str, tmp_path, script: str, grace: int = 5, pre_stop: str = "") -> str:
    hook = f"\n    lifecycle: {{preStop: {{exec: {{command: [sh, -c, {json.dumps(pre_stop)}]}}}}}}" if pre_stop else ""
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: c
    command: [sh, -c, {json.dumps(script)}]
    volumeMounts: [{{name: t, mountPath: /t}}]{hook}
  volumes:
  - name: t
    hostPath: {{path: {json.dumps(str(tmp_path))}}}
"""


def idle_argv(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode().split("\0")


def idle_watcher(nsbox, name: str) -> int:
    """The PID of the pod's watcher, once it runs nsbox-idle with its arguments in place (an
    exec shows the new /proc/PID/exe a moment before the new command line)."""
    wpid = nsbox.inspect(name)["watcher"]["pid"]
    wait_for(
        lambda: exe(wpid) == "nsbox-idle" and idle_argv(wpid)[0] != "",
        timeout=IDLE,
        what=f"watcher {wpid} to hibernate",
    )
    return wpid


def quiet_pod(nsbox, tmp_path, name: str, script: str, **kw) -> tuple[int, int]:
    """(watcher PID, container PID) of a new pod, once its watcher is nsbox-idle."""
    nsbox("apply", "-f", "-", input=pod_yaml(name, tmp_path, script, **kw))
    cpid = nsbox.pid(name)
    return idle_watcher(nsbox, name), cpid


def terms(tmp_path) -> int:
    try:
        return (tmp_path / "term").read_text().count("TERM")
    except FileNotFoundError:
        return 0


def test_a_quiet_pod_is_deleted_without_python_running_again_in_its_watcher(nsbox, tmp_path):
    wpid, cpid = quiet_pod(nsbox, tmp_path, "q", EXITS_ON_TERM)
    assert "--end" in idle_argv(wpid)  # Python decided, at hibernation, that it may end without it
    watch = ExeWatch(wpid)
    t0 = time.monotonic()
    out = nsbox("delete", "pod", "q").stdout
    took = time.monotonic() - t0
    seen = watch.stop()
    assert out == 'pod "q" deleted\n'
    assert seen == {"nsbox-idle"}, f"the watcher ran {seen}"
    assert not alive(wpid)  # nsbox-idle ended once it had handed the teardown over
    assert terms(tmp_path) == 1  # the container got SIGTERM and ended on it
    assert not alive(cpid)
    assert took < 5, f"delete took {took:.1f} s"  # not the 5 s grace period: it ended on SIGTERM
    assert nsbox("get", "pods", "q", check=False).returncode == 1
    assert leftovers(nsbox.root) == []


def test_a_container_that_ignores_sigterm_gets_sigkill_at_the_end_of_the_grace_period(nsbox, tmp_path):
    wpid, cpid = quiet_pod(nsbox, tmp_path, "stubborn", IGNORES_TERM, grace=3)
    watch = ExeWatch(wpid)
    t0 = time.monotonic()
    first = nsbox.popen("delete", "pod", "stubborn")
    wait_for(lambda: terms(tmp_path) == 1, what="SIGTERM to reach the container")
    # A second delete meanwhile waits for the same end, as it does with a Python watcher.
    second = nsbox.popen("delete", "pod", "stubborn")
    wait_for(lambda: not alive(cpid), timeout=15, what="the container to be killed")
    killed_after = time.monotonic() - t0
    outs = [p.communicate(timeout=30) for p in (first, second)]
    seen = watch.stop()
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    assert [o for o, _ in outs] == ['pod "stubborn" deleted\n'] * 2
    assert seen == {"nsbox-idle"}, f"the watcher ran {seen}"
    assert killed_after >= 3 - 0.2, f"SIGKILL after {killed_after:.2f} s, before the grace period ended"
    assert killed_after < 3 + 5, f"SIGKILL only after {killed_after:.2f} s"
    assert terms(tmp_path) == 1  # one SIGTERM, then SIGKILL
    assert leftovers(nsbox.root) == []


def test_a_force_delete_of_a_quiet_pod_frees_the_name_and_kills_two_seconds_after_sigterm(nsbox, tmp_path):
    wpid, cpid = quiet_pod(nsbox, tmp_path, "f", IGNORES_TERM, grace=30)
    watch = ExeWatch(wpid)
    t0 = time.monotonic()
    p = nsbox("delete", "pod", "f", "--force", "--grace-period", "0")
    took = time.monotonic() - t0
    seen = watch.stop()
    assert p.stdout == 'pod "f" force deleted\n'
    assert "warning: Immediate deletion" in p.stderr
    assert seen == {"nsbox-idle"}, f"the watcher ran {seen}"
    assert terms(tmp_path) == 1 and not alive(cpid)
    assert 2 - 0.2 <= took < 2 + 5, f"force delete took {took:.2f} s (SIGKILL is due 2 s after SIGTERM)"
    assert leftovers(nsbox.root) == []


def test_the_stop_signal_python_resolved_is_what_nsbox_idle_sends(nsbox, tmp_path):
    script = "trap 'echo USR1 >> /t/term; exit 0' USR1; trap 'echo TERM >> /t/term' TERM; sleep 1000000 & wait"
    manifest = pod_yaml("sig", tmp_path, script).replace("spec:\n", "spec:\n  os: {name: linux}\n")
    manifest = manifest.replace("    volumeMounts", "    lifecycle: {stopSignal: SIGUSR1}\n    volumeMounts")
    nsbox("apply", "-f", "-", input=manifest)
    cpid = nsbox.pid("sig")
    wpid = idle_watcher(nsbox, "sig")
    assert f"{cpid}:10" in idle_argv(wpid)  # --stop PID:SIGUSR1
    watch = ExeWatch(wpid)
    nsbox("delete", "pod", "sig")
    assert watch.stop() == {"nsbox-idle"}
    assert (tmp_path / "term").read_text() == "USR1\n" and not alive(cpid)
    assert leftovers(nsbox.root) == []


def test_a_pod_with_a_prestop_hook_still_wakes_python_which_runs_the_hook(nsbox, tmp_path):
    wpid, cpid = quiet_pod(nsbox, tmp_path, "hooked", EXITS_ON_TERM, pre_stop="echo hook > /t/prestop")
    assert "--end" not in idle_argv(wpid)  # a hook is Python's to run
    watch = ExeWatch(wpid)
    nsbox("delete", "pod", "hooked")
    seen = watch.stop()
    assert any(name.startswith("python") for name in seen), f"the watcher ran {seen}"
    assert (tmp_path / "prestop").read_text() == "hook\n"
    assert terms(tmp_path) == 1 and not alive(cpid)
    assert leftovers(nsbox.root) == []


def test_a_delete_that_hangs_up_is_finished_by_python_woken_in_the_watcher(nsbox, tmp_path):
    # `--wait=false`: nobody to hand the teardown to, so nsbox-idle execs Python for it.
    wpid, cpid = quiet_pod(nsbox, tmp_path, "nowait", EXITS_ON_TERM)
    watch = ExeWatch(wpid)
    assert nsbox("delete", "pod", "nowait", "--wait=false").stdout == 'pod "nowait" deleted\n'
    wait_for(lambda: not alive(wpid), timeout=30, what="the watcher to end")
    seen = watch.stop()
    assert any(name.startswith("python") for name in seen), f"the watcher ran {seen}"
    assert terms(tmp_path) == 1 and not alive(cpid)
    wait_for(lambda: nsbox("get", "pods", "nowait", check=False).returncode == 1, what="the pod to go")
    assert leftovers(nsbox.root) == []


@pytest.mark.parametrize("finisher", [("delete", "pod", "k"), ("gc",), ("get", "pods")])
def test_a_cli_killed_after_taking_the_teardown_leaves_a_pod_the_next_command_finishes(nsbox, tmp_path, finisher):
    wpid, cpid = quiet_pod(nsbox, tmp_path, "k", IGNORES_TERM, grace=2)
    pod_dir = os.path.join(nsbox.root, "pods", nsbox.uid("k"))
    # A deleting CLI, speaking nsbox/deletion.py's protocol, that dies as soon as it has been
    # handed the teardown (its descriptors close with it: the watcher's lock is free).
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cli.settimeout(30)
    cli.connect(os.path.join(pod_dir, "ctl"))
    cli.send(json.dumps({"op": "delete", "grace": 2, "force": False}).encode())
    assert json.loads(cli.recv(4096)) == {"ok": True}
    # A real delete records the deletion (deletion.json) and leaves at once.
    nsbox("delete", "pod", "k", "--wait=false")
    msg, fds, _, _ = socket.recv_fds(cli, 4096, 3)
    assert json.loads(msg) == {"teardown": True} and len(fds) >= 2
    for fd in fds:
        os.close(fd)
    cli.close()
    assert not alive(cpid), "handed over before its container ended"
    wait_for(lambda: not alive(wpid), what="nsbox-idle to end after the hand-over")
    # Half-ended: the state is there, nobody holds the watcher's lock.
    assert os.path.exists(os.path.join(pod_dir, "deletion.json"))
    with open(os.path.join(pod_dir, "watcher.lock")) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    out = nsbox(*finisher).stdout
    if finisher[0] == "delete":
        assert out == 'pod "k" deleted\n'
    wait_for(lambda: leftovers(nsbox.root) == [], timeout=30, what="the pod to be finished")
    assert nsbox("get", "pods", "k", check=False).returncode == 1


def test_requests_other_than_delete_still_reach_python(nsbox, tmp_path):
    # nsbox-idle accepts the connection to look at the request; one it does not answer
    # (adding a container) goes to the Python watcher it wakes, unread.
    wpid, _ = quiet_pod(nsbox, tmp_path, "grow", EXITS_ON_TERM)
    nsbox("run", "late", "--pod", "grow", "--", "sleep", "300")
    late = nsbox.pid("grow", "late")
    assert alive(late)
    assert idle_watcher(nsbox, "grow") == wpid  # hibernated again
    watch = ExeWatch(wpid)
    nsbox("delete", "pod", "grow")
    assert watch.stop() == {"nsbox-idle"}
    assert not alive(late) and terms(tmp_path) == 1
    assert leftovers(nsbox.root) == []


def test_delete_all_of_quiet_pods_overlaps_their_ends(nsbox, tmp_path):
    # Five pods that ignore SIGTERM for a 2 s grace period: one after another would take 10 s.
    watchers = [quiet_pod(nsbox, tmp_path, f"m{i}", IGNORES_TERM, grace=2)[0] for i in range(5)]
    watches = [ExeWatch(w) for w in watchers]
    t0 = time.monotonic()
    out = nsbox("delete", "pod", "--all").stdout
    took = time.monotonic() - t0
    assert sorted(out.splitlines()) == [f'pod "m{i}" deleted' for i in range(5)]
    assert all(w.stop() == {"nsbox-idle"} for w in watches)
    assert 2 - 0.2 <= took < 2 + 5, f"delete --all took {took:.1f} s"
    assert leftovers(nsbox.root) == []


def test_an_image_pod_ended_quietly_gives_its_image_back(nsbox_images, busybox_image):
    # The teardown in the CLI releases the pod's image lease as the watcher's would.
    n = nsbox_images
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "img"},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "app", "image": busybox_image.ref, "command": ["sh", "-c", TRAP_EXIT]}],
        },
    }
    n("apply", "-f", "-", input=json.dumps(manifest))
    cpid = n.pid("img")
    wpid = idle_watcher(n, "img")
    assert "--end" in idle_argv(wpid)
    assert n("image", "rm", busybox_image.ref, check=False).returncode == 1  # in use
    watch = ExeWatch(wpid)
    n("delete", "pod", "img")
    assert watch.stop() == {"nsbox-idle"}
    assert not alive(cpid)
    n("image", "rm", busybox_image.ref)
    assert busybox_image.ref not in n("image", "ls").stdout
    assert leftovers(n.root) == []


def test_a_user_namespace_pod_ended_quietly_frees_its_id_range(nsbox):
    # hostUsers: false: the CLI's teardown gives the range back to the host-wide pool.
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "u"},
        "spec": {"hostUsers": False, "containers": [{"name": "app", "command": ["sh", "-c", TRAP_EXIT]}]},
    }
    nsbox("apply", "-f", "-", input=json.dumps(manifest))
    cpid = nsbox.pid("u")
    with open(f"/proc/{cpid}/uid_map") as f:
        first = f.read().split()[1]
    taken = os.path.join(USERNS_POOL, first)
    assert os.path.exists(taken)
    wpid = idle_watcher(nsbox, "u")
    assert "--end" in idle_argv(wpid)
    watch = ExeWatch(wpid)
    nsbox("delete", "pod", "u")
    assert watch.stop() == {"nsbox-idle"}
    assert not alive(cpid) and not os.path.exists(taken)
    assert leftovers(nsbox.root) == []
