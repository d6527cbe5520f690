"""The tiny init (docs/lifecycle.md, Termination 10), end to end through the CLI.

PID 1 of a PID namespace ignores SIGTERM unless it handles it, so a plain
`sleep` waits out the whole grace period; under `--init` (or the annotation
nsbox.io/init: "true") the init forwards the SIGTERM and the pod goes at once.
"""

from __future__ import annotations

import os
import time

import pytest
from conftest import wait_for

GRACE_LONG = "30"
GRACE_SHORT = 3


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def seconds_to_delete(nsbox, pod: str, grace: str) -> float:
    start = time.monotonic()
    nsbox("delete", "pod", pod, "--grace-period", grace)
    return time.monotonic() - start


def test_under_init_sigterm_stops_sleep_so_delete_does_not_wait_out_the_grace(nsbox):
    nsbox("run", "x", "--init", "--", "sleep", "300")
    assert comm(nsbox.pid("x")) == "nsbox-init"
    assert seconds_to_delete(nsbox, "x", GRACE_LONG) < 10


def test_without_init_sleep_as_pid_1_ignores_sigterm_and_takes_the_full_grace(nsbox):
    nsbox("run", "x", "--", "sleep", "300")
    assert comm(nsbox.pid("x")) == "sleep"
    assert seconds_to_delete(nsbox, "x", str(GRACE_SHORT)) >= GRACE_SHORT


def test_init_annotation_in_a_manifest_does_the_same(nsbox):
    manifest = """\
apiVersion: v1
kind: Pod
metadata:
  name: annotated
  annotations:
    nsbox.io/init: "true"
spec:
  containers:
  - name: c
    command: ["sleep", "300"]
"""
    nsbox("apply", "-f", "-", input=manifest)
    assert comm(nsbox.pid("annotated")) == "nsbox-init"
    assert seconds_to_delete(nsbox, "annotated", GRACE_LONG) < 10


def test_the_commands_exit_code_is_the_containers(nsbox):
    nsbox("run", "x", "--init", "--", "sh", "-c", "exit 7")

    def terminated():
        return nsbox.container_state("x")["state"].get("terminated")

    assert wait_for(terminated, what="the container to exit")["exitCode"] == 7


def maps_python(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return "python" in f.read()


@pytest.mark.cgroupv2
def test_the_init_is_an_exec_d_program_not_a_copy_of_the_watcher(nsbox):
    # A fork that never execs keeps private copies of every page the watcher changes later:
    # 5-6 MB per init. nsbox-init (csrc/init.c) maps no Python at all.
    nsbox("run", "x", "--init", "--", "sleep", "300")
    init = nsbox.pid("x")
    assert os.readlink(f"/proc/{init}/exe") == "/memfd:nsbox-init (deleted)"  # its sealed copy
    assert not maps_python(init)
    assert nsbox("exec", "x", "--", "cat", "/proc/1/cmdline").stdout.split("\0")[:2] == ["nsbox-init", "--main"]


def test_a_missing_init_program_is_a_clear_start_error(nsbox, monkeypatch):
    from nsbox import native

    monkeypatch.setattr(native, "INIT_PROGRAM", "/nonexistent/nsbox-init")
    monkeypatch.setattr(native, "_init_fd", None)  # the copy of this process, made once
    req = native.SpawnRequest(argv=["true"], exec_paths=["/bin/true"], env=[], init=True)
    try:
        native.spawn(req)
    except native.SpawnError as e:
        assert str(e) == "init of /nonexistent/nsbox-init failed: No such file or directory"
    else:
        raise AssertionError("spawn succeeded without its init program")
