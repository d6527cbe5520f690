"""Unpacking OCI layers (nsbox/images/unpack.py, docs/images.md "Unpacking layers").

Layers are built here with tarfile (and GNU tar, gzip, zstd where a real producer
matters), unpacked with `unpack_layer`, and observed with lstat, the xattr calls,
`getcap`, and an overlay mounted by the kernel in a throwaway mount namespace. Hostile
layers are checked from outside: canary files next to the layer's directory, and at the
host paths the tar's links point at, stay as they were, and nothing appears outside it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import signal
import stat
import struct
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Iterator

import pytest
from conftest import wait_for

from nsbox.errors import NsboxError
from nsbox.images.unpack import LAYER_MEDIA_TYPES, unpack_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, chown, mknod, trusted xattrs)")

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = OCI_TAR + "+gzip"
OCI_ZSTD = OCI_TAR + "+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_TYPE = {"tar": OCI_TAR, "gzip": OCI_GZIP, "zstd": OCI_ZSTD}

# VFS_CAP_REVISION_2 with the effective flag, CAP_NET_BIND_SERVICE (10) permitted (linux/capability.h)
NET_BIND_SERVICE_CAP = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


# ---------------------------------------------------------------- building layers


def file(name: str, data: bytes = b"", mode: int = 0o644, **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.REGTYPE, mode, attrs)
    info.size = len(data)
    return info, data


def directory(name: str, mode: int = 0o755, **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.DIRTYPE, mode, attrs), b""


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.SYMTYPE, 0o777, {})
    info.linkname = target
    return info, b""


def hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.LNKTYPE, 0o644, {})
    info.linkname = target
    return info, b""


def node(name: str, kind: bytes, major: int = 0, minor: int = 0, mode: int = 0o600) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, kind, mode, {})
    info.devmajor, info.devminor = major, minor
    return info, b""


def _info(name: str, kind: bytes, mode: int, attrs: dict[str, object]) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 1_600_000_000
    info.uid = int(attrs.pop("uid", 0))  # type: ignore[call-overload]
    info.gid = int(attrs.pop("gid", 0))  # type: ignore[call-overload]
    info.uname = info.gname = "nobody-here"  # names must never be resolved
    pax = dict(attrs.pop("pax", {}))  # type: ignore[call-overload]
    for key, value in dict(attrs.pop("xattrs", {})).items():  # type: ignore[call-overload]
        pax[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")
    info.pax_headers = pax
    assert not attrs, attrs
    return info


def write_layer(path: str, entries: list[tuple[tarfile.TarInfo, bytes]], compression: str = "gzip") -> str:
    """A layer blob at `path`: a PAX tar, compressed with gzip (Python), zstd (the zstd program) or not."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data else None)
    blob = raw.getvalue()
    if compression == "gzip":
        blob = gzip.compress(blob)
    elif compression == "zstd":
        blob = subprocess.run(["zstd", "-q", "-c"], input=blob, capture_output=True, check=True).stdout
    with open(path, "wb") as f:
        f.write(blob)
    return path


# ---------------------------------------------------------------- observers


class Scene:
    """A private temp dir: `dest` (the layer's directory) and, beside it, things a hostile
    layer would like to reach: `canary` and `outside/canary`."""

    def __init__(self, top: str):
        self.top = top
        self.dest = os.path.join(top, "dest")
        self.canary = os.path.join(top, "canary")
        self.outside = os.path.join(top, "outside")
        os.mkdir(self.dest, 0o755)
        os.mkdir(self.outside)
        for path in (self.canary, os.path.join(self.outside, "canary")):
            with open(path, "w") as f:
                f.write("canary\n")

    def blob(self, entries: list[tuple[tarfile.TarInfo, bytes]], compression: str = "gzip") -> str:
        return write_layer(os.path.join(self.top, f"layer.{compression}"), entries, compression)

    def unpack(self, entries: list[tuple[tarfile.TarInfo, bytes]], compression: str = "gzip") -> int:
        return unpack_layer(self.blob(entries, compression), MEDIA_TYPE[compression], self.dest)

    def at(self, path: str) -> str:
        return os.path.join(self.dest, path.lstrip("/"))

    def outside_dest(self) -> dict[str, tuple[int, int, str]]:
        """Everything under the temp dir but `dest`: type and mode, size, content digest."""
        seen = {}
        for top, dirs, names in os.walk(self.top):
            if top == self.top:
                dirs.remove("dest")
            for name in dirs + names:
                path = os.path.join(top, name)
                st = os.lstat(path)
                digest = ""
                if stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                seen[path] = (st.st_mode, st.st_size, digest)
        return seen


# Children this process had before a test (a session's registry): not the test's to answer for.
_BEFORE: set[str] = set()


@pytest.fixture
def scene() -> Iterator[Scene]:
    _BEFORE.clear()
    _BEFORE.update(c.split()[0] for c in children())
    top = tempfile.mkdtemp(prefix="nsbox-unpack-", dir="/tmp")
    try:
        yield Scene(top)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert not children(), f"processes left: {children()}"


def children() -> list[str]:
    """This test process's children since the test began, from /proc (any zombie or stray
    extractor shows here)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if pid in _BEFORE:
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                found.append(f"{pid} state {fields[0]}")
    return found


def overlay_listing(lowers: list[str], *paths: str) -> list[list[str]]:
    """What the kernel's overlayfs shows at `paths` with `lowers` (top first), mounted in a mount
    namespace of its own that dies with the shell: no mount can outlive the test."""
    script = 'mount -t overlay overlay -o "lowerdir=$1" "$2" || exit 1; cd "$2"; shift 2\n'
    script += 'for p in "$@"; do ls -A1 "$p" 2>/dev/null | tr "\\n" " "; echo; done'
    with tempfile.TemporaryDirectory(prefix="nsbox-merged-", dir="/tmp") as merged:
        out = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", ":".join(lowers), merged, *paths],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert not os.listdir(merged)
    return [line.split() for line in out.stdout.splitlines()]


# ---------------------------------------------------------------- what a layer keeps


def test_files_keep_numeric_owner_mode_and_mtime(scene: Scene) -> None:
    scene.unpack(
        [
            directory("srv", mode=0o2775, uid=1234, gid=5678),
            file("srv/tool", b"#!/bin/sh\n", mode=0o4755, uid=1234, gid=5678),
            file("srv/exact", b"x", pax={"mtime": "1600000000.123456789"}),
            directory("tmp", mode=0o1777),
            symlink("srv/link", "tool"),
        ]
    )
    tool = os.lstat(scene.at("srv/tool"))
    assert (tool.st_uid, tool.st_gid) == (1234, 5678)
    assert stat.S_IMODE(tool.st_mode) == 0o4755  # setuid kept: mode set after the chown
    assert tool.st_mtime_ns == 1_600_000_000 * 10**9
    srv = os.lstat(scene.at("srv"))
    assert stat.S_ISDIR(srv.st_mode) and stat.S_IMODE(srv.st_mode) == 0o2775
    assert (srv.st_uid, srv.st_gid) == (1234, 5678)
    assert srv.st_mtime_ns == 1_600_000_000 * 10**9  # set after its content was written
    assert os.lstat(scene.at("srv/exact")).st_mtime_ns == 1_600_000_000_123_456_789
    assert stat.S_IMODE(os.lstat(scene.at("tmp")).st_mode) == 0o1777
    assert os.readlink(scene.at("srv/link")) == "tool"
    with open(scene.at("srv/tool"), "rb") as f:
        assert f.read() == b"#!/bin/sh\n"


def test_device_nodes_and_fifos_are_made_as_the_tar_says(scene: Scene) -> None:
    scene.unpack(
        [
            directory("dev"),
            node("dev/null", tarfile.CHRTYPE, 1, 3, mode=0o666),
            node("dev/loop0", tarfile.BLKTYPE, 7, 0, mode=0o660),
            node("dev/pipe", tarfile.FIFOTYPE, mode=0o640),
        ]
    )
    null = os.lstat(scene.at("dev/null"))
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = os.lstat(scene.at("dev/loop0"))
    assert stat.S_ISBLK(loop.st_mode) and (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 0)
    pipe = os.lstat(scene.at("dev/pipe"))
    assert stat.S_ISFIFO(pipe.st_mode) and stat.S_IMODE(pipe.st_mode) == 0o640


def test_xattrs_and_file_capabilities_survive_with_setuid(scene: Scene) -> None:
    scene.unpack(
        [
            file(
                "ping",
                b"\x7fELF",
                mode=0o4755,
                uid=1234,
                gid=5678,
                xattrs={"user.x": b"hello", "security.capability": NET_BIND_SERVICE_CAP, "trusted.t": b"\x00\xff"},
            ),
        ]
    )
    ping = scene.at("ping")
    assert os.getxattr(ping, "user.x") == b"hello"
    assert os.getxattr(ping, "trusted.t") == b"\x00\xff"
    assert os.getxattr(ping, "security.capability") == NET_BIND_SERVICE_CAP
    st = os.lstat(ping)
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (1234, 5678)
    if shutil.which("getcap"):
        out = subprocess.run(["getcap", ping], capture_output=True, text=True, check=True).stdout
        assert "cap_net_bind_service=ep" in out, out


def test_capabilities_from_gnu_tar_xattrs(scene: Scene) -> None:
    """A layer as GNU tar writes it (`--xattrs`), from a file given capabilities by setcap."""
    if not shutil.which("setcap"):
        pytest.skip("no setcap")
    src = os.path.join(scene.top, "src")
    os.makedirs(os.path.join(src, "bin"))
    with open(os.path.join(src, "bin", "tool"), "w") as f:
        f.write("tool\n")
    subprocess.run(["setcap", "cap_net_raw+ep", os.path.join(src, "bin", "tool")], check=True)
    blob = os.path.join(scene.top, "gnu.tar.gz")
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-czf", blob, "-C", src, "."], check=True
    )
    unpack_layer(blob, DOCKER_GZIP, scene.dest)
    out = subprocess.run(["getcap", scene.at("bin/tool")], capture_output=True, text=True, check=True).stdout
    assert "cap_net_raw=ep" in out, out


def test_hard_links_share_the_inode_and_count_once(scene: Scene) -> None:
    size = scene.unpack(
        [
            directory("bin"),
            file("bin/busybox", b"b" * 1000, mode=0o755),
            hardlink("bin/sh", "bin/busybox"),
            hardlink("/bin/ls", "./bin/busybox"),
            file("etc-file", b"e" * 24),
        ]
    )
    busybox, sh, ls = (os.lstat(scene.at(p)) for p in ("bin/busybox", "bin/sh", "bin/ls"))
    assert busybox.st_ino == sh.st_ino == ls.st_ino and busybox.st_nlink == 3
    assert size == 1024


@pytest.mark.parametrize("compression", ["tar", "gzip", "zstd"])
def test_each_compression_unpacks_the_same_tree(scene: Scene, compression: str) -> None:
    size = scene.unpack([directory("a"), file("a/b", b"hello"), symlink("a/c", "b")], compression)
    assert size == 5
    with open(scene.at("a/c"), "rb") as f:
        assert f.read() == b"hello"


@pytest.mark.parametrize(("content", "claimed"), [("gzip", OCI_TAR), ("tar", DOCKER_GZIP), ("zstd", OCI_GZIP)])
def test_the_blobs_magic_wins_over_a_lying_media_type(scene: Scene, content: str, claimed: str) -> None:
    blob = scene.blob([file("f", b"data")], content)
    assert unpack_layer(blob, claimed, scene.dest) == 4


def test_media_types(scene: Scene) -> None:
    assert OCI_GZIP in LAYER_MEDIA_TYPES and DOCKER_GZIP in LAYER_MEDIA_TYPES and OCI_ZSTD in LAYER_MEDIA_TYPES
    blob = scene.blob([file("f", b"data")])
    with pytest.raises(NsboxError, match="unknown layer media type"):
        unpack_layer(blob, "application/vnd.oci.image.config.v1+json", scene.dest)
    with pytest.raises(NsboxError, match="non-distributable"):
        unpack_layer(blob, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", scene.dest)
    assert os.listdir(scene.dest) == []


def test_a_directory_that_is_not_empty_is_refused(scene: Scene) -> None:
    blob = scene.blob([file("f", b"data")])
    os.mkdir(scene.at("old"))
    with pytest.raises(NsboxError, match="not empty"):
        unpack_layer(blob, OCI_GZIP, scene.dest)


# ---------------------------------------------------------------- whiteouts and replacement


def test_whiteouts_become_overlay_whiteouts_and_no_marker_remains(scene: Scene) -> None:
    scene.unpack(
        [
            directory("etc"),
            file("etc/.wh.motd"),
            file("etc/gone"),
            file("etc/.wh.gone"),  # replaces what this same layer put there
            file("var/cache/.wh..wh..opq"),  # the directory is named only by the marker
        ]
    )
    for path in ("etc/motd", "etc/gone"):
        st = os.lstat(scene.at(path))
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, path
    assert os.getxattr(scene.at("var/cache"), "trusted.overlay.opaque") == b"y"
    assert os.listdir(scene.at("var/cache")) == []
    markers = [n for _, dirs, names in os.walk(scene.dest) for n in dirs + names if n.startswith(".wh.")]
    assert markers == []


def test_an_overlay_of_two_layers_hides_whiteouts_and_opaque_content(scene: Scene) -> None:
    lower, upper = os.path.join(scene.top, "lower"), os.path.join(scene.top, "upper")
    os.mkdir(lower)
    os.mkdir(upper)
    lower_blob = write_layer(
        os.path.join(scene.top, "lower.tgz"),
        [directory("etc"), file("etc/motd", b"hi"), file("etc/keep"), directory("cache"), file("cache/old")],
    )
    upper_blob = write_layer(
        os.path.join(scene.top, "upper.tgz"),
        [file("etc/.wh.motd"), file("cache/.wh..wh..opq"), file("cache/new"), file("etc/added")],
    )
    unpack_layer(lower_blob, OCI_GZIP, lower)
    unpack_layer(upper_blob, OCI_GZIP, upper)
    etc, cache = overlay_listing([upper, lower], "etc", "cache")
    assert sorted(etc) == ["added", "keep"]
    assert cache == ["new"]


def test_later_entries_replace_earlier_ones(scene: Scene) -> None:
    scene.unpack(
        [
            file("a", b"file"),
            directory("a"),  # a directory replaces a file
            directory("b"),
            file("b/inside"),
            file("b", b"file now"),  # a file replaces a directory and its content
            file("c", b"old"),
            symlink("c", "a"),  # a symlink replaces a file
            symlink("d", "a"),
            file("d", b"plain"),  # a file replaces a symlink (not written through it)
            file("e", b"first"),
            file("e", b"second"),
        ]
    )
    assert stat.S_ISDIR(os.lstat(scene.at("a")).st_mode)
    with open(scene.at("b"), "rb") as f:
        assert f.read() == b"file now"
    assert os.readlink(scene.at("c")) == "a"
    assert stat.S_ISREG(os.lstat(scene.at("d")).st_mode)
    with open(scene.at("e"), "rb") as f:
        assert f.read() == b"second"


# ---------------------------------------------------------------- hostile layers


def hostile_layers(scene: Scene) -> dict[str, list[tuple[tarfile.TarInfo, bytes]]]:
    canary, outside = scene.canary, scene.outside
    return {
        "dotdot path": [file("../canary", b"pwned"), file("../../../../" + canary, b"pwned")],
        "absolute path": [file(canary, b"pwned"), file(outside + "/new", b"pwned")],
        "absolute symlink then through it": [symlink("out", outside), file("out/canary", b"pwned")],
        "relative symlink then through it": [symlink("up", "../../../.."), file("up" + canary, b"pwned")],
        "symlink to / then writes": [
            symlink("root", "/"),
            file("root" + canary, b"pwned"),
            directory("root" + outside + "/made"),
            symlink("root" + outside + "/ln", "/etc/passwd"),
        ],
        "write onto a symlink to a host file": [symlink("f", canary), file("f", b"pwned")],
        "hard link to a relative path outside": [hardlink("h", "../canary"), file("h", b"pwned")],
        "hard link through a symlink to /": [symlink("r", "/"), hardlink("h", "r" + canary)],
        "device then write onto it": [node("n", tarfile.CHRTYPE, 1, 3), file("n", b"pwned")],
    }


HOSTILE = [
    "dotdot path",
    "absolute path",
    "absolute symlink then through it",
    "relative symlink then through it",
    "symlink to / then writes",
    "write onto a symlink to a host file",
    "hard link to a relative path outside",
    "hard link through a symlink to /",
    "device then write onto it",
]

REFUSED = {
    "absolute symlink then through it": "out is not a directory in the layer",
    "hard link to a relative path outside": "not in the layer",
    "hard link through a symlink to /": "not in the layer",
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_layer_writes_nothing_outside_its_directory(scene: Scene, case: str) -> None:
    blob = scene.blob(hostile_layers(scene)[case])
    before = scene.outside_dest()
    try:
        unpack_layer(blob, OCI_GZIP, scene.dest)
    except NsboxError as e:
        # a hard link to a file the layer does not hold fails, and says so; so does a path
        # through a symlink that leads nowhere in the layer
        assert REFUSED.get(case, "(no error expected)") in str(e), e
    else:
        assert case not in REFUSED
    assert scene.outside_dest() == before
    for path in (scene.canary, os.path.join(scene.outside, "canary")):
        with open(path) as f:
            assert f.read() == "canary\n"


def test_escapes_land_inside_the_layer(scene: Scene) -> None:
    """Where the paths of a hostile layer go instead: resolved at the layer's root."""
    scene.unpack(
        [
            file("../../x", b"1"),
            symlink("root", "/"),
            file("root/y", b"2"),
            directory(scene.outside),
            symlink("out", scene.outside),
            file("out/canary", b"3"),
        ]
    )
    with open(scene.at("x"), "rb") as f:
        assert f.read() == b"1"
    with open(scene.at("y"), "rb") as f:
        assert f.read() == b"2"
    with open(scene.at(scene.outside + "/canary"), "rb") as f:
        assert f.read() == b"3"


def test_overlay_attributes_from_the_tar_are_refused(scene: Scene) -> None:
    with pytest.raises(NsboxError, match="overlayfs's own attribute trusted.overlay.redirect"):
        scene.unpack([directory("d", xattrs={"trusted.overlay.redirect": b"/etc"})])


def test_unsupported_entry_types_are_refused(scene: Scene) -> None:
    info, _ = file("label")
    info.type = b"V"  # a GNU volume header
    with pytest.raises(NsboxError, match="tar entry type b'V' is not supported"):
        scene.unpack([(info, b"")])


# ---------------------------------------------------------------- broken layers


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_truncated_layer_fails_clearly_and_leaves_no_process(scene: Scene, compression: str) -> None:
    blob = scene.blob([file(f"f{i}", os.urandom(20000)) for i in range(20)], compression)
    with open(blob, "r+b") as f:
        f.truncate(os.path.getsize(blob) // 2)
    before = scene.outside_dest()
    with pytest.raises(NsboxError) as raised:
        unpack_layer(blob, MEDIA_TYPE[compression], scene.dest)
    message = str(raised.value)
    assert "\n" not in message
    if compression == "gzip":
        assert "corrupt layer" in message, message
    else:
        assert "zstd:" in message, message
    assert not children()
    assert scene.outside_dest() == before


def test_a_corrupt_gzip_fails_clearly(scene: Scene) -> None:
    blob = scene.blob([file("f", os.urandom(100000))])
    with open(blob, "r+b") as f:
        f.seek(5000)
        f.write(b"\x00" * 1000)
    with pytest.raises(NsboxError, match="corrupt layer"):
        unpack_layer(blob, OCI_GZIP, scene.dest)
    assert not children()


def test_a_missing_blob_is_an_error(scene: Scene) -> None:
    with pytest.raises(NsboxError, match="No such file"):
        unpack_layer(os.path.join(scene.top, "nope"), OCI_GZIP, scene.dest)


def test_a_killed_extractor_is_reaped_and_reported(scene: Scene) -> None:
    """The extractor dies mid-layer (the OOM killer, a stray kill): an error, no zombie."""
    blob = scene.blob([file(f"f{i}", os.urandom(4096) * 4) for i in range(3000)])
    result: list[BaseException | int] = []
    worker = threading.Thread(target=lambda: result.append(_unpack_catching(blob, scene.dest)))
    worker.start()
    try:
        extractor = wait_for(lambda: [int(c.split()[0]) for c in children()], timeout=30, interval=0.002)
        os.kill(extractor[0], signal.SIGKILL)
    finally:
        worker.join(timeout=60)
    assert isinstance(result[0], NsboxError) and "killed by SIGKILL" in str(result[0]), result
    assert not children()


def _unpack_catching(blob: str, dest: str) -> BaseException | int:
    try:
        return unpack_layer(blob, OCI_GZIP, dest)
    except BaseException as e:
        return e


@pytest.mark.parametrize("tar_format", ["gnu", "pax"])
def test_gnu_sparse_files_keep_content_and_holes(scene: Scene, tar_format: str) -> None:
    """A sparse file as GNU tar -S writes it (old GNU 'S' entries, or PAX sparse 1.0)."""
    src = os.path.join(scene.top, "src")
    os.mkdir(src)
    sparse = os.path.join(src, "disk.img")
    with open(sparse, "wb") as f:
        f.write(b"head")
        f.seek(8 << 20)
        f.write(b"tail")
    blob = os.path.join(scene.top, "sparse.tar")
    subprocess.run(["tar", "-S", f"--format={tar_format}", "-cf", blob, "-C", src, "."], check=True)
    assert unpack_layer(blob, OCI_TAR, scene.dest) == (8 << 20) + 4
    with open(scene.at("disk.img"), "rb") as f:
        data = f.read()
    assert data[:4] == b"head" and data[-4:] == b"tail" and not any(data[4:-4])
    # the 8 MiB hole stays one, but for the partly written MiB chunks at its ends
    assert os.lstat(scene.at("disk.img")).st_blocks * 512 <= 2 << 20
