"""The runtimes under test: nsbox and its peers, each behind the same small set of operations.

Every runtime keeps its state in a private directory under the bench's work
directory (nsbox --root, podman --root/--runroot/--tmpdir, runc/crun --root),
so clean-up never touches anybody else's pods or containers on a shared machine.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import subprocess
import time

from bench.common import NS, BenchError, argv0, children_map, descendants, kill_pids, log, pids_matching, run, timed

PEER_PACKAGES = {
    "crun": "crun",
    "runc": "runc",
    "podman": "podman",
    "bwrap": "bubblewrap",
    "busybox": "busybox-static",
    "unshare": "util-linux",
    "strace": "strace",
    "nsenter": "util-linux",
    "skopeo": "skopeo",  # the images suite: pushes to its registry, and nsbox pulls with it
    "docker-registry": "docker-registry",
}
CATATONIT = "/usr/libexec/podman/catatonit"


def ensure_packages(install: bool) -> dict[str, str]:
    """Which peer tools are present (name -> path); with install, apt-get the missing ones first."""
    missing = sorted({pkg for tool, pkg in PEER_PACKAGES.items() if shutil.which(tool) is None})
    if missing and install:
        log(f"installing from Debian's packages: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")

        def apt_install() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q", *missing],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )

        p = apt_install()
        if p.returncode != 0:  # stale package lists: update once and try again
            subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p = apt_install()
            if p.returncode != 0:
                log(f"apt-get install failed: {p.stderr.strip()[-300:]}")
    return {tool: shutil.which(tool) for tool in PEER_PACKAGES if shutil.which(tool)}


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        return out.strip().splitlines()[0] if out.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# ---------------------------------------------------------------- a minimal busybox root


def make_rootfs(path: str) -> str:
    """busybox-static with one relative symlink per applet (busybox --install -s makes absolute
    links to wherever busybox was, which break inside a container), plus catatonit as /pause."""
    marker = os.path.join(path, ".complete")
    if os.path.exists(marker):
        return path
    shutil.rmtree(path, ignore_errors=True)
    for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "run"):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy2(shutil.which("busybox"), os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([shutil.which("busybox"), "--list"], capture_output=True, text=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", os.path.join(path, "bin", a))
    if os.path.exists(CATATONIT):
        shutil.copy2(CATATONIT, os.path.join(path, "pause"))
    with open(os.path.join(path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/:/bin/sh\n")
    open(marker, "w").close()
    return path


# ---------------------------------------------------------------- nsbox


class Nsbox:
    name = "nsbox"

    def __init__(self, argv: list[str], env: dict[str, str], root: str):
        self.argv, self.env, self.root = argv, env, root
        self.base = [*argv, "--root", root, "-n", NS]

    def cmd(self, *args: str) -> list[str]:
        return [*self.base, *args]

    def describe(self) -> str:
        extra = " ".join(
            f"{k}={v}"
            for k, v in self.env.items()
            if k in ("PYTHONPATH", "PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE") and os.environ.get(k) != v
        )
        return f"{extra + ' ' if extra else ''}{shlex.join(self.argv)}"

    def t(self, *args: str) -> float:
        return timed(self.cmd(*args), env=self.env)

    # operations ------------------------------------------------------
    def oneshot(self, i: int, seccomp: str = "") -> float:
        profile = ["--seccomp-profile", seccomp] if seccomp else []
        return self.t("run", "--rm", "-a", *profile, f"one{i}", "--", "/bin/true")

    def clear_seccomp_cache(self, i: int) -> int:
        """Untimed: empty the cache of compiled seccomp filters, so that the next start compiles."""
        cache = os.path.join(self.root, "cache", "seccomp")
        for name in os.listdir(cache) if os.path.isdir(cache) else []:
            os.unlink(os.path.join(cache, name))
        return i

    def pod_create(self, name: str) -> float:
        return self.t("pod", "create", name)

    def add_container(self, pod: str, cname: str, argv: list[str], seccomp: str = "") -> float:
        profile = ["--seccomp-profile", seccomp] if seccomp else []
        return self.t("run", cname, "--pod", pod, *profile, "--", *argv)

    def delete_pod(self, name: str) -> float:
        return self.t("delete", "pod", name)

    def run_pod(self, name: str, argv: list[str]) -> float:
        """A new pod with one container (the unit of the scale and footprint tests)."""
        return self.t("run", name, "--", *argv)

    def run_pod_argv(self, name: str, argv: list[str]) -> list[str]:
        return self.cmd("run", name, "--", *argv)

    def list_pods(self) -> float:
        return self.t("get", "pods")

    def delete_all(self) -> float:
        return self.t("delete", "pod", "--all")

    def force_delete(self, name: str) -> None:
        run(self.cmd("delete", "pod", name, "--force", "--grace-period=0"), env=self.env, check=False)

    # footprint -------------------------------------------------------
    def pod_processes(self, names: list[str]) -> dict[str, dict[str, list[int]]]:
        """pod -> {"overhead": [watcher], "workload": [container processes]}."""
        kids = children_map()
        out = {}
        for name in names:
            # The title, awake (Python's proctitle) or hibernated (nsbox-idle's argv[0]).
            w = [p for p in pids_matching(f"nsbox-watch {NS}/{name}") if argv0(p) == f"nsbox-watch {NS}/{name}"]
            work = [d for p in w for d in descendants(p, kids)]
            out[name] = {"overhead": w, "workload": work}
        return out

    def wait_idle(self, name: str, timeout: float = 10.0) -> None:
        """Until the pod's watcher has hibernated: 0.5 s after its last event it execs nsbox-idle."""
        title = f"nsbox-watch {NS}/{name}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in pids_matching(title):
                try:
                    if argv0(p) == title and os.path.basename(os.readlink(f"/proc/{p}/exe")) == "nsbox-idle":
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise BenchError(f"the watcher of {name} did not hibernate within {timeout:.0f} s")

    # clean-up --------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Remove every pod of the bench's root; returns the leftovers found afterwards."""
        if not os.path.isdir(self.root):
            return []
        run(self.cmd("delete", "pod", "--all", "--force", "--grace-period=0"), env=self.env, check=False, timeout=600)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.watchers():
            time.sleep(0.1)
        run(self.cmd("gc"), env=self.env, check=False, timeout=600)
        left = self.leftovers()
        if left:
            kill_pids(self.watchers())
            time.sleep(0.5)
            run(self.cmd("gc"), env=self.env, check=False, timeout=600)
        return left

    def watchers(self) -> list[int]:
        return pids_matching(f"nsbox-watch {NS}/")

    def leftovers(self) -> list[str]:
        left = []
        pods_dir = os.path.join(self.root, "pods")
        uids = os.listdir(pods_dir) if os.path.isdir(pods_dir) else []
        if uids:
            left.append(f"{len(uids)} pod state dirs under {pods_dir}")
        names = os.path.join(self.root, "names", NS)
        if os.path.isdir(names) and os.listdir(names):
            left.append(f"{len(os.listdir(names))} names under {names}")
        w = self.watchers()
        if w:
            left.append(f"{len(w)} watcher processes")
        logs = os.path.join(self.root, "logs")
        if os.path.isdir(logs) and os.listdir(logs):
            left.append(f"{len(os.listdir(logs))} log dirs")
        with open("/proc/self/mountinfo") as f:
            mounts = [ln for ln in f if self.root in ln]
        if mounts:
            left.append(f"{len(mounts)} mounts under {self.root} in the host's mount namespace")
        cg = [d for d in self.pod_cgroups_seen if any(os.path.isdir(p) for p in _cgroup_dirs(d))]
        if cg:
            left.append(f"{len(cg)} pod cgroups")
        return left

    pod_cgroups_seen: set[str] = set()

    def remember_cgroups(self) -> None:
        """Note the UIDs of the pods that exist now, to check later that their cgroups went."""
        pods_dir = os.path.join(self.root, "pods")
        if os.path.isdir(pods_dir):
            self.pod_cgroups_seen.update(os.listdir(pods_dir))


def _cgroup_dirs(uid: str) -> list[str]:
    base = "/sys/fs/cgroup"
    dirs = [os.path.join(base, c, "nsbox", f"pod{uid}") for c in os.listdir(base)]
    dirs.append(os.path.join(base, "nsbox", f"pod{uid}"))
    return dirs


# ---------------------------------------------------------------- podman

PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""


class NsboxWarm(Nsbox):
    """The same command through the warm command server (docs/design.md §11): NSBOX_SERVER=1 and
    a server directory of the bench's own; the server is started untimed before the first
    measurement and stopped at the clean-up. A root of its own, so its pods' names never meet
    the cold runtime's."""

    name = "nsbox warm"

    def __init__(self, argv: list[str], env: dict[str, str], root: str, server_dir: str):
        super().__init__(argv, {**env, "NSBOX_SERVER": "1", "NSBOX_SERVER_DIR": server_dir}, root)
        self.server_dir = server_dir
        self.server = ""  # `server status` once started: the same at the end, or the warm rows were not all warm

    def setup(self) -> None:
        os.makedirs(self.server_dir, mode=0o700, exist_ok=True)
        os.chmod(self.server_dir, 0o700)
        out = run(self.cmd("server", "start"), env=self.env, capture=True).stdout
        if not out.startswith("running"):
            raise BenchError(f"the command server did not start: {out}")
        self.server = out.strip()

    def cleanup(self) -> list[str]:
        left = super().cleanup()
        if self.server:
            now = run(self.cmd("server", "status"), env=self.env, capture=True, check=False).stdout.strip()
            if now != self.server:
                left.append(f"the warm server did not serve the whole run ({self.server!r}, at the end {now!r})")
        run(self.cmd("server", "stop"), env=self.env, check=False)
        self.server = ""
        return left


class Podman:
    name = "podman"
    image = "localhost/nsbench-bb"

    def __init__(self, work: str, rootfs: str):
        self.dir = os.path.join(work, "podman")
        self.rootfs = rootfs
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "containers.conf")
        with open(conf, "w") as f:
            f.write(PODMAN_CONF)
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.base = [
            "podman",
            "--root",
            os.path.join(self.dir, "storage"),
            "--runroot",
            os.path.join(self.dir, "run"),
            "--tmpdir",
            os.path.join(self.dir, "tmp"),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--runtime",
            "runc",
        ]

    def cmd(self, *args: str) -> list[str]:
        return [*self.base, *args]

    def with_storage(self, d: str, *args: str) -> list[str]:
        """A command on another, private storage under `d` (a cold pull's empty store)."""
        argv = list(self.base)
        for flag, sub in (("--root", "s"), ("--runroot", "r"), ("--tmpdir", "t")):  # a runroot ≤ 50 chars
            argv[argv.index(flag) + 1] = os.path.join(d, sub)
        return [*argv, *args]

    def t(self, *args: str) -> float:
        return timed(self.cmd(*args), env=self.env)

    def setup(self) -> None:
        if run(self.cmd("image", "exists", self.image), env=self.env, check=False).returncode != 0:
            log("podman: importing the busybox image")
            tar = subprocess.Popen(["tar", "-C", self.rootfs, "-c", "."], stdout=subprocess.PIPE)
            p = subprocess.run(
                self.cmd("import", "-", self.image),
                stdin=tar.stdout,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            tar.wait()
            if p.returncode != 0:
                raise BenchError(f"podman import: {p.stderr.strip()[-300:]}")
        # The first pod create builds the pause image: do it now, untimed.
        run(self.cmd("pod", "create", "--network", "none", "--name", "nsbench-warm"), env=self.env, timeout=600)
        run(self.cmd("pod", "rm", "-f", "nsbench-warm"), env=self.env)

    # operations ------------------------------------------------------
    def oneshot(self, i: int) -> float:
        p = f"one{i}"
        return (
            self.t("pod", "create", "--network", "none", "--name", p)
            + self.t("run", "--rm", "--pod", p, self.image, "/bin/true")
            + self.t("pod", "rm", "-f", p)
        )

    def pod_create(self, name: str) -> float:
        return self.t("pod", "create", "--network", "none", "--name", name)

    def pod_start(self, name: str) -> float:
        return self.t("pod", "start", name)

    def add_container(self, pod: str, cname: str, argv: list[str]) -> float:
        return self.t("run", "-d", "--pod", pod, "--name", f"{pod}-{cname}", self.image, *argv)

    def delete_pod(self, name: str) -> float:
        return self.t("pod", "rm", "-f", name)

    def run_pod(self, name: str, argv: list[str]) -> float:
        return self.pod_create(name) + self.add_container(name, "c", argv)

    def list_pods(self) -> float:
        return self.t("pod", "ps")

    def delete_all(self) -> float:
        return self.t("pod", "rm", "-f", "-a")

    def force_delete(self, name: str) -> None:
        run(self.cmd("pod", "rm", "-f", "-t", "0", name), env=self.env, check=False)

    def pod_processes(self, names: list[str]) -> dict[str, dict[str, list[int]]]:
        out = {}
        for name in names:
            infra = run(
                self.cmd("pod", "inspect", "--format", "{{.InfraContainerID}}", name), env=self.env, capture=True
            ).stdout.strip()
            ctr = f"{name}-c"
            over, work = [], []
            for cid, is_infra in ((infra, True), (ctr, False)):
                pid, conmon = run(
                    self.cmd("inspect", "--format", "{{.State.Pid}} {{.State.ConmonPid}}", cid),
                    env=self.env,
                    capture=True,
                ).stdout.split()
                over.append(int(conmon))
                (over if is_infra else work).append(int(pid))
            out[name] = {"overhead": over, "workload": work}
        return out

    def cleanup(self) -> list[str]:
        run(self.cmd("pod", "rm", "-f", "-a", "-t", "0"), env=self.env, check=False, timeout=900)
        run(self.cmd("rm", "-f", "-a", "-t", "0"), env=self.env, check=False, timeout=900)
        return self.leftovers()

    def leftovers(self) -> list[str]:
        left = []
        pods = run(self.cmd("pod", "ps", "-q"), env=self.env, check=False, capture=True).stdout.split()
        ctrs = run(self.cmd("ps", "-a", "-q"), env=self.env, check=False, capture=True).stdout.split()
        if pods:
            left.append(f"{len(pods)} podman pods")
        if ctrs:
            left.append(f"{len(ctrs)} podman containers")
        return left


# ---------------------------------------------------------------- runc and crun (OCI bundles)


def oci_config(args: list[str], rootfs: str, join_pid: int = 0, pidns: bool = True) -> dict:
    """A minimal OCI config: read-only busybox root, /proc, /dev, and net/ipc/uts/pid/mount
    namespaces — new ones, or (join_pid) the pause process's net/ipc/uts as a CRI does."""
    shared = ("network", "ipc", "uts")
    ns = []
    for t in ("pid", "network", "ipc", "uts", "mount"):
        if join_pid and t in shared:
            ns.append({"type": t, "path": f"/proc/{join_pid}/ns/{'net' if t == 'network' else t}"})
        elif t != "pid" or pidns:
            ns.append({"type": t})
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"],
            "cwd": "/",
            "capabilities": {
                k: ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"]
                for k in ("bounding", "effective", "permitted")
            },
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "nsbench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]},
        ],
        "linux": {
            "namespaces": ns,
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


class Oci:
    """runc or crun, driven directly: no shim, so a 'pod' is a pause container plus containers
    that join its net/ipc/uts namespaces (what a CRI runtime does below its shim)."""

    def __init__(self, name: str, work: str, rootfs: str):
        self.name = name
        self.dir = os.path.join(work, name)
        self.state = os.path.join(self.dir, "state")
        self.bundles = os.path.join(self.dir, "bundles")
        self.rootfs = rootfs
        self.prefix: list[str] = []
        self.holder: subprocess.Popen | None = None
        os.makedirs(self.bundles, exist_ok=True)
        self.pause_args = (
            ["/pause", "-P"] if os.path.exists(os.path.join(rootfs, "pause")) else ["/bin/sleep", "1000000"]
        )

    def setup(self) -> None:
        if self.name == "crun" and _hybrid_cgroups():
            # crun 1.8 refuses hybrid hosts: run it in a private mount namespace without the
            # cgroup2 mount. A holder keeps that namespace; nsenter (~1 ms) enters it.
            self.holder = subprocess.Popen(
                [
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    "umount /sys/fs/cgroup/unified && echo ok && exec sleep 1000000",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            if self.holder.stdout.readline().strip() != "ok":
                raise BenchError(f"crun: cannot make a non-hybrid mount namespace: {self.holder.stderr.read()}")
            self.prefix = ["nsenter", "-t", str(self.holder.pid), "-m", "--"]
        self.bundle("true", oci_config(["/bin/true"], self.rootfs))

    def bundle(self, name: str, config: dict) -> str:
        b = os.path.join(self.bundles, name)
        os.makedirs(b, exist_ok=True)
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(config, f)
        return b

    def cmd(self, *args: str) -> list[str]:
        return [*self.prefix, self.name, "--root", self.state, *args]

    def t(self, *args: str) -> float:
        return timed(self.cmd(*args))

    def oneshot(self, i: int) -> float:
        return self.t("run", "-b", os.path.join(self.bundles, "true"), f"one{i}")

    def pod_create(self, name: str) -> float:
        b = self.bundle(name, oci_config(self.pause_args, self.rootfs))
        return self.t("run", "-d", "-b", b, name)

    def pid(self, cid: str) -> int:
        out = run(self.cmd("state", cid), capture=True).stdout
        return int(json.loads(out)["pid"])

    def prepare_container(self, pod: str, cname: str, argv: list[str]) -> str:
        cid = f"{pod}-{cname}"
        self.bundle(cid, oci_config(argv, self.rootfs, join_pid=self.pid(pod)))
        return cid

    def add_container(self, pod: str, cname: str, argv: list[str]) -> float:
        """Timed part only: the bundle (config with the pause's namespace paths) was written by
        prepare_container, as a CRI writes it before it calls the runtime."""
        cid = f"{pod}-{cname}"
        return self.t("run", "-d", "-b", os.path.join(self.bundles, cid), cid)

    def containers_of(self, pod: str) -> list[str]:
        out = run(self.cmd("list", "-q"), capture=True).stdout.split()
        return [c for c in out if c.startswith(pod + "-")]

    def delete_pod(self, name: str) -> float:
        """SIGTERM to each container, wait for it to exit, delete it; then the pause."""
        t0 = time.perf_counter()
        for cid in self.containers_of(name):
            pid = self.pid(cid)
            fd = os.pidfd_open(pid)
            try:
                run(self.cmd("kill", cid, "TERM"))
                if not select.select([fd], [], [], 30)[0]:
                    run(self.cmd("kill", cid, "KILL"), check=False)
            finally:
                os.close(fd)
            run(self.cmd("delete", cid))
        run(self.cmd("delete", "-f", name))
        return (time.perf_counter() - t0) * 1000

    def run_pod(self, name: str, argv: list[str]) -> float:
        ms = self.pod_create(name)
        cid = self.prepare_container(name, "c", argv)
        return ms + timed(self.cmd("run", "-d", "-b", os.path.join(self.bundles, cid), cid))

    def force_delete(self, name: str) -> None:
        for cid in self.containers_of(name) + [name]:
            run(self.cmd("delete", "-f", cid), check=False)
        shutil.rmtree(os.path.join(self.bundles, name), ignore_errors=True)

    def pod_processes(self, names: list[str]) -> dict[str, dict[str, list[int]]]:
        return {n: {"overhead": [self.pid(n)], "workload": [self.pid(c) for c in self.containers_of(n)]} for n in names}

    def cleanup(self, final: bool = True) -> list[str]:
        left = []
        if os.path.isdir(self.state):
            for cid in run(self.cmd("list", "-q"), check=False, capture=True).stdout.split():
                run(self.cmd("delete", "-f", cid), check=False)
            rest = run(self.cmd("list", "-q"), check=False, capture=True).stdout.split()
            if rest:
                left.append(f"{len(rest)} {self.name} containers")
        if final and self.holder is not None:
            self.holder.kill()
            self.holder.wait()
            self.holder = None
        return left


def _hybrid_cgroups() -> bool:
    with open("/proc/self/mountinfo") as f:
        fstypes = [ln.split(" - ")[1].split()[0] for ln in f if " - " in ln]
    return "cgroup2" in fstypes and "cgroup" in fstypes


# ---------------------------------------------------------------- one-shot only


class Simple:
    def __init__(self, name: str, argv: list[str]):
        self.name, self.argv = name, argv

    def oneshot(self, i: int) -> float:
        return timed(self.argv)


def bwrap() -> Simple:
    return Simple(
        "bwrap",
        [
            "bwrap",
            "--unshare-all",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--die-with-parent",
            "/bin/true",
        ],
    )


def unshare() -> Simple:
    return Simple("unshare", ["unshare", "-n", "-i", "-u", "-p", "-f", "-m", "/bin/true"])
