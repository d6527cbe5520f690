"""Termination as Kubernetes does it and nothing lost when things crash (docs/lifecycle.md, "Termination")."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import NSBOX, alive, cgroup_dirs, cgroup_pids, leftovers, wait_for

# PID 1 of a PID namespace ignores signals it has no handler for; a trap makes it handle TERM.
IGNORE_TERM = "trap '' TERM; while :; do sleep 0.2; done"
EXIT_ON_TERM = "trap 'exit 0' TERM; while :; do sleep 0.1; done"


def stamp_file(path: str) -> float:
    return float(open(path).read().strip())


def test_deletion_is_recorded_at_once_and_shown_as_terminating(nsbox):
    nsbox("run", "slow", "--", "sh", "-c", IGNORE_TERM)
    nsbox.pid("slow")
    nsbox("delete", "pod", "slow", "--grace-period", "5", "--wait=false")
    meta = nsbox.pod("slow")["metadata"]
    assert meta["deletionGracePeriodSeconds"] == 5
    assert meta["deletionTimestamp"].endswith("Z")
    assert "Terminating" in nsbox("get", "pods").stdout
    wait_for(lambda: nsbox("get", "pods", "slow", check=False).returncode == 1, timeout=20, what="the pod to disappear")


def test_grace_period_zero_without_force_means_one_second(nsbox):
    nsbox("run", "zero", "--", "sh", "-c", IGNORE_TERM)
    nsbox.pid("zero")
    nsbox("delete", "pod", "zero", "--grace-period", "0", "--wait=false")
    assert nsbox.pod("zero")["metadata"]["deletionGracePeriodSeconds"] == 1


def test_grace_period_comes_from_the_pod_unless_given(nsbox):
    nsbox("run", "podgrace", "--grace-period", "7", "--", "sh", "-c", IGNORE_TERM)
    nsbox.pid("podgrace")
    nsbox("delete", "pod", "podgrace", "--wait=false")
    assert nsbox.pod("podgrace")["metadata"]["deletionGracePeriodSeconds"] == 7
    nsbox("delete", "pod", "podgrace", "--grace-period", "1")  # a second delete may shorten it


def test_prestop_hooks_run_in_parallel_before_sigterm(nsbox, tmp_path):
    out = str(tmp_path)
    nsbox("pod", "create", "hooks", "--volume", f"out={out}")
    for c in ("a", "b"):
        nsbox(
            "run",
            c,
            "--pod",
            "hooks",
            "--mount",
            "out:/out",
            "--pre-stop",
            f"sleep 1; date +%s.%N > /out/{c}-hook",
            "--",
            "sh",
            "-c",
            f"trap 'date +%s.%N > /out/{c}-term; exit 0' TERM; while :; do sleep 0.05; done",
        )
    nsbox.pid("hooks", "a"), nsbox.pid("hooks", "b")
    t0 = time.time()
    nsbox("delete", "pod", "hooks", "--grace-period", "10")
    took = time.time() - t0
    hooks = [stamp_file(f"{out}/{c}-hook") for c in ("a", "b")]
    terms = [stamp_file(f"{out}/{c}-term") for c in ("a", "b")]
    assert abs(hooks[0] - hooks[1]) < 0.9, "preStop hooks ran one after the other"
    for h, t in zip(hooks, terms):
        assert t >= h, "SIGTERM arrived before the preStop hook ended"
    assert took < 8, "the pod should go as soon as its containers exit, not at the end of the grace period"


def test_prestop_that_uses_up_the_grace_period_gets_two_more_seconds(nsbox):
    nsbox("run", "hog", "--pre-stop", "sleep 100", "--", "sh", "-c", IGNORE_TERM)
    pid = nsbox.pid("hog")
    t0 = time.monotonic()
    nsbox("delete", "pod", "hog", "--grace-period", "2", "--wait=false")
    # SIGTERM comes at G = 2 s (the hook is still running); SIGKILL at G + 2 s = 4 s.
    while time.monotonic() - t0 < 3.0:
        assert alive(pid), "SIGKILL came before SIGTERM + 2 s"
        time.sleep(0.1)
    wait_for(lambda: not alive(pid), timeout=15, what="SIGKILL at G + 2 s")
    wait_for(lambda: nsbox("get", "pods", "hog", check=False).returncode == 1, timeout=10, what="pod gone")


@pytest.mark.cgroupv2
def test_sigkill_reaches_every_process_of_the_container(nsbox):
    # With the host's PID namespace, the main process's death does not take its children
    # with it: only the cgroup kill can find them.
    nsbox(
        "apply",
        "-f",
        "-",
        input="""
apiVersion: v1
kind: Pod
metadata: {name: forky}
spec:
  hostPID: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    command: ["sh", "-c", "trap '' TERM; (trap '' TERM; exec setsid sleep 1000) & exec sleep 1000"]
""",
    )
    uid = nsbox.uid("forky")
    cg = [d for d in cgroup_dirs(uid)][0]
    pids = wait_for(lambda: len(cgroup_pids(cg)) >= 2 and cgroup_pids(cg), what="two processes in the cgroup")
    nsbox("delete", "pod", "forky")
    for pid in pids:
        wait_for(lambda: not alive(pid), timeout=5, what=f"pid {pid} killed")


def test_force_frees_the_name_at_once_and_kills_behind_it(nsbox):
    nsbox("run", "busy", "--", "sh", "-c", IGNORE_TERM)
    old_uid, old_pid = nsbox.uid("busy"), nsbox.pid("busy")
    t0 = time.monotonic()
    p = nsbox("delete", "pod", "busy", "--force", "--grace-period", "0")
    assert p.stdout.strip() == 'pod "busy" force deleted'
    assert p.stderr.startswith("warning:")
    nsbox("run", "busy", "--", "sleep", "300")
    assert nsbox.uid("busy") != old_uid
    # SIGTERM now (ignored), SIGKILL 2 s later.
    while time.monotonic() - t0 < 1.5:
        assert alive(old_pid), "SIGKILL came before SIGTERM + 2 s"
        time.sleep(0.1)
    wait_for(lambda: not alive(old_pid), timeout=10, what="the old process to be killed")
    wait_for(lambda: not cgroup_dirs(old_uid), timeout=10, what="the old pod's cgroups to go")


def test_a_force_delete_cuts_short_a_deletion_already_under_way(nsbox):
    # The second delete shortens the grace period: SIGKILL 2 s after the SIGTERM already sent,
    # not at the end of the first delete's 60 s.
    nsbox("run", "stuck", "--", "sh", "-c", IGNORE_TERM)
    uid, pid = nsbox.uid("stuck"), nsbox.pid("stuck")
    nsbox("delete", "pod", "stuck", "--grace-period", "60", "--wait=false")
    p = nsbox("delete", "pod", "stuck", "--force", "--grace-period", "0", timeout=30)
    assert p.stdout.strip() == 'pod "stuck" force deleted'
    wait_for(lambda: not alive(pid), timeout=15, what="SIGKILL after the force delete")
    wait_for(lambda: not cgroup_dirs(uid), timeout=10, what="the pod's cgroups to go")


def test_wait_false_returns_at_once(nsbox):
    nsbox("run", "lazy", "--", "sh", "-c", IGNORE_TERM)
    nsbox.pid("lazy")
    t0 = time.monotonic()
    nsbox("delete", "pod", "lazy", "--grace-period", "5", "--wait=false")
    assert time.monotonic() - t0 < 3
    assert "Terminating" in nsbox("get", "pods", "lazy").stdout


def test_killed_watcher_mid_grace_is_replaced_and_restarts_the_full_grace_period(nsbox):
    nsbox("run", "orphan", "--", "sh", "-c", IGNORE_TERM)
    pid = nsbox.pid("orphan")
    watcher = nsbox.inspect("orphan")["watcher"]["pid"]
    nsbox("delete", "pod", "orphan", "--grace-period", "4", "--wait=false")
    os.kill(watcher, signal.SIGKILL)
    wait_for(lambda: not alive(watcher), what="the watcher to die")
    t_restart = time.monotonic()
    nsbox("get", "pods")  # any command notices and starts a new watcher
    while time.monotonic() - t_restart < 3.0:
        assert alive(pid), "killed before a full grace period after the restart"
        time.sleep(0.1)
    wait_for(lambda: not alive(pid), timeout=15, what="the retried termination")
    wait_for(lambda: nsbox("get", "pods", "orphan", check=False).returncode == 1, timeout=10, what="pod gone")


def test_reading_a_pod_whose_watcher_died_mid_termination_changes_nothing_until_repaired(tmp_path, monkeypatch):
    # No kernel needed: a pod's files with a deletion recorded and no watcher holding it.
    from nsbox import watcher
    from nsbox.model import PodSpec
    from nsbox.pods import Runtime
    from nsbox.state import write_json

    launched = []
    monkeypatch.setattr(watcher, "launch", lambda root, uid, **kw: launched.append((uid, kw)) or {})
    rt = Runtime(str(tmp_path))
    rt.root.ensure()
    paths = rt.root.pod("0a1b2c3d-0000-4000-8000-000000000000")
    os.makedirs(paths.dir)
    write_json(paths.pod_json, PodSpec(name="orphan", uid=paths.uid).to_dict())
    write_json(paths.deletion_json, {"deletionTimestamp": "2026-12-05T18:00:00Z", "gracePeriodSeconds": 4})
    rt.root.claim("default", "orphan", paths.uid)
    views = [rt.get("default", "orphan"), *rt.pods(None), rt.view(paths)]
    assert launched == []
    assert all(v.deletion is not None and not v.watcher_alive for v in views)
    assert rt.repair(views[0]) is views[0]
    assert launched == [(paths.uid, {"adopt": True})]


def test_a_waiting_delete_whose_watcher_dies_carries_on_until_the_pod_is_gone(nsbox):
    # A watcher killed mid-termination (OOM, kill -9) closes the CLI's connection without
    # saying "gone": the delete must not report success then, but have a new watcher finish.
    nsbox("run", "stubborn", "--", "sh", "-c", IGNORE_TERM)
    pid = nsbox.pid("stubborn")
    watcher = nsbox.inspect("stubborn")["watcher"]["pid"]
    delete = subprocess.Popen(
        NSBOX + ["--root", nsbox.root, "delete", "pod", "stubborn", "--grace-period", "3"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: "Terminating" in nsbox("get", "pods", "stubborn").stdout, what="Terminating")
        os.kill(watcher, signal.SIGKILL)
        out, err = delete.communicate(timeout=60)
    finally:
        if delete.poll() is None:
            delete.kill()
            delete.wait()
    assert delete.returncode == 0 and out == 'pod "stubborn" deleted\n', err
    assert not alive(pid), "reported deleted while its container still ran"
    assert nsbox("get", "pods", "stubborn", check=False).returncode == 1
    assert leftovers(nsbox.root) == []


def test_pod_without_watcher_is_unknown_and_still_deletes_cleanly(nsbox):
    nsbox("run", "lost", "--", "sleep", "300")
    pid = nsbox.pid("lost")
    watcher = nsbox.inspect("lost")["watcher"]["pid"]
    os.kill(watcher, signal.SIGKILL)
    wait_for(lambda: nsbox.pod("lost")["status"]["phase"] == "Unknown", what="phase Unknown")
    assert alive(pid), "containers must not die with their watcher"
    assert "Unknown" in nsbox("get", "pods").stdout
    described = nsbox("describe", "pod", "lost").stdout
    assert "lost" in described and "1 process(es)" in described
    nsbox("delete", "pod", "lost", "--grace-period", "1")
    assert not alive(pid)
    assert leftovers(nsbox.root) == []


def test_state_files_a_power_loss_emptied_are_no_error_and_gc_reclaims_the_pod_and_its_name(nsbox):
    # The root's state files are renamed into place without fsync (pods do not outlive a
    # reboot): a power loss may leave one empty. Every process of the pod ends as at a
    # reboot; the state files are then emptied as such a crash can leave them.
    nsbox("run", "gone", "--", "sleep", "300")
    uid, pid = nsbox.uid("gone"), nsbox.pid("gone")
    watcher = nsbox.inspect("gone")["watcher"]["pid"]
    for p in (watcher, pid):
        os.kill(p, signal.SIGKILL)
    wait_for(lambda: not alive(pid) and not alive(watcher), timeout=10, what="the pod's processes to end")
    for f in ("pod.json", "status.json"):
        open(os.path.join(nsbox.root, "pods", uid, f), "w").close()
    listed = nsbox("get", "pods", check=False)
    assert (listed.returncode, listed.stderr) == (0, "No resources found in default namespace.\n")
    assert "reclaimed" in nsbox("gc").stdout
    assert leftovers(nsbox.root) == []
    nsbox("run", "gone", "--", "true")  # the name is free again


@pytest.mark.cgroupv2
def test_gc_reclaims_a_pod_whose_state_was_lost(nsbox):
    nsbox("run", "amnesia", "--", "sleep", "300")
    uid, pid = nsbox.uid("amnesia"), nsbox.pid("amnesia")
    watcher = nsbox.inspect("amnesia")["watcher"]["pid"]
    for sub in ("pods", "names", "logs"):  # a reboot-like loss of the root's state
        shutil.rmtree(os.path.join(nsbox.root, sub))
    nsbox("gc")
    wait_for(lambda: not alive(pid), timeout=10, what="the container to be killed")
    wait_for(lambda: not alive(watcher), timeout=10, what="the watcher to end")
    wait_for(lambda: not cgroup_dirs(uid), timeout=10, what="the cgroups to go")


def test_parallel_runs_and_deletes_on_different_pods(nsbox):
    names = [f"p{i}" for i in range(20)]
    with ThreadPoolExecutor(20) as pool:
        runs = list(pool.map(lambda n: nsbox("run", n, "--", "sh", "-c", EXIT_ON_TERM, check=False), names))
    assert [r.returncode for r in runs] == [0] * 20, [r.stderr for r in runs if r.returncode]
    listed = nsbox("get", "pods", "-o", "name").stdout.split()
    assert sorted(listed) == sorted(f"pod/{n}" for n in names)
    with ThreadPoolExecutor(20) as pool:
        deletes = list(pool.map(lambda n: nsbox("delete", "pod", n, check=False), names))
    assert [d.returncode for d in deletes] == [0] * 20, [d.stderr for d in deletes if d.returncode]
    assert leftovers(nsbox.root) == []


def test_parallel_runs_and_deletes_on_the_same_pod(nsbox):
    with ThreadPoolExecutor(5) as pool:
        runs = list(pool.map(lambda _: nsbox("run", "same", "--", "sh", "-c", EXIT_ON_TERM, check=False), range(5)))
    assert sorted(r.returncode for r in runs) == [0, 1, 1, 1, 1]
    assert all("already exists" in r.stderr for r in runs if r.returncode)
    with ThreadPoolExecutor(5) as pool:
        deletes = list(pool.map(lambda _: nsbox("delete", "pod", "same", check=False), range(5)))
    assert sorted(d.returncode for d in deletes)[0] == 0
    for d in deletes:
        assert d.returncode == 0 or "not found" in d.stderr, d.stderr
    assert leftovers(nsbox.root) == []


def test_delete_all_ignores_a_pod_that_went_before_it_was_asked(nsbox):
    # `delete --all` lists a0 and a1, then asks them in turn. The test holds a0's lock, so the
    # command waits there (seen in /proc/locks) while a1 is deleted by name; then a1 is gone
    # when asked. As kubectl's --all (which implies --ignore-not-found), that is no error.
    for n in ("a0", "a1"):
        nsbox("run", n, "--", "sh", "-c", EXIT_ON_TERM)
    lock = os.path.join(nsbox.root, "pods", nsbox.uid("a0"), "lock")
    with open(lock, "a") as held:  # FileLock creates it on first use
        fcntl.flock(held, fcntl.LOCK_EX)
        delete_all = nsbox.popen("delete", "pod", "--all")
        inode = f":{os.fstat(held.fileno()).st_ino} "
        wait_for(
            lambda: any("->" in line and inode in line for line in open("/proc/locks")),
            timeout=20,
            what="delete --all to wait for a0's lock",
        )
        nsbox("delete", "pod", "a1")
    out, err = delete_all.communicate(timeout=60)
    assert (delete_all.returncode, out, err) == (0, 'pod "a0" deleted\n', "")
    assert leftovers(nsbox.root) == []
    # Without --all, a name that is not there is still an error.
    gone = nsbox("delete", "pod", "a1", check=False)
    assert (gone.returncode, gone.stderr) == (1, 'error: pod "a1" not found\n')


def test_deleting_several_pods_runs_their_grace_periods_at_the_same_time(nsbox):
    # `sleep` as PID 1 ignores SIGTERM: each pod takes its whole grace period. As with
    # kubectl, all pods are asked first and then waited for: about one grace period, not three.
    grace = 3
    for name in ("g1", "g2", "g3"):
        nsbox("run", name, "--", "sleep", "300")
    start = time.monotonic()
    out = nsbox("delete", "pod", "g1", "g2", "g3", "--grace-period", str(grace)).stdout
    elapsed = time.monotonic() - start
    assert out.splitlines() == ['pod "g1" deleted', 'pod "g2" deleted', 'pod "g3" deleted']
    assert grace <= elapsed < 3 * grace, f"took {elapsed:.1f} s"
    assert leftovers(nsbox.root) == []
