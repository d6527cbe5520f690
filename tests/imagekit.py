"""Real OCI images for the tests, built from the host's binaries, and a real registry to pull them from.

No image tool but `skopeo`: a `Layer` says what its tar holds (files, dirs,
links, whiteouts, or raw hostile entries), `build_layout` writes an OCI image
layout (the OCI image-spec's `image-layout`, `manifest`, `config` and
`layer` documents) with one manifest, and `push`/`archive` hand it to
`skopeo copy`. `Registry` runs Debian's `docker-registry` (the
distribution registry) on 127.0.0.1 with private storage; `push_index`
pushes an image index naming this machine's platform and another, so the
store's platform resolution can be tested.

Everything is deterministic (fixed mtimes, gzip without a timestamp), so the
same layers give the same digests, and a test can compute what a registry
must report.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import prctl

SKOPEO = "skopeo"
DOCKER_REGISTRY = "/usr/bin/docker-registry"
BUSYBOX = "/bin/busybox"

# One instant for every tar entry and config date: the same content gives the same digest.
EPOCH = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"  # EPOCH in RFC 3339, as image configs date things

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REF_NAME = "org.opencontainers.image.ref.name"
# Whiteout names, from the OCI image-spec's layer changesets.
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

# Layer media types by compression, OCI and Docker schema 2 (Docker has no zstd type).
OCI_LAYER_MEDIA = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
DOCKER_LAYER_MEDIA = {
    "none": "application/vnd.docker.image.rootfs.diff.tar",
    "gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}

# Go's GOARCH for Python's platform.machine(): image configs and indexes name platforms the Go way.
GO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "i686": "386",
    "i386": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

BUSYBOX_APPLETS = (
    "sh", "echo", "cat", "sleep", "ls", "id", "env", "pwd", "touch", "rm", "test", "wc", "true", "false",
    "mkdir", "hostname", "ps", "kill", "nc", "wget", "httpd",
)  # fmt: skip


def host_arch() -> str:
    """This machine's architecture as Go (and so every image config) names it."""
    machine = platform.machine()
    try:
        return GO_ARCH[machine]
    except KeyError:
        raise RuntimeError(f"no Go architecture name known for {machine!r}") from None


def other_arch() -> str:
    """An architecture this machine is not: the decoy platform of `push_index`."""
    return "s390x" if host_arch() != "s390x" else "amd64"


# ---------------------------------------------------------------- layers


@dataclass(frozen=True)
class File:
    """A regular file of a layer."""

    data: bytes
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Dir:
    """A directory of a layer, when its mode or owner matter (else parents are made 0755 root)."""

    mode: int = 0o755
    uid: int = 0
    gid: int = 0


Entry = tuple[tarfile.TarInfo, bytes | None]  # a tar member and its content (None: no content)


@dataclass
class Layer:
    """What one layer's tar holds, declared; `entries()` turns it into tar members.

    Paths are inside the image (a leading `/` is dropped). Parent directories
    not declared are added as 0755 root:root, as `docker build` writes them;
    declare one in `dirs` to give it another mode (`/tmp` 1777) or owner.
    `whiteouts` delete a path of the layers below (`DIR/.wh.NAME`), `opaque`
    hides everything the layers below have in a directory
    (`DIR/.wh..wh..opq`), as the OCI image-spec's layer changesets say.
    `raw` members are written as given, after the others and unchecked:
    hostile tars (`../` names, absolute links, devices) for the unpacker's tests.
    """

    files: Mapping[str, bytes | File] = field(default_factory=dict)
    dirs: Mapping[str, Dir] | Sequence[str] = ()  # paths alone are 0755 root:root
    symlinks: Mapping[str, str] = field(default_factory=dict)  # path -> target, written as given
    hardlinks: Mapping[str, str] = field(default_factory=dict)  # path -> a file of this layer
    whiteouts: Sequence[str] = ()
    opaque: Sequence[str] = ()
    raw: Sequence[Entry] = ()
    created_by: str = "tests/imagekit.py"  # this layer's line in the image config's history

    def entries(self) -> list[Entry]:
        """The tar members: parents before children, hard links after their targets, raw last."""
        declared = self._dirs() + self._files() + self._symlinks() + self._whiteouts()
        links = self._hardlinks()
        by_path: dict[str, Entry] = {}
        for info, data in declared:
            if info.name in by_path:
                raise ValueError(f"{info.name} is declared twice in one layer")
            by_path[info.name] = (info, data)
        for info, _ in declared + links:
            for parent in _parents(info.name):
                by_path.setdefault(parent, (_member(parent, tarfile.DIRTYPE, Dir()), None))
        return [by_path[p] for p in sorted(by_path)] + links + list(self.raw)

    def _dirs(self) -> list[Entry]:
        if isinstance(self.dirs, str):
            raise TypeError("Layer.dirs is a list of paths or a {path: Dir} mapping, not one string")
        dirs = self.dirs if isinstance(self.dirs, Mapping) else {path: Dir() for path in self.dirs}
        return [(_member(path, tarfile.DIRTYPE, d), None) for path, d in dirs.items()]

    def _files(self) -> list[Entry]:
        entries: list[Entry] = []
        for path, f in self.files.items():
            f = f if isinstance(f, File) else File(f)
            info = _member(path, tarfile.REGTYPE, f)
            info.size = len(f.data)
            entries.append((info, f.data))
        return entries

    def _symlinks(self) -> list[Entry]:
        entries: list[Entry] = []
        for path, target in self.symlinks.items():
            info = _member(path, tarfile.SYMTYPE, File(b"", mode=0o777))
            info.linkname = target
            entries.append((info, None))
        return entries

    def _whiteouts(self) -> list[Entry]:
        markers = [
            os.path.join(os.path.dirname(_rel(p)), WHITEOUT_PREFIX + os.path.basename(_rel(p))) for p in self.whiteouts
        ]
        markers += [os.path.join(_rel(d), OPAQUE_MARKER) for d in self.opaque]
        return [(_member(m, tarfile.REGTYPE, File(b"")), b"") for m in markers]

    def _hardlinks(self) -> list[Entry]:
        entries: list[Entry] = []
        for path, target in self.hardlinks.items():
            info = _member(path, tarfile.LNKTYPE, File(b""))
            info.linkname = _rel(target)
            entries.append((info, None))
        return entries

    def names(self) -> list[str]:
        """The member names `tar -t` lists for this layer, in order (directories end in `/`)."""
        return [info.name + ("/" if info.isdir() else "") for info, _ in self.entries()]

    def tar(self) -> bytes:
        """The uncompressed tar, POSIX pax format (the image-spec's choice), reproducible."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in self.entries():
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def _rel(path: str) -> str:
    rel = os.path.normpath(path.lstrip("/"))
    if rel in (".", "") or rel == ".." or rel.startswith("../"):
        raise ValueError(f"not a path inside the image: {path!r} (Layer.raw takes hostile names)")
    return rel


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _member(path: str, kind: bytes, meta: File | Dir) -> tarfile.TarInfo:
    """A tar header with the mode and numeric owner of `meta`, no user names, the fixed mtime."""
    info = tarfile.TarInfo(_rel(path))
    info.type = kind
    info.mode = meta.mode
    info.uid, info.gid = meta.uid, meta.gid
    info.uname = info.gname = ""
    info.mtime = EPOCH
    return info


def is_static_elf(path: str) -> bool:
    """True when `path` is an ELF executable with no PT_INTERP (no dynamic loader): it runs in an empty root."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64 = head[4] == 2
        order: Literal["little", "big"] = "little" if head[5] == 1 else "big"

        def num(off: int, size: int) -> int:
            return int.from_bytes(head[off : off + size], order)

        phoff, phentsize, phnum = (num(32, 8), num(54, 2), num(56, 2)) if is64 else (num(28, 4), num(42, 2), num(44, 2))
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(int.from_bytes(table[i : i + 4], order) != pt_interp for i in range(0, len(table), phentsize))


def busybox_layer(applets: Iterable[str] = BUSYBOX_APPLETS, *, busybox: str = BUSYBOX) -> Layer:
    """`/bin/busybox` from the host's busybox-static, and `/bin/APPLET` symlinks to it."""
    if not is_static_elf(busybox):
        raise RuntimeError(f"{busybox} is not a static executable (install busybox-static)")
    with open(busybox, "rb") as f:
        binary = f.read()
    return Layer(
        files={"/bin/busybox": File(binary, mode=0o755)},
        symlinks={f"/bin/{a}": "busybox" for a in applets},
        created_by=f"COPY {busybox} /bin/busybox and its applet links",
    )


def base_layer() -> Layer:
    """A minimal Unix root: root, nobody (65534) and `app` (1000:1000) users, /tmp, /root, /home/app."""
    passwd = (
        "root:x:0:0:root:/root:/bin/sh\n"
        "app:x:1000:1000:app:/home/app:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    group = "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"
    return Layer(
        files={"/etc/passwd": passwd.encode(), "/etc/group": group.encode(), "/etc/hostname": b"image\n"},
        dirs={
            "/etc": Dir(),
            "/tmp": Dir(0o1777),
            "/root": Dir(0o700),
            "/home": Dir(),
            "/home/app": Dir(0o755, 1000, 1000),
        },
        created_by="base: /etc/passwd, /etc/group, /tmp, /root, /home/app",
    )


# ---------------------------------------------------------------- the layout


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compress(tar: bytes, compression: str) -> bytes:
    """The layer blob: the tar as is, gzip (no name, no timestamp: reproducible), or zstd by the `zstd` binary."""
    if compression == "none":
        return tar
    if compression == "gzip":
        return gzip.compress(tar, compresslevel=6, mtime=0)  # gzip(1)'s default; twice as fast as 9
    if compression == "zstd":
        return subprocess.run(["zstd", "-q", "-c", "-"], input=tar, capture_output=True, check=True).stdout
    raise ValueError(f"compression must be none, gzip or zstd, not {compression!r}")


def write_blob(layout: str, data: bytes, media_type: str) -> dict[str, Any]:
    """Store `data` under blobs/sha256/ and return its descriptor."""
    digest = sha256(data)
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(blobs, digest.split(":", 1)[1]), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def image_config(
    layers: Sequence[Layer], diff_ids: list[str], config: Mapping[str, Any] | None, architecture: str, os_name: str
) -> dict[str, Any]:
    """The image config (image-spec `config.md`): platform, the runtime defaults, rootfs and history.

    `Env` gets the usual PATH first unless it sets one, as every built image has."""
    runtime = dict(config or {})
    env = list(runtime.get("Env", []))
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    runtime["Env"] = env
    return {
        "created": CREATED,
        "architecture": architecture,
        "os": os_name,
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": layer.created_by} for layer in layers],
    }


def write_image(
    layout: str,
    layers: Sequence[Layer],
    *,
    config: Mapping[str, Any] | None = None,
    compression: str = "gzip",
    architecture: str | None = None,
    os_name: str = "linux",
    docker: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the layer, config and manifest blobs of one image; return (manifest descriptor, config).

    `docker=True` writes Docker schema 2 media types instead of OCI ones (for a
    manifest list, which names Docker manifests)."""
    layer_media = DOCKER_LAYER_MEDIA if docker else OCI_LAYER_MEDIA
    if compression not in layer_media:
        raise ValueError(f"no {'Docker' if docker else 'OCI'} layer media type for compression {compression!r}")
    descriptors, diff_ids = [], []
    for layer in layers:
        tar = layer.tar()
        diff_ids.append(sha256(tar))
        descriptors.append(write_blob(layout, compress(tar, compression), layer_media[compression]))
    cfg = image_config(layers, diff_ids, config, architecture or host_arch(), os_name)
    cfg_desc = write_blob(layout, canonical(cfg), MEDIA_DOCKER_CONFIG if docker else MEDIA_OCI_CONFIG)
    manifest_media = MEDIA_DOCKER_MANIFEST if docker else MEDIA_OCI_MANIFEST
    manifest = {"schemaVersion": 2, "mediaType": manifest_media, "config": cfg_desc, "layers": descriptors}
    return write_blob(layout, canonical(manifest), manifest_media), cfg


def write_index_json(layout: str, descriptor: Mapping[str, Any], tag: str) -> None:
    """oci-layout and index.json naming one manifest (or image index) by `tag`."""
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    entry = dict(descriptor, annotations={REF_NAME: tag})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": [entry]}, f)


def build_layout(
    dest: str,
    layers: list[Layer],
    *,
    config: dict[str, Any] | None = None,
    tag: str = "latest",
    compression: str = "gzip",
    architecture: str | None = None,
) -> str:
    """Write an OCI image layout at `dest` holding one image tagged `tag`; return its manifest digest.

    `config` is the image config's runtime part (Entrypoint, Cmd, Env,
    WorkingDir, User, ...), over a default PATH. Layers are gzip-compressed
    unless `compression` is "none" or "zstd"."""
    manifest, _ = write_image(dest, layers, config=config, compression=compression, architecture=architecture)
    write_index_json(dest, manifest, tag)
    return manifest["digest"]


def read_blob(layout: str, digest: str) -> bytes:
    with open(os.path.join(layout, "blobs", *digest.split(":", 1)), "rb") as f:
        return f.read()


# ---------------------------------------------------------------- skopeo


def skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run skopeo; fail with its stderr."""
    p = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
    return p


def push(layout: str, ref: str, *, tag: str = "latest", creds: str | None = None, all_images: bool = False) -> None:
    """Copy the layout's `tag` to `docker://REF` over plain HTTP, blobs and manifest unchanged.

    `all_images` copies an image index with every image it names (`--all`)."""
    args = ["copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
    if all_images:
        args.append("--all")
    if creds:
        args += ["--dest-creds", creds]
    skopeo(*args, f"oci:{layout}:{tag}", f"docker://{ref}")


def oci_to_dir(layout: str, top: Mapping[str, Any], dest: str) -> str:
    """The blobs of `layout` as skopeo's `dir:` transport lays them out, with `top` (a manifest list) as
    its manifest.json and each image it names as DIGEST.manifest.json.

    The `oci:` transport only reads OCI media types from index.json, so a Docker
    manifest list goes through `dir:` instead."""
    os.makedirs(dest)
    blobs = os.path.join(layout, "blobs", "sha256")
    for name in os.listdir(blobs):
        shutil.copyfile(os.path.join(blobs, name), os.path.join(dest, name))
    with open(os.path.join(dest, "version"), "w") as f:
        f.write("Directory Transport Version: 1.1\n")
    shutil.copyfile(os.path.join(blobs, top["digest"].split(":", 1)[1]), os.path.join(dest, "manifest.json"))
    for instance in json.loads(read_blob(layout, top["digest"]))["manifests"]:
        hexdigest = instance["digest"].split(":", 1)[1]
        shutil.copyfile(os.path.join(blobs, hexdigest), os.path.join(dest, f"{hexdigest}.manifest.json"))
    return dest


def push_dir(directory: str, ref: str, *, creds: str | None = None) -> None:
    """Copy a `dir:` layout with every image it names to `docker://REF` over plain HTTP, unchanged."""
    args = ["copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests", "--all"]
    if creds:
        args += ["--dest-creds", creds]
    skopeo(*args, f"dir:{directory}", f"docker://{ref}")


def archive(
    layout: str, path: str, kind: str = "oci-archive", ref: str = "localhost/image:latest", *, tag: str = "latest"
) -> None:
    """Write the layout's `tag` as one tar file, `oci-archive` or `docker-archive`, naming it `ref`."""
    if kind not in ("oci-archive", "docker-archive"):
        raise ValueError(f"archive kind must be oci-archive or docker-archive, not {kind!r}")
    skopeo("copy", "--quiet", f"oci:{layout}:{tag}", f"{kind}:{path}:{ref}")


def inspect(ref: str, *, raw: bool = False, config: bool = False, creds: str | None = None) -> Any:
    """`skopeo inspect` of a transport reference (`docker://...` over plain HTTP), parsed."""
    args = ["inspect"]
    if ref.startswith("docker://"):
        args.append("--tls-verify=false")
        if creds:
            args += ["--creds", creds]
    if raw:
        args.append("--raw")
    if config:
        args.append("--config")
    return json.loads(skopeo(*args, ref).stdout)


# ---------------------------------------------------------------- index


@dataclass(frozen=True)
class PushedIndex:
    """An image index in a registry: its digest, and the manifest digest for each `os/arch`."""

    ref: str
    digest: str
    manifests: dict[str, str]
    media_type: str


def push_index(
    ref: str,
    layers: list[Layer],
    *,
    config: dict[str, Any] | None = None,
    docker: bool = False,
    creds: str | None = None,
) -> PushedIndex:
    """Push an image index (or a Docker manifest list with `docker=True`) naming two images:
    `layers` for this machine's platform, and a decoy for another (`other_arch()`) with one dummy layer.

    A store that resolves the index for this machine must pick the first;
    the decoy's layer holds `/PLATFORM` so a wrong pick shows."""
    with tempfile.TemporaryDirectory(prefix="imagekit-index-") as layout:
        native_arch, decoy_arch = host_arch(), other_arch()
        decoy = Layer(files={"/PLATFORM": f"linux/{decoy_arch}\n".encode()}, created_by="decoy")
        native, _ = write_image(layout, layers, config=config, architecture=native_arch, docker=docker)
        foreign, _ = write_image(layout, [decoy], architecture=decoy_arch, docker=docker)
        media = MEDIA_DOCKER_LIST if docker else MEDIA_OCI_INDEX
        index = {
            "schemaVersion": 2,
            "mediaType": media,
            "manifests": [
                dict(foreign, platform={"architecture": decoy_arch, "os": "linux"}),
                dict(native, platform={"architecture": native_arch, "os": "linux"}),
            ],
        }
        index_desc = write_blob(layout, canonical(index), media)
        if docker:
            push_dir(oci_to_dir(layout, index_desc, os.path.join(layout, "dir")), ref, creds=creds)
        else:
            write_index_json(layout, index_desc, "latest")
            push(layout, ref, creds=creds, all_images=True)
    return PushedIndex(
        ref=ref,
        digest=index_desc["digest"],
        manifests={f"linux/{native_arch}": native["digest"], f"linux/{decoy_arch}": foreign["digest"]},
        media_type=media,
    )


# ---------------------------------------------------------------- the registry


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the registry binds it a moment later; start() retries a clash)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the registry's child, before exec: a pytest killed outright (no teardown) takes it along."""
    prctl.set_pdeathsig(signal.SIGKILL)


def bcrypt_htpasswd(user: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash (the only kind the registry takes), at the lowest cost:
    the registry checks it on every request, and the default cost takes a second each time."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # glibc's crypt(3) does bcrypt; the module leaves the standard library in 3.13
        except ImportError:
            raise RuntimeError("no bcrypt for htpasswd: this Python has no crypt module") from None

    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("this libc's crypt(3) cannot make a bcrypt hash")
    return f"{user}:{hashed}\n"


# The registry's access log, Apache combined format: 127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "agent"
ACCESS_LOG_LINE = re.compile(r'^\S+ \S+ \S+ \[[^]]*\] "([A-Z]+) (\S+) HTTP/[0-9.]+"', re.MULTILINE)
# What a client accepts when it asks for a manifest by tag (without it, the registry may answer schema 1).
MANIFEST_MEDIA_TYPES = (MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST, MEDIA_DOCKER_LIST)


class Registry:
    """Debian's `docker-registry` on 127.0.0.1, private storage, stopped and removed by `stop()`.

    Plain HTTP: skopeo and the store reach it with TLS verification off.
    `auth=(user, password)` turns on htpasswd basic auth; the distribution
    registry accepts it without TLS (it only warns), so no certificate is made."""

    START_TIMEOUT = 30.0

    def __init__(self, *, auth: tuple[str, str] | None = None):
        self.auth = auth
        self.dir = ""
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def creds(self) -> str | None:
        """The `user:password` skopeo's --creds takes, or None without auth."""
        return f"{self.auth[0]}:{self.auth[1]}" if self.auth else None

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "registry.log")

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start on a free port and wait until `GET /v2/` answers; a port taken meanwhile means another try."""
        self.dir = tempfile.mkdtemp(prefix="imagekit-registry-")
        try:
            for _ in range(3):
                self.port = free_port()
                self._spawn()
                if self._wait_ready():
                    return
                self._terminate()
                if "address already in use" not in self.log():
                    break
            raise RuntimeError(f"docker-registry did not start on {self.host}; its log:\n{self.log()}")
        except BaseException:
            self.stop()
            raise

    def _write_config(self) -> str:
        auth = ""
        if self.auth:
            htpasswd = os.path.join(self.dir, "htpasswd")
            with open(htpasswd, "w") as f:
                f.write(bcrypt_htpasswd(*self.auth))
            auth = f"auth:\n  htpasswd:\n    realm: imagekit\n    path: {htpasswd}\n"
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(
                "version: 0.1\n"
                "log:\n  level: info\n  accesslog:\n    disabled: false\n"
                f"storage:\n  filesystem:\n    rootdirectory: {os.path.join(self.dir, 'data')}\n"
                "  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.host}\n" + auth
            )
        return config

    def _spawn(self) -> None:
        config = self._write_config()
        with open(self.log_path, "wb") as log:  # the last attempt's log is the one to show
            self.process = subprocess.Popen(
                [DOCKER_REGISTRY, "serve", config],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )

    def _wait_ready(self) -> bool:
        """Poll `GET /v2/` until it answers (200, or 401 with auth on), the process dies, or the deadline."""
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as r:
                    return r.status == 200
            except urllib.error.HTTPError as e:
                return e.code == 401 and self.auth is not None
            except OSError:
                time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        """SIGTERM, wait, then SIGKILL: by the PID we started, nothing else."""
        p, self.process = self.process, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

    def stop(self) -> None:
        self._terminate()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method: str, path: str, *, accept: Sequence[str] = ()) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request to the registry API (with the credentials, if any): status, headers, body."""
        req = urllib.request.Request(f"{self.url}{path}", method=method)
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        if accept:
            req.add_header("Accept", ", ".join(accept))
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get(self, path: str) -> Any:
        """GET a registry API path (`/v2/_catalog`) and parse the JSON answer; fail unless 200."""
        status, _, body = self.request("GET", path)
        if status != 200:
            raise AssertionError(f"GET {path}: HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def catalog(self) -> list[str]:
        return self.get("/v2/_catalog")["repositories"]

    def manifest_digest(self, name: str, reference: str) -> str | None:
        """The digest the registry serves for `name:reference` (a tag or digest), or None if it has none."""
        status, headers, _ = self.request("HEAD", f"/v2/{name}/manifests/{reference}", accept=MANIFEST_MEDIA_TYPES)
        return headers.get("Docker-Content-Digest") if status == 200 else None

    def delete_manifest(self, name: str, digest: str) -> None:
        """Delete a manifest by digest (its tags go with it), as a registry operator would."""
        status, _, body = self.request("DELETE", f"/v2/{name}/manifests/{digest}")
        if status != 202:
            raise AssertionError(f"DELETE {name}@{digest}: HTTP {status}: {body[:200]!r}")

    def requests(self) -> list[str]:
        """The requests the registry has served so far, `METHOD PATH` each, from its access log.

        A line is written once its response is done: poll (`conftest.wait_for`)
        for one that must appear; to prove none came, check after the client finished."""
        return [f"{m.group(1)} {m.group(2)}" for m in ACCESS_LOG_LINE.finditer(self.log())]


# ---------------------------------------------------------------- a ready image


@dataclass(frozen=True)
class BuiltImage:
    """An image pushed to a registry: where (`ref`), which (`digest`), its layout on disk and its config."""

    ref: str  # HOST:PORT/NAME:TAG
    digest: str  # of the manifest
    layout: str
    config: dict[str, Any]

    @property
    def by_digest(self) -> str:
        """The same image named by digest: HOST:PORT/NAME@sha256:..."""
        return f"{self.ref.rsplit(':', 1)[0]}@{self.digest}"


def read_config(layout: str, manifest_digest: str) -> dict[str, Any]:
    """The image config a layout's manifest names."""
    manifest = json.loads(read_blob(layout, manifest_digest))
    return json.loads(read_blob(layout, manifest["config"]["digest"]))


def busybox_image_layers() -> list[Layer]:
    """The two layers of the standard test image: the base root, then busybox."""
    return [base_layer(), busybox_layer()]


# The standard test image's runtime config: Entrypoint and Cmd both set, so the Kubernetes rules
# (`command` replaces Entrypoint and drops Cmd, `args` replaces Cmd) show in what runs.
BUSYBOX_IMAGE_CONFIG: dict[str, Any] = {
    "Entrypoint": ["sh", "-c"],
    "Cmd": ["echo hello from the image"],
    "Env": [DEFAULT_PATH, "IMAGE_VAR=from-image"],
    "WorkingDir": "/home/app",
}


def push_image(
    registry: Registry,
    layout: str,
    layers: list[Layer],
    *,
    name: str,
    tag: str = "latest",
    config: dict[str, Any] | None = None,
    compression: str = "gzip",
) -> BuiltImage:
    """Build `layers` into `layout` and push the image as `HOST/NAME:TAG`."""
    digest = build_layout(layout, layers, config=config, tag=tag, compression=compression)
    ref = f"{registry.host}/{name}:{tag}"
    push(layout, ref, tag=tag, creds=registry.creds)
    return BuiltImage(ref=ref, digest=digest, layout=layout, config=read_config(layout, digest))


def push_busybox_image(registry: Registry, layout: str, *, name: str = "busybox", tag: str = "1") -> BuiltImage:
    """The standard two-layer busybox image, built into `layout` and pushed as `HOST/NAME:TAG`."""
    return push_image(registry, layout, busybox_image_layers(), name=name, tag=tag, config=BUSYBOX_IMAGE_CONFIG)
