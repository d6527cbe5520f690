"""Who a container's processes are and what they may do, read from /proc/PID/status on the host.

One pod holds a container per securityContext case (pods are slow to make);
each test reads its container's main process, and `nsbox exec` must give a
joining process the same identity.
"""

from __future__ import annotations

import grp
import os
import pwd

import pytest
from conftest import private_root

from nsbox import kube, native

MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: who}
spec:
  containers:
  - {name: root, command: [sleep, "600"]}
  - name: nonroot
    command: [sleep, "600"]
    securityContext: {runAsUser: 1000, runAsGroup: 1001}
  - name: adddrop
    command: [sleep, "600"]
    securityContext:
      capabilities: {add: [NET_ADMIN, cap_sys_time], drop: [CAP_CHOWN, kill]}
  - name: dropall
    command: [sleep, "600"]
    securityContext: {capabilities: {drop: [ALL]}}
  - name: onlyone
    command: [sleep, "600"]
    securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}
  - name: nonroot-added
    command: [sleep, "600"]
    securityContext: {runAsUser: 1000, capabilities: {add: [NET_ADMIN]}}
  - name: noescalate
    command: [sleep, "600"]
    securityContext: {allowPrivilegeEscalation: false}
  - name: privileged
    command: [sleep, "600"]
    securityContext: {privileged: true}
"""


@pytest.fixture(scope="module")
def who():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with private_root() as n:
        n("apply", "-f", "-", input=MANIFEST)
        yield n


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def caps(names) -> int:
    return sum(1 << kube.CAPABILITY_NUMBERS[n] for n in names)


def sets(st: dict[str, str]) -> dict[str, int]:
    return {k: int(st[k], 16) for k in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb")}


DEFAULT = caps(kube.DEFAULT_CAPABILITIES)
# Every capability the kernel knows that nsbox itself holds (a sandboxed host may withhold some).
ALL = ((1 << (native.cap_last_cap() + 1)) - 1) & sets(status(os.getpid()))["CapBnd"]


def listed_groups(uid: int) -> set[str]:
    """The groups of the host's /etc/group whose members name the user `uid` (the Merge policy's extra groups)."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return set()
    return {str(g.gr_gid) for g in grp.getgrall() if name in g.gr_mem and g.gr_name != name}


def of(who, container: str) -> dict[str, str]:
    return status(who.pid("who", container))


def test_root_has_the_default_set_bounding_effective_and_permitted(who):
    st = of(who, "root")
    assert sets(st) == {"CapBnd": DEFAULT, "CapEff": DEFAULT, "CapPrm": DEFAULT, "CapInh": 0, "CapAmb": 0}
    assert len(kube.DEFAULT_CAPABILITIES) == 14
    assert st["NoNewPrivs"] == "0"
    assert st["Uid"].split() == ["0"] * 4
    assert set(st["Groups"].split()) == {"0"} | listed_groups(0)  # the primary group, as containerd gives it


def test_a_non_root_user_has_the_bounding_set_only_and_no_new_privs(who):
    st = of(who, "nonroot")
    assert sets(st) == {"CapBnd": DEFAULT, "CapEff": 0, "CapPrm": 0, "CapInh": 0, "CapAmb": 0}
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["1001"] * 4
    assert set(st["Groups"].split()) == {"1001"} | listed_groups(1000)
    assert st["NoNewPrivs"] == "1"


def test_capabilities_add_and_drop_take_any_spelling(who):
    expected = (DEFAULT - caps(["CHOWN", "KILL"])) | caps(["NET_ADMIN", "SYS_TIME"])
    st = sets(of(who, "adddrop"))
    assert (st["CapBnd"], st["CapEff"], st["CapPrm"]) == (expected,) * 3


def test_drop_all_leaves_nothing_and_add_after_it_only_that(who):
    assert sets(of(who, "dropall")) == dict.fromkeys(("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"), 0)
    one = caps(["NET_BIND_SERVICE"])
    assert sets(of(who, "onlyone")) == {"CapBnd": one, "CapEff": one, "CapPrm": one, "CapInh": 0, "CapAmb": 0}


def test_a_non_root_user_with_added_capabilities_may_escalate(who):
    st = of(who, "nonroot-added")
    assert int(st["CapBnd"], 16) == DEFAULT | caps(["NET_ADMIN"])
    assert int(st["CapEff"], 16) == 0
    assert st["NoNewPrivs"] == "0"


def test_allow_privilege_escalation_false_sets_no_new_privs(who):
    st = of(who, "noescalate")
    assert st["NoNewPrivs"] == "1"
    assert int(st["CapEff"], 16) == DEFAULT


def test_privileged_has_every_capability(who):
    st = of(who, "privileged")
    assert sets(st) == {"CapBnd": ALL, "CapEff": ALL, "CapPrm": ALL, "CapInh": 0, "CapAmb": 0}


@pytest.mark.parametrize("container", ["root", "nonroot", "adddrop", "noescalate", "privileged"])
def test_exec_joins_with_the_same_identity(who, container):
    main = of(who, container)
    seen = who("exec", "who", "-c", container, "--", "cat", "/proc/self/status").stdout
    joined = dict(line.split(":\t", 1) for line in seen.splitlines() if ":\t" in line)
    for key in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs", "Uid", "Gid", "Groups"):
        assert joined[key].strip() == main[key].strip(), key
