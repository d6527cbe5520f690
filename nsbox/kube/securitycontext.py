"""securityContext rules: capabilities (linux/capability.h; the runtime's default
set), sysctls a pod may set, and the supplementary groups of its processes.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Sequence

# --- Capabilities (linux/capability.h; default set: containerd / moby) --------

# The runtime default set (containerd oci.defaultUnixCaps, moby caps.DefaultCapabilities):
# what an unprivileged container keeps (docs/security.md §2).
DEFAULT_CAPABILITIES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
)

# Every capability of linux/capability.h, by number (CAP_LAST_CAP = 40 since Linux 5.9).
CAPABILITY_NUMBERS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "LINUX_IMMUTABLE",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_ADMIN",
            "NET_RAW",
            "IPC_LOCK",
            "IPC_OWNER",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_CHROOT",
            "SYS_PTRACE",
            "SYS_PACCT",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_NICE",
            "SYS_RESOURCE",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "MKNOD",
            "LEASE",
            "AUDIT_WRITE",
            "AUDIT_CONTROL",
            "SETFCAP",
            "MAC_OVERRIDE",
            "MAC_ADMIN",
            "SYSLOG",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "AUDIT_READ",
            "PERFMON",
            "BPF",
            "CHECKPOINT_RESTORE",
        )
    )
}


def normalize_capability(name: str) -> str:
    """ "cap_net_admin" / "CAP_NET_ADMIN" / "NET_ADMIN" → "NET_ADMIN"; "all" → "ALL".

    Kubernetes passes names through and runtimes accept both spellings;
    nsbox rejects unknown names up front: ValueError('unknown capability "X"')."""
    canonical = name.strip().upper()
    if canonical.startswith("CAP_"):
        canonical = canonical[4:]
    if canonical == "ALL" or canonical in CAPABILITY_NUMBERS:
        return canonical
    raise ValueError(f'unknown capability "{name}"')


def effective_capabilities(privileged: bool, add: Sequence[str] = (), drop: Sequence[str] = ()) -> frozenset[str]:
    """The bounding set of a container (moby TweakCapabilities, containerd CRI).

    Privileged: every capability. Otherwise start from all (add contains
    ALL), none (drop contains ALL) or the default set; remove the dropped
    ones, then add the added ones — a capability both added and dropped is
    kept. Names must already be normalized."""
    if privileged:
        return frozenset(CAPABILITY_NUMBERS)
    if "ALL" in add:
        caps = set(CAPABILITY_NUMBERS)
    elif "ALL" in drop:
        caps = set()
    else:
        caps = set(DEFAULT_CAPABILITIES)
    caps.difference_update(c for c in drop if c != "ALL")
    caps.update(c for c in add if c != "ALL")
    return frozenset(caps)


# --- Sysctls (apimachinery validation; component-helpers node/util/sysctl) ------

SYSCTL_NAME_MAX = 253
_SYSCTL_SEGMENT = r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
SYSCTL_NAME_REGEX = "^(" + _SYSCTL_SEGMENT + r"[\./])*" + _SYSCTL_SEGMENT + "$"

# The sysctls a pod may set: those the kernel keeps per network or IPC namespace
# (component-helpers GetNamespace). Exact names, then prefixes.
SYSCTL_NAMESPACES = {"kernel.sem": "ipc"}
SYSCTL_NAMESPACE_PREFIXES = {"kernel.shm": "ipc", "kernel.msg": "ipc", "fs.mqueue.": "ipc", "net.": "net"}
NAMESPACED_SYSCTLS_TEXT = "net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*"


def sysctl_name_errors(name: str) -> list[str]:
    """apimachinery IsValidSysctlName, with the API server's message (validateSysctls)."""
    if len(name) <= SYSCTL_NAME_MAX and re.match(SYSCTL_NAME_REGEX, name):  # compiled on first use (start-up)
        return []
    return [f"must have at most {SYSCTL_NAME_MAX} characters and match regex {SYSCTL_NAME_REGEX}"]


def normalize_sysctl_name(name: str) -> str:
    """component-helpers NormalizeName: a name whose first separator is '/' ("net/ipv4/conf/eth0.100/x")
    has '.' and '/' swapped ("net.ipv4.conf.eth0/100.x"); a name in dot form is kept."""
    first = re.search(r"[./]", name)
    if first is None or first.group() == ".":
        return name
    return name.translate(str.maketrans("./", "/."))


def sysctl_namespace(name: str) -> str:
    """ "net", "ipc", or "" for a sysctl the kernel does not keep per namespace."""
    name = normalize_sysctl_name(name)
    if name in SYSCTL_NAMESPACES:
        return SYSCTL_NAMESPACES[name]
    for prefix, ns in SYSCTL_NAMESPACE_PREFIXES.items():
        if name.startswith(prefix):
            return ns
    return ""


def sysctl_path(name: str) -> str:
    """The file under /proc/sys: dots separate, a '/' in the dot form is a dot in the file's name
    (sysctl(8)'s rule: net.ipv4.conf.eth0/100.forwarding is net/ipv4/conf/eth0.100/forwarding)."""
    return "/".join(part.replace("/", ".") for part in normalize_sysctl_name(name).split("."))


# --- Supplementary groups (kubelet determineEffectiveSecurityContext; containerd CRI) --

SUPPLEMENTAL_GROUPS_POLICIES = ("Merge", "Strict")
FS_GROUP_CHANGE_POLICIES = ("Always", "OnRootMismatch")


def supplementary_groups(
    gid: int, fs_group: int | None, supplemental_groups: list[int], policy: str, image_groups: list[int]
) -> list[int]:
    """The groups of every process of a container, in containerd's order, each once.

    The primary gid; with policy Merge (the default, "") the groups that list
    the container user's name in the container's /etc/group (`image_groups`,
    containerd WithAdditionalGIDs); then what the kubelet passes: fsGroup, then
    supplementalGroups. Strict leaves out the /etc/group ones."""
    out = [gid]
    if policy != "Strict":
        out += image_groups
    if fs_group is not None:
        out.append(fs_group)
    out += supplemental_groups
    return list(dict.fromkeys(out))
