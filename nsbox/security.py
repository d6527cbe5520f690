"""Who a container's processes are, and what they may do: user, groups, capabilities.

The policy is decided here, in Python, and handed to the native spawn path as
plain numbers (`native.CapSets`, uid/gid), because these must be applied in the
child between fork and exec, after the mounts and before exec (docs/security.md §8):

- unprivileged: the bounding set is the runtime default set (kube.DEFAULT_CAPABILITIES)
  adjusted by add/drop; a root process gets it effective and permitted, a
  non-root process gets empty sets; inheritable and ambient are empty (as
  Docker since CVE-2022-24769);
- privileged: every capability the kernel knows that nsbox itself holds
  (a process cannot grant what it lacks: some hosts withhold a capability
  even from root, and capset() would then fail);
- no_new_privs when allowPrivilegeEscalation is false, and implied for a
  non-root user with no added capabilities (what runc's users get by default);
- supplementary groups as the kubelet and containerd compute them (`user`):
  the primary gid, the groups of the user's name in the container's
  /etc/group (supplementalGroupsPolicy Merge), fsGroup, supplementalGroups.
"""

from __future__ import annotations

import os
import stat

from nsbox import kube, native
from nsbox.model import ContainerSpec, PodSpec
from nsbox.record import field, record


@record
class Identity:
    uid: int
    gid: int
    caps: native.CapSets
    no_new_privs: bool
    privileged: bool
    groups: list[int] = field(factory=list)


@record
class User:
    """Who a container's processes are: `status.containerStatuses[].user.linux` (kubelet ≥ 1.31)."""

    uid: int
    gid: int
    groups: list[int] = field(factory=list)  # supplementary groups, the primary gid first


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


def container_root(c: ContainerSpec) -> str:
    """The directory the container's root is made from: its image directory, or the host's /."""
    return os.path.abspath(c.image) if c.image and os.path.isdir(c.image) else "/"


def user(pod: PodSpec, c: ContainerSpec) -> User:
    """The uid, gid and supplementary groups of every process of container `c`."""
    sc = c.security
    uid = sc.run_as_user if sc.run_as_user is not None else (pod.run_as_user or 0)
    gid = sc.run_as_group if sc.run_as_group is not None else (pod.run_as_group or 0)
    listed = [] if pod.supplemental_groups_policy == "Strict" else groups_listing(container_root(c), uid)
    return User(
        uid,
        gid,
        kube.supplementary_groups(gid, pod.fs_group, pod.supplemental_groups, pod.supplemental_groups_policy, listed),
    )


def groups_listing(root: str, uid: int) -> list[int]:
    """The groups of `root`/etc/group that list the name `uid` has in `root`/etc/passwd as a member
    (containerd WithAdditionalGIDs: the user's own group by name is not one of them)."""
    name = None
    for entry in _colon_file(os.path.join(root, "etc/passwd")):
        if len(entry) > 2 and entry[2] == str(uid):
            name = entry[0]
            break
    if not name:
        return []
    out = []
    for entry in _colon_file(os.path.join(root, "etc/group")):
        if len(entry) > 3 and entry[0] != name and name in entry[3].split(",") and entry[2].isdigit():
            out.append(int(entry[2]))
    return out


def _colon_file(path: str) -> list[list[str]]:
    """The entries of an /etc/passwd- or /etc/group-style file; [] when it is missing or not a file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    with open(fd, encoding="utf-8", errors="replace") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]


def identity(pod: PodSpec, c: ContainerSpec, who: User | None = None) -> Identity:
    """Container `c`'s identity; `who` when its user was decided elsewhere (from its image)."""
    sc = c.security
    who = who if who is not None else user(pod, c)
    uid, gid = who.uid, who.gid
    if sc.privileged:
        full = ((1 << (native.cap_last_cap() + 1)) - 1) & held_capabilities()
        caps = native.CapSets(bounding=full, effective=full if uid == 0 else 0, permitted=full if uid == 0 else 0)
        return Identity(uid, gid, caps, no_new_privs=False, privileged=True, groups=who.groups)
    bounding = mask(
        kube.effective_capabilities(
            False,
            [kube.normalize_capability(n) for n in sc.cap_add],
            [kube.normalize_capability(n) for n in sc.cap_drop],
        )
    )
    owned = bounding if uid == 0 else 0
    caps = native.CapSets(bounding=bounding, effective=owned, permitted=owned)
    if sc.allow_privilege_escalation is not None:
        nnp = not sc.allow_privilege_escalation
    else:
        nnp = uid != 0 and not sc.cap_add
    return Identity(uid, gid, caps, no_new_privs=nnp, privileged=False, groups=who.groups)
