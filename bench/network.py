"""What a pod IP costs: bridge pods next to loopback pods, nsbox against podman's bridge network.

    sudo python3 -m bench.network [-n 10] [--skip podman] [--no-install]

nsbox (the command `python -m bench` would time, see bench/README.md):
`pod create NAME --network bridge|loopback` and `delete pod NAME`, on a
bridge and a 10.213.x.0/24 subnet private to the run (removed at the end).

podman: `pod create --network NET` + `pod start` (podman makes no namespace
before the pod starts) and `pod rm -f`, on a private `--internal
--disable-dns` netavark bridge network with another free 10.213.x.0/24, next
to the same with `--network none`. Like nsbox's bridge, it routes and NATs
nothing beyond the bridge and runs no DNS server: same work, no traffic.
Its state is private (--root/--runroot/--tmpdir and network_config_dir under
--work); peers are installed as `python -m bench` does.

The cases take turns (bench.common.interleave: 2 warm-up rounds, then n);
each cell is the median and range. Also the first nsbox bridge pod (which
makes the bridge) on its own, and the watcher's memory of each nsbox kind,
in Python just after `pod create` and once it hibernated (nsbox-idle).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time

from bench import peers
from bench.__main__ import REPO, default_nsbox
from bench.common import BenchError, Case, Series, interleave, log, run, smaps_rollup, timed

NETWORK_CONF = """[network]
network_backend = "netavark"
network_config_dir = "{dir}"
"""


def free_subnets(count: int) -> list[str]:
    """`count` distinct 10.213.x.0/24 that overlap no route of any table."""
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    taken = []
    for line in out.splitlines():
        w = line.split()
        dst = w[1] if w[0] in ("local", "broadcast", "unicast", "multicast") else w[0]
        if dst != "default":
            taken.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    free = [
        n
        for n in (ipaddress.ip_network(f"10.213.{x}.0/24") for x in random.sample(range(256), 256))
        if not any(n.overlaps(t) for t in taken)
    ]
    if len(free) < count:
        sys.exit("not enough free 10.213.x.0/24 subnets on this host")
    return [str(n) for n in free[:count]]


class NsboxPods:
    def __init__(self, argv: list[str], env: dict[str, str], root: str):
        self.argv, self.env, self.root = argv, env, root

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv, "--root", self.root, *args]

    def create(self, name: str, kind: str) -> float:
        return timed(self.cmd("pod", "create", name, "--network", kind), env=self.env)

    def delete(self, name: str) -> float:
        return timed(self.cmd("delete", "pod", name), env=self.env)

    def force_delete(self, name: str) -> None:
        run(self.cmd("delete", "pod", name, "--force", "--grace-period=0"), env=self.env, check=False)

    def watcher(self, name: str) -> int:
        out = run(self.cmd("inspect", name), env=self.env, capture=True).stdout
        return json.loads(out)["watcher"]["pid"]

    def cleanup(self) -> None:
        run(self.cmd("delete", "pod", "--all", "--force", "--grace-period=0"), env=self.env, check=False)
        run(self.cmd("gc", "--all"), env=self.env, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


class PodmanPods:
    def __init__(self, work: str, subnet: str):
        self.podman = peers.Podman(work, rootfs="")  # no image: a pod is its infra container
        self.net = f"nsbench-{random.randrange(16**6):06x}"
        self.subnet = subnet
        with open(os.path.join(self.podman.dir, "containers.conf"), "a") as f:
            f.write(NETWORK_CONF.format(dir=os.path.join(self.podman.dir, "networks")))

    def t(self, *args: str) -> float:
        return self.podman.t(*args)

    def setup(self) -> None:
        # The first pod create builds the pause image: untimed.
        run(
            self.podman.cmd("pod", "create", "--network", "none", "--name", "nsbench-warm"),
            env=self.podman.env,
            timeout=600,
        )
        run(self.podman.cmd("pod", "rm", "-f", "nsbench-warm"), env=self.podman.env)
        run(
            self.podman.cmd("network", "create", "--internal", "--disable-dns", "--subnet", self.subnet, self.net),
            env=self.podman.env,
        )

    def create(self, name: str, kind: str) -> float:
        network = self.net if kind == "bridge" else "none"
        return self.t("pod", "create", "--network", network, "--name", name) + self.t("pod", "start", name)

    def delete(self, name: str) -> float:
        return self.t("pod", "rm", "-f", name)

    def force_delete(self, name: str) -> None:
        self.podman.force_delete(name)

    def cleanup(self) -> list[str]:
        left = self.podman.cleanup()
        run(self.podman.cmd("network", "rm", "-f", self.net), env=self.podman.env, check=False)
        return left


def watcher_memory(pods: NsboxPods, kind: str) -> dict[str, tuple[int, int]]:
    """(RSS, PSS) KiB of a new pod's watcher: in Python just after create, then as nsbox-idle."""
    name = f"mem-{kind}"
    pods.create(name, kind)
    try:
        pid = pods.watcher(name)
        out = {"python": smaps_rollup(pid)}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.readlink(f"/proc/{pid}/exe").endswith("nsbox-idle"):
                time.sleep(0.2)
                out["idle"] = smaps_rollup(pid)
                break
            time.sleep(0.05)
        return out
    finally:
        pods.force_delete(name)


def made(pods: NsboxPods | PodmanPods, name: str, kind: str) -> str:
    pods.create(name, kind)
    return name


def cell(s: Series) -> str:
    if not s.samples:
        return s.note or "–"
    return f"{s.median:.0f} ({s.lo:.0f}–{s.hi:.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10, help="timed runs per case (default 10)")
    ap.add_argument("--nsbox", default=None, help=f"the nsbox command to time (default: {default_nsbox()!r})")
    ap.add_argument("--skip", action="append", default=[], choices=["podman"], help="leave out podman")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get missing peers")
    ap.add_argument("--work", default="/tmp/nsbox-bench-network", help="private work dir")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")

    os.makedirs(args.work, exist_ok=True)
    nsbox_subnet, podman_subnet = free_subnets(2)
    bridge = f"nsbb{random.randrange(16**6):06x}"
    env = dict(os.environ, NSBOX_BRIDGE=bridge, NSBOX_BRIDGE_SUBNET=nsbox_subnet)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed package runs (bench/README.md)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(args.work, "pycache")
    argv = shlex.split(args.nsbox or default_nsbox())
    if args.nsbox is None and "-m" in argv:
        env["PYTHONPATH"] = REPO
    nsbox = NsboxPods(argv, env, os.path.join(args.work, "root"))
    runtimes: dict[str, NsboxPods | PodmanPods] = {"nsbox": nsbox}
    if "podman" not in args.skip:
        if "podman" in peers.ensure_packages(install=not args.no_install) and shutil.which("runc"):
            runtimes["podman"] = PodmanPods(args.work, podman_subnet)
        else:
            log("skipping podman: podman or runc is not installed")
    memory: dict[str, dict[str, tuple[int, int]]] = {}
    results: list[Series] = []
    first = float("nan")
    try:
        nsbox.cleanup()
        # Fills the bytecode cache (nsbox's and pyroute2's), as an installed package has it;
        # gc --all then removes the bridge again, for the first pod to make.
        made(nsbox, "warm", "bridge")
        nsbox.delete("warm")
        run(nsbox.cmd("gc", "--all"), env=env)
        first = nsbox.create("first", "bridge")
        nsbox.delete("first")
        if "podman" in runtimes:
            runtimes["podman"].setup()
        cases = [(rt, kind) for rt in runtimes for kind in ("loopback", "bridge")]

        def label(rt: str, kind: str) -> str:
            return f"{rt} {'none' if rt == 'podman' and kind == 'loopback' else kind}"

        log(f"pod create: {', '.join(label(*c) for c in cases)} × {args.n}")
        results += interleave(
            "pod create",
            [
                Case(
                    label(rt, kind),
                    prepare=lambda i, k=kind[0]: f"c{k}{i}",
                    measure=lambda name, p=runtimes[rt], k=kind: p.create(name, k),
                    after=lambda name, p=runtimes[rt]: name and p.force_delete(name),
                )
                for rt, kind in cases
            ],
            args.n,
        )
        log(f"delete: {', '.join(label(*c) for c in cases)} × {args.n}")
        results += interleave(
            "delete pod",
            [
                Case(
                    label(rt, kind),
                    prepare=lambda i, p=runtimes[rt], k=kind: made(p, f"d{k[0]}{i}", k),
                    measure=runtimes[rt].delete,
                    after=lambda name, p=runtimes[rt]: name and p.force_delete(name),
                )
                for rt, kind in cases
            ],
            args.n,
        )
        for kind in ("loopback", "bridge"):
            memory[kind] = watcher_memory(nsbox, kind)
    except (BenchError, subprocess.TimeoutExpired) as e:
        log(f"failed: {e}")
    finally:
        nsbox.cleanup()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)  # if gc could not
        if "podman" in runtimes:
            left = runtimes["podman"].cleanup()
            if left:
                log(f"podman: left after clean-up: {left}")

    labels = [s.runtime for s in results if s.op == "pod create"]
    print(
        f"`{shlex.join(argv)}`, medians of {args.n}, ms (min–max); nsbox bridge {bridge} {nsbox_subnet}"
        + (f", podman network {podman_subnet}" if "podman" in runtimes else "")
    )
    print()
    print("| | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for op in ("pod create", "delete pod"):
        row = {s.runtime: s for s in results if s.op == op}
        print(f"| {op} | " + " | ".join(cell(row[lb]) for lb in labels if lb in row) + " |")
    print()
    for rt in runtimes:
        for op in ("pod create", "delete pod"):
            row = {s.runtime: s for s in results if s.op == op}
            a, b = row.get(f"{rt} bridge"), row.get(label(rt, "loopback"))
            if a and b and a.samples and b.samples:
                print(f"- {rt}: a bridge pod costs {a.median - b.median:+.0f} ms per {op}")
    print(f"- nsbox: first bridge pod (makes the bridge): {first:.0f} ms")
    for kind, m in memory.items():
        text = ", ".join(
            f"{phase} {rss / 1024:.1f} MB RSS / {pss / 1024:.1f} MB PSS" for phase, (rss, pss) in m.items()
        )
        print(f"- nsbox {kind} pod's watcher: {text}")


if __name__ == "__main__":
    main()
