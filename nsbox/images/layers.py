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

SHORT = 12  # hex digits of a short name: 13 bytes a layer in lowerdir=, 128 layers in 1.7 KB
TMP_PREFIX = ".tmp-"
PAGE = 4096  # the kernel copies mount options in one page


def hex_of(digest: str) -> str:
    return digest.split(":", 1)[-1]


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
