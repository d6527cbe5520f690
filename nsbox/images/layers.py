"""Unpacked layers: one directory per diff id, and the short names overlay mounts use.

`layers/<diffid-hex>/` holds a layer's files, unpacked once and shared by every
image that has the layer. It is unpacked into a temporary directory beside it and
renamed into place, so a killed pull never leaves half a layer that looks whole.

overlayfs takes its options in one page (4096 bytes), and 64-character digests
do not fit for images of many layers. As podman does, each layer also has a short
name, a symlink `l/<prefix>` -> `../layers/<hex>`, and a container's overlay is
mounted from inside `l/` with `lowerdir=` a list of these short names
(docs/images.md, "Layout").
"""

from __future__ import annotations

import os

from nsbox.errors import NsboxError
from nsbox.state import FileLock, remove_tree

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

SHORT = 12  # hex digits of a short name: 13 bytes a layer in lowerdir=, 128 layers in 1.7 KB
TMP_PREFIX = ".tmp-"
PAGE = 4096  # the kernel copies mount options in one page


def hex_of(digest: str) -> str:
    return digest.split(":", 1)[-1]


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
CHUNK = 1 << 20


def diff_id_of(blob: str) -> str:
    """The digest of the layer's uncompressed tar (its diff id, image-spec config.md), whatever
    compresses it (read from its first bytes: media types are not always honest)."""
    import hashlib

    h = hashlib.sha256()
    with open(blob, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic.startswith(GZIP_MAGIC):
            import zlib

            _feed_gzip(f, h, zlib)
        elif magic == ZSTD_MAGIC:
            import subprocess

            with subprocess.Popen(["zstd", "-d", "-c", "-q", "--", blob], stdout=subprocess.PIPE) as p:
                out = p.stdout
                assert out is not None
                for chunk in iter(lambda: out.read(CHUNK), b""):
                    h.update(chunk)
            if p.returncode != 0:
                raise NsboxError(f"zstd could not decompress {blob}")
        else:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def _feed_gzip(f: Any, h: Any, zlib: Any) -> None:
    """gzip members one after another (a concatenation is one valid gzip stream)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while True:
        chunk = f.read(CHUNK)
        if not chunk:
            break
        while chunk:
            h.update(d.decompress(chunk))
            if d.eof:
                chunk = d.unused_data
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                chunk = b""
    h.update(d.flush())


class Layers:
    """The `layers/` and `l/` directories of a store."""

    def __init__(self, store: str):
        self.dir = os.path.join(store, "layers")
        self.links = os.path.join(store, "l")
        self.locks = os.path.join(store, "locks")

    def path(self, diff_id: str) -> str:
        return os.path.join(self.dir, hex_of(diff_id))

    def present(self, diff_id: str) -> bool:
        return os.path.isdir(self.path(diff_id))

    def ensure(self, diff_id: str, blob: str, media_type: str) -> bool:
        """Unpack `blob` as layer `diff_id` unless it is there; True when unpacked now.

        A lock per layer: two pulls of images sharing the layer unpack it once."""
        final = self.path(diff_id)
        if not os.path.isdir(final):
            for d in (self.dir, self.links, self.locks):
                os.makedirs(d, exist_ok=True)
            with FileLock(os.path.join(self.locks, f"layer-{hex_of(diff_id)}")):
                if not os.path.isdir(final):
                    self._unpack(diff_id, blob, media_type, final)
                    self.link(diff_id)
                    return True
        self.link(diff_id)
        return False

    def _unpack(self, diff_id: str, blob: str, media_type: str, final: str) -> None:
        from nsbox.images.unpack import unpack_layer

        actual = diff_id_of(blob)
        if actual != diff_id:
            raise NsboxError(
                f"layer {os.path.basename(blob)[:12]} is {actual} uncompressed, not {diff_id} as the image config says"
            )

        tmp = os.path.join(self.dir, f"{TMP_PREFIX}{hex_of(diff_id)}-{os.getpid()}")
        remove_tree(tmp)
        os.mkdir(tmp, 0o755)
        try:
            unpack_layer(blob, media_type, tmp)
            os.rename(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise

    def link(self, diff_id: str) -> str:
        """The layer's short name, made if missing: the shortest prefix of its digest no other layer has."""
        h = hex_of(diff_id)
        target = os.path.join("..", "layers", h)
        for n in range(SHORT, len(h) + 1, 4):
            name = h[:n]
            path = os.path.join(self.links, name)
            try:
                current = os.readlink(path)
            except FileNotFoundError:
                os.makedirs(self.links, exist_ok=True)
                tmp = os.path.join(self.links, f"{TMP_PREFIX}{name}-{os.getpid()}")
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                os.symlink(target, tmp)
                os.rename(tmp, path)  # atomic: a racing pull of the same layer made the same link
                return name
            if current == target:
                return name
        raise NsboxError(f"no short name for layer {diff_id} under {self.links}")

    def lowerdirs(self, diff_ids: list[str]) -> tuple[str, str]:
        """(directory to mount from, `lowerdir=` value): short names, top layer first."""
        missing = [d for d in diff_ids if not self.present(d)]
        if missing:
            raise NsboxError(f"layer {missing[0]} is missing from the image store: pull the image again")
        value = ":".join(self.link(d) for d in reversed(diff_ids))
        if len(value) >= PAGE - 256:  # room for upperdir=, workdir= and the other options
            raise NsboxError(f"an image of {len(diff_ids)} layers does not fit in overlay's mount options")
        return self.links, value

    def unused(self, keep: set[str]) -> list[str]:
        """Layer directories (and leftovers of killed unpacks) whose digest is not in `keep` (hex)."""
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return [os.path.join(self.dir, n) for n in sorted(names) if n not in keep]

    def dangling_links(self) -> list[str]:
        """Short names whose layer is gone, and leftovers of killed link-making."""
        try:
            names = os.listdir(self.links)
        except FileNotFoundError:
            return []
        paths = [os.path.join(self.links, n) for n in sorted(names)]
        return [p for p in paths if os.path.basename(p).startswith(TMP_PREFIX) or not os.path.exists(p)]
