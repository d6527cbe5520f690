"""Pods that run OCI images, end to end (docs/images.md, "Image pods").

Images are built by the tests from the host's busybox-static (tests/imagekit.py),
pushed to a real `docker-registry` on 127.0.0.1 and pulled by nsbox through skopeo
into a private image store. What a container sees is checked from outside: through
/proc/PID/root, /proc/PID/status and /proc/PID/environ, the store's layer files, and
the process table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from typing import Any

import imagekit
import pytest
import yaml
from conftest import pod, processes_naming, wait_for

pytestmark = pytest.mark.usefixtures("busybox_image")

FAST_BACKOFF = {"nsbox.io/backoff-base-seconds": "0.5", "nsbox.io/backoff-max-seconds": "1"}


def apply(n, *docs: dict) -> Any:
    return n("apply", "-f", "-", input=yaml.safe_dump_all(docs))


def status(n, name: str) -> dict:
    return json.loads(n("get", "pod", name, "-o", "json").stdout)["status"]


def container_status(n, name: str, container: str) -> dict:
    for cs in status(n, name).get("containerStatuses", []):
        if cs["name"] == container:
            return cs
    raise AssertionError(f"no status for {container}")


def waiting_reason(n, name: str, container: str) -> str:
    return container_status(n, name, container)["state"].get("waiting", {}).get("reason", "")


def terminated(n, name: str, container: str, timeout: float = 60) -> dict:
    return wait_for(
        lambda: container_status(n, name, container)["state"].get("terminated"),
        timeout=timeout,
        what=f"{name}/{container} to end",
    )


def described_events(n, name: str) -> str:
    return n("describe", "pod", name).stdout.split("Events:", 1)[1]


def logs(n, name: str, container: str) -> str:
    return n("logs", name, "-c", container).stdout


def host_pid(n, name: str, container: str) -> int:
    return n.pid(name, container)


# --------------------------------------------------------------- what runs


@pytest.mark.cgroupv2  # one image pod in the cgroup-v2 VM too
def test_a_manifest_without_a_command_runs_the_images_entrypoint(nsbox_images, busybox_image):
    n = nsbox_images
    apply(n, pod("hello", {"name": "app", "image": busybox_image.ref}, restartPolicy="Never"))
    assert terminated(n, "hello", "app")["exitCode"] == 0
    assert logs(n, "hello", "app") == "hello from the image\n"
    cs = container_status(n, "hello", "app")
    repo = busybox_image.ref.rsplit(":", 1)[0]
    assert cs["imageID"] == f"{repo}@{busybox_image.digest}"
    assert cs["image"] == busybox_image.ref
    text = described_events(n, "hello")
    assert f'Pulling image "{busybox_image.ref}"' in text
    assert f'Successfully pulled image "{busybox_image.ref}" in ' in text
    assert "Image size: " in text
    described = n("describe", "pod", "hello").stdout
    assert re.search(rf"^\s+Image:\s+{re.escape(busybox_image.ref)}$", described, re.M), described
    assert re.search(rf"^\s+Image ID:\s+{re.escape(cs['imageID'])}$", described, re.M), described


def test_command_and_args_combine_with_entrypoint_and_cmd_as_kubernetes_says(nsbox_images, busybox_image):
    n = nsbox_images
    image = busybox_image.ref
    apply(
        n,
        pod(
            "combos",
            {"name": "neither", "image": image},
            {"name": "args", "image": image, "args": ["echo args replace Cmd"]},
            {"name": "command", "image": image, "command": ["echo", "command replaces both"]},
            {"name": "both", "image": image, "command": ["echo"], "args": ["command", "and", "args"]},
            restartPolicy="Never",
        ),
    )
    for c in ("neither", "args", "command", "both"):
        assert terminated(n, "combos", c)["exitCode"] == 0, logs(n, "combos", c)
    assert logs(n, "combos", "neither") == "hello from the image\n"  # Entrypoint + Cmd
    assert logs(n, "combos", "args") == "args replace Cmd\n"  # Entrypoint + args
    assert logs(n, "combos", "command") == "command replaces both\n"
    assert logs(n, "combos", "both") == "command and args\n"


def test_image_env_workdir_and_files_are_the_containers(nsbox_images, busybox_image):
    n = nsbox_images
    apply(
        n,
        pod(
            "config",
            {
                "name": "app",
                "image": busybox_image.ref,
                "command": ["sleep", "3600"],
                "env": [{"name": "MINE", "value": "from-spec"}],
            },
            {
                "name": "over",
                "image": busybox_image.ref,
                "command": ["sleep", "3600"],
                "workingDir": "/tmp",
                "env": [{"name": "IMAGE_VAR", "value": "overridden"}],
            },
        ),
    )
    pid = host_pid(n, "config", "app")
    environ = dict(e.split("=", 1) for e in open(f"/proc/{pid}/environ", "rb").read().decode().split("\0") if "=" in e)
    assert environ["IMAGE_VAR"] == "from-image" and environ["MINE"] == "from-spec"
    assert environ["PATH"] == busybox_image.config["config"]["Env"][0].split("=", 1)[1]
    assert os.readlink(f"/proc/{pid}/cwd") == "/home/app"  # the image's WorkingDir
    # The root is the image: busybox is there, the host's own programs are not.
    assert os.path.samefile(f"/proc/{pid}/root/bin/sh", f"/proc/{pid}/root/bin/busybox")
    assert not os.path.exists(f"/proc/{pid}/root/usr/bin/python3")
    over = host_pid(n, "config", "over")
    assert b"IMAGE_VAR=overridden\0" in open(f"/proc/{over}/environ", "rb").read()
    assert os.readlink(f"/proc/{over}/cwd") == "/tmp"
    # exec runs in the image too, as the container's user, with its variables and directory.
    out = n("exec", "config", "-c", "app", "--", "sh", "-c", 'echo "$IMAGE_VAR $(pwd) $(id -u)"').stdout
    assert out == "from-image /home/app 0\n"


def test_writes_vanish_with_the_container_and_never_reach_the_layers(nsbox_images, busybox_image):
    n = nsbox_images
    apply(n, pod("writer", {"name": "app", "image": busybox_image.ref, "command": ["sleep", "3600"]}))
    pid = host_pid(n, "writer", "app")
    n("exec", "writer", "--", "sh", "-c", "echo scribble > /bin/NEW && rm /bin/ls && echo changed > /etc/passwd")
    assert not os.path.exists(f"/proc/{pid}/root/bin/ls")
    layers = os.path.join(n.image_store, "layers")
    for dirpath, _, files in os.walk(layers):
        assert "NEW" not in files, dirpath
    assert any(os.path.lexists(os.path.join(d, "bin/ls")) for d in _layer_dirs(n))
    assert all(b"changed" not in _read(os.path.join(d, "etc/passwd")) for d in _layer_dirs(n))
    # The same image in a second pod starts from the pristine layers, shared on disk.
    apply(n, pod("reader", {"name": "app", "image": busybox_image.ref, "command": ["sleep", "3600"]}))
    other = host_pid(n, "reader", "app")
    assert os.path.exists(f"/proc/{other}/root/bin/ls") and not os.path.exists(f"/proc/{other}/root/bin/NEW")
    busybox_inodes = {os.stat(f"/proc/{p}/root/bin/busybox").st_ino for p in (pid, other)}
    stored = [os.path.join(d, "bin/busybox") for d in _layer_dirs(n) if os.path.exists(os.path.join(d, "bin/busybox"))]
    assert len(stored) == 1, stored  # unpacked once
    assert busybox_inodes == {os.stat(stored[0]).st_ino}  # both containers read that one file


def _layer_dirs(n) -> list[str]:
    """Every unpacked layer directory of the store (a directory holding an unpacked root)."""
    found = []
    for dirpath, dirnames, _ in os.walk(os.path.join(n.image_store, "layers")):
        if "etc" in dirnames or "bin" in dirnames:
            found.append(dirpath)
            dirnames.clear()
    return found


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


# --------------------------------------------------------------- users


@pytest.fixture(scope="module")
def user_image(registry):
    """An image whose config says `User: app` (1000:1000 in its /etc/passwd)."""
    layout = tempfile.mkdtemp(prefix="imagekit-user-")
    try:
        yield imagekit.push_image(
            registry,
            layout,
            imagekit.busybox_image_layers(),
            name="as-app",
            tag="1",
            config={"Cmd": ["sleep", "3600"], "User": "app"},
        )
    finally:
        shutil.rmtree(layout, ignore_errors=True)


def _ids(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


def test_the_image_user_is_resolved_in_its_passwd_and_run_as_user_overrides_it(nsbox_images, user_image):
    n = nsbox_images
    apply(
        n,
        pod(
            "users",
            {"name": "image-user", "image": user_image.ref},
            {"name": "overridden", "image": user_image.ref, "securityContext": {"runAsUser": 4321}},
        ),
    )
    assert _ids(host_pid(n, "users", "image-user")) == (1000, 1000)
    assert _ids(host_pid(n, "users", "overridden"))[0] == 4321
    assert container_status(n, "users", "image-user")["user"]["linux"]["uid"] == 1000
    assert n("exec", "users", "-c", "image-user", "--", "id", "-u").stdout == "1000\n"


def test_run_as_non_root_refuses_a_named_or_root_image_user_as_the_kubelet_does(
    nsbox_images, user_image, busybox_image
):
    n = nsbox_images
    apply(
        n,
        pod(
            "nonroot",
            {"name": "named", "image": user_image.ref},
            {"name": "root", "image": busybox_image.ref, "command": ["sleep", "3600"]},
            {"name": "numeric", "image": user_image.ref, "securityContext": {"runAsUser": 1000}},
            securityContext={"runAsNonRoot": True},
        ),
    )
    wait_for(lambda: waiting_reason(n, "nonroot", "named") == "CreateContainerConfigError", what="named refused")
    wait_for(lambda: waiting_reason(n, "nonroot", "root") == "CreateContainerConfigError", what="root refused")
    named = container_status(n, "nonroot", "named")["state"]["waiting"]["message"]
    assert named == "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root"
    assert container_status(n, "nonroot", "root")["state"]["waiting"]["message"] == (
        "container has runAsNonRoot and image will run as root"
    )
    assert _ids(host_pid(n, "nonroot", "numeric"))[0] == 1000


# --------------------------------------------------------------- pulls


def test_a_failed_pull_backs_off_and_the_pod_recovers_once_the_image_exists(nsbox_images, registry, busybox_image):
    n = nsbox_images
    ref = f"{registry.host}/late-{os.getpid()}:1"
    apply(n, pod("late", {"name": "app", "image": ref}, annotations=FAST_BACKOFF, restartPolicy="Never"))
    wait_for(lambda: waiting_reason(n, "late", "app") == "ErrImagePull", what="ErrImagePull")
    wait_for(lambda: waiting_reason(n, "late", "app") == "ImagePullBackOff", what="ImagePullBackOff")
    message = container_status(n, "late", "app")["state"]["waiting"]["message"]
    assert message.startswith(f'Back-off pulling image "{ref}": ErrImagePull: '), message
    assert "not found" in message.lower() or "unknown" in message.lower(), message
    text = described_events(n, "late")
    assert f'Failed to pull image "{ref}": ' in text
    assert "Error: ErrImagePull" in text and f'Back-off pulling image "{ref}"' in text
    assert "Error: ImagePullBackOff" in text
    assert n("get", "pods", "late").stdout.split("\n")[1].split()[2] in ("ErrImagePull", "ImagePullBackOff")
    # The image appears in the registry: the next try pulls it and the container runs.
    imagekit.push(busybox_image.layout, ref, tag="1")
    assert terminated(n, "late", "app", timeout=60)["exitCode"] == 0
    assert logs(n, "late", "app") == "hello from the image\n"


def test_policy_never_waits_for_the_image_to_be_loaded(nsbox_images, busybox_image, tmp_path):
    n = nsbox_images
    apply(
        n,
        pod("never", {"name": "app", "image": busybox_image.ref, "imagePullPolicy": "Never"}, restartPolicy="Never"),
    )
    wait_for(lambda: waiting_reason(n, "never", "app") == "ErrImageNeverPull", what="ErrImageNeverPull")
    assert container_status(n, "never", "app")["state"]["waiting"]["message"] == (
        f'Container image "{busybox_image.ref}" is not present with pull policy of Never'
    )
    archive = str(tmp_path / "busybox.tar")
    imagekit.archive(busybox_image.layout, archive, ref=busybox_image.ref, tag="1")
    n("image", "load", "-i", archive)
    assert terminated(n, "never", "app", timeout=60)["exitCode"] == 0
    text = described_events(n, "never")
    assert "Pulling image" not in text  # loaded, never pulled


def test_always_sees_a_re_pushed_tag(nsbox_images, registry, busybox_image):
    n = nsbox_images
    ref = f"{registry.host}/moving-{os.getpid()}:latest"
    imagekit.push(busybox_image.layout, ref, tag="1")
    apply(n, pod("first", {"name": "app", "image": ref}, restartPolicy="Never"))
    assert terminated(n, "first", "app")["exitCode"] == 0
    first_id = container_status(n, "first", "app")["imageID"]
    layout = tempfile.mkdtemp(prefix="imagekit-moving-")
    try:
        config = dict(imagekit.BUSYBOX_IMAGE_CONFIG, Cmd=["echo a new build"])
        imagekit.push_image(
            registry, layout, imagekit.busybox_image_layers(), name=f"moving-{os.getpid()}", config=config
        )
    finally:
        shutil.rmtree(layout, ignore_errors=True)
    apply(n, pod("second", {"name": "app", "image": ref}, restartPolicy="Never"))  # :latest -> Always
    assert terminated(n, "second", "app")["exitCode"] == 0
    assert logs(n, "second", "app") == "a new build\n"
    assert container_status(n, "second", "app")["imageID"] != first_id


def test_pods_pulling_one_image_at_once_fetch_it_once(nsbox_images, registry, busybox_image):
    n = nsbox_images
    name = f"shared-{os.getpid()}"
    ref = f"{registry.host}/{name}:1"
    imagekit.push(busybox_image.layout, ref, tag="1")
    pods = [pod(f"p{i}", {"name": "app", "image": ref, "command": ["sleep", "3600"]}) for i in range(3)]
    apply(n, *pods)
    for i in range(3):
        host_pid(n, f"p{i}", "app")
    blob_gets = [r for r in registry.requests() if r.startswith(f"GET /v2/{name}/blobs/")]
    layers = [layer["digest"] for layer in _manifest(busybox_image)["layers"]]
    for digest in layers:
        assert sum(r.endswith(digest) for r in blob_gets) == 1, blob_gets
    texts = [described_events(n, f"p{i}") for i in range(3)]
    assert all("Pulling image" in t for t in texts)  # each pod asked; the store fetched once


def _manifest(image) -> dict:
    with open(os.path.join(image.layout, "blobs", *image.digest.split(":"))) as f:
        return json.load(f)


class Silent:
    """A TCP server that accepts connections and never answers: a pull to it hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def test_a_pod_waiting_for_a_pull_is_deleted_at_once_and_the_pull_ends_with_it(nsbox_images):
    n = nsbox_images
    silent = Silent()
    try:
        ref = f"127.0.0.1:{silent.port}/hangs-{os.getpid()}:1"
        apply(n, pod("stuck", {"name": "app", "image": ref}))
        wait_for(lambda: processes_naming(ref), what="the pull to start")
        assert waiting_reason(n, "stuck", "app") == "ContainerCreating"
        began = time.monotonic()
        n("delete", "pod", "stuck")
        assert time.monotonic() - began < 10
        wait_for(lambda: not processes_naming(ref), what="the pull to end")
    finally:
        silent.close()


# --------------------------------------------------------------- run, image rm


def test_run_image_attach_runs_the_entrypoint_and_a_command_overrides_it(nsbox_images, busybox_image):
    n = nsbox_images
    p = n("run", "one", "--image", busybox_image.ref, "--rm", "-a")
    assert p.stdout == "hello from the image\n"
    p = n(
        "run",
        "two",
        "--image",
        busybox_image.ref,
        "--rm",
        "-a",
        "--",
        "sh",
        "-c",
        "echo $IMAGE_VAR; exit 3",
        check=False,
    )
    assert (p.returncode, p.stdout) == (3, "from-image\n")


def test_run_with_an_image_that_cannot_be_had_fails_and_creates_nothing(nsbox_images, registry):
    n = nsbox_images
    p = n("run", "nothing", "--image", f"{registry.host}/absent-{os.getpid()}:1", "--", "true", check=False)
    assert p.returncode == 1 and p.stderr.startswith("error: "), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert n("get", "pods", "-o", "name").stdout == ""


def test_image_rm_is_refused_while_a_pod_uses_the_image(nsbox_images, busybox_image):
    n = nsbox_images
    apply(n, pod("user", {"name": "app", "image": busybox_image.ref, "command": ["sleep", "3600"]}))
    host_pid(n, "user", "app")
    p = n("image", "rm", busybox_image.ref, check=False)
    assert p.returncode == 1 and "in use" in p.stderr and "user" in p.stderr, p.stderr
    n("delete", "pod", "user")
    n("image", "rm", busybox_image.ref)
    assert busybox_image.ref not in n("image", "ls").stdout


# --------------------------------------------------------------- the example


def test_the_image_example_runs_as_its_comments_say(nsbox_images, tmp_path):
    """examples/image: make-archive.sh, image load, apply pod.yaml, logs — offline, no registry."""
    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "image")
    archive = str(tmp_path / "busybox.tar")
    subprocess.run(["bash", os.path.join(example, "make-archive.sh"), archive], check=True, capture_output=True)
    n = nsbox_images
    assert n("image", "load", "-i", archive).stdout == "Loaded image: localhost/busybox:1.35\n"
    n("apply", "-f", os.path.join(example, "pod.yaml"))
    wait_for(lambda: logs(n, "image-demo", "from-image"), what="the image's Cmd to print")
    assert logs(n, "image-demo", "from-image") == "hello from the image\n"
    wait_for(lambda: "uid=" in logs(n, "image-demo", "with-command"), what="the command to print")
    assert logs(n, "image-demo", "with-command").startswith("hello from a command\nuid=0(root) gid=0(root)")
    assert container_status(n, "image-demo", "from-image")["imageID"].startswith("sha256:")  # loaded: config digest
    n("delete", "pod", "image-demo")


def test_the_images_stop_signal_replaces_sigterm(nsbox_images, registry):
    layout = tempfile.mkdtemp(prefix="imagekit-stopsignal-")
    try:
        script = "trap 'exit 0' USR1; trap '' TERM; sleep 1000 & wait; sleep 1000 & wait"
        image = imagekit.push_image(
            registry,
            layout,
            imagekit.busybox_image_layers(),
            name="stops-on-usr1",
            tag="1",
            config={"Entrypoint": ["sh", "-c", script], "StopSignal": "SIGUSR1"},
        )
    finally:
        shutil.rmtree(layout, ignore_errors=True)
    n = nsbox_images
    apply(n, pod("stopper", {"name": "app", "image": image.ref}, terminationGracePeriodSeconds=60))
    pid = host_pid(n, "stopper", "app")
    wait_for(lambda: _children(pid), what="sh to start its sleep")
    began = time.monotonic()
    n("delete", "pod", "stopper")  # SIGTERM is ignored: only SIGUSR1 ends it before the 60 s grace
    assert time.monotonic() - began < 20
    assert not os.path.exists(f"/proc/{pid}")


def _children(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_run_image_naming_a_local_directory_uses_it_as_the_root(nsbox_images, tmp_path):
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(imagekit.BUSYBOX, root / "bin" / "busybox")
    (root / "MARKER").write_text("")
    p = nsbox_images("run", "dir", "--image", str(root), "--rm", "-a", "--", "/bin/busybox", "ls", "/")
    assert "MARKER" in p.stdout.split()
    assert not os.listdir(os.path.join(nsbox_images.image_store))  # nothing was pulled or stored


def _raw(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", linkname: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, len(data), linkname, 0o644
    return info, (data if kind == tarfile.REGTYPE else None)


def test_a_hostile_image_writes_nothing_outside_its_layer(nsbox_images, registry, tmp_path):
    """A layer that tries `../`, an absolute path and a link to / followed by a file: pulled,
    unpacked and run, and every write landed inside the image."""
    canary = f"/tmp/nsbox-hostile-{os.getpid()}"
    hostile = imagekit.Layer(
        raw=[
            _raw(f"../../..{canary}-dotdot", data=b"escaped"),
            _raw(f"{canary}-absolute", data=b"escaped"),
            _raw("hostroot", tarfile.SYMTYPE, linkname="/"),
            _raw(f"hostroot{canary}-through-link", data=b"escaped"),
        ]
    )
    layout = str(tmp_path / "layout")
    image = imagekit.push_image(
        registry,
        layout,
        [*imagekit.busybox_image_layers(), hostile],
        name="hostile",
        tag="1",
        config={"Cmd": ["sleep", "3600"]},
    )
    n = nsbox_images
    apply(n, pod("hostile", {"name": "app", "image": image.ref}))
    pid = host_pid(n, "hostile", "app")
    for suffix in ("-dotdot", "-absolute", "-through-link"):
        assert not os.path.exists(canary + suffix), f"{canary + suffix} was written on the host"
        assert open(f"/proc/{pid}/root{canary}{suffix}", "rb").read() == b"escaped"  # inside the image


# kubernetes.io's exec-liveness.yaml ("Configure Liveness, Readiness and Startup Probes"), byte for
# byte: no annotation, no shortened timing. Its image is registry.k8s.io's busybox; a
# registries.conf mirror (the way a user points a cluster's names at a local registry) serves
# the test registry's busybox under that name.
EXEC_LIVENESS = """\
apiVersion: v1
kind: Pod
metadata:
  labels:
    test: liveness
  name: liveness-exec
spec:
  containers:
  - name: liveness
    image: registry.k8s.io/busybox:1.27.2
    args:
    - /bin/sh
    - -c
    - touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600
    livenessProbe:
      exec:
        command:
        - cat
        - /tmp/healthy
      initialDelaySeconds: 5
      periodSeconds: 5
"""


def test_the_documentations_exec_liveness_example_runs_unchanged(nsbox_images, registry, tmp_path, monkeypatch):
    image = imagekit.push_image(
        registry,
        str(tmp_path / "layout"),
        imagekit.busybox_image_layers(),
        name="busybox",
        tag="1.27.2",
        config={"Cmd": ["sh"]},  # as registry.k8s.io/busybox: no Entrypoint
    )
    conf = tmp_path / "registries.conf"
    conf.write_text(
        f'[[registry]]\nlocation = "registry.k8s.io"\n[[registry.mirror]]\nlocation = "{registry.host}"\n'
        "insecure = true\n"
    )
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
    n = nsbox_images
    n("apply", "-f", "-", input=EXEC_LIVENESS)
    first = host_pid(n, "liveness-exec", "liveness")
    # The page: after 35 s the probe fails; after three failures the kubelet kills and restarts it.
    wait_for(lambda: container_status(n, "liveness-exec", "liveness")["restartCount"] >= 1, timeout=120)
    text = described_events(n, "liveness-exec")
    assert "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory" in text
    assert "Container liveness failed liveness probe, will be restarted" in text
    assert container_status(n, "liveness-exec", "liveness")["imageID"].endswith(image.digest)
    assert not os.path.exists(f"/proc/{first}") or host_pid(n, "liveness-exec", "liveness") != first
