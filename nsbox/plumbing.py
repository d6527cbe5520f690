"""A bridge pod's netlink work, through pyroute2's IPRoute.

Importing this module imports pyroute2, ≈ 0.2 s and 24 MB (README, "Decision:
pyroute2, in short-lived processes"; bench/README.md), so only short-lived
processes do: the child a watcher forks to plumb or unplug its pod
(nsbox.network), and a `delete` or `gc` that removes a pod's link itself.
Never a watcher, which lives as long as its pod, nor a command that touches
no bridge.

Only what Debian 12's pyroute2 (0.7.2) offers as well as PyPI's: IPRoute's
link/addr/route with keyword arguments, link_lookup, the get_links/get_addr/
get_routes dumps, and attributes read by their kernel names with get_attr
(the shorter spellings and tuple paths came later).

An IPRoute socket answers in the network namespace it was opened in, whatever
namespace its process moves to later: open one per namespace.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

from pyroute2 import IPRoute, NetlinkError

from nsbox import native
from nsbox.errors import NsboxError
from nsbox.network import ENV_BRIDGE, ENV_SUBNET, POD_INTERFACE, Attachment, BridgeConfig, Pool

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


def plumb(cfg: BridgeConfig, allocation: dict[str, Any], host_netns_fd: int) -> Attachment:
    """Bridge (if missing), address, veth pair, eth0 with its address and default route.

    Runs in the pod's netns with `host_netns_fd` the host's; on any failure,
    undoes everything it made (nothing half-made) and raises NsboxError.
    """
    pod_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    inside = IPRoute()  # bound for life to the netns it was opened in: the pod's
    native.setns(host_netns_fd, native.CLONE_NEWNET)
    host = IPRoute()
    pool = Pool(cfg.name)
    veth = allocation["veth"]
    try:
        with pool.locked(), contextlib.ExitStack() as undo:
            undo.callback(_forget_pool_without_bridge, pool)
            bridge_index = _ensure_bridge(host, pool, cfg, undo)
            ip = pool.allocate(cfg, allocation)
            undo.callback(pool.free, ip)
            with netlink_step(f"cannot create the veth pair {veth}/{POD_INTERFACE}", "veth"):
                host.link("add", ifname=veth, kind="veth", peer={"ifname": POD_INTERFACE, "net_ns_fd": pod_netns})
            undo.callback(delete_link, veth)
            with netlink_step(f"cannot attach {veth} to bridge {cfg.name}"):
                host.link("set", index=_index(host, veth), master=bridge_index, state="up")
            with netlink_step(f"cannot configure {POD_INTERFACE} in the pod"):
                eth0 = _index(inside, POD_INTERFACE)
                inside.addr("add", index=eth0, address=ip, prefixlen=cfg.prefix_len)
                inside.link("set", index=eth0, state="up")
                # proto boot: what `ip route add` records, as for a route an administrator added
                inside.route("add", gateway=cfg.gateway, oif=eth0, proto="boot")
            undo.pop_all()
    finally:
        inside.close()
        host.close()
        os.close(pod_netns)
    return Attachment(ip=ip, prefix_len=cfg.prefix_len, gateway=cfg.gateway, bridge=cfg.name, veth=veth)


def _ensure_bridge(host: IPRoute, pool: Pool, cfg: BridgeConfig, undo: contextlib.ExitStack) -> int:
    """The bridge's index; made (with its address, up) on first use. Called under the pool's lock.

    A bridge this pool already knows (nsbox made it, or checked it on first use)
    is only looked up and set up.
    """
    known = pool.config()
    if known and known.get("subnet") != cfg.subnet:
        raise NsboxError(
            f"bridge {cfg.name} already serves {known['subnet']}, not {cfg.subnet} "
            f"(unset {ENV_SUBNET}, or choose another {ENV_BRIDGE})"
        )
    found = host.link_lookup(ifname=cfg.name)
    if found:
        index = found[0]
        if _link_kind(host, index) != "bridge":
            raise NsboxError(f"{cfg.name} exists and is not a bridge (choose another {ENV_BRIDGE})")
        if known is None:
            if (cfg.gateway, cfg.prefix_len) not in _addresses(host, index):
                raise NsboxError(
                    f"bridge {cfg.name} exists without the address {cfg.gateway}/"
                    f"{cfg.prefix_len}: nsbox did not make it (remove it, or choose another "
                    f"{ENV_BRIDGE})"
                )
            pool.save_config(cfg)
        with netlink_step(f"cannot bring bridge {cfg.name} up"):
            host.link("set", index=index, state="up")
        return index
    overlap = _overlapping_route(host, cfg.subnet)
    if overlap:
        raise NsboxError(
            f"subnet {cfg.subnet} for bridge {cfg.name} overlaps the host route {overlap} (choose another {ENV_SUBNET})"
        )
    with netlink_step(f"cannot create bridge {cfg.name}", "bridge"):
        host.link("add", ifname=cfg.name, kind="bridge")
    undo.callback(pool.remove)
    undo.callback(delete_link, cfg.name)
    with netlink_step(f"cannot configure bridge {cfg.name}"):
        index = _index(host, cfg.name)
        host.addr("add", index=index, address=cfg.gateway, prefixlen=cfg.prefix_len)
        host.link("set", index=index, state="up")
    pool.save_config(cfg)
    return index


def _forget_pool_without_bridge(pool: Pool) -> None:
    """After a failed first use: the state directory `locked()` made stays only with its bridge
    (unless undoing the bridge's creation removed it already)."""
    if os.path.exists(pool.lock_path) and pool.config() is None:
        pool.remove()


def _index(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
    return found[0]


def _link_kind(ipr: IPRoute, index: int) -> str:
    """ "bridge", "veth"...; "" for a link without a kind, like lo."""
    info = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO")
    return (info.get_attr("IFLA_INFO_KIND") if info is not None else None) or ""


def _addresses(ipr: IPRoute, index: int) -> set[tuple[str, int]]:
    """The IPv4 addresses of interface `index`, as (address, prefix length)."""
    return {
        (a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS"), a["prefixlen"])
        for a in ipr.get_addr(index=index, family=socket.AF_INET)
    }


def _overlapping_route(host: IPRoute, subnet: str) -> str | None:
    """The first IPv4 route of any table (the default routes aside) whose destination overlaps `subnet`."""
    import ipaddress

    net = ipaddress.ip_network(subnet)
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in host.get_links()}
    for route in host.get_routes(family=socket.AF_INET):  # a dump: every table
        if route["dst_len"] == 0:
            continue
        dst = ipaddress.ip_network(f"{route.get_attr('RTA_DST')}/{route['dst_len']}", strict=False)
        if dst.overlaps(net):
            dev = names.get(route.get_attr("RTA_OIF"))
            return f"{dst}" + (f" dev {dev}" if dev else "")
    return None


@contextlib.contextmanager
def netlink_step(what: str, kind: str = "") -> Iterator[None]:
    """Turn the kernel's refusal (pyroute2's NetlinkError, or OSError) into one line that names the step."""
    try:
        yield
    except (NetlinkError, OSError) as e:
        code = e.code if isinstance(e, NetlinkError) else e.errno
        # The kernel answers "Operation not supported" for a link kind whose module is
        # neither built in nor loadable.
        if kind and code == errno.EOPNOTSUPP:
            raise NsboxError(f"{what}: the kernel has no {kind} support (try: modprobe {kind})") from None
        raise NsboxError(f"{what}: {os.strerror(code)}") from None  # type: ignore[arg-type]  # set by the kernel


def delete_link(name: str) -> bool:
    """Delete network interface `name` in the caller's netns; False if there is none.

    For a veth this removes both ends; a bridge's ports are released first by the kernel.
    """
    with IPRoute() as ipr:
        try:
            ipr.link("del", ifname=name)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return False
            raise OSError(e.code, f"cannot delete interface {name}: {os.strerror(e.code)}") from None
    return True
