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

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class Layer:
    """What one layer's tar holds, declared; `entries()` turns it into tar entries.

    Paths are relative to the image root (a leading `/` is dropped). Parent
    directories not declared are added as 0755 root:root, as `docker build`
    writes them; declare them in `dirs` to give another mode (`/tmp` 1777).
    `whiteouts` delete a path of the layers below (`DIR/.wh.NAME`), `opaque`
    hides everything below a directory (`DIR/.wh..wh..opq`), as the OCI
    image-spec's layer changesets say. `raw` entries are written as given,
    after the others and unchecked: hostile tars (`../` names, absolute
    links, devices) for the tests of the unpacker.
    """

    files: Mapping[str, bytes | File] = field(default_factory=dict)
    dirs: Mapping[str, Dir] | Sequence[str] = ()
    symlinks: Mapping[str, str] = field(default_factory=dict)  # path -> target, as written
    hardlinks: Mapping[str, str] = field(default_factory=dict)  # path -> an earlier path of this layer
    whiteouts: Sequence[str] = ()
    opaque: Sequence[str] = ()
    raw: Sequence[tuple[tarfile.TarInfo, bytes | None]] = ()
    created_by: str = "nsbox tests imagekit"  # the image config's history line for this layer

    def entries(self) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        """The tar entries, parents before children, hard links after their targets, raw last."""
        dirs = dict(self.dirs) if isinstance(self.dirs, Mapping) else {d: Dir() for d in self.dirs}
        plain: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
        for path, d in dirs.items():
            plain[_rel(path)] = (_info(path, tarfile.DIRTYPE, d.mode, d.uid, d.gid), None)
        for path, f in self.files.items():
            f = f if isinstance(f, File) else File(f)
            info = _info(path, tarfile.REGTYPE, f.mode, f.uid, f.gid)
            info.size = len(f.data)
            plain[_rel(path)] = (info, f.data)
        for path, target in self.symlinks.items():
            info = _info(path, tarfile.SYMTYPE, 0o777)
            info.linkname = target
            plain[_rel(path)] = (info, None)
        for path in self.whiteouts:
            parent, name = os.path.split(_rel(path))
            wh = os.path.join(parent, ".wh." + name)
            plain[wh] = (_info(wh, tarfile.REGTYPE, 0o644), b"")
        for path in self.opaque:
            opq = os.path.join(_rel(path), ".wh..wh..opq")
            plain[opq] = (_info(opq, tarfile.REGTYPE, 0o644), b"")
        for path in list(plain):
            for parent in _parents(path):
                plain.setdefault(parent, (_info(parent, tarfile.DIRTYPE, 0o755), None))
        links = []
        for path, target in self.hardlinks.items():
            info = _info(path, tarfile.LNKTYPE, 0o644)
            info.linkname = _rel(target)
            links.append((info, None))
            for parent in _parents(_rel(path)):
                if parent not in plain:
                    plain[parent] = (_info(parent, tarfile.DIRTYPE, 0o755), None)
        return [plain[p] for p in sorted(plain)] + links + list(self.raw)

    def names(self) -> list[str]:
        """The member names `tar -t` lists for this layer (directories end in `/`)."""
        return [info.name + ("/" if info.isdir() else "") for info, _ in self.entries()]

    def tar(self) -> bytes:
        """The uncompressed tar (POSIX pax format, as the image-spec recommends)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for info, data in self.entries():
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def _rel(path: str) -> str:
    rel = os.path.normpath(path.lstrip("/"))
    if rel in (".", "") or rel.startswith("../"):
        raise ValueError(f"not a path inside the image: {path!r} (use Layer.raw for hostile names)")
    return rel


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _info(path: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(_rel(path))
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = EPOCH
    return info


def is_static_elf(path: str) -> bool:
    """True when `path` is an ELF executable with no PT_INTERP (no dynamic loader): it runs in an empty root."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64, little = head[4] == 2, head[5] == 1
        order = "little" if little else "big"

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
        return gzip.compress(tar, mtime=0)
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


def bcrypt_htpasswd(user: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash (the only kind the registry takes), at the lowest cost:
    the registry checks it on every request, and the default cost takes a second each time."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # glibc's crypt(3) does bcrypt; the module leaves the standard library in 3.13

    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("this libc's crypt(3) cannot make a bcrypt hash")
    return f"{user}:{hashed}\n"


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
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [DOCKER_REGISTRY, "serve", config], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
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

    def get(self, path: str) -> Any:
        """GET a registry API path (`/v2/_catalog`) and parse the JSON answer."""
        req = urllib.request.Request(f"{self.url}{path}")
        if self.auth:
            import base64

            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def catalog(self) -> list[str]:
        return self.get("/v2/_catalog")["repositories"]


# ---------------------------------------------------------------- a ready image


@dataclass(frozen=True)
class BuiltImage:
    """An image pushed to a registry: where (`ref`), which (`digest`), its layout on disk and its config."""

    ref: str
    digest: str
    layout: str
    config: dict[str, Any]


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


def push_busybox_image(registry: Registry, layout: str, *, name: str = "busybox", tag: str = "1") -> BuiltImage:
    """Build the standard two-layer busybox image into `layout` and push it as `HOST/NAME:TAG`."""
    digest = build_layout(layout, busybox_image_layers(), config=BUSYBOX_IMAGE_CONFIG, tag=tag)
    ref = f"{registry.host}/{name}:{tag}"
    push(layout, ref, tag=tag, creds=registry.creds)
    return BuiltImage(ref=ref, digest=digest, layout=layout, config=read_config(layout, digest))
