"""The `images` suite: image pods and cold pulls, nsbox against podman with the same image.

Both runtimes get the very same image: examples/image/make-archive.sh builds
its oci-archive once, and both load that file (bench/README.md, "Image
pods"). A bigger image (busybox plus ~30 MB of /usr/share in a third layer)
is built by podman from the first one, so that unpacking shows in a pull.
Pulls come from Debian's docker-registry on 127.0.0.1, started here with a
private config and storage in the work dir and stopped by its PID.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

from bench.common import TRAP_WAIT, BenchError, Case, Series, interleave, log, run, timed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKE_ARCHIVE = os.path.join(REPO, "examples", "image", "make-archive.sh")
REF = "localhost/busybox:1.35"  # the name make-archive.sh gives its image
BIG_REF = "localhost/busybox-big:1.35"
BIG_BYTES = 30 * 1024 * 1024  # the files of /usr/share the big image's third layer holds
SLEEP = ["sleep", "100000"]
DOCKER_REGISTRY = "/usr/bin/docker-registry"


class ImageBench:
    """What the suite makes, all under WORK/images-bench and WORK/images, and its clean-up."""

    def __init__(self, work: str, nsb, podman=None):
        self.nsb, self.podman = nsb, podman
        self.dir = os.path.join(work, "images-bench")
        self.store = os.path.join(work, "images")  # nsbox's image store (--image-store)
        self.registry = Registry(os.path.join(self.dir, "registry"))
        self.archives: dict[str, str] = {}  # ref -> oci-archive
        self.sizes: dict[str, dict] = {}
        self.podman_images: list[str] = []
        self.big_content = ""

    def nsbox(self, *args: str, store: str | None = None) -> list[str]:
        return self.nsb.cmd("--image-store", store or self.store, *args)

    # set-up, untimed --------------------------------------------------
    def setup(self, big: bool = True) -> None:
        """Build the archives, load them into both runtimes, push them to a fresh local registry."""
        self.cleanup()  # a run killed hard may have left its files
        os.makedirs(self.dir)
        small = os.path.join(self.dir, "busybox.tar")
        log("images: building the busybox archive (examples/image/make-archive.sh)")
        run(["bash", MAKE_ARCHIVE, small], timeout=300)
        self.archives[REF] = small
        self.load(REF)
        if big and self.podman is not None:
            self.archives[BIG_REF] = self.build_big()
            self.load(BIG_REF, podman_has_it=True)
        self.registry.start()
        for ref, archive in self.archives.items():
            run(
                [
                    "skopeo",
                    "copy",
                    "--quiet",
                    f"oci-archive:{archive}",
                    f"docker://{self.registry.host}/{ref.split('/', 1)[1]}",
                    "--dest-tls-verify=false",
                ],
                timeout=300,
            )
        for ref, archive in self.archives.items():
            self.sizes[ref] = archive_sizes(archive)
        if BIG_REF in self.sizes:
            self.sizes[BIG_REF]["third_layer"] = self.big_content
        log(f"images: registry on {self.registry.host}; sizes {json.dumps(self.sizes)}")

    def load(self, ref: str, podman_has_it: bool = False) -> None:
        run(self.nsbox("image", "load", "-i", self.archives[ref]), env=self.nsb.env, timeout=300)
        if self.podman is not None and not podman_has_it:
            run(self.podman.cmd("load", "-i", self.archives[ref]), env=self.podman.env, timeout=300)
        if self.podman is not None:
            self.podman_images.append(ref)

    def build_big(self) -> str:
        """busybox:1.35 plus one layer of /usr/share files, built by podman and saved as an oci-archive."""
        ctx = os.path.join(self.dir, "big-context")
        n, size, tops = copy_share_files(os.path.join(ctx, "share"), BIG_BYTES)
        dirs = f"{tops[0]} … {tops[-1]}, {len(tops)} directories" if tops else "none"
        self.big_content = f"{n} files of /usr/share ({dirs}), {size / 2**20:.1f} MiB"
        with open(os.path.join(ctx, "Containerfile"), "w") as f:
            f.write(f"FROM {REF}\nCOPY share /usr/share\n")
        log(f"images: building {BIG_REF} with podman build: {self.big_content}")
        run(self.podman.cmd("build", "--pull=never", "-q", "-t", BIG_REF, ctx), env=self.podman.env, timeout=600)
        shutil.rmtree(ctx)
        archive = os.path.join(self.dir, "busybox-big.tar")
        run(
            self.podman.cmd("save", "--format", "oci-archive", "-o", archive, BIG_REF),
            env=self.podman.env,
            timeout=600,
        )
        return archive

    def remote(self, ref: str) -> str:
        """The name `ref` has in the bench's registry."""
        return f"{self.registry.host}/{ref.split('/', 1)[1]}"

    # clean-up ---------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Stop the registry, remove the images from podman's storage and every file the suite made.

        Runs after the harness has removed the pods and containers, so no pod holds the store."""
        left = []
        self.registry.stop()
        if self.podman is not None and self.podman_images:
            run(self.podman.cmd("rmi", "-f", *self.podman_images), env=self.podman.env, check=False)
            self.podman_images = []
        for d in (self.dir, self.store):
            unmount_under(d)
            shutil.rmtree(d, ignore_errors=True)
            if os.path.exists(d):
                left.append(f"{d} not removed")
            if mounts_under(d):
                left.append(f"{len(mounts_under(d))} mounts under {d}")
        return left


# ---------------------------------------------------------------- the suite


def suite(ib: ImageBench, reps: int, whole: bool = True) -> list[Series]:
    """Every row (`bench/run images`), or (whole=False, in the default run, ≈ 40 s) only the
    one-shot and the cold pull of the small image: create and remove spend ≈ 2 s per rep in
    nsbox's forced deletes (`remove`), which the quick run cannot afford."""
    out: list[Series] = []
    out += oneshot(ib, reps)
    if whole:
        out += create(ib, reps)
        out += remove(ib, reps)
    for ref in ib.archives if whole else [REF]:
        out += cold_pull(ib, ref, reps)
    return out


def oneshot(ib: ImageBench, reps: int) -> list[Series]:
    """`run --rm` of /bin/true from the image. Podman's main row is its one command; the pod
    form (pod create + run --pod + pod rm, as in the one-shot table) is shown beside it."""
    nsb, pm = ib.nsb, ib.podman
    cases = [
        Case(
            "nsbox",
            measure=lambda i: timed(
                ib.nsbox("run", "--rm", "-a", f"io{i}", "--image", REF, "--", "/bin/true"), nsb.env
            ),
        ),
        Case("nsbox, host files (no image)", measure=lambda i: nsb.oneshot(10000 + i)),
    ]
    if pm is not None:
        cases.append(Case("podman", measure=lambda i: pm.t("run", "--rm", "--network", "none", REF, "/bin/true")))
        cases.append(
            Case(
                "podman, in a pod",
                measure=lambda i: (
                    pm.t("pod", "create", "--network", "none", "--name", f"iop{i}")
                    + pm.t("run", "--rm", "--pod", f"iop{i}", REF, "/bin/true")
                    + pm.t("pod", "rm", "-f", f"iop{i}")
                ),
                after=lambda i: pm.force_delete(f"iop{i}"),
            )
        )
    log(f"images: one-shot: {', '.join(c.runtime for c in cases)} × {reps}")
    return interleave(f"image pod one-shot: run --rm {REF} /bin/true", cases, reps)


def create(ib: ImageBench, reps: int) -> list[Series]:
    """A detached image pod running `sleep 100000`; removed untimed."""
    nsb, pm = ib.nsb, ib.podman
    cases = [
        Case(
            "nsbox",
            prepare=lambda i: f"ic{i}",
            measure=lambda name: timed(ib.nsbox("run", name, "--image", REF, "--", *SLEEP), nsb.env),
            after=lambda name: name and nsb.force_delete(name),
        )
    ]
    if pm is not None:
        cases.append(
            Case(
                "podman",
                prepare=lambda i: f"ic{i}",
                measure=lambda name: pm.t("run", "-d", "--network", "none", "--name", name, REF, *SLEEP),
                after=lambda name: name and podman_rm(pm, name),
            )
        )
    log(f"images: create: {', '.join(c.runtime for c in cases)} × {reps}")
    return interleave("image pod create, detached (sleep 100000)", cases, reps)


def remove(ib: ImageBench, reps: int) -> list[Series]:
    """Two removals of a running image pod, each made untimed beforehand.

    Forced: the brief's commands. nsbox's `--force --grace-period 0` sends SIGTERM and SIGKILL
    2 s later (docs/lifecycle.md, Termination 7: the kubelet's minimum gap), and `sleep` as PID 1
    ignores SIGTERM, so it waits those 2 s; `podman rm -t 0` sends SIGKILL at once. Cooperative:
    the container exits on SIGTERM (`trap`), so both stop it, wait for its exit and tear down."""
    nsb, pm = ib.nsb, ib.podman
    coop = ["sh", "-c", TRAP_WAIT]

    def nsbox_pod(name: str, argv: list[str]) -> str:
        run(ib.nsbox("run", name, "--image", REF, "--", *argv), env=nsb.env)
        return name

    def podman_ctr(name: str, argv: list[str]) -> str:
        run(pm.cmd("run", "-d", "--network", "none", "--name", name, REF, *argv), env=pm.env)
        return name

    def settled(name: str) -> str:
        time.sleep(0.3)  # let the shell install its trap before the SIGTERM (as bench.suites does)
        return name

    out: list[Series] = []
    forced = [
        Case(
            "nsbox",
            prepare=lambda i: nsbox_pod(f"irf{i}", SLEEP),
            measure=lambda name: timed(nsb.cmd("delete", "pod", name, "--grace-period", "0", "--force"), nsb.env),
            after=lambda name: name and nsb.force_delete(name),
        )
    ]
    polite = [
        Case(
            "nsbox",
            prepare=lambda i: settled(nsbox_pod(f"irc{i}", coop)),
            measure=lambda name: timed(nsb.cmd("delete", "pod", name), nsb.env),
            after=lambda name: name and nsb.force_delete(name),
        )
    ]
    if pm is not None:
        forced.append(
            Case(
                "podman",
                prepare=lambda i: podman_ctr(f"irf{i}", SLEEP),
                measure=lambda name: pm.t("rm", "-f", "-t", "0", name),
                after=lambda name: name and podman_rm(pm, name),
            )
        )
        polite.append(
            Case(
                "podman",
                prepare=lambda i: settled(podman_ctr(f"irc{i}", coop)),
                measure=lambda name: pm.t("rm", "-f", name),
                after=lambda name: name and podman_rm(pm, name),
            )
        )
    log(f"images: remove: {', '.join(c.runtime for c in forced)} × {reps}, twice")
    out += interleave(
        "image pod remove, forced (sleep 100000; nsbox --grace-period 0 --force, podman rm -f -t 0)", forced, reps
    )
    out += interleave("image pod remove, container exits on SIGTERM (nsbox delete pod, podman rm -f)", polite, reps)
    return out


def cold_pull(ib: ImageBench, ref: str, reps: int) -> list[Series]:
    """Pull from the local registry into an empty store, made fresh for every rep (untimed)."""
    nsb, pm = ib.nsb, ib.podman
    remote = ib.remote(ref)
    # Short: podman refuses a runroot longer than 50 characters (its sockets' paths must fit).
    fresh = os.path.join(ib.dir, "f")

    def empty(name: str) -> str:
        d = os.path.join(fresh, name)
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)
        return d

    cases = [
        Case(
            "nsbox",
            prepare=lambda i: empty(f"n{i}"),
            measure=lambda d: timed(ib.nsbox("image", "pull", remote, store=d), nsb.env, timeout=600),
            after=lambda d: d and empty(os.path.basename(d)),
        )
    ]
    if pm is not None:
        cases.append(
            Case(
                "podman",
                prepare=lambda i: empty(f"p{i}"),
                measure=lambda d: timed(
                    pm.with_storage(d, "pull", "-q", "--tls-verify=false", remote), pm.env, timeout=600
                ),
                after=lambda d: d and empty(os.path.basename(d)),
            )
        )
    s = ib.sizes.get(ref, {})
    what = f"{s.get('layers', '?')} layers, {mib(s.get('compressed', 0))} MiB gzip, {mib(s.get('unpacked', 0))} MiB"
    log(f"images: cold pull of {remote}: {', '.join(c.runtime for c in cases)} × {reps}")
    out = interleave(f"cold pull + unpack of {ref} ({what})", cases, reps)
    shutil.rmtree(fresh, ignore_errors=True)
    return out


def podman_rm(pm, name: str) -> None:
    run(pm.cmd("rm", "-f", "-t", "0", name), env=pm.env, check=False)


# ---------------------------------------------------------------- images and files


def copy_share_files(dest: str, limit: int) -> tuple[int, int, list[str]]:
    """Regular files of /usr/share, in sorted order, until `limit` bytes: the big layer's content.
    Returns the count, the bytes and the top-level directories they came from."""
    n = total = 0
    tops: list[str] = []
    for top, dirs, files in os.walk("/usr/share"):
        dirs.sort()
        for f in sorted(files):
            src = os.path.join(top, f)
            if not os.path.isfile(src) or os.path.islink(src):
                continue
            size = os.path.getsize(src)
            target = os.path.join(dest, os.path.relpath(src, "/usr/share"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(src, target)
            n, total = n + 1, total + size
            first = os.path.relpath(src, "/usr/share").split("/")[0]
            if first not in tops:
                tops.append(first)
            if total >= limit:
                return n, total, tops
    return n, total, tops


def archive_sizes(archive: str) -> dict:
    """Layers, their compressed bytes and their unpacked (tar) bytes, from the oci-archive itself."""
    with tarfile.open(archive) as tar:

        def read(name: str) -> bytes:
            f = tar.extractfile(name)
            if f is None:
                raise BenchError(f"{archive}: no {name}")
            return f.read()

        index = json.loads(read("index.json"))
        manifest = json.loads(read("blobs/sha256/" + index["manifests"][0]["digest"].split(":", 1)[1]))
        unpacked = 0
        for layer in manifest["layers"]:
            blob = tar.extractfile("blobs/sha256/" + layer["digest"].split(":", 1)[1])
            if blob is None:
                raise BenchError(f"{archive}: no layer {layer['digest']}")
            with tarfile.open(fileobj=blob, mode="r|*") as lt:
                unpacked += sum(m.size for m in lt if m.isfile())
    return {
        "archive": os.path.getsize(archive),
        "layers": len(manifest["layers"]),
        "compressed": sum(layer["size"] for layer in manifest["layers"]),
        "unpacked": unpacked,
    }


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def mounts_under(d: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [ln.split()[4] for ln in f]
    return [p for p in points if p == d or p.startswith(d.rstrip("/") + "/")]


def unmount_under(d: str) -> None:
    """A storage made fresh for one pull is emptied; anything mounted in it goes first (deepest first)."""
    for p in sorted(mounts_under(d), key=len, reverse=True):
        subprocess.run(["umount", p], check=False, stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------- the local registry


class Registry:
    """Debian's docker-registry on 127.0.0.1, with its config and storage in `dir`, plain HTTP.

    The same few lines as tests/imagekit.py's `Registry` (the bench imports nothing from tests/)."""

    START_TIMEOUT = 30.0

    def __init__(self, dir: str):
        self.dir = dir
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """On a free port, until `GET /v2/` answers; a port taken meanwhile means another try."""
        if not os.path.exists(DOCKER_REGISTRY):
            raise BenchError(f"{DOCKER_REGISTRY} is missing (apt-get install docker-registry)")
        os.makedirs(self.dir, exist_ok=True)
        log_path = os.path.join(self.dir, "registry.log")
        for _ in range(3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            config = os.path.join(self.dir, "config.yml")
            with open(config, "w") as f:
                f.write(
                    "version: 0.1\nlog:\n  level: warn\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {os.path.join(self.dir, 'data')}\n"
                    f"http:\n  addr: {self.host}\n"
                )
            with open(log_path, "wb") as logf:
                self.process = subprocess.Popen(
                    [DOCKER_REGISTRY, "serve", config],
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            if self._ready():
                return
            self.stop()
        with open(log_path, errors="replace") as f:
            raise BenchError(f"docker-registry did not start: {f.read()[-600:]}")

    def _ready(self) -> bool:
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL: the PID started here, nothing else."""
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def _die_with_parent() -> None:
    """In the registry's child, before exec: a bench killed outright takes it along."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
