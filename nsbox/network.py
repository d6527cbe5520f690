"""The pod network: one IP per pod on a host bridge (README, "Pod network": `--network bridge`).

    host netns:   nsbox0 (bridge, 10.88.0.1/16) ── nsb<uid12> (veth)
                                                       │
    pod netns:                                        eth0 10.88.0.N/16, default via 10.88.0.1

Pods on one bridge reach each other at layer 2 and the host reaches them
through the bridge's address; nothing is routed or NATed further, so no
traffic leaves the machine.

Who does what, and why:

- `attach` runs in the pod's watcher right after it entered the pod's new
  network namespace, before any container starts (so eth0 is ready when they
  do). The netlink work is pyroute2's (nsbox.plumbing), whose import costs
  ≈ 0.2 s and 24 MB: a short-lived forked child imports it, does the work
  and exits, so that it never stays in the watcher, which lives as long as
  the pod, and no command that touches no bridge pays for it. The child is
  born in the pod's netns: it opens one netlink socket there, then setns()s
  into the host's netns (the watcher kept a descriptor of it) and opens
  another for the bridge side. No pyroute2 netns helper process, no
  /var/run/netns file.
- Per pod that is veth pair, bridge port, address, links up, default route;
  the first pod on a bridge also checks what is there or makes it (with its
  address, after checking that no host route overlaps the subnet).
- `detach` (teardown, again in a forked child), `release` and `collect`
  (gc, from the CLI) only delete links by name. Deleting the host end of a
  veth removes both ends at once - synchronously, unlike waiting for the
  kernel to clean up a dead netns. They import pyroute2 only when there is a
  link to delete.

State is host-wide, not under a --root, because the bridge and its address
pool are shared by every root on the host:

    /run/nsbox-net/<bridge>/lock          flock: every change to this bridge
    /run/nsbox-net/<bridge>/bridge.json   {"bridge", "subnet", "gateway"}: fixed when the bridge is made
    /run/nsbox-net/<bridge>/last          the last address handed out (round-robin: no quick reuse)
    /run/nsbox-net/<bridge>/ips/<ip>      one allocation: {"ip", "root", "uid", "namespace", "name", "veth"}

An allocation is written before its veth exists and removed after the veth is
gone, both under the lock, so an address is never handed out twice. A pod's
allocation exists only while <root>/pods/<uid>/pod.json does (the CLI writes
that before the watcher starts, and teardown releases the address before
removing it): `gc` reclaims exactly the allocations whose pod file is gone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from nsbox import native
from nsbox.errors import NsboxError
from nsbox.hostpool import HostPool, read_json
from nsbox.record import as_dict, record

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

STATE_DIR = "/run/nsbox-net"
DEFAULT_BRIDGE = "nsbox0"
DEFAULT_SUBNET = "10.88.0.0/16"
ENV_BRIDGE = "NSBOX_BRIDGE"  # which bridge new bridge pods join
ENV_SUBNET = "NSBOX_BRIDGE_SUBNET"  # its subnet, when nsbox creates it
POD_INTERFACE = "eth0"
VETH_PREFIX = "nsb"  # host end: nsb + 12 hex digits of the pod UID (IFNAMSIZ is 16)
CHILD_TIMEOUT = 25.0  # below the CLI's 30 s wait for the watcher


@record
class BridgeConfig:
    name: str
    subnet: str  # normalised CIDR, e.g. "10.88.0.0/16"

    @property
    def prefix_len(self) -> int:
        return int(self.subnet.split("/")[1])

    @property
    def gateway(self) -> str:
        """The bridge's own address: the subnet's first host address."""
        import ipaddress

        return str(ipaddress.ip_network(self.subnet).network_address + 1)


@record
class Attachment:
    ip: str
    prefix_len: int
    gateway: str
    bridge: str
    veth: str


def config_from_env(environ: Any = None) -> BridgeConfig:
    """The bridge new pods join: $NSBOX_BRIDGE (default nsbox0) with $NSBOX_BRIDGE_SUBNET (default 10.88.0.0/16)."""
    import ipaddress

    environ = os.environ if environ is None else environ
    name = environ.get(ENV_BRIDGE) or DEFAULT_BRIDGE
    subnet = environ.get(ENV_SUBNET) or DEFAULT_SUBNET
    # The kernel's dev_valid_name(): at most 15 bytes, no '/', ':' or whitespace, not . or ..
    if len(name.encode()) > 15 or name in (".", "..") or any(c in name for c in "/: \t\n"):
        raise NsboxError(
            f'{ENV_BRIDGE}="{name}" is not a valid interface name (at most 15 characters, no "/", ":" or spaces)'
        )
    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise NsboxError(f'{ENV_SUBNET}="{subnet}" is not an IPv4 subnet such as {DEFAULT_SUBNET}') from None
    if net.version != 4 or net.prefixlen > 30:
        raise NsboxError(
            f'{ENV_SUBNET}="{subnet}" must be an IPv4 subnet of /30 or larger '
            "(one address for the bridge, at least one for a pod)"
        )
    return BridgeConfig(name, str(net))


def veth_name(uid: str) -> str:
    return VETH_PREFIX + uid.replace("-", "")[:12]


# ---------------------------------------------------------------- the host-wide address pool


class Pool(HostPool):
    """The allocations of one bridge, in STATE_DIR/<bridge>/ (nsbox.hostpool). Use only inside `locked()`."""

    def __init__(self, bridge: str):
        super().__init__(os.path.join(STATE_DIR, bridge), "ips")
        self.bridge = bridge
        self.config_path = os.path.join(self.dir, "bridge.json")
        self.ips = self.entries

    def config(self) -> dict[str, Any] | None:
        return read_json(self.config_path)

    def save_config(self, cfg: BridgeConfig) -> None:
        self.write(self.config_path, {"bridge": cfg.name, "subnet": cfg.subnet, "gateway": cfg.gateway})

    def allocations(self) -> list[dict[str, Any]]:
        return self.records("ip")

    def allocate(self, cfg: BridgeConfig, allocation: dict[str, Any]) -> str:
        """The next free address after the last one handed out, recorded as taken by `allocation`."""
        import ipaddress

        net = ipaddress.ip_network(cfg.subnet)
        first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
        gateway = int(ipaddress.ip_address(cfg.gateway))
        span = last - first + 1
        ip = self.claim(
            first,
            span,
            name=lambda n: str(ipaddress.ip_address(n)),
            number=lambda text: int(ipaddress.ip_address(text)),
            allocation=allocation,
            key="ip",
            usable=lambda n: n != gateway,
            start=gateway,
        )
        if ip is None:
            raise NsboxError(
                f"no free address left in {cfg.subnet} on bridge {cfg.name} "
                f"({span - 1} pods use it all; `nsbox gc` reclaims those of pods that are gone)"
            )
        return ip

    def remove(self, extra: tuple[str, ...] = ()) -> None:
        """Forget the pool (its bridge is gone) unless an address is still taken."""
        super().remove((self.config_path, *extra))


def pools() -> list[Pool]:
    try:
        return [Pool(b) for b in sorted(os.listdir(STATE_DIR))]
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------- attaching and detaching (watcher side)


def attach(pod: Any, root: str, host_netns_fd: int) -> Attachment:
    """Give the pod whose netns the caller is in an eth0 on the bridge; in a forked child (see the top)."""
    cfg = config_from_env()
    allocation = {
        "root": root,
        "uid": pod.uid,
        "namespace": pod.namespace,
        "name": pod.name,
        "veth": veth_name(pod.uid),
    }
    result = _in_child(_plumb, cfg, allocation, host_netns_fd)
    if result is None:
        # Whatever the killed child had claimed; this watcher is failing anyway, so it may
        # go back to the host's netns, where the veth's host end is.
        detach(root, pod.uid, host_netns_fd)
        raise NsboxError(f"setting up the pod's network did not finish within {CHILD_TIMEOUT:.0f} s")
    if "error" in result:
        raise NsboxError(result["error"])
    return Attachment(**result)


def _plumb(cfg: BridgeConfig, allocation: dict[str, Any], host_netns_fd: int) -> dict[str, Any]:
    from nsbox import plumbing  # pyroute2: in the child only

    return as_dict(plumbing.plumb(cfg, allocation, host_netns_fd))


def detach(root: str, uid: str, host_netns_fd: int = -1) -> None:
    """Teardown: back to the host's netns (the pod's then dies with its last process), then remove
    the veth and free the address in a forked child. Problems are printed (to the watcher log),
    not raised: the allocation then stays for `gc`."""
    try:
        if host_netns_fd >= 0:
            native.setns(host_netns_fd, native.CLONE_NEWNET)
        result = _in_child(_release, root, uid)
        if result is None:
            raise NsboxError(f"releasing it did not finish within {CHILD_TIMEOUT:.0f} s")
        if "error" in result:
            raise NsboxError(result["error"])
    except (OSError, NsboxError) as e:
        print(f"network: cannot release the address of pod {uid}: {e}", file=sys.stderr)


def _release(root: str, uid: str) -> dict[str, Any]:
    try:
        return {"freed": release(root, uid)}
    except OSError as e:
        return {"error": str(e)}


def _in_child(work: Any, *args: Any) -> dict[str, Any] | None:
    """work(*args) in a forked child, which sends back the dict it returns ({"error": why} if it
    raised) and exits: whatever it imports (pyroute2) never enters the watcher, which lives as
    long as its pod. None if it did not finish within CHILD_TIMEOUT (it is killed)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child_main(w, work, args)
    os.close(w)
    try:
        data = _read_all(r, CHILD_TIMEOUT)
    finally:
        os.close(r)
    if data is None:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    if data is None:
        return None
    return json.loads(data) if data else {"error": "the network process died"}


def _child_main(report_fd: int, work: Any, args: tuple[Any, ...]) -> None:
    try:
        # The watcher's signal plumbing is not ours: a signal here must not wake the watcher's loop.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        result = work(*args)
    except NsboxError as e:
        result = {"error": str(e)}
    except BaseException as e:
        import traceback

        traceback.print_exc()
        result = {"error": f"internal error in the pod's network process: {e!r}"}
    try:
        os.write(report_fd, json.dumps(result).encode())
    finally:
        sys.stderr.flush()
        os._exit(0)


def _read_all(fd: int, timeout: float) -> bytes | None:
    """Everything written to a pipe until its writer closes it; None on timeout."""
    import selectors

    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


# ---------------------------------------------------------------- releasing and collecting (any process)


def release(root: str, uid: str) -> list[str]:
    """Remove the veth and free the address of pod `uid` of `root` (any bridge). Returns the freed IPs."""
    freed = []
    for pool in pools():
        with pool.locked(create=False) as exists:
            if not exists:
                continue
            for rec in pool.allocations():
                if rec.get("uid") == uid and rec.get("root") == root:
                    _delete_link(rec["veth"])
                    pool.free(rec["ip"])
                    freed.append(rec["ip"])
    return freed


def collect(remove_idle_bridges: bool = False) -> list[str]:
    """`gc`: free the allocations (host-wide, any root) whose pod is gone; with
    `remove_idle_bridges` (`gc --all`), also remove the bridges no pod uses."""
    from nsbox.state import Root

    done = []
    for pool in pools():
        with pool.locked(create=False) as exists:
            if not exists:
                continue
            for rec in pool.allocations():
                root, uid = rec.get("root"), rec.get("uid")
                if root and uid and os.path.exists(Root(root).pod(uid).pod_json):
                    continue
                if rec.get("veth"):
                    _delete_link(rec["veth"])
                pool.free(rec["ip"])
                done.append(f"address {rec['ip']} on {pool.bridge} (pod {uid or 'unknown'}): released")
            if remove_idle_bridges and not pool.allocations():
                _delete_link(pool.bridge)
                pool.remove()
                done.append(f"bridge {pool.bridge}: removed")
    return done


def _delete_link(name: str) -> bool:
    """nsbox.plumbing.delete_link, imported only when a link is to go (it loads pyroute2)."""
    from nsbox import plumbing

    return plumbing.delete_link(name)
