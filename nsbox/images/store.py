"""The image store: records of named images over content-addressed blobs and unpacked layers.

Layout under the store directory (docs/images.md, "Layout"):

    blobs/sha256/<hex>        every blob (manifests, configs, compressed layers), as fetched
    layers/<diffid-hex>/      each layer unpacked once, shared by the images that have it
    l/<short>                 -> ../layers/<hex>: the short names overlay mounts use
    images/<key>.json         one record per named image (written atomically)
    leases/<key>.json         which pod uses which images
    pulls/<tmp>/              a copy in progress: skopeo's private OCI layout (index.json)
    locks/                    flock files: gc, one per image name, one per layer

A pull copies into its own layout in `pulls/` with `blobs/` as skopeo's shared blob
directory, so concurrent pulls of different images never share an index.json, and
a blob already present is not fetched again. A record is written last, once every
layer is in place: a killed pull leaves only leftovers, which `prune` reclaims.
Pulls and loads hold the `gc` lock shared, `prune` exclusive.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time

from nsbox.errors import NotFound, NsboxError
from nsbox.images import Image, ImageConfig, PullError, normalize
from nsbox.images import skopeo as transport
from nsbox.images.layers import Layers, hex_of
from nsbox.images.leases import Leases
from nsbox.images.reference import parse
from nsbox.record import as_dict
from nsbox.state import FileLock, read_json, remove_tree, write_json

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


class Store:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.blob_dir = os.path.join(self.path, "blobs")
        self.records = os.path.join(self.path, "images")
        self.pulls = os.path.join(self.path, "pulls")
        self.locks = os.path.join(self.path, "locks")
        self.layers = Layers(self.path)
        self.leases = Leases(self.path)

    # ------------------------------------------------------------ reading

    def blob(self, digest: str) -> str:
        return os.path.join(self.blob_dir, "sha256", hex_of(digest))

    def _record_path(self, name: str, image_id: str) -> str:
        key = hashlib.sha256(name.encode()).hexdigest()[:32] if name else f"unnamed-{hex_of(image_id)}"
        return os.path.join(self.records, key + ".json")

    def _read(self, path: str) -> Image | None:
        doc = read_json(path)
        if not isinstance(doc, dict):
            return None
        doc = dict(doc)
        doc["config"] = ImageConfig(**doc.get("config", {}))
        image = Image(**doc)
        image.layers = [self.layers.path(d) for d in image.diff_ids]
        return image

    def _all(self) -> Iterator[tuple[str, Image]]:
        try:
            names = sorted(os.listdir(self.records))
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(".json"):
                path = os.path.join(self.records, name)
                image = self._read(path)
                if image is not None:
                    yield path, image

    def images(self) -> list[Image]:
        """Every image, by name (unnamed ones last)."""
        return sorted((image for _, image in self._all()), key=lambda i: (not i.name, i.name, i.id))

    def _complete(self, image: Image) -> bool:
        return all(self.layers.present(d) for d in image.diff_ids)

    def lookup(self, ref: str) -> Image | None:
        """The local image `ref` names (a name, `name@digest`, or an image id or a prefix of one); no network."""
        return next(iter(self._matches(ref)), None)

    def _matches(self, ref: str) -> list[Image]:
        try:
            named = self._named(normalize(ref))  # the common case, one file read
        except NsboxError:
            named = None
        if named is not None:
            return [named]
        images = self.images()
        bare = ref.removeprefix("sha256:")
        if len(bare) >= 3 and all(c in "0123456789abcdef" for c in bare):
            by_id = [i for i in images if hex_of(i.id).startswith(bare)]
            if by_id:
                if len({i.id for i in by_id}) > 1:
                    raise NsboxError(f'image id "{ref}" is ambiguous: it starts {len(by_id)} image ids')
                return by_id
            if ref.startswith("sha256:"):
                return []
        try:
            r = parse(ref)
        except NsboxError:
            if ref.startswith("sha256:") or all(c in "0123456789abcdef" for c in ref):
                return []
            raise
        name = str(r)
        found = [i for i in images if i.name == name]
        if not found and r.digest:  # pulled by tag, asked for by digest
            found = [i for i in images if i.repo_digest == r.pinned(r.digest)]
        return found

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _gc_lock(self, *, shared: bool) -> Iterator[None]:
        """Pulls, loads, leases and rm hold it shared; prune exclusive, so that it never sees half a pull.
        (FileLock's own `with` would take it exclusive.)"""
        os.makedirs(self.locks, exist_ok=True)
        lock = FileLock(os.path.join(self.locks, "gc"))
        lock.acquire(exclusive=not shared)
        try:
            yield
        finally:
            lock.release()

    def _save(self, image: Image) -> None:
        os.makedirs(self.records, exist_ok=True)
        doc = as_dict(image)
        del doc["layers"]  # paths in this store: made again from diff_ids when read
        write_json(self._record_path(image.name, image.id), doc)

    def _workspace(self) -> str:
        """A private directory in `pulls/` for one copy (removed after; leftovers go at prune)."""
        os.makedirs(self.pulls, exist_ok=True)
        return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.pulls)

    def _commit(self, layout: str, name: str, repo_digest: str, image_id: str = "") -> Image:
        """The image skopeo copied into `layout`: its layers unpacked and verified, its record written.
        Its id is the config digest, unless the source had another (`image_id`, docker-archive)."""
        index = read_json(os.path.join(layout, "index.json"))
        descriptor = index["manifests"][0]
        digest = descriptor["digest"]
        manifest = json.loads(self._verified(digest))
        config_digest = manifest["config"]["digest"]
        config = json.loads(self._verified(config_digest))
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        layers = manifest.get("layers") or []
        if len(diff_ids) != len(layers):
            raise NsboxError(f"image {name or config_digest}: {len(layers)} layers but {len(diff_ids)} diff ids")
        for layer, diff_id in zip(layers, diff_ids):
            self.layers.ensure(diff_id, self.blob(layer["digest"]), layer.get("mediaType", ""))
        image = Image(
            name=name,
            id=image_id or config_digest,
            digest=digest,
            repo_digest=repo_digest,
            size=sum(int(x.get("size", 0)) for x in layers) + int(manifest["config"].get("size", 0)),
            config=ImageConfig.from_oci(config.get("config") or {}),
            diff_ids=diff_ids,
            blobs=[digest, config_digest, *(x["digest"] for x in layers)],
            created=time.time(),
        )
        self._save(image)
        image.layers = [self.layers.path(d) for d in diff_ids]
        return image

    def _verified(self, digest: str) -> bytes:
        """A blob's bytes, checked against its digest (the store keeps blobs so that it can)."""
        with open(self.blob(digest), "rb") as f:
            data = f.read()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise NsboxError(f"blob {digest} in {self.blob_dir} does not match its digest")
        return data

    # ------------------------------------------------------------ pulling

    def pull(self, ref: str) -> Image:
        """`ref` from its registry: the digest resolved first, then copied by that digest (PullError)."""
        return self.fetch(ref)[0]

    def fetch(self, ref: str) -> tuple[Image, bool]:
        """As `pull`; True when something was copied now (False: the store had that digest already)."""
        r = parse(ref)
        name = str(r)
        started = time.time()
        with self._gc_lock(shared=True), self._name_lock(name) as waited:
            if waited:  # another process pulled this name while we waited: take its result
                current = self._named(name)
                if current is not None and current.created >= started and self._complete(current):
                    return current, False
            if r.digest:
                repo_digest = r.pinned(r.digest)
            else:
                raw = transport.inspect_raw(name, r.host, shown=ref)
                repo_digest = r.pinned("sha256:" + hashlib.sha256(raw).hexdigest())
            have = self._with_repo_digest(name, repo_digest)
            if have is not None:
                return have, False
            work = self._workspace()
            try:
                layout = os.path.join(work, "layout")
                transport.copy_from_registry(repo_digest, r.host, layout, self.blob_dir, shown=ref)
                return self._commit(layout, name, repo_digest), True
            finally:
                remove_tree(work)

    def _named(self, name: str) -> Image | None:
        return self._read(self._record_path(name, ""))

    def _with_repo_digest(self, name: str, repo_digest: str) -> Image | None:
        """The image already here under this repo digest (this name's, or another name's, recorded
        again under this one): a pull that finds what it would copy copies nothing."""
        current = self._named(name)
        if current is not None and current.repo_digest == repo_digest and self._complete(current):
            return current
        for _, image in self._all():
            if image.repo_digest == repo_digest and self._complete(image):
                image.name, image.created = name, time.time()
                self._save(image)
                return image
        return None

    @contextlib.contextmanager
    def _name_lock(self, name: str) -> Iterator[bool]:
        """One pull of a name at a time; yields True when another process held it and we waited."""
        lock = FileLock(os.path.join(self.locks, "name-" + hashlib.sha256(name.encode()).hexdigest()[:32]))
        waited = not lock.acquire(blocking=False)
        if waited:
            lock.acquire()
        try:
            yield waited
        finally:
            lock.release()

    def ensure(self, ref: str, policy: str) -> tuple[Image, bool]:
        """The image for a container with pull policy `policy`; True when the registry was asked now.

        Always: pull (cheap when the digest is unchanged); IfNotPresent: pull when absent;
        Never: absent is PullError(reason="NeverPull"), as the kubelet's ErrImageNeverPull."""
        if policy not in ("Always", "IfNotPresent", "Never"):
            raise NsboxError(f'unknown image pull policy "{policy}" (Always, IfNotPresent or Never)')
        if policy != "Always":
            image = self.lookup(ref)
            if image is not None and self._complete(image):
                return image, False
            if policy == "Never":
                raise PullError(f'image "{ref}" is not present with pull policy of Never', reason="NeverPull")
        return self.fetch(ref)[0], True

    # ------------------------------------------------------------ loading

    def load(self, archive: str) -> list[Image]:
        """The images of an oci-archive or docker-archive file (what `podman save` / `docker save` write)."""
        from nsbox.images.archive import images_of

        path = os.path.abspath(archive)
        with self._gc_lock(shared=True):
            work = self._workspace()
            try:
                link = os.path.join(work, "archive")  # skopeo splits its argument at ':'
                os.symlink(path, link)
                loaded = []
                for i, archived in enumerate(images_of(path, link)):
                    layout = os.path.join(work, f"layout{i}")
                    transport.copy_from_archive(archived.source, layout, self.blob_dir, archive)
                    names = [normalize(n) for n in archived.names] or [""]
                    for name in names:
                        loaded.append(self._commit(layout, name, "", archived.image_id))
                return loaded
            finally:
                remove_tree(work)

    # ------------------------------------------------------------ removing

    def remove(self, ref: str) -> Image:
        """Forget the image `ref` names (by id: every name it has); refused while a live lease holds it.
        Its layers and blobs stay until `prune`."""
        with self._gc_lock(shared=True):
            found = self._matches(ref)
            if not found:
                raise NotFound(f'image "{ref}" not found')
            ids = set().union(*(i.ids() for i in found))
            for lease in self.leases.live():
                if ids & set(lease.image_ids):
                    raise NsboxError(f'image "{ref}" is in use by pod {lease.pod_name()}')
            for image in found:
                try:
                    os.unlink(self._record_path(image.name, image.id))
                except FileNotFoundError:
                    pass
            return found[0]

    def prune(self) -> tuple[int, int]:
        """Remove the layers, blobs and leftovers no image record and no live lease uses:
        (layers removed, bytes freed)."""
        with self._gc_lock(shared=False):
            images = [image for _, image in self._all()]
            keep_layers = {hex_of(d) for i in images for d in i.diff_ids}
            keep_layers |= {hex_of(d) for lease in self.leases.live() for d in lease.layers}
            keep_blobs = {hex_of(b) for i in images for b in i.blobs}
            removed = freed = 0
            for path in self.layers.unused(keep_layers):
                freed += _size(path)
                remove_tree(path)
                removed += not os.path.basename(path).startswith(".")
            for path in self.layers.dangling_links():
                os.unlink(path)
            for path in self._unused_blobs(keep_blobs):
                freed += _size(path)
                remove_tree(path) if os.path.isdir(path) else os.unlink(path)
            if os.path.isdir(self.pulls):
                for name in os.listdir(self.pulls):
                    path = os.path.join(self.pulls, name)
                    freed += _size(path)
                    remove_tree(path)
            self._drop_locks()
            return removed, freed

    def _unused_blobs(self, keep: set[str]) -> list[str]:
        d = os.path.join(self.blob_dir, "sha256")
        try:
            return [os.path.join(d, n) for n in sorted(os.listdir(d)) if n not in keep]
        except FileNotFoundError:
            return []

    def _drop_locks(self) -> None:
        """Name and layer lock files: no one holds them while `gc` is held exclusively."""
        try:
            names = os.listdir(self.locks)
        except FileNotFoundError:
            return
        for name in names:
            if name != "gc":
                os.unlink(os.path.join(self.locks, name))

    # ------------------------------------------------------------ for pods

    def lease(self, holder: str, root: str, pod_uid: str, image_ids: list[str]) -> None:
        """Record that the pod `pod_uid` of `root` uses these images (ids as `Image.image_id` or `id`)."""
        wanted = set(image_ids)
        with self._gc_lock(shared=True):
            layers = sorted({d for _, i in self._all() if i.ids() & wanted for d in i.diff_ids})
            self.leases.write(holder, root, pod_uid, list(image_ids), layers)

    def release(self, holder: str) -> None:
        self.leases.remove(holder)

    def lowerdirs(self, image: Image) -> tuple[str, str]:
        """(directory the overlay must be mounted from, `lowerdir=` value relative to it, top layer first)."""
        return self.layers.lowerdirs(image.diff_ids)


def _size(path: str) -> int:
    """Bytes of the regular files under `path` (or of `path`)."""
    try:
        if not os.path.isdir(path) or os.path.islink(path):
            return os.lstat(path).st_size
    except FileNotFoundError:
        return 0
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except FileNotFoundError:
                continue
            total += st.st_size
    return total


def describe(image: Image) -> dict[str, Any]:
    """An image as `image ls -o json` prints it."""
    doc = as_dict(image)
    doc["imageID"] = image.image_id
    return doc
