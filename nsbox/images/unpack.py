"""One OCI layer blob unpacked into one directory, whatever the tar holds (docs/images.md,
"Unpacking layers").

A layer is data from a registry, and a tar can name any path: `../x`, `/etc/passwd`, a
symbolic link to `/` and then a file beneath it, a hard link to a host file. Rather than
check every path against every trick, the extraction runs where no path can name the
host: a child process `chroot`s into the layer's directory first. There `/` and `..`
stop at the layer, absolute symbolic links resolve inside it, and a hard link can only
join two files of the layer. Before the chroot the child has imported everything it
uses and turns the import machinery off, so no module of the layer (an image's own
`/usr/lib/python3*`) can ever be loaded, and it keeps no descriptor of the host except
the stream it reads and the pipe it reports on.

The child writes the layer as overlayfs reads it (the way containerd's overlay snapshotter
applies layers): OCI whiteouts become overlay whiteouts, files keep their numeric owner,
mode (setuid included), device numbers, mtimes and extended attributes.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import zlib

import prctl

from nsbox.errors import NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import IO, NoReturn

# The layer media types of the OCI image spec (media-types.md) and of Docker's image
# manifest v2.2, and the compression each declares.
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
_DECLARED_COMPRESSION = {
    _OCI_LAYER: "tar",
    _OCI_LAYER + "+gzip": "gzip",
    _OCI_LAYER + "+zstd": "zstd",
    _DOCKER_LAYER: "tar",
    _DOCKER_LAYER + ".gzip": "gzip",
}
LAYER_MEDIA_TYPES = frozenset(_DECLARED_COMPRESSION)

# Layers a registry may not serve and whose content lives elsewhere (Windows base layers).
_NON_DISTRIBUTABLE = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar",
)

# Magic numbers (RFC 1952; RFC 8878 3.1.1 and its skippable frames 0x184D2A5?, little-endian).
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_REFUSED_MAGIC = ((b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))

# OCI image spec, layer.md "Whiteouts"; aufs's own metadata (`.wh..wh.plnk`, ...) is skipped.
_WHITEOUT = ".wh."
_OPAQUE_MARKER = ".wh..wh..opq"
_AUFS_META = ".wh..wh."
# overlayfs (Documentation/filesystems/overlayfs.rst): a whiteout is a 0/0 character
# device; an opaque directory has this xattr set to "y".
_OVERLAY_OPAQUE = "trusted.overlay.opaque"
_OVERLAY_XATTRS = "trusted.overlay."

# Extended attributes travel in PAX records named SCHILY.xattr.NAME (star, GNU tar, Go's
# archive/tar). POSIX ACLs are stored by the kernel as system.posix_acl_* attributes.
_PAX_XATTR = "SCHILY.xattr."
_XATTR_NAMESPACES = ("user.", "security.", "trusted.")
_ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")

_CHUNK = 1 << 20
_ZEROS = bytes(_CHUNK)
_MAX_REPLY = 2000  # bytes of the child's one-line report: well below PIPE_BUF times a few


class _Refused(Exception):
    """A layer the child will not write, with the reason for the user."""


# ---------------------------------------------------------------- the caller's side


def unpack_layer(blob: str, media_type: str, dest: str) -> int:
    """Unpack the layer tar at `blob` into the empty directory `dest` (created by the caller);
    return the unpacked size in bytes (sum of regular file sizes, for `image ls`).

    On failure raises NsboxError; `dest` then holds part of the layer and the caller
    removes it. Nothing is written outside `dest`, and no process is left behind."""
    _check_media_type(media_type)
    dest_fd = _open_empty_directory(dest)
    try:
        try:
            blob_fd = os.open(blob, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise NsboxError(f"layer {blob}: {e.strerror}") from None
        try:
            compression = _sniff(blob_fd, blob)
            return _unpack(blob, blob_fd, compression, dest_fd)
        finally:
            os.close(blob_fd)
    finally:
        os.close(dest_fd)


def _check_media_type(media_type: str) -> None:
    if media_type in LAYER_MEDIA_TYPES:
        return
    if media_type.startswith(_NON_DISTRIBUTABLE):
        raise NsboxError(f"layer media type {media_type} is non-distributable: its content is not in the registry")
    raise NsboxError(f"unknown layer media type {media_type!r} (known: {', '.join(sorted(LAYER_MEDIA_TYPES))})")


def _open_empty_directory(dest: str) -> int:
    """A descriptor of `dest`, which must be an empty directory and not a symbolic link; the
    child enters the layer through it, so the directory checked is the one written."""
    try:
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise NsboxError(f"layer directory {dest}: {e.strerror}") from None
    if os.listdir(fd):
        os.close(fd)
        raise NsboxError(f"layer directory {dest} is not empty")
    return fd


def _sniff(fd: int, blob: str) -> str:
    """The compression the blob's first bytes show. They win over the media type: some
    registries serve a gzip layer as plain tar or the other way round."""
    head = os.pread(fd, 6, 0)
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC) or (len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18"):
        return "zstd"
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic):
            raise NsboxError(f"layer {blob} is compressed with {name}, which OCI layers do not use")
    return "tar"


def _unpack(blob: str, blob_fd: int, compression: str, dest_fd: int) -> int:
    """Fork the child that extracts, feed it the (decompressed) tar, wait for its report."""
    decompressor = _start_zstd(blob_fd) if compression == "zstd" else None
    source = decompressor.stdout.fileno() if decompressor and decompressor.stdout else blob_fd
    reply_r, reply_w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            _child(source, reply_w, dest_fd, gunzip=compression == "gzip")
        os.close(reply_w)
        reply_w = -1
        if decompressor and decompressor.stdout:
            decompressor.stdout.close()  # the child holds the read end now: zstd sees EPIPE if it dies
        reply, status = _wait_child(pid, reply_r)
    finally:
        os.close(reply_r)
        if reply_w >= 0:
            os.close(reply_w)
        zstd_error = _finish_zstd(decompressor) if decompressor else ""
    if zstd_error:  # a corrupt zstd stream shows in the child as a truncated tar: name the cause
        raise NsboxError(f"layer {blob}: zstd: {zstd_error}")
    if reply.startswith("ok ") and status == 0:
        return int(reply[3:])
    if reply.startswith("error "):
        raise NsboxError(f"layer {blob}: {reply[6:]}")
    raise NsboxError(f"layer {blob}: unpacking stopped ({_describe_status(status)})")


def _start_zstd(blob_fd: int) -> subprocess.Popen[bytes]:
    """`zstd -dc` reading the blob: Python 3.11 has no zstd module (Debian package zstd)."""
    try:
        return subprocess.Popen(
            ["zstd", "-d", "-c", "-q"], stdin=blob_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except FileNotFoundError:
        raise NsboxError("a zstd layer needs the zstd program (Debian package zstd)") from None


def _finish_zstd(decompressor: subprocess.Popen[bytes]) -> str:
    """Reap zstd; its complaint if it failed on its own. Once the child is gone nobody reads
    zstd's output, so a zstd still running is stopped (it would end on EPIPE anyway)."""
    if decompressor.poll() is None:
        try:
            decompressor.wait(timeout=5)
        except subprocess.TimeoutExpired:
            decompressor.kill()
    _, err = decompressor.communicate()
    if decompressor.returncode > 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {decompressor.returncode}"
    return ""


def _wait_child(pid: int, reply_r: int) -> tuple[str, int]:
    """The child's one-line report and its wait status. If the wait itself is interrupted
    (Ctrl-C in the CLI), the child is killed and reaped before the exception goes on."""
    try:
        chunks = []
        while chunk := os.read(reply_r, 4096):
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return b"".join(chunks).decode("utf-8", "replace"), status


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}, no report"


# ---------------------------------------------------------------- the child


def _child(source: int, reply: int, dest_fd: int, *, gunzip: bool) -> NoReturn:
    """Extract in a chroot and report `ok SIZE` or `error REASON`; never returns."""
    status = 1
    try:
        try:
            parent = os.getppid()
            _isolate(source, reply, dest_fd, parent)
            size = _extract_stream(source, gunzip)
            text, status = f"ok {size}", 0
        except BaseException as e:  # everything is reported: a child never prints a traceback
            text = f"error {_reason(e)}"
        os.write(reply, text.encode("utf-8", "backslashreplace")[:_MAX_REPLY])
    finally:
        os._exit(status)


def _isolate(source: int, reply: int, dest_fd: int, parent: int) -> None:
    """Make the child unable to touch anything but the layer, in the order that allows it."""
    # Ctrl-C or a SIGTERM to the CLI's group ends the child at once; the parent reaps it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # A killed parent (SIGKILL cannot be caught) must not leave the child writing on.
    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
    _close_descriptors_except(source, reply, dest_fd)
    # Everything the extraction needs is imported by now. An import after the chroot would
    # search the layer's own /usr/lib/python3* and run its code as root: forbid imports.
    sys.meta_path.clear()
    sys.path_importer_cache.clear()
    layer = os.fstat(dest_fd)
    os.fchdir(dest_fd)
    os.close(dest_fd)
    os.chroot(".")
    os.chdir("/")
    # Every path the extraction writes is absolute: outside the chroot it would be the host's.
    root = os.stat("/")
    if (root.st_dev, root.st_ino) != (layer.st_dev, layer.st_ino):
        raise _Refused("the extractor's root is not the layer directory: refusing to write")
    os.umask(0)  # modes are the tar's, not filtered by the caller's umask


def _close_descriptors_except(*keep: int) -> None:
    """Close every descriptor above stderr but `keep`: none may lead out of the chroot."""
    low = 3
    for fd in sorted(set(keep)):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _reason(e: BaseException) -> str:
    if isinstance(e, _Refused):
        return str(e)
    if isinstance(e, (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)):
        return f"corrupt layer: {e}"
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return f"{type(e).__name__}: {e}"  # a bug: say what it was


def _extract_stream(source: int, gunzip: bool) -> int:
    """Extract the tar read from `source` into `/` (the layer); its unpacked size."""
    raw = open(source, "rb", buffering=_CHUNK)  # noqa: SIM115 - read to the end below, closed by _exit
    stream: IO[bytes] = raw
    if gunzip:
        stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]  # typeshed: GzipFile is no IO
    tar = tarfile.open(fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape")
    _Layer(tar).extract()
    # Read to the end: gzip checks its CRC and length there, and zstd must not die on EPIPE.
    while stream.read(_CHUNK):
        pass
    return _unpacked_size()


class _Layer:
    """The extraction of one tar into `/`, entry by entry, later entries replacing earlier."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        # A directory's mtime is set last: every entry made inside it changes it again.
        self.directory_mtimes: dict[str, int] = {}

    def extract(self) -> None:
        member = None
        try:
            for member in self.tar:
                self.entry(member)
        except (_Refused, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile):
            raise
        except OSError as e:
            where = member.name if member else "layer"
            raise _Refused(f"{where}: {e.strerror or e}") from None
        for path, mtime in self.directory_mtimes.items():
            os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def entry(self, member: tarfile.TarInfo) -> None:
        path = _layer_path(member.name)
        parent, base = posixpath.split(path)
        inner = parent.split("/")
        if any(part.startswith(_AUFS_META) for part in inner):
            return  # inside aufs's metadata directories: not part of the file system
        if any(part.startswith(_WHITEOUT) for part in inner):
            raise _Refused(f"{member.name}: a whiteout cannot be a directory")
        if base.startswith(_WHITEOUT):
            self.whiteout(parent, base, member)
            return
        if path == "/":
            if not member.isdir():
                raise _Refused(f"{member.name}: an entry of type {member.type!r} would replace the layer's root")
            self.directory(path, member)
            return
        _make_parents(parent, member)
        if member.isdir():
            self.directory(path, member)
        elif member.isreg():
            self.regular(path, member)
        elif member.issym():
            self.symlink(path, member)
        elif member.islnk():
            self.hardlink(path, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            self.node(path, member)
        else:
            raise _Refused(f"{member.name}: tar entry type {member.type!r} is not supported")

    def whiteout(self, parent: str, base: str, member: tarfile.TarInfo) -> None:
        """OCI whiteouts as overlayfs's: `.wh..wh..opq` makes `parent` opaque (it hides the
        lower layers' content), `.wh.NAME` becomes a 0/0 character device NAME."""
        _make_parents(parent, member)
        if base == _OPAQUE_MARKER:
            os.setxattr(parent, _OVERLAY_OPAQUE, b"y")
            return
        if base.startswith(_AUFS_META):
            return
        name = base[len(_WHITEOUT) :]
        if name in ("", ".", ".."):
            raise _Refused(f"{posixpath.join(parent, base)}: a whiteout must name a file")
        path = posixpath.join(parent, name)
        self.clear(path)
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))

    def directory(self, path: str, member: tarfile.TarInfo) -> None:
        if not self.clear(path, keep_directory=True):
            os.mkdir(path, 0o700)
        _set_attributes(path, member)
        self.directory_mtimes[path] = _mtime_ns(member)

    def regular(self, path: str, member: tarfile.TarInfo) -> None:
        """The file is created anew (O_EXCL, never through a link) and filled; then owner,
        mode, xattrs in that order: chown clears setuid and file capabilities."""
        self.clear(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            data = self.tar.extractfile(member)
            assert data is not None  # a regular member always has data
            _copy_sparsely(data, fd, member.size)
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            for name, value in _xattrs(member):
                os.setxattr(fd, name, value)
            mtime = _mtime_ns(member)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)

    def symlink(self, path: str, member: tarfile.TarInfo) -> None:
        self.clear(path)
        os.symlink(member.linkname, path)
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
        for name, value in _xattrs(member):
            os.setxattr(path, name, value, follow_symlinks=False)
        mtime = _mtime_ns(member)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def hardlink(self, path: str, member: tarfile.TarInfo) -> None:
        """A second name for a file already in the layer. Its attributes are the target's:
        setting them again would chown the shared inode and clear its capabilities."""
        target = _layer_path(member.linkname)
        if target == path:
            return
        try:
            target_mode = os.lstat(target).st_mode
        except FileNotFoundError:
            raise _Refused(f"{member.name}: hard link to {member.linkname}, which is not in the layer") from None
        if stat.S_ISDIR(target_mode):
            raise _Refused(f"{member.name}: hard link to the directory {member.linkname}")
        self.clear(path)
        os.link(target, path, follow_symlinks=False)

    def node(self, path: str, member: tarfile.TarInfo) -> None:
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        self.clear(path)
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        _set_attributes(path, member)
        mtime = _mtime_ns(member)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)

    def clear(self, path: str, keep_directory: bool = False) -> bool:
        """Remove what an earlier entry put at `path` (a directory with its content), unless it
        is a directory and `keep_directory`; True if a directory stays."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(mode):
            os.unlink(path)
            return False
        if keep_directory:
            return True
        shutil.rmtree(path)
        below = path.rstrip("/") + "/"
        for gone in [p for p in self.directory_mtimes if p == path or p.startswith(below)]:
            del self.directory_mtimes[gone]
        return False


def _layer_path(name: str) -> str:
    """An entry's path in the layer, absolute and normalised: `..` stops at the root, as
    it does in the chroot (`../../x` and `/x` are both `/x`)."""
    return posixpath.normpath("/" + name.lstrip("/"))


def _make_parents(parent: str, member: tarfile.TarInfo) -> None:
    """The directories above an entry, made as tar makes them (0755, root) if the tar did not
    name them first. A symbolic link on the way is followed, inside the layer: one that leads
    nowhere in this layer (the layer is unpacked alone, without the layers below) is an error."""
    try:
        os.makedirs(parent, 0o755, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise _Refused(f"{member.name}: {parent} is not a directory in the layer") from None


def _set_attributes(path: str, member: tarfile.TarInfo) -> None:
    """Owner (numeric: names would be looked up in the layer's /etc), then mode, then xattrs."""
    os.chown(path, member.uid, member.gid, follow_symlinks=False)
    os.chmod(path, member.mode & 0o7777)
    for name, value in _xattrs(member):
        os.setxattr(path, name, value, follow_symlinks=False)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    """The entry's extended attributes, with their values as the bytes the tar holds
    (tarfile decodes PAX values as UTF-8 with surrogateescape; encoding undoes it)."""
    found = []
    for key, value in member.pax_headers.items():
        if not key.startswith(_PAX_XATTR):
            continue
        name = key[len(_PAX_XATTR) :]
        if name.startswith(_OVERLAY_XATTRS):
            # overlayfs acts on its own xattrs in a lower layer (redirects, metacopy): only
            # the whiteouts above may set them.
            raise _Refused(f"{member.name}: sets overlayfs's own attribute {name}")
        if not name.startswith(_XATTR_NAMESPACES) and name not in _ACL_XATTRS:
            raise _Refused(f"{member.name}: extended attribute {name} is not user.*, security.* or trusted.*")
        found.append((name, value.encode("utf-8", "surrogateescape")))
    return found


def _mtime_ns(member: tarfile.TarInfo) -> int:
    """The entry's mtime in nanoseconds, exact from a PAX `mtime` record (tarfile's float loses digits)."""
    text = member.pax_headers.get("mtime", "")
    sign = -1 if text.startswith("-") else 1
    seconds, _, fraction = text.lstrip("-").partition(".")
    if seconds.isdigit() and (fraction.isdigit() or not fraction):
        return sign * (int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9]))
    return int(member.mtime) * 1_000_000_000


def _copy_sparsely(data: IO[bytes], fd: int, size: int) -> None:
    """Copy the entry's data; chunks of zeros become holes, so a sparse file (a GNU sparse
    entry, tarfile fills its holes with zeros) stays sparse on disk."""
    while chunk := data.read(_CHUNK):
        if len(chunk) == _CHUNK and chunk == _ZEROS:
            os.lseek(fd, _CHUNK, os.SEEK_CUR)
            continue
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
    os.ftruncate(fd, size)


def _unpacked_size() -> int:
    """Sum of the sizes of the layer's regular files, each inode once (hard links)."""
    total = 0
    linked: set[int] = set()
    for top, _, names in os.walk("/"):
        for name in names:
            st = os.lstat(os.path.join(top, name))
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_nlink > 1:
                if st.st_ino in linked:
                    continue
                linked.add(st.st_ino)
            total += st.st_size
    return total
