"""How much a pod IP costs: create + delete of a bridge pod next to a loopback pod.

    sudo python3 bench/network.py [-n 10]

Runs the nsbox CLI (as a user would) against a private root, on a bridge and
a 10.213.x.0/24 subnet private to the run (removed at the end; no traffic).
Reports the median and range of N runs after one warm-up, for `pod create`
and `delete pod` of each kind, the first bridge pod (which also makes the
bridge) on its own, and the watcher's memory for each kind.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_subnet() -> str:
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    taken = []
    for line in out.splitlines():
        w = line.split()
        dst = w[1] if w[0] in ("local", "broadcast", "unicast", "multicast") else w[0]
        if dst != "default":
            taken.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    for _ in range(100):
        net = ipaddress.ip_network(f"10.213.{random.randrange(256)}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    sys.exit("no free 10.213.x.0/24 subnet on this host")


class Cli:
    def __init__(self, argv: list[str], root: str, env: dict[str, str]):
        self.argv, self.root, self.env = argv, root, env

    def __call__(self, *args: str) -> str:
        p = subprocess.run(self.argv + ["--root", self.root, *args], env=self.env, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=120)
        if p.returncode != 0:
            raise SystemExit(f"nsbox {' '.join(args)} failed: {p.stderr.strip()}")
        return p.stdout

    def timed(self, *args: str) -> float:
        t0 = time.perf_counter()
        self(*args)
        return (time.perf_counter() - t0) * 1000


def watcher_rss_kb(cli: Cli, pod: str) -> int:
    pid = json.loads(cli("inspect", pod))["watcher"]["pid"]
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def summary(samples: list[float]) -> str:
    return f"{statistics.median(samples):7.0f} ms  (min {min(samples):.0f}, max {max(samples):.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10, help="runs per kind (default 10)")
    ap.add_argument("--nsbox", default=f"{sys.executable} -m nsbox", help="the nsbox command to time")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")

    bridge, subnet = f"nsbb{random.randrange(16**6):06x}", free_subnet()
    env = dict(os.environ, NSBOX_BRIDGE=bridge, NSBOX_BRIDGE_SUBNET=subnet,
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    root = tempfile.mkdtemp(prefix="nsbn-", dir="/tmp")
    cli = Cli(args.nsbox.split(), root, env)
    results: dict[str, list[float]] = {}
    try:
        first = cli.timed("pod", "create", "first", "--network", "bridge")
        cli("delete", "pod", "first")
        cli("pod", "create", "warm", "--network", "loopback")
        cli("delete", "pod", "warm")
        rss = {}
        for i in range(args.n):
            for kind in ("loopback", "bridge"):
                name = f"{kind}{i}"
                results.setdefault(f"{kind} create", []).append(
                    cli.timed("pod", "create", name, "--network", kind))
                if i == 0:
                    rss[kind] = watcher_rss_kb(cli, name)
                results.setdefault(f"{kind} delete", []).append(cli.timed("delete", "pod", name))
    finally:
        subprocess.run(cli.argv + ["--root", root, "delete", "pod", "--all", "--force", "--grace-period", "0"],
                       env=env, capture_output=True)
        subprocess.run(cli.argv + ["--root", root, "gc", "--all"], env=env, capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)     # if gc could not
        shutil.rmtree(root, ignore_errors=True)

    print(f"nsbox pod create/delete, medians of {args.n} (bridge {bridge}, {subnet})")
    for op in ("create", "delete"):
        for kind in ("loopback", "bridge"):
            print(f"  {kind:8} {op:6} {summary(results[f'{kind} {op}'])}")
        extra = statistics.median(results[f"bridge {op}"]) - statistics.median(results[f"loopback {op}"])
        print(f"  bridge costs {extra:+.0f} ms per {op}")
    print(f"  first bridge pod (makes the bridge): {first:.0f} ms")
    print(f"  watcher RSS: loopback {rss['loopback'] / 1024:.1f} MB, bridge {rss['bridge'] / 1024:.1f} MB")


if __name__ == "__main__":
    main()
