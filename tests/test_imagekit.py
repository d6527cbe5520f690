"""The image test kit (tests/imagekit.py) builds real images and runs a real registry.

Each claim is checked by tools that are not the kit: `skopeo inspect` and
`skopeo copy` for what the registry serves, GNU `tar`, `gzip`, `zstd` and
`sha256sum` for the blobs, the registry's own HTTP API for its catalog, and
`chroot` to run the image's busybox with no nsbox in between.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import imagekit
import pytest
import yaml
from conftest import alive, validate_object, wait_for
from imagekit import Dir, File, Layer

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="imagekit-test-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(*args: str, input: bytes | None = None) -> str:
    p = subprocess.run(args, capture_output=True, input=input, stdin=None if input else subprocess.DEVNULL)
    assert p.returncode == 0, f"{' '.join(args)} exited {p.returncode}: {p.stderr.decode(errors='replace')}"
    return p.stdout.decode()


def copy_to_dir(ref: str, dest: str, *extra: str) -> dict:
    """`skopeo copy` an image from the registry into a `dir:` layout; its manifest."""
    run("skopeo", "copy", "--quiet", "--src-tls-verify=false", *extra, f"docker://{ref}", f"dir:{dest}")
    return json.loads(Path(dest, "manifest.json").read_text())


def blob(directory: str, digest: str) -> str:
    return os.path.join(directory, digest.split(":", 1)[1])


def sha256sum(path: str) -> str:
    return "sha256:" + run("sha256sum", path).split()[0]


# ---------------------------------------------------------------- images in the registry


def test_pushed_image_shows_the_config_and_layer_digests_the_kit_computed(busybox_image, workdir):
    manifest = json.loads(imagekit.read_blob(busybox_image.layout, busybox_image.digest))
    served = copy_to_dir(busybox_image.ref, workdir)
    assert served == manifest
    assert sha256sum(os.path.join(workdir, "manifest.json")) == busybox_image.digest

    info = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{busybox_image.ref}"))
    assert info["Digest"] == busybox_image.digest
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    assert info["Architecture"] == imagekit.host_arch() and info["Os"] == "linux"

    config = json.loads(run("skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{busybox_image.ref}"))
    assert config == busybox_image.config
    assert config["config"]["Entrypoint"] == ["sh", "-c"]
    assert config["config"]["Cmd"] == ["echo hello from the image"]
    assert "IMAGE_VAR=from-image" in config["config"]["Env"]
    assert len(config["history"]) == 2
    # diff_ids are the digests of the uncompressed tars, as gzip itself unpacks them.
    diff_ids = [
        "sha256:" + run("sh", "-c", 'gzip -dc "$1" | sha256sum', "-", blob(workdir, layer["digest"])).split()[0]
        for layer in manifest["layers"]
    ]
    assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
    for layer in manifest["layers"]:
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert sha256sum(blob(workdir, layer["digest"])) == layer["digest"]


def test_registry_catalog_lists_the_pushed_repository(registry, busybox_image):
    with urllib.request.urlopen(f"http://{registry.host}/v2/_catalog", timeout=10) as r:
        assert "busybox" in json.loads(r.read())["repositories"]
    with urllib.request.urlopen(f"http://{registry.host}/v2/busybox/tags/list", timeout=10) as r:
        assert "1" in json.loads(r.read())["tags"]  # other tests may push more tags


def test_layer_tar_lists_what_the_layer_declared(registry, workdir):
    layer = Layer(
        files={
            "/etc/app.conf": b"x = 1\n",
            "/usr/local/bin/tool": File(b"#!/bin/sh\necho tool\n", mode=0o755, uid=1000, gid=1000),
        },
        dirs={"/tmp": Dir(0o1777), "/srv/data": Dir(0o700, 1000, 1000)},
        symlinks={"/usr/bin/tool": "../local/bin/tool"},
        hardlinks={"/etc/app.conf.link": "/etc/app.conf"},
        whiteouts=["/var/cache/old"],
        opaque=["/opt"],
    )
    layout = os.path.join(workdir, "layout")
    imagekit.build_layout(layout, [layer])
    ref = f"{registry.host}/kit/declared:latest"
    imagekit.push(layout, ref)
    served = copy_to_dir(ref, os.path.join(workdir, "dir"))
    path = blob(os.path.join(workdir, "dir"), served["layers"][0]["digest"])

    assert run("tar", "-tzf", path).splitlines() == [
        "etc/",
        "etc/app.conf",
        "opt/",
        "opt/.wh..wh..opq",
        "srv/",
        "srv/data/",
        "tmp/",
        "usr/",
        "usr/bin/",
        "usr/bin/tool",
        "usr/local/",
        "usr/local/bin/",
        "usr/local/bin/tool",
        "var/",
        "var/cache/",
        "var/cache/.wh.old",
        "etc/app.conf.link",
    ]
    verbose = run("tar", "--numeric-owner", "-tvzf", path).splitlines()

    def line_of(name: str) -> list[str]:
        (line,) = [entry for entry in verbose if entry.split()[5] == name]
        return line.split()

    assert line_of("tmp/")[:2] == ["drwxrwxrwt", "0/0"]
    assert line_of("srv/data/")[:2] == ["drwx------", "1000/1000"]
    assert line_of("usr/local/bin/tool")[:3] == ["-rwxr-xr-x", "1000/1000", "20"]
    assert line_of("usr/bin/tool")[0].startswith("l") and line_of("usr/bin/tool")[6:] == ["->", "../local/bin/tool"]
    assert line_of("etc/app.conf.link")[0].startswith("h") and line_of("etc/app.conf.link")[6:] == [
        "link",
        "to",
        "etc/app.conf",
    ]
    assert run("tar", "-xzOf", path, "etc/app.conf") == "x = 1\n"
    assert layer.names() == run("tar", "-tzf", path).splitlines()


def test_raw_entries_reach_the_tar_unchanged(workdir):
    escape = tarfile.TarInfo("../escape")
    escape.size = 4
    absolute = tarfile.TarInfo("evil")
    absolute.type = tarfile.SYMTYPE
    absolute.linkname = "/etc/shadow"
    device = tarfile.TarInfo("dev/null")
    device.type = tarfile.CHRTYPE
    device.devmajor, device.devminor = 1, 3
    layer = Layer(files={"/ok": b"ok"}, raw=[(escape, b"boom"), (absolute, None), (device, None)])
    layout = os.path.join(workdir, "layout")
    digest = imagekit.build_layout(layout, [layer], compression="none")
    manifest = json.loads(imagekit.read_blob(layout, digest))
    (entry,) = manifest["layers"]
    assert entry["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    path = os.path.join(layout, "blobs", *entry["digest"].split(":", 1))
    assert run("tar", "-tf", path).splitlines() == ["ok", "../escape", "evil", "dev/null"]
    verbose = run("tar", "-tvf", path)
    assert "evil -> /etc/shadow" in verbose and verbose.splitlines()[3].startswith("c")


@pytest.mark.parametrize(
    "layer",
    [
        Layer(files={"/../escape": b"x"}),
        Layer(symlinks={"..": "/"}),
        Layer(files={"/a": b"x"}, dirs=["/a"]),
        Layer(dirs="/tmp"),
    ],
    ids=["dotdot-file", "dotdot-link", "declared-twice", "dirs-as-one-string"],
)
def test_declared_layers_refuse_paths_outside_the_image_and_duplicates(layer):
    with pytest.raises((ValueError, TypeError)):
        layer.tar()


def test_zstd_layers_are_pushed_with_their_media_type(registry, workdir):
    layer = Layer(files={"/hello": b"zstd\n"})
    layout = os.path.join(workdir, "layout")
    imagekit.build_layout(layout, [layer], compression="zstd")
    ref = f"{registry.host}/kit/zstd:latest"
    imagekit.push(layout, ref)
    served = copy_to_dir(ref, os.path.join(workdir, "dir"))
    (entry,) = served["layers"]
    assert entry["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    tar = subprocess.run(["zstd", "-dc", blob(os.path.join(workdir, "dir"), entry["digest"])], capture_output=True)
    assert tar.returncode == 0, tar.stderr
    assert run("tar", "-tf", "-", input=tar.stdout).splitlines() == ["hello"]
    config = json.loads(run("skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{ref}"))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + run("sha256sum", input=tar.stdout).split()[0]]


def test_the_same_layers_give_the_same_digest(workdir):
    first = imagekit.build_layout(os.path.join(workdir, "a"), imagekit.busybox_image_layers())
    second = imagekit.build_layout(os.path.join(workdir, "b"), imagekit.busybox_image_layers())
    assert first == second
    other = imagekit.build_layout(os.path.join(workdir, "c"), imagekit.busybox_image_layers(), config={"Cmd": ["sh"]})
    assert other != first


def test_layout_index_names_the_manifest_by_tag(workdir):
    digest = imagekit.build_layout(workdir, [Layer(files={"/a": b"a"})], tag="v2")
    assert json.loads(Path(workdir, "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(Path(workdir, "index.json").read_text())["manifests"]
    assert entry["digest"] == digest and entry["annotations"] == {"org.opencontainers.image.ref.name": "v2"}
    info = json.loads(run("skopeo", "inspect", f"oci:{workdir}:v2"))
    assert info["Digest"] == digest


# ---------------------------------------------------------------- archives and indexes


@pytest.mark.parametrize("kind", ["oci-archive", "docker-archive"])
def test_archive_is_readable_by_skopeo(busybox_image, workdir, kind):
    path = os.path.join(workdir, "image.tar")
    imagekit.archive(busybox_image.layout, path, kind, "localhost/busybox:1.35", tag="1")
    config = json.loads(run("skopeo", "inspect", "--config", f"{kind}:{path}"))
    assert config["config"] == busybox_image.config["config"]
    assert config["rootfs"] == busybox_image.config["rootfs"]
    info = json.loads(run("skopeo", "inspect", f"{kind}:{path}"))
    if kind == "oci-archive":  # the manifest goes in unchanged; docker-archive rewrites it as Docker schema 2
        assert info["Digest"] == busybox_image.digest
        index = json.loads(run("tar", "-xOf", path, "index.json"))
        assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "localhost/busybox:1.35"
    else:
        # docker-archive stores the layers uncompressed, named by their diff_ids
        assert info["Layers"] == busybox_image.config["rootfs"]["diff_ids"]
        assert json.loads(run("tar", "-xOf", path, "manifest.json"))[0]["RepoTags"] == ["localhost/busybox:1.35"]


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
def test_index_resolves_to_this_machines_image(registry, workdir, docker):
    name = "kit/multi-docker" if docker else "kit/multi-oci"
    pushed = imagekit.push_index(f"{registry.host}/{name}:1", imagekit.busybox_image_layers(), docker=docker)
    raw = json.loads(run("skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{pushed.ref}"))
    assert raw["mediaType"] == pushed.media_type
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in raw["manifests"]}
    assert platforms == pushed.manifests

    native = f"linux/{imagekit.host_arch()}"
    decoy = f"linux/{imagekit.other_arch()}"
    copy_to_dir(pushed.ref, os.path.join(workdir, "native"))
    assert sha256sum(os.path.join(workdir, "native", "manifest.json")) == pushed.manifests[native]
    manifest = copy_to_dir(pushed.ref, os.path.join(workdir, "decoy"), "--override-arch", imagekit.other_arch())
    assert sha256sum(os.path.join(workdir, "decoy", "manifest.json")) == pushed.manifests[decoy]
    (layer,) = manifest["layers"]
    assert run("tar", "-xzOf", blob(os.path.join(workdir, "decoy"), layer["digest"]), "PLATFORM") == decoy + "\n"


# ---------------------------------------------------------------- the registry itself


def test_registry_serves_by_digest_logs_requests_and_deletes(registry, workdir):
    image = imagekit.push_image(registry, workdir, [Layer(files={"/gone": b"soon\n"})], name="kit/deleted", tag="v1")
    assert registry.manifest_digest("kit/deleted", "v1") == image.digest
    info = json.loads(run("skopeo", "inspect", "--tls-verify=false", f"docker://{image.by_digest}"))
    assert info["Digest"] == image.digest
    wait_for(
        lambda: f"GET /v2/kit/deleted/manifests/{image.digest}" in registry.requests(),
        what="the registry's access log to show skopeo's GET by digest",
    )
    registry.delete_manifest("kit/deleted", image.digest)
    assert registry.manifest_digest("kit/deleted", "v1") is None
    gone = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{image.ref}"], capture_output=True, text=True
    )
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr


def test_registry_with_basic_auth_refuses_anonymous_pushes(workdir):
    try:
        imagekit.bcrypt_htpasswd("tester", "s3cret")
    except RuntimeError as e:
        pytest.skip(str(e))
    layout = os.path.join(workdir, "layout")
    imagekit.build_layout(layout, [Layer(files={"/a": b"a"})])
    with imagekit.Registry(auth=("tester", "s3cret")) as registry:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=10)
        assert refused.value.code == 401
        with pytest.raises(AssertionError, match="unauthorized|authentication required"):
            imagekit.push(layout, f"{registry.host}/private:1")
        imagekit.push(layout, f"{registry.host}/private:1", creds=registry.creds)
        info = json.loads(
            run(
                "skopeo",
                "inspect",
                "--tls-verify=false",
                "--creds",
                "tester:s3cret",
                f"docker://{registry.host}/private:1",
            )
        )
        assert info["Name"] == f"{registry.host}/private"


def test_registry_stops_its_process_and_removes_its_storage():
    registry = imagekit.Registry()
    registry.start()
    try:
        assert registry.process is not None
        pid, directory = registry.process.pid, registry.dir
        assert alive(pid) and os.path.isfile(os.path.join(directory, "config.yml"))
        assert "listening on 127.0.0.1:" in registry.log()
    finally:
        registry.stop()
    assert not alive(pid)
    assert not os.path.exists(directory)


class UnlistenableRegistry(imagekit.Registry):
    """A registry told to listen on a port that cannot exist."""

    @property
    def host(self) -> str:
        return "127.0.0.1:99999"


def test_registry_start_failure_shows_its_log():
    registry = UnlistenableRegistry()
    with pytest.raises(RuntimeError, match="did not start") as failed:
        registry.start()
    assert "99999" in str(failed.value).split("its log:", 1)[1]
    assert registry.process is None and not os.path.exists(registry.dir)


# ---------------------------------------------------------------- the image runs


def test_image_busybox_runs_in_a_chroot_of_its_unpacked_layers(busybox_image, workdir):
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    served = copy_to_dir(busybox_image.ref, os.path.join(workdir, "dir"))
    rootfs = os.path.join(workdir, "rootfs")
    os.mkdir(rootfs)
    for layer in served["layers"]:
        run("tar", "-xzf", blob(os.path.join(workdir, "dir"), layer["digest"]), "-C", rootfs)
    out = run("chroot", rootfs, "/bin/sh", "-c", "echo ok; id -un; id -un app; stat -c '%a %u' /tmp /home/app")
    assert out.splitlines() == ["ok", "root", "app", "1777 0", "755 1000"]


# ---------------------------------------------------------------- the example


def test_example_make_archive_builds_a_busybox_oci_archive(workdir):
    script = REPO / "examples" / "image" / "make-archive.sh"
    p = subprocess.run([str(script)], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(workdir)) == ["busybox.tar"]  # its work directory is gone
    path = os.path.join(workdir, "busybox.tar")
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{path}"))
    assert info["Architecture"] == imagekit.host_arch() and info["Os"] == "linux"
    config = json.loads(run("skopeo", "inspect", "--config", f"oci-archive:{path}"))
    assert config["config"]["Cmd"] == ["sh", "-c", "echo hello from the image; sleep 3600"]
    index = json.loads(run("tar", "-xOf", path, "index.json"))
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "localhost/busybox:1.35"

    run("skopeo", "copy", "--quiet", f"oci-archive:{path}", f"dir:{workdir}/dir")
    base, busybox = (blob(f"{workdir}/dir", digest) for digest in info["Layers"])
    assert "drwxrwxrwt 0/0 " in run("tar", "--numeric-owner", "-tvzf", base) and "etc/passwd" in run(
        "tar", "-tzf", base
    )
    listed = run("tar", "-tvzf", busybox)
    assert "bin/sh -> busybox" in listed and "bin/httpd -> busybox" in listed
    unpacked = subprocess.run(["tar", "-xzOf", busybox, "bin/busybox"], capture_output=True, check=True).stdout
    assert unpacked == Path(imagekit.BUSYBOX).read_bytes()
    assert config["rootfs"]["diff_ids"] == [
        "sha256:" + run("sh", "-c", 'gzip -dc "$1" | sha256sum', "-", layer).split()[0] for layer in (base, busybox)
    ]


def test_example_pod_is_a_valid_pod_of_the_archived_image_with_and_without_command():
    pod = yaml.safe_load((REPO / "examples" / "image" / "pod.yaml").read_text())
    validate_object(pod)
    from_image, with_command = pod["spec"]["containers"]
    for container in (from_image, with_command):
        assert container["image"] == "localhost/busybox:1.35" and container["imagePullPolicy"] == "IfNotPresent"
    assert "command" not in from_image and "args" not in from_image
    assert with_command["command"][0] == "sh"
