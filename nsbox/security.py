"""Who a container's processes are, and what they may do: user, groups, capabilities.

The policy is decided here, in Python, and handed to the native spawn path as
plain numbers (`native.CapSets`, uid/gid), because these must be applied in the
child between fork and exec, after the mounts and before exec (SPEC §7):

- unprivileged: the bounding set is the runtime default set (kube.DEFAULT_CAPABILITIES)
  adjusted by add/drop; a root process gets it effective and permitted, a
  non-root process gets empty sets; inheritable and ambient are empty (as
  Docker since CVE-2022-24769);
- privileged: every capability the kernel knows that nsbox itself holds
  (a process cannot grant what it lacks: some hosts withhold a capability
  even from root, and capset() would then fail);
- no_new_privs when allowPrivilegeEscalation is false, and implied for a
  non-root user with no added capabilities (what runc's users get by default).
"""

from __future__ import annotations

from nsbox import kube, native
from nsbox.model import ContainerSpec, PodSpec
from nsbox.record import record


@record
class Identity:
    uid: int
    gid: int
    caps: native.CapSets
    no_new_privs: bool
    privileged: bool


def mask(names: frozenset[str]) -> int:
    last = native.cap_last_cap()
    bits = 0
    for n in names:
        num = kube.CAPABILITY_NUMBERS[n]
        if num <= last:
            bits |= 1 << num
    return bits


def held_capabilities() -> int:
    """This process's permitted set: the most any container it starts can get."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                return int(line.split()[1], 16)
    return -1


def identity(pod: PodSpec, c: ContainerSpec) -> Identity:
    sc = c.security
    uid = sc.run_as_user if sc.run_as_user is not None else (pod.run_as_user or 0)
    gid = sc.run_as_group if sc.run_as_group is not None else (pod.run_as_group or 0)
    if sc.privileged:
        full = ((1 << (native.cap_last_cap() + 1)) - 1) & held_capabilities()
        caps = native.CapSets(bounding=full, effective=full if uid == 0 else 0,
                              permitted=full if uid == 0 else 0)
        return Identity(uid, gid, caps, no_new_privs=False, privileged=True)
    bounding = mask(kube.effective_capabilities(
        False, [kube.normalize_capability(n) for n in sc.cap_add],
        [kube.normalize_capability(n) for n in sc.cap_drop]))
    owned = bounding if uid == 0 else 0
    caps = native.CapSets(bounding=bounding, effective=owned, permitted=owned)
    if sc.allow_privilege_escalation is not None:
        nnp = not sc.allow_privilege_escalation
    else:
        nnp = uid != 0 and not sc.cap_add
    return Identity(uid, gid, caps, no_new_privs=nnp, privileged=False)
