"""A pod's hostname and /etc/hosts, as the kubelet writes them (kubelet_pods.go)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Sequence

# --- Hostname, /etc/hosts (kubelet: kubelet_pods.go) ---------------------------

HOSTNAME_MAX = 63  # the kernel's UTS name: 64 bytes with the terminating NUL


def truncate_pod_hostname(hostname: str) -> str:
    """kubelet truncatePodHostnameIfNeeded: a hostname longer than 63 characters
    is cut to 63, then trailing '-' and '.' are trimmed (a shorter one is kept as is)."""
    if len(hostname) <= HOSTNAME_MAX:
        return hostname
    return hostname[:HOSTNAME_MAX].rstrip("-.")


MANAGED_HOSTS_HEADER = "# Kubernetes-managed hosts file.\n"
MANAGED_HOSTS_HEADER_HOST_NETWORK = "# Kubernetes-managed hosts file (host network).\n"


def managed_hosts_file(ip: str, hostname: str, aliases: Sequence = ()) -> str:
    """kubelet managedHostsFileContent: the /etc/hosts of a pod with its own network.

    `aliases` are spec.hostAliases (objects with .ip and .hostnames). A pod
    without an IP (nsbox's loopback network) maps its hostname to 127.0.1.1,
    as Debian's installer does for a machine without a fixed address."""
    lines = [
        MANAGED_HOSTS_HEADER,
        "127.0.0.1\tlocalhost\n",
        "::1\tlocalhost ip6-localhost ip6-loopback\n",
        "fe00::0\tip6-localnet\n",
        "fe00::0\tip6-mcastprefix\n",
        "fe00::1\tip6-allnodes\n",
        "fe00::2\tip6-allrouters\n",
        f"{ip or '127.0.1.1'}\t{hostname}\n",
    ]
    return "".join(lines) + host_aliases_entries(aliases)


def host_network_hosts_file(host_content: str, aliases: Sequence = ()) -> str:
    """kubelet nodeHostsFileContent: a hostNetwork pod's /etc/hosts is the node's, copied, with a header."""
    return MANAGED_HOSTS_HEADER_HOST_NETWORK + host_content + host_aliases_entries(aliases)


def host_aliases_entries(aliases: Sequence) -> str:
    """kubelet hostsEntriesFromHostAliases: a blank line, a comment, then `IP<TAB>name<TAB>name` per alias."""
    if not aliases:
        return ""
    return "\n# Entries added by HostAliases.\n" + "".join(f"{a.ip}\t" + "\t".join(a.hostnames) + "\n" for a in aliases)
