"""The pod network (`--network bridge`) on the real kernel.

Every test runs on a bridge and a subnet private to it (`nsbt<random>`,
10.213.X.0/24 chosen not to overlap any host route), removed at the end; the
only traffic is between pods and the host on that bridge. Observers are not
nsbox: `nsenter -n` + `ip`, `ip link` on the host, sockets from the host, the
allocation files under /run/nsbox-net.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys

import pytest
from conftest import NSBOX, alive, cleanup_root, wait_for

STATE_DIR = "/run/nsbox-net"

TCP_SERVER = (
    "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    "s.bind(('0.0.0.0', 8080)); s.listen(); print('listening', flush=True)\n"
    "while True:\n c, _ = s.accept(); c.sendall(b'tcp hello from ' + socket.gethostname().encode()); c.close()"
)
UDP_SERVER = (
    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9090)); "
    "print('listening', flush=True)\n"
    "while True:\n d, a = s.recvfrom(100); s.sendto(b'udp ' + d + b' from ' + socket.gethostname().encode(), a)"
)
TCP_CLIENT = "import socket, sys; print(socket.create_connection((sys.argv[1], 8080), timeout=3).recv(100).decode())"
UDP_CLIENT = (
    "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); "
    "s.sendto(b'ping', (sys.argv[1], 9090)); print(s.recv(100).decode())"
)


# ---------------------------------------------------------------- a private bridge per test


def host_routes() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        words = line.split()
        dst = words[1] if words[0] in ("local", "broadcast", "unicast", "multicast") else words[0]
        if dst != "default":
            nets.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    return nets


def free_test_subnet(prefix: int = 24) -> str:
    taken = host_routes()
    for _ in range(100):
        net = ipaddress.ip_network(f"10.213.{random.randrange(256)}.0/{prefix}")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    pytest.skip("no free 10.213.x.0/24 on this host")


def links() -> set[str]:
    return {os.path.basename(p) for p in os.listdir("/sys/class/net")}


class Bridge:
    def __init__(self, name: str, subnet: str):
        self.name, self.subnet = name, subnet
        self.gateway = str(ipaddress.ip_network(subnet).network_address + 1)
        self.state = os.path.join(STATE_DIR, name)

    def allocations(self) -> dict[str, dict]:
        d = os.path.join(self.state, "ips")
        if not os.path.isdir(d):
            return {}
        out = {}
        for ip in os.listdir(d):
            with open(os.path.join(d, ip)) as f:
                out[ip] = json.load(f)
        return out

    def ports(self) -> list[str]:
        d = f"/sys/class/net/{self.name}/brif"
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.fixture
def bridge(nsbox, monkeypatch):
    """A bridge name and subnet for this test only (the CLI reads them from the environment)."""
    b = Bridge(f"nsbt{random.randrange(16**6):06x}", free_test_subnet())
    monkeypatch.setenv("NSBOX_BRIDGE", b.name)
    monkeypatch.setenv("NSBOX_BRIDGE_SUBNET", b.subnet)
    yield b
    cleanup_root(nsbox)  # the pods go first (the nsbox fixture then checks for leftovers)
    left = b.allocations()
    subprocess.run(["ip", "link", "del", b.name], capture_output=True)
    shutil.rmtree(b.state, ignore_errors=True)
    assert not left, f"addresses left allocated: {left}"


# ---------------------------------------------------------------- helpers


def pod_ip(nsbox, name: str) -> str:
    return wait_for(lambda: nsbox.pod(name)["status"].get("podIP"), what=f"the IP of pod {name}")


def in_pod_netns(pid: int, *cmd: str) -> str:
    return subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd], capture_output=True, text=True, check=True).stdout


def start_servers(nsbox, pod: str) -> None:
    nsbox("pod", "create", pod, "--network", "bridge")
    for name, code in (("tcp", TCP_SERVER), ("udp", UDP_SERVER)):
        nsbox("run", name, "--pod", pod, "--init", "--", sys.executable, "-c", code)
        wait_for(lambda: "listening" in nsbox("logs", pod, "-c", name).stdout, what=f"{name} server in {pod}")


def host_veth(uid: str) -> str:
    return "nsb" + uid.replace("-", "")[:12]


def run_bridge_pod(nsbox, name: str, *cmd: str) -> subprocess.CompletedProcess:
    return nsbox("run", name, "--network", "bridge", "--init", "--", *(cmd or ("sleep", "300")))


# ---------------------------------------------------------------- the pod's interface


def named_netns() -> list[str]:
    return sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []


@pytest.mark.cgroupv2
def test_a_bridge_pod_has_eth0_with_its_ip_and_a_default_route_via_the_bridge(nsbox, bridge):
    netns_before = named_netns()
    run_bridge_pod(nsbox, "web")
    ip = pod_ip(nsbox, "web")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(bridge.subnet) and ip != bridge.gateway
    pid = nsbox.pid("web")
    addr = in_pod_netns(pid, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    assert f"inet {ip}/24" in addr
    assert f"default via {bridge.gateway} dev eth0" in in_pod_netns(pid, "ip", "-4", "route")
    # On the host: the bridge with its gateway address, and the pod's veth as its port.
    host = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge.name], capture_output=True, text=True).stdout
    assert f"inet {bridge.gateway}/24" in host
    assert bridge.ports() == [host_veth(nsbox.uid("web"))]
    # No named netns was made for it (pyroute2's netns helpers would make /run/netns files).
    assert named_netns() == netns_before


def test_the_pod_ip_is_in_get_wide_status_downward_api_and_etc_hosts(nsbox, bridge):
    nsbox(
        "apply",
        "-f",
        "-",
        input="""
apiVersion: v1
kind: Pod
metadata:
  name: hello
  annotations: {nsbox.io/network: bridge, nsbox.io/init: "true"}
spec:
  containers:
  - name: main
    command: ["sh", "-c", "echo POD_IP=$POD_IP; cat /etc/hosts; sleep 300"]
    env:
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
""",
    )
    ip = pod_ip(nsbox, "hello")
    status = nsbox.pod("hello")["status"]
    assert status["podIPs"] == [{"ip": ip}]
    wide = nsbox("get", "pods", "-o", "wide").stdout.splitlines()
    assert "IP" in wide[0].split() and ip in wide[1].split()
    out = wait_for(lambda: "hello" in (o := nsbox("logs", "hello").stdout) and o, what="the container's output")
    assert f"POD_IP={ip}" in out
    assert f"{ip}\thello" in out
    assert nsbox("exec", "hello", "--", "sh", "-c", "echo $POD_IP").stdout.strip() == ip


def test_a_loopback_pod_has_no_ip(nsbox, bridge):
    nsbox("run", "solo", "--", "sleep", "300")
    status = nsbox.pod("solo")["status"]
    assert "podIP" not in status and "podIPs" not in status
    assert in_pod_netns(nsbox.pid("solo"), "ip", "-4", "-o", "addr").split()[1] == "lo"
    assert not bridge.allocations()


# ---------------------------------------------------------------- reachability


def test_pods_reach_each_other_by_ip_over_tcp_and_udp(nsbox, bridge):
    start_servers(nsbox, "server")
    ip = pod_ip(nsbox, "server")
    run_bridge_pod(nsbox, "client")
    assert nsbox("exec", "client", "--", sys.executable, "-c", TCP_CLIENT, ip).stdout.strip() == "tcp hello from server"
    assert nsbox("exec", "client", "--", sys.executable, "-c", UDP_CLIENT, ip).stdout.strip() == "udp ping from server"


def test_the_host_reaches_a_pod_by_its_ip(nsbox, bridge):
    start_servers(nsbox, "server")
    ip = pod_ip(nsbox, "server")
    with socket.create_connection((ip, 8080), timeout=3) as s:
        assert s.recv(100) == b"tcp hello from server"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"ping", (ip, 9090))
        assert s.recv(100) == b"udp ping from server"


def test_a_loopback_pod_reaches_no_pod_ip(nsbox, bridge):
    start_servers(nsbox, "server")
    ip = pod_ip(nsbox, "server")
    nsbox("run", "lonely", "--init", "--", "sleep", "300")
    for client in (TCP_CLIENT, UDP_CLIENT):
        p = nsbox("exec", "lonely", "--", sys.executable, "-c", client, ip, check=False)
        assert p.returncode != 0 and "Network is unreachable" in p.stderr


# ---------------------------------------------------------------- address management


def test_twenty_pods_created_in_parallel_get_twenty_distinct_addresses(nsbox, bridge):
    procs = [nsbox.popen("run", f"p{i}", "--network", "bridge", "--init", "--", "sleep", "300") for i in range(20)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    pods = json.loads(nsbox("get", "pods", "-o", "json").stdout)["items"]
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 20
    assert sorted(bridge.allocations()) == sorted(ips)
    assert {a["uid"] for a in bridge.allocations().values()} == {p["metadata"]["uid"] for p in pods}
    assert len(bridge.ports()) == 20
    # Each pod really has the address it was given.
    for p in pods[:5]:
        pid = nsbox.pid(p["metadata"]["name"])
        assert f"inet {p['status']['podIP']}/" in in_pod_netns(pid, "ip", "-4", "-o", "addr", "show", "dev", "eth0")


def test_delete_removes_the_veth_and_frees_the_address_but_keeps_the_bridge(nsbox, bridge):
    run_bridge_pod(nsbox, "gone")
    uid, ip = nsbox.uid("gone"), pod_ip(nsbox, "gone")
    assert host_veth(uid) in links() and ip in bridge.allocations()
    nsbox("delete", "pod", "gone")
    # When delete returns, the host end is gone (deleted, not left to the kernel's netns cleanup).
    assert host_veth(uid) not in links()
    assert ip not in bridge.allocations()
    assert bridge.name in links() and bridge.ports() == []


def test_addresses_are_not_reused_at_once(nsbox, bridge):
    run_bridge_pod(nsbox, "first")
    first = pod_ip(nsbox, "first")
    nsbox("delete", "pod", "first")
    run_bridge_pod(nsbox, "second")
    assert pod_ip(nsbox, "second") != first


def test_a_pod_whose_watcher_was_killed_is_deleted_with_its_address(nsbox, bridge):
    run_bridge_pod(nsbox, "orphan")
    uid, ip = nsbox.uid("orphan"), pod_ip(nsbox, "orphan")
    watcher = nsbox.inspect("orphan")["watcher"]["pid"]
    os.kill(watcher, signal.SIGKILL)
    wait_for(lambda: not alive(watcher), what="the watcher to die")
    # The container outlives its watcher, and so do its netns and address.
    assert host_veth(uid) in links() and ip in bridge.allocations()
    nsbox("delete", "pod", "orphan", "--grace-period", "1")
    assert host_veth(uid) not in links()
    assert ip not in bridge.allocations()


def test_gc_releases_the_address_of_a_pod_that_no_longer_exists(nsbox, bridge):
    run_bridge_pod(nsbox, "crashed")
    uid, ip = nsbox.uid("crashed"), pod_ip(nsbox, "crashed")
    info = nsbox.inspect("crashed")
    # A crash that loses everything: the watcher and the container die, the pod's state goes.
    os.kill(info["watcher"]["pid"], signal.SIGKILL)
    os.kill(info["containers"][0]["pid"], signal.SIGKILL)
    shutil.rmtree(os.path.join(nsbox.root, "pods", uid))
    shutil.rmtree(os.path.join(nsbox.root, "names"))
    assert ip in bridge.allocations()
    nsbox("gc")
    # (gc is host-wide: another root's gc running at the same time may be the one that releases it.)
    assert ip not in bridge.allocations()
    wait_for(lambda: host_veth(uid) not in links(), what="the veth to go")
    # A live pod's address is left alone by gc, whichever root runs it.
    run_bridge_pod(nsbox, "alive")
    live = pod_ip(nsbox, "alive")
    subprocess.run(NSBOX + ["--root", nsbox.root + "-other", "gc"], check=True, capture_output=True)
    shutil.rmtree(nsbox.root + "-other", ignore_errors=True)
    assert live in bridge.allocations()


def test_collect_releases_exactly_the_allocations_whose_pod_file_is_gone(tmp_path, monkeypatch):
    from nsbox import network

    monkeypatch.setattr(network, "STATE_DIR", str(tmp_path / "net"))
    root = tmp_path / "root"
    (root / "pods" / "live").mkdir(parents=True)
    (root / "pods" / "live" / "pod.json").write_text("{}")
    (root / "pods" / "half").mkdir()  # a pod directory without pod.json: gone
    pool = network.Pool("nsbtunit")
    cfg = network.BridgeConfig("nsbtunit", "10.213.0.0/29")
    with pool.locked():
        for uid in ("live", "half", "lost"):
            pool.allocate(cfg, {"root": str(root), "uid": uid, "veth": "nsbtunitnone"})
    assert network.collect() == [
        "address 10.213.0.3 on nsbtunit (pod half): released",
        "address 10.213.0.4 on nsbtunit (pod lost): released",
    ]
    assert [a["uid"] for a in _allocations(pool)] == ["live"]
    assert network.collect(remove_idle_bridges=True) == []  # still in use: kept
    assert os.path.isdir(pool.dir)


def _allocations(pool):
    with pool.locked():
        return pool.allocations()


def test_gc_all_removes_the_bridge_once_no_pod_uses_it(nsbox, bridge):
    run_bridge_pod(nsbox, "last")
    nsbox("gc", "--all")
    assert bridge.name in links(), "a bridge in use was removed"
    nsbox("delete", "pod", "last", "--grace-period", "1")
    assert bridge.name in links(), "deleting the last pod keeps the bridge"
    assert f"bridge {bridge.name}: removed" in nsbox("gc", "--all").stdout
    assert bridge.name not in links() and not os.path.exists(bridge.state)


# ---------------------------------------------------------------- errors: one line, nothing made


def test_a_subnet_overlapping_a_host_route_is_refused_and_nothing_is_made(nsbox, bridge, monkeypatch):
    # Any route of the host will do; 127.0.0.0/8 (the local table) exists everywhere.
    connected = [n for n in host_routes() if n.prefixlen < 32 and not n.is_loopback]
    overlapping = str(connected[0]) if connected else "127.0.0.0/24"
    monkeypatch.setenv("NSBOX_BRIDGE_SUBNET", overlapping)
    before = links()
    p = nsbox("run", "web", "--network", "bridge", "--", "sleep", "300", check=False)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "overlaps the host route" in p.stderr, p.stderr
    assert nsbox("get", "pods", "web", check=False).returncode == 1
    assert links() == before and not os.path.exists(bridge.state)


def test_an_exhausted_range_is_refused_and_nothing_is_made(nsbox, bridge, monkeypatch):
    monkeypatch.setenv("NSBOX_BRIDGE_SUBNET", free_test_subnet(30))  # the gateway and one pod
    bridge.subnet = os.environ["NSBOX_BRIDGE_SUBNET"]
    run_bridge_pod(nsbox, "one")
    before, allocated = links(), bridge.allocations()
    p = nsbox("run", "two", "--network", "bridge", "--", "sleep", "300", check=False)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "no free address left" in p.stderr, p.stderr
    assert nsbox("get", "pods", "two", check=False).returncode == 1
    assert links() == before and bridge.allocations() == allocated
    assert bridge.ports() == [host_veth(nsbox.uid("one"))]


def test_a_bridge_keeps_the_subnet_it_was_made_with(nsbox, bridge, monkeypatch):
    run_bridge_pod(nsbox, "one")
    other = free_test_subnet()
    monkeypatch.setenv("NSBOX_BRIDGE_SUBNET", other)
    p = nsbox("run", "two", "--network", "bridge", "--", "sleep", "300", check=False)
    assert p.returncode == 1
    assert (
        p.stderr == f"error: bridge {bridge.name} already serves {bridge.subnet}, not {other} "
        f"(unset NSBOX_BRIDGE_SUBNET, or choose another NSBOX_BRIDGE)\n"
    )
    assert len(bridge.allocations()) == 1 and len(bridge.ports()) == 1


def test_a_bad_bridge_setting_is_refused_before_anything_is_made(nsbox, bridge, monkeypatch):
    monkeypatch.setenv("NSBOX_BRIDGE_SUBNET", "10.213.0.0/31")
    p = nsbox("pod", "create", "web", "--network", "bridge", check=False)
    assert p.returncode == 1 and p.stderr.startswith("error: NSBOX_BRIDGE_SUBNET=") and "/30 or larger" in p.stderr
    assert not os.path.exists(bridge.state)


def test_an_existing_interface_that_is_not_a_bridge_is_refused(nsbox, bridge, monkeypatch):
    monkeypatch.setenv("NSBOX_BRIDGE", "lo")
    p = nsbox("run", "web", "--network", "bridge", "--", "sleep", "300", check=False)
    assert p.returncode == 1 and "lo exists and is not a bridge" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(STATE_DIR, "lo"))


def test_a_missing_bridge_module_is_named_in_the_error():
    from pyroute2 import NetlinkError

    from nsbox import plumbing
    from nsbox.errors import NsboxError

    for refusal in (OSError(95, "Operation not supported"), NetlinkError(95, "Operation not supported")):
        with pytest.raises(
            NsboxError,
            match=r"^cannot create bridge nsbox0: the kernel has no bridge support "
            r"\(try: modprobe bridge\)$",
        ):
            with plumbing.netlink_step("cannot create bridge nsbox0", "bridge"):
                raise refusal
    for refusal in (OSError(17, "File exists"), NetlinkError(17, "File exists")):
        with pytest.raises(NsboxError, match=r"^step: File exists$"):
            with plumbing.netlink_step("step"):
                raise refusal


# nsbox.plumbing (pyroute2) in a network namespace of the test's own (unshare -n) as the
# host's, a second private netns as the pod's, and a private state directory: the bridge,
# the veth pair with its pod end as eth0, the addresses and the route; the refusals; link
# deletion. Observed with `ip`.
PLUMBING_SCRIPT = r"""
import json, os, subprocess, sys
from nsbox import native, network, plumbing
from nsbox.errors import NsboxError
network.STATE_DIR = sys.argv[2]
host = os.open("/proc/self/ns/net", os.O_RDONLY)
pod = os.open(sys.argv[1], os.O_RDONLY)
cfg = network.BridgeConfig("tbr0", "10.213.250.0/24")

def ip(*args, netns=None):
    cmd = (["nsenter", "--net=" + sys.argv[1]] if netns else []) + ["ip", *args]
    return subprocess.run(cmd, capture_output=True, text=True).stdout

def plumb(cfg, uid, veth):
    native.setns(pod, native.CLONE_NEWNET)          # plumb starts in the pod's netns, ends in the host's
    try:
        return network.as_dict(plumbing.plumb(cfg, {"root": "/r", "uid": uid, "veth": veth}, host))
    except NsboxError as e:
        native.setns(host, native.CLONE_NEWNET)
        return str(e)

def allocations():
    with network.Pool("tbr0").locked():
        return [(a["ip"], a["uid"]) for a in network.Pool("tbr0").allocations()]

out = {}
out["attached"] = plumb(cfg, "u1", "tv0")
out["bridge"] = ip("-d", "-o", "link", "show", "tbr0")
out["bridge_addr"] = ip("-4", "-o", "addr", "show", "tbr0")
out["port"] = ip("-d", "-o", "link", "show", "master", "tbr0")
out["eth0"] = ip("-4", "-o", "addr", "show", "eth0", netns=True)
out["route"] = ip("route", "show", "default", netns=True)
out["again"] = plumb(cfg, "u2", "tv0")                      # the veth's name is taken
out["allocations"] = allocations()
out["overlap"] = plumb(network.BridgeConfig("tbr1", "10.213.250.128/25"), "u3", "tv1")
out["not_a_bridge"] = plumb(network.BridgeConfig("tv0", "10.213.251.0/24"), "u4", "tv2")
subprocess.run(["ip", "link", "add", "tbr2", "type", "bridge"], check=True)
out["foreign_bridge"] = plumb(network.BridgeConfig("tbr2", "10.213.252.0/24"), "u5", "tv3")
out["first_use_fails"] = plumb(network.BridgeConfig("tbr3", "10.213.253.0/24"), "u6", "tv0")
out["links"] = ip("-o", "link")
out["state"] = sorted(os.listdir(sys.argv[2]))
out["deleted"] = plumbing.delete_link("tv0")
out["deleted_again"] = plumbing.delete_link("tv0")
out["pod_links"] = ip("-o", "link", netns=True)
print(json.dumps(out))
"""


@pytest.mark.cgroupv2
def test_plumbing_makes_the_bridge_veth_pair_address_and_route_that_ip_sees(tmp_path):
    holder = subprocess.Popen(["unshare", "-n", "sleep", "60"])  # the pod's netns, held by a sleep
    try:
        other = f"/proc/{holder.pid}/ns/net"
        wait_for(lambda: os.readlink(other) != os.readlink("/proc/self/ns/net"), what="the holder's netns")
        p = subprocess.run(
            ["unshare", "-n", sys.executable, "-c", PLUMBING_SCRIPT, other, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=os.path.dirname(os.path.dirname(__file__)),
        )
    finally:
        holder.kill()
        holder.wait()
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["attached"] == {
        "ip": "10.213.250.2",
        "prefix_len": 24,
        "gateway": "10.213.250.1",
        "bridge": "tbr0",
        "veth": "tv0",
    }
    assert "bridge" in out["bridge"].split() and ",UP" in out["bridge"]
    assert "inet 10.213.250.1/24" in out["bridge_addr"]
    assert out["port"].count("\n") == 1 and "tv0@" in out["port"] and " veth " in out["port"]
    assert "inet 10.213.250.2/24" in out["eth0"]
    assert out["route"].startswith("default via 10.213.250.1 dev eth0")
    assert out["again"] == "cannot create the veth pair tv0/eth0: File exists"  # nothing is replaced
    assert out["allocations"] == [["10.213.250.2", "u1"]]  # the refused one freed
    assert out["overlap"] == (
        "subnet 10.213.250.128/25 for bridge tbr1 overlaps the host route "
        "10.213.250.0/24 dev tbr0 (choose another NSBOX_BRIDGE_SUBNET)"
    )
    assert out["not_a_bridge"] == "tv0 exists and is not a bridge (choose another NSBOX_BRIDGE)"
    assert out["foreign_bridge"] == (
        "bridge tbr2 exists without the address 10.213.252.1/24: nsbox did not "
        "make it (remove it, or choose another NSBOX_BRIDGE)"
    )
    # A bridge made for a pod whose veth then fails goes again, with its state: one clean error.
    assert out["first_use_fails"] == "cannot create the veth pair tv0/eth0: File exists"
    assert {line.split(":")[1].strip().split("@")[0] for line in out["links"].splitlines()} == {
        "lo",
        "tbr0",
        "tv0",
        "tbr2",
    }  # nothing half-made
    assert out["state"] == ["tbr0"]
    assert out["deleted"] is True and out["deleted_again"] is False
    assert "eth0" not in out["pod_links"]  # both ends went
