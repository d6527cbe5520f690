"""Shared test helpers: a private nsbox root per test, the CLI, polling, and independent observers.

Every test that runs pods gets its own `--root` (a short path under /tmp, so
unix socket paths stay short) and, whatever happens, its pods are
force-deleted, `gc` is run, and the test fails if anything is left behind:
a process, a mount, a cgroup, or a file under the root.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import imagekit
import pytest

NSBOX = [sys.executable, "-m", "nsbox"]

# Every object `get -o json|yaml` prints in a test is checked against the schemas of this
# Kubernetes version (shipped, offline, by the kubernetes-validate package of the test
# extra), strictly: an unknown field is an error, as the API server's strict field validation.
KUBERNETES_SCHEMA_VERSION = "1.37.0"

try:
    import kubernetes_validate
except ImportError:  # only the cgroup-v2 VM (Debian's packages, tests/vm/run) may lack it
    kubernetes_validate = None


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def command_servers() -> Iterator[None]:
    """The suite runs both ways (docs/design.md §11): with NSBOX_SERVER=1 every command goes
    through warm command servers, kept in a private directory and stopped at the end; otherwise
    no command uses one, even if one runs on this machine."""
    if os.environ.get("NSBOX_SERVER") != "1":
        os.environ["NSBOX_SERVER"] = "0"
        yield
        return
    directory = tempfile.mkdtemp(prefix="nsbox-servers-")
    os.environ["NSBOX_SERVER_DIR"] = directory
    try:
        yield
    finally:
        stop_servers(directory)
        shutil.rmtree(directory, ignore_errors=True)


def server_pid(lock: str) -> int | None:
    """The PID of the command server holding `lock` (its <name>.lock), None if none holds it."""
    from nsbox.state import lock_holder

    return int(lock_holder(lock) or b"0") or None


def stop_servers(directory: str) -> None:
    """Stop every command server of `directory` as `nsbox server stop` does (SIGTERM: it lets the
    commands under way finish); a test that failed may have left one of them running: after 30 s
    the server and its forks are killed. Waits until each server has exited."""
    for lock in glob.glob(os.path.join(directory, "*.lock")):
        pid = server_pid(lock)
        if not pid:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
        try:
            wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), timeout=30, what=f"server {pid} to exit")
        except AssertionError:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as f:
                forks = [int(c) for c in f.read().split()]
            for victim in [*forks, pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, 9)
            wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), timeout=30, what=f"server {pid} to die")


def _verb(args: tuple[str, ...]) -> str | None:
    """The command word of an nsbox command line, after global options (`-n NS get ...`)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1 if "=" in args[i] else 2
    return args[i] if i < len(args) else None


def _output_format(args: tuple[str, ...]) -> str | None:
    for i, a in enumerate(args):
        if a in ("-o", "--output") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--output="):
            return a.split("=", 1)[1]
        if a.startswith("-o") and len(a) > 2:
            return a[2:].lstrip("=")
    return None


def _yaml_load(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def validate_object(obj: Any) -> None:
    """Fail unless `obj` is a valid Kubernetes object of KUBERNETES_SCHEMA_VERSION (strict)."""
    if kubernetes_validate is None:
        if os.environ.get("NSBOX_TEST_VM") == "1":
            return
        raise AssertionError("the test extra's kubernetes-validate is not installed (pip install '.[test]')")
    try:
        kubernetes_validate.validate(obj, KUBERNETES_SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(x) for x in e.path) if hasattr(e, "path") else ""
        raise AssertionError(
            f"{obj.get('kind')} {obj.get('metadata', {}).get('name')} is not a valid "
            f"Kubernetes {KUBERNETES_SCHEMA_VERSION} object: {where}: {e.message}"
        ) from None


def validate_document(doc: Any) -> None:
    """An object, or each item of a List, as `get -o json|yaml` prints them."""
    assert isinstance(doc, dict), f"not an object: {doc!r}"
    if doc.get("kind") == "List":
        assert doc.get("apiVersion") == "v1" and set(doc) <= {"apiVersion", "kind", "items", "metadata"}, doc.keys()
        for item in doc["items"]:
            validate_object(item)
    else:
        validate_object(doc)


class Nsbox:
    """Runs the real `nsbox` CLI against one private root (and, given one, a private image store)."""

    def __init__(self, root: str, image_store: str | None = None):
        self.root = root
        self.image_store = image_store
        self.global_args = ["--root", root] + (["--image-store", image_store] if image_store else [])

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            NSBOX + [*self.global_args, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"nsbox {' '.join(args)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
            )
        output = _output_format(args)
        if p.returncode == 0 and _verb(args) == "get" and output in ("json", "yaml"):
            validate_document(json.loads(p.stdout) if output == "json" else _yaml_load(p.stdout))
        return p

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(NSBOX + [*self.global_args, *args], text=True, **kw)

    def pod(self, name: str) -> dict[str, Any]:
        return json.loads(self("get", "pods", name, "-o", "json").stdout)

    def inspect(self, name: str) -> dict[str, Any]:
        return json.loads(self("inspect", name).stdout)

    def pid(self, pod: str, container: str | None = None) -> int:
        """Host PID of a running container, from `nsbox inspect` (then checked through /proc)."""

        def find() -> int | None:
            for c in self.inspect(pod)["containers"]:
                if (container is None or c["name"] == container) and c["pid"]:
                    return c["pid"]
            return None

        return wait_for(find, what=f"container {container or pod} of pod {pod} to run")

    def container_state(self, pod: str, container: str | None = None) -> dict[str, Any]:
        statuses = self.pod(pod)["status"]["containerStatuses"]
        for st in statuses:
            if container is None or st["name"] == container:
                return st
        raise AssertionError(f"no container {container} in {statuses}")

    def uid(self, pod: str) -> str:
        return self.pod(pod)["metadata"]["uid"]


# ---------------------------------------------------------------- observers (not nsbox)


def pod(
    name: str, *containers: dict[str, Any], annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    """A v1 Pod manifest; every test pod gets a short grace period unless it sets one."""
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    spec.setdefault("terminationGracePeriodSeconds", 1)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": list(containers), **spec}}


def ns_inode(pid: int, ns: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{ns}").st_ino


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before open, or between open and read
        return False


# Where a `sleep` blocks, as /proc/PID/wchan names it (this kernel says hrtimer_nanosleep).
NANOSLEEP_WCHANS = frozenset({"hrtimer_nanosleep", "do_nanosleep", "common_nsleep"})


def sleeping_fds(pid: int, asleep_in: frozenset[str] = NANOSLEEP_WCHANS, timeout: float = 10.0) -> set[int]:
    """The descriptors of a process once it sleeps where it will stay (by default
    a `sleep` in nanosleep), read from /proc/PID/fd.

    Read any earlier and they may include what a program opens and closes
    again while it starts (fd 3 when it holds only stdio): the dynamic
    loader's ld.so.cache and libc.so.6, then the locale files. A process
    asleep in its steady state is past all that. The wchan may carry a
    compiler suffix (`do_sigtimedwait.isra.0`); it is ignored."""

    def asleep() -> bool:
        try:
            with open(f"/proc/{pid}/wchan") as f:
                return f.read().strip().split(".")[0] in asleep_in
        except (FileNotFoundError, ProcessLookupError):
            return False

    wait_for(asleep, timeout=timeout, interval=0.01, what=f"pid {pid} to sleep in {sorted(asleep_in)}")
    return {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}


def mounts_under(path: str) -> list[str]:
    out = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout
    return [m for m in out.splitlines() if m == path or m.startswith(path + "/")]


def cgroup_dirs(uid: str) -> list[str]:
    """Every cgroup directory of pod `uid`, in every hierarchy mounted on this host."""
    return glob.glob(f"/sys/fs/cgroup/nsbox/pod{uid}") + glob.glob(f"/sys/fs/cgroup/*/nsbox/pod{uid}")


def root_cgroups(root: str) -> list[str]:
    """Pod cgroups tagged as belonging to `root`."""
    found = []
    for d in glob.glob("/sys/fs/cgroup/nsbox/pod*") + glob.glob("/sys/fs/cgroup/*/nsbox/pod*"):
        try:
            if os.getxattr(d, "trusted.nsbox.root").decode() == root:
                found.append(d)
        except OSError:
            pass
    return found


def cgroup_pids(d: str) -> list[int]:
    pids = []
    for dirpath, _, files in os.walk(d):
        if "cgroup.procs" in files:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids += [int(x) for x in f.read().split()]
    return pids


def leftovers(root: str) -> list[str]:
    """What a root's pods left behind: state, mounts, cgroups, processes."""
    found = []
    for sub in ("pods", "names", "logs"):
        d = os.path.join(root, sub)
        if os.path.isdir(d) and os.listdir(d):
            found.append(f"{d}: {os.listdir(d)}")
    found += [f"mount {m}" for m in mounts_under(root)]
    for d in root_cgroups(root):
        found.append(f"cgroup {d} (pids {cgroup_pids(d)})")
    return found


# ---------------------------------------------------------------- fixtures


@contextlib.contextmanager
def private_root(image_store: bool = False) -> Iterator[Nsbox]:
    """A fresh root (and with `image_store` a fresh image store), cleaned up afterwards;
    fails if anything of the root is left behind."""
    root = tempfile.mkdtemp(prefix="nsbx-", dir="/tmp")
    store = tempfile.mkdtemp(prefix="nsbx-images-", dir="/var/tmp") if image_store else None
    n = Nsbox(root, store)
    try:
        yield n
    finally:
        cleanup_root(n)
        if store:
            shutil.rmtree(store, ignore_errors=True)
    left = leftovers(root)
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"left behind: {left}"


@pytest.fixture
def nsbox() -> Iterator[Nsbox]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with private_root() as n:
        yield n


@pytest.fixture
def nsbox_images() -> Iterator[Nsbox]:
    """A private root with a private image store (`--image-store`)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with private_root(image_store=True) as n:
        yield n


def cleanup_root(n: Nsbox) -> None:
    """Force-delete every pod of the root, then collect garbage; never raises."""
    try:
        n("delete", "pod", "--all", "--grace-period", "0", "--force", check=False, timeout=60)
        wait_for(
            lambda: (
                not os.listdir(os.path.join(n.root, "pods")) if os.path.isdir(os.path.join(n.root, "pods")) else True
            ),
            timeout=20,
            what="teardown",
        )
    except Exception:
        pass
    try:
        n("gc", check=False, timeout=60)
    except Exception:
        pass
    # Last resort, so one broken test does not poison the machine: kill what is left.
    for d in root_cgroups(n.root):
        for pid in cgroup_pids(d):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- OCI images (tests/imagekit.py)


@pytest.fixture(scope="session")
def registry() -> Iterator[imagekit.Registry]:
    """One local `docker-registry` for the session, plain HTTP on 127.0.0.1, private storage."""
    with running_registry() as r:
        yield r


@contextlib.contextmanager
def running_registry() -> Iterator[imagekit.Registry]:
    """A registry of its own, stopped afterwards; the test is skipped where the tools are missing."""
    missing = [tool for tool in (imagekit.DOCKER_REGISTRY, imagekit.SKOPEO) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (Debian packages docker-registry, skopeo; setup.sh installs them)")
    with imagekit.Registry() as r:
        yield r


@pytest.fixture(scope="session")
def busybox_image(registry: imagekit.Registry) -> Iterator[imagekit.BuiltImage]:
    """The standard two-layer busybox image (tests/imagekit.py), pushed as `<registry.host>/busybox:1`."""
    with pushed_busybox_image(registry) as image:
        yield image


@contextlib.contextmanager
def pushed_busybox_image(registry: imagekit.Registry) -> Iterator[imagekit.BuiltImage]:
    """The standard busybox image pushed to `registry`; its layout removed afterwards."""
    if not os.path.exists(imagekit.BUSYBOX) or not imagekit.is_static_elf(imagekit.BUSYBOX):
        pytest.skip(f"needs a static {imagekit.BUSYBOX} (Debian package busybox-static)")
    layout = tempfile.mkdtemp(prefix="imagekit-busybox-")
    try:
        yield imagekit.push_busybox_image(registry, layout)
    finally:
        shutil.rmtree(layout, ignore_errors=True)


def processes_naming(text: str) -> list[int]:
    """Every process whose command line contains `text`, from /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found
