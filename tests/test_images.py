"""The image store (nsbox/images/), the skopeo transport and the `image` commands (docs/images.md).

Images are built from the host's binaries by tests/imagekit.py and pushed to a
real `docker-registry` on 127.0.0.1 (the session fixture `registry`); what the
store did is checked with observers that are not nsbox: the registry's access
log, `skopeo inspect`, inodes and mtimes on disk, a real overlay mount, /proc.
Every test has a private store directory, removed afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator

import imagekit
import pytest
from conftest import NSBOX, processes_naming, pushed_busybox_image, running_registry, wait_for

from nsbox import kube
from nsbox.errors import NsboxError
from nsbox.images import (
    Image,
    PullError,
    Store,
    normalize,
    store_path,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def registry() -> Iterator[imagekit.Registry]:
    """A registry for this module only (conftest's is the session's): its tests re-push tags,
    delete manifests and count requests, which must not disturb other modules' images."""
    with running_registry() as r:
        yield r


@pytest.fixture(scope="module")
def busybox_image(registry: imagekit.Registry) -> Iterator[imagekit.BuiltImage]:
    """The standard busybox image (tests/imagekit.py) in this module's registry."""
    with pushed_busybox_image(registry) as image:
        yield image


@pytest.fixture
def store_dir() -> Iterator[str]:
    """A private store, removed afterwards; fails if anything is still mounted under it."""
    path = tempfile.mkdtemp(prefix="nsbx-images-", dir="/tmp")
    try:
        yield path
    finally:
        with open("/proc/self/mountinfo") as f:
            mounted = [line.split()[4] for line in f if line.split()[4].startswith(path)]
        shutil.rmtree(path, ignore_errors=True)
        assert not mounted, f"left mounted: {mounted}"


@pytest.fixture
def store(store_dir: str) -> Store:
    return Store(store_dir)


@pytest.fixture
def workdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="nsbx-imgwork-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def cli(store_dir: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real CLI with a private store."""
    p = subprocess.run(
        [*NSBOX, "--image-store", store_dir, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"nsbox {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def one_error_line(p: subprocess.CompletedProcess[str]) -> str:
    """The single `error:` line a failed command printed (no traceback)."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


def unique(prefix: str) -> str:
    """A repository name no other test of the session pushes to (the registry and its log are shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def push(registry: imagekit.Registry, workdir: str, repo: str, layers: list[imagekit.Layer], tag: str = "1") -> str:
    """Build an image of `layers` and push it as REGISTRY/REPO:TAG; its manifest digest."""
    layout = tempfile.mkdtemp(dir=workdir)
    digest = imagekit.build_layout(layout, layers, tag=tag, config={"Cmd": ["sh"]})
    imagekit.push(layout, f"{registry.host}/{repo}:{tag}", tag=tag)
    return digest


def marker_layer(text: str) -> imagekit.Layer:
    return imagekit.Layer(files={"/marker": text.encode()})


def blob_gets(registry: imagekit.Registry, repo: str) -> list[str]:
    """The blob digests the registry served for `repo` (its access log: one line per request)."""
    return re.findall(rf'"GET /v2/{re.escape(repo)}/blobs/(sha256:[0-9a-f]{{64}}) ', registry.log())


def files_under(path: str) -> dict[str, float]:
    """Every file under `path` and its mtime."""
    found = {}
    for dirpath, _, names in os.walk(path):
        for n in names:
            full = os.path.join(dirpath, n)
            found[full] = os.lstat(full).st_mtime_ns
    return found


# ---------------------------------------------------------------- names and policies


@pytest.mark.parametrize(
    "ref, full",
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("user/app", "docker.io/user/app:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
        ("localhost:5000/app:1", "localhost:5000/app:1"),
        ("localhost/app", "localhost/app:latest"),
        ("quay.io/org/app", "quay.io/org/app:latest"),
        ("127.0.0.1:5000/a/b/c:v1.2-x", "127.0.0.1:5000/a/b/c:v1.2-x"),
        ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
        ("ghcr.io/o/app:2@sha256:" + "b" * 64, "ghcr.io/o/app:2@sha256:" + "b" * 64),
    ],
)
def test_normalize_follows_containerds_rules(ref: str, full: str) -> None:
    assert normalize(ref) == full


@pytest.mark.parametrize(
    "ref", ["", "Busybox", "busybox:", "busybox@sha256:abc", "a//b", "bad tag:x y", "-lead", "busybox:" + "t" * 129]
)
def test_bad_references_are_refused(ref: str) -> None:
    with pytest.raises(NsboxError, match="invalid image reference"):
        normalize(ref)


@pytest.mark.parametrize(
    "ref, policy",
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("busybox:1.36", "IfNotPresent"),
        ("busybox@sha256:" + "c" * 64, "IfNotPresent"),
        ("busybox:latest@sha256:" + "c" * 64, "Always"),
        ("localhost:5000/app", "Always"),
    ],
)
def test_default_pull_policy_is_kubernetes(ref: str, policy: str) -> None:
    assert kube.default_pull_policy(ref) == policy


def test_store_path_is_option_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSBOX_IMAGE_STORE", raising=False)
    assert store_path() == "/var/lib/nsbox/images"
    monkeypatch.setenv("NSBOX_IMAGE_STORE", "/srv/images")
    assert store_path() == "/srv/images"
    assert store_path("/opt/store") == "/opt/store"


@needs_root
def test_cli_bad_reference_and_missing_archive_are_one_error_line(store_dir: str) -> None:
    assert "invalid image reference" in one_error_line(cli(store_dir, "image", "pull", "No/Such", check=False))
    assert "no such file" in one_error_line(cli(store_dir, "image", "load", "-i", "/nonexistent.tar", check=False))
    assert "not found" in one_error_line(cli(store_dir, "image", "rm", "nothing:here", check=False))


@needs_root
def test_corrupt_archive_is_one_error_line(store_dir: str, workdir: str) -> None:
    junk = os.path.join(workdir, "junk.tar")
    with open(junk, "wb") as f:
        f.write(os.urandom(4096))
    assert "not an image archive" in one_error_line(cli(store_dir, "image", "load", "-i", junk, check=False))


# ---------------------------------------------------------------- overlay's page


@needs_root
def test_lowerdirs_of_130_layers_fit_a_page_and_mount(store: Store, workdir: str) -> None:
    """130 layers: the `lowerdir=` value is short names relative to the returned directory, well
    under the 4096-byte page, and an overlay mounted from that directory shows every layer (top wins)."""
    diff_ids = []
    for i in range(130):
        diff_id = "sha256:" + uuid.uuid4().hex * 2
        layer = store.layers.path(diff_id)
        os.makedirs(layer)
        with open(os.path.join(layer, f"f{i}"), "w") as f:
            f.write(str(i))
        with open(os.path.join(layer, "top"), "w") as f:
            f.write(str(i))
        diff_ids.append(diff_id)
    image = Image(name="x", id="sha256:" + "0" * 64, digest="", diff_ids=diff_ids)
    directory, lowerdir = store.lowerdirs(image)
    assert len(lowerdir) < 2048, len(lowerdir)
    assert "/" not in lowerdir
    mnt = os.path.join(workdir, "mnt")
    os.mkdir(mnt)
    script = 'cd "$1" && mount -t overlay overlay -o "lowerdir=$2" "$3" && cat "$3/top" "$3/f0" "$3/f129"'
    p = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", directory, lowerdir, mnt],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == "129" + "0" + "129"  # the last layer is the top one


# ---------------------------------------------------------------- pulling


@needs_root
def test_pull_by_tag_unpacks_layers_and_records_config(
    store_dir: str, registry: imagekit.Registry, busybox_image: imagekit.BuiltImage
) -> None:
    p = cli(store_dir, "image", "pull", busybox_image.ref)
    assert busybox_image.digest in p.stdout and busybox_image.ref in p.stdout
    image = Store(store_dir).lookup(busybox_image.ref)
    assert image is not None
    assert image.repo_digest == f"{busybox_image.ref.rsplit(':', 1)[0]}@{busybox_image.digest}"
    assert image.image_id == image.repo_digest
    assert image.id == imagekit.inspect(f"docker://{busybox_image.ref}", raw=True)["config"]["digest"]
    assert image.diff_ids == busybox_image.config["rootfs"]["diff_ids"]
    assert image.config.entrypoint == ["sh", "-c"] and image.config.working_dir == "/home/app"
    assert "IMAGE_VAR=from-image" in image.config.env
    top = image.layers[-1]
    with open(os.path.join(top, "bin", "busybox"), "rb") as a, open(imagekit.BUSYBOX, "rb") as b:
        assert a.read() == b.read()
    assert os.path.isfile(os.path.join(image.layers[0], "etc", "passwd"))


@needs_root
def test_pull_by_digest(store: Store, registry: imagekit.Registry, busybox_image: imagekit.BuiltImage) -> None:
    repo = busybox_image.ref.rsplit(":", 1)[0]
    image = store.pull(f"{repo}@{busybox_image.digest}")
    assert image.digest == busybox_image.digest
    assert image.repo_digest == f"{repo}@{busybox_image.digest}"
    assert store.lookup(f"{repo}@{busybox_image.digest}") == image


@needs_root
def test_repushed_tag_is_seen_and_an_unchanged_one_copies_nothing(
    store: Store, registry: imagekit.Registry, workdir: str
) -> None:
    repo = unique("moving")
    ref = f"{registry.host}/{repo}:1"
    first = push(registry, workdir, repo, [marker_layer("one")])
    image = store.pull(ref)
    assert image.digest == first
    before, gets = files_under(store.path), len(blob_gets(registry, repo))
    again, copied = store.fetch(ref)
    assert (again.digest, copied) == (first, False)
    assert files_under(store.path) == before and len(blob_gets(registry, repo)) == gets

    second = push(registry, workdir, repo, [marker_layer("two")])
    image, copied = store.fetch(ref)
    assert (image.digest, copied) == (second, True)
    with open(os.path.join(image.layers[0], "marker")) as f:
        assert f.read() == "two"


@needs_root
def test_zstd_and_uncompressed_layers_are_verified_and_unpacked(
    store: Store, registry: imagekit.Registry, workdir: str
) -> None:
    for compression in ("zstd", "none"):
        repo = unique(compression)
        layout = tempfile.mkdtemp(dir=workdir)
        imagekit.build_layout(layout, [marker_layer(compression)], compression=compression)
        imagekit.push(layout, f"{registry.host}/{repo}:latest")
        image = store.pull(f"{registry.host}/{repo}")
        with open(os.path.join(image.layers[0], "marker")) as f:
            assert f.read() == compression


@needs_root
def test_a_layer_that_is_not_its_diff_id_is_refused(store: Store, registry: imagekit.Registry, workdir: str) -> None:
    """An image config whose rootfs.diff_ids do not match its layers: no layer and no record land."""
    layout = tempfile.mkdtemp(dir=workdir)
    layer = marker_layer("lying")
    blob = imagekit.write_blob(layout, imagekit.compress(layer.tar(), "gzip"), imagekit.OCI_LAYER_MEDIA["gzip"])
    wrong = imagekit.sha256(b"something else")
    config = imagekit.image_config([layer], [wrong], None, imagekit.host_arch(), "linux")
    config_desc = imagekit.write_blob(layout, imagekit.canonical(config), imagekit.MEDIA_OCI_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": imagekit.MEDIA_OCI_MANIFEST, "config": config_desc, "layers": [blob]}
    descriptor = imagekit.write_blob(layout, imagekit.canonical(manifest), imagekit.MEDIA_OCI_MANIFEST)
    imagekit.write_index_json(layout, descriptor, "latest")
    ref = f"{registry.host}/{unique('lying')}:latest"
    imagekit.push(layout, ref)
    with pytest.raises(NsboxError, match="as the image config says"):
        store.pull(ref)
    assert store.images() == [] and os.listdir(os.path.join(store.path, "layers")) == []


@needs_root
def test_manifest_list_resolves_to_this_platform(store: Store, registry: imagekit.Registry) -> None:
    ref = f"{registry.host}/{unique('multi')}:latest"
    index = imagekit.push_index(ref, imagekit.busybox_image_layers())
    image = store.pull(ref)
    assert image.repo_digest == f"{ref.rsplit(':', 1)[0]}@{index.digest}"
    assert image.digest == index.manifests[f"linux/{imagekit.host_arch()}"]
    assert not any(os.path.exists(os.path.join(layer, "PLATFORM")) for layer in image.layers)


@needs_root
def test_shared_layers_are_unpacked_once(store: Store, registry: imagekit.Registry, workdir: str) -> None:
    base = imagekit.base_layer()
    repo_a, repo_b = unique("a"), unique("b")
    push(registry, workdir, repo_a, [base, marker_layer("a")])
    push(registry, workdir, repo_b, [base, marker_layer("b")])
    first = store.pull(f"{registry.host}/{repo_a}:1")
    second = store.pull(f"{registry.host}/{repo_b}:1")
    assert first.layers[0] == second.layers[0] and first.layers[1] != second.layers[1]
    assert os.stat(first.layers[0]).st_ino == os.stat(second.layers[0]).st_ino
    assert len(os.listdir(os.path.join(store.path, "layers"))) == 3


@needs_root
def test_concurrent_pulls_of_one_image_fetch_it_once(store_dir: str, registry: imagekit.Registry, workdir: str) -> None:
    repo = unique("concurrent")
    digest = push(registry, workdir, repo, imagekit.busybox_image_layers())
    ref = f"{registry.host}/{repo}:1"
    procs = [
        subprocess.Popen(
            [*NSBOX, "--image-store", store_dir, "image", "pull", ref],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert all(digest in out for out, _ in outs)
    gets = blob_gets(registry, repo)
    assert len(gets) == len(set(gets)) == 3, gets  # two layers and the config, each once
    assert len(Store(store_dir).images()) == 1


@needs_root
def test_pull_errors_are_classified(store_dir: str, registry: imagekit.Registry) -> None:
    store = Store(store_dir)
    with pytest.raises(PullError) as e:
        store.pull(f"{registry.host}/{unique('absent')}:1")
    assert e.value.reason == "NotFound" and "nsbox image load -i FILE" in str(e.value)
    port = imagekit.free_port()
    with pytest.raises(PullError) as e:
        store.pull(f"127.0.0.1:{port}/app:1")
    assert e.value.reason == "Unreachable" and "connection refused" in str(e.value)
    line = one_error_line(cli(store_dir, "image", "pull", f"127.0.0.1:{port}/app:1", check=False))
    assert "registry unreachable" in line and "nsbox image load" in line
    with pytest.raises(PullError) as e:
        store.ensure(f"{registry.host}/{unique('never')}:1", "Never")
    assert e.value.reason == "NeverPull"


@needs_root
def test_a_registry_with_auth_is_unauthorized_without_credentials_and_pulls_with_an_auth_file(
    store_dir: str, workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with imagekit.Registry(auth=("puller", "s3cret")) as private:
        layout = tempfile.mkdtemp(dir=workdir)
        digest = imagekit.build_layout(layout, [marker_layer("private")], tag="1")
        ref = f"{private.host}/secret:1"
        imagekit.push(layout, ref, tag="1", creds=private.creds)
        monkeypatch.setenv("REGISTRY_AUTH_FILE", os.path.join(workdir, "none.json"))
        line = one_error_line(cli(store_dir, "image", "pull", ref, check=False))
        assert "unauthorized" in line and "nsbox image load -i FILE" in line
        with pytest.raises(PullError) as e:
            Store(store_dir).pull(ref)
        assert e.value.reason == "Unauthorized"

        auth_file = os.path.join(workdir, "auth.json")
        token = base64.b64encode(b"puller:s3cret").decode()
        with open(auth_file, "w") as f:
            json.dump({"auths": {private.host: {"auth": token}}}, f)
        monkeypatch.setenv("REGISTRY_AUTH_FILE", auth_file)
        assert digest in cli(store_dir, "image", "pull", ref).stdout


@needs_root
def test_a_mirror_from_registries_conf_serves_another_registrys_name(
    store: Store, registry: imagekit.Registry, workdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`registries.conf` (here $CONTAINERS_REGISTRIES_CONF) sends pulls of a registry that does
    not exist to the local one: the store names the image as asked, skopeo finds it at the mirror."""
    repo = unique("mirrored")
    digest = push(registry, workdir, repo, [marker_layer("mirrored")])
    conf = os.path.join(workdir, "registries.conf")
    with open(conf, "w") as f:
        f.write(
            '[[registry]]\nlocation = "registry.nsbox.invalid"\n'
            f'[[registry.mirror]]\nlocation = "{registry.host}"\ninsecure = true\n'
        )
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", conf)
    image = store.pull(f"registry.nsbox.invalid/{repo}:1")
    assert image.name == f"registry.nsbox.invalid/{repo}:1"
    assert image.repo_digest == f"registry.nsbox.invalid/{repo}@{digest}"


@needs_root
def test_ensure_follows_the_pull_policy(
    store: Store, registry: imagekit.Registry, busybox_image: imagekit.BuiltImage
) -> None:
    image, pulled = store.ensure(busybox_image.ref, "IfNotPresent")
    assert pulled and image.digest == busybox_image.digest
    assert store.ensure(busybox_image.ref, "IfNotPresent") == (image, False)
    assert store.ensure(busybox_image.ref, "Never") == (image, False)
    again, pulled = store.ensure(busybox_image.ref, "Always")
    assert pulled and again.digest == image.digest


@needs_root
def test_killed_pull_leaves_a_usable_store(store_dir: str, registry: imagekit.Registry, workdir: str) -> None:
    """SIGKILL the CLI while skopeo copies a big layer: no record, no skopeo left running, and
    the next pull works; prune reclaims the leftovers."""
    repo = unique("killed")
    big = imagekit.Layer(files={"/big": os.urandom(96 << 20)})
    push(registry, workdir, repo, [imagekit.base_layer(), big])
    ref = f"{registry.host}/{repo}:1"
    pulls = os.path.join(store_dir, "pulls")

    def copying() -> bool:
        for _, _, names in os.walk(pulls):
            if any(n.startswith("oci-put-blob") for n in names):
                return True
        return False

    p = subprocess.Popen([*NSBOX, "--image-store", store_dir, "image", "pull", ref], stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: copying() or p.poll() is not None, timeout=60, interval=0.002, what="skopeo copying")
        assert p.poll() is None, "the pull ended before it could be killed"
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(timeout=30)

    wait_for(lambda: not processes_naming(store_dir), timeout=20, what="skopeo to die with the killed pull")
    store = Store(store_dir)
    assert store.images() == [] and store.lookup(ref) is None
    assert cli(store_dir, "image", "ls", "-q").stdout == ""
    image = store.pull(ref)
    assert os.path.getsize(os.path.join(image.layers[1], "big")) == 96 << 20
    store.prune()
    assert os.listdir(pulls) == []
    assert store.lookup(ref) == image


# ---------------------------------------------------------------- loading and listing


def archived_config_digest(archive: str) -> str:
    """The digest of the (first) image config in an archive, read with tarfile: what `image load` must call
    the image's id (skopeo rewrites the config when it writes a docker-archive)."""
    with tarfile.open(archive) as tar:
        names = tar.getnames()

        def member(name: str) -> bytes:
            f = tar.extractfile(name)
            assert f is not None
            return f.read()

        if "index.json" in names:
            digest = json.loads(member("index.json"))["manifests"][0]["digest"]
            manifest = json.loads(member("blobs/" + digest.replace(":", "/")))
            return manifest["config"]["digest"]
        return imagekit.sha256(member(json.loads(member("manifest.json"))[0]["Config"]))


@needs_root
@pytest.mark.parametrize("kind", ["oci-archive", "docker-archive"])
def test_load_archive(store_dir: str, busybox_image: imagekit.BuiltImage, workdir: str, kind: str) -> None:
    archive = os.path.join(workdir, f"image.{kind}.tar")
    imagekit.archive(busybox_image.layout, archive, kind, "localhost/saved:v1", tag="1")
    p = cli(store_dir, "image", "load", "-i", archive)
    assert p.stdout == "Loaded image: localhost/saved:v1\n"
    image = Store(store_dir).lookup("localhost/saved:v1")
    assert image is not None and image.repo_digest == ""
    assert image.id == archived_config_digest(archive)
    assert image.image_id == image.id
    assert image.diff_ids == busybox_image.config["rootfs"]["diff_ids"]
    assert os.path.isfile(os.path.join(image.layers[1], "bin", "busybox"))


@needs_root
def test_image_ls_columns(store_dir: str, busybox_image: imagekit.BuiltImage) -> None:
    cli(store_dir, "image", "pull", busybox_image.ref)
    image = Store(store_dir).lookup(busybox_image.ref)
    assert image is not None
    for args in (["image", "ls"], ["images"]):
        lines = cli(store_dir, *args).stdout.splitlines()
        assert re.split(r"\s{2,}", lines[0]) == ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "SIZE"]
        assert len(lines) == 2
        repo, tag, digest, image_id, size = re.split(r"\s{2,}", lines[1])
        assert (repo, tag) == tuple(busybox_image.ref.rsplit(":", 1))
        assert digest == busybox_image.digest[:19] and image_id == image.id[7:19]
        assert re.fullmatch(r"[\d.]+ (B|kB|MB)", size), size
    assert cli(store_dir, "images", "-q").stdout == image.id[7:19] + "\n"
    listed = json.loads(cli(store_dir, "image", "ls", "-o", "json").stdout)["images"]
    assert [i["imageID"] for i in listed] == [image.repo_digest]


# ---------------------------------------------------------------- leases, rm, prune


def fake_pod(root: str, name: str) -> str:
    """A pod directory in `root`, as the pod side leaves it (pods/<uid>/pod.json): its UID."""
    uid = str(uuid.uuid4())
    os.makedirs(os.path.join(root, "pods", uid))
    with open(os.path.join(root, "pods", uid, "pod.json"), "w") as f:
        json.dump({"name": name, "namespace": "team"}, f)
    return uid


@needs_root
def test_rm_is_refused_while_a_pod_uses_the_image(
    store_dir: str, busybox_image: imagekit.BuiltImage, workdir: str
) -> None:
    store = Store(store_dir)
    image = store.pull(busybox_image.ref)
    uid = fake_pod(workdir, "web")
    store.lease(f"{workdir}/{uid}", workdir, uid, [image.image_id])
    line = one_error_line(cli(store_dir, "image", "rm", busybox_image.ref, check=False))
    assert line == f'error: image "{busybox_image.ref}" is in use by pod team/web'
    assert store.lookup(busybox_image.ref) is not None

    shutil.rmtree(os.path.join(workdir, "pods", uid))  # the pod is gone: its lease is stale
    p = cli(store_dir, "image", "rm", image.id[7:19])
    assert f"Untagged: {busybox_image.ref}" in p.stdout and f"Deleted: {image.id}" in p.stdout
    assert store.lookup(busybox_image.ref) is None
    assert os.listdir(os.path.join(store_dir, "leases")) == []


@needs_root
def test_a_second_tag_of_one_image_copies_nothing_and_rm_by_id_untags_both(
    store_dir: str, registry: imagekit.Registry, busybox_image: imagekit.BuiltImage
) -> None:
    second = busybox_image.ref.rsplit(":", 1)[0] + ":second"
    imagekit.push(busybox_image.layout, second, tag="1")
    store = Store(store_dir)
    image = store.pull(busybox_image.ref)
    blobs = files_under(os.path.join(store_dir, "blobs"))
    other, copied = store.fetch(second)
    assert (other.id, other.repo_digest, copied) == (image.id, image.repo_digest, False)
    assert files_under(os.path.join(store_dir, "blobs")) == blobs
    assert len(cli(store_dir, "images").stdout.splitlines()) == 3
    assert cli(store_dir, "images", "-q").stdout.splitlines() == [image.id[7:19]]
    p = cli(store_dir, "image", "rm", image.id[7:])
    assert p.stdout.splitlines() == sorted([f"Untagged: {busybox_image.ref}", f"Untagged: {second}"]) + [
        f"Deleted: {image.id}"
    ]
    assert store.images() == []


@needs_root
def test_prune_keeps_what_images_and_live_leases_use(store: Store, registry: imagekit.Registry, workdir: str) -> None:
    base = imagekit.base_layer()
    kept, leased, dropped = unique("kept"), unique("leased"), unique("dropped")
    for repo in (kept, leased, dropped):
        push(registry, workdir, repo, [base, marker_layer(repo)])
    images = {repo: store.pull(f"{registry.host}/{repo}:1") for repo in (kept, leased, dropped)}
    uid = fake_pod(workdir, "user")
    store.lease("holder", workdir, uid, [images[leased].image_id])
    store.remove(f"{registry.host}/{dropped}:1")
    dropped_blob = store.blob(images[dropped].blobs[-1])
    with pytest.raises(NsboxError, match="in use by pod team/user"):
        store.remove(f"{registry.host}/{leased}:1")
    # the leased image's tag moves on: only the lease still names its old top layer
    push(registry, workdir, leased, [base, marker_layer("v2")])
    moved = store.pull(f"{registry.host}/{leased}:1")
    assert moved.layers[1] != images[leased].layers[1]
    size = os.path.getsize(os.path.join(images[dropped].layers[1], "marker"))

    layers, freed = store.prune()
    assert layers == 1 and freed > size
    assert not os.path.exists(images[dropped].layers[1]) and not os.path.exists(dropped_blob)
    assert os.path.isdir(images[dropped].layers[0])  # the base layer, which the others share
    for image in (images[kept], images[leased], moved):
        assert all(os.path.isdir(d) for d in image.layers)
    for image in (images[kept], moved):
        assert all(os.path.exists(store.blob(b)) for b in image.blobs)

    store.release("holder")
    assert store.prune()[0] == 1  # the old layer, no longer leased
    assert not os.path.exists(images[leased].layers[1])
    assert cli(store.path, "image", "prune").stdout == "Removed 0 unused layers\nTotal reclaimed space: 0 B\n"
