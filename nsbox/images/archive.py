"""Image archives, as `podman save` and `docker save` write them: which kind, and which images.

An `oci-archive` is an OCI image layout in a tar (`oci-layout`, `index.json`); a
`docker-archive` has a `manifest.json` listing each image's config, layers and
tags. `docker save` since Docker 25 writes both; the OCI index is read then, as
skopeo would (docs/images.md, "Loading").
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile

from nsbox.errors import NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

# The annotations naming an image in an OCI index: containerd's (full name) and the OCI one
# (podman and skopeo write the name given to them; the OCI spec means a tag).
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


class ArchivedImage:
    """One image of an archive: the skopeo source that selects it, the names it carries, and (for a
    docker-archive) its Docker image id: skopeo rewrites a Docker config when it converts the image
    to OCI, and the id `docker load` shows is the digest of the config as archived."""

    def __init__(self, source: str, names: list[str], image_id: str = ""):
        self.source, self.names, self.image_id = source, names, image_id


def _member(tar: tarfile.TarFile, names: dict[str, tarfile.TarInfo], name: str) -> Any:
    f = tar.extractfile(names[name])
    if f is None:
        raise NsboxError(f"{name} in the archive is not a file")
    return json.loads(f.read())


def images_of(path: str, link: str) -> list[ArchivedImage]:
    """The images in the archive at `path`; their sources name it as `link` (a path without `:`)."""
    if not os.path.isfile(path):
        raise NsboxError(f"{path}: no such file")
    try:
        with tarfile.open(path) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            if "index.json" in members and ("oci-layout" in members or "manifest.json" not in members):
                return _oci_images(link, _member(tar, members, "index.json"))
            if "manifest.json" in members:
                return _docker_images(link, tar, members)
    except tarfile.ReadError:
        raise NsboxError(f"{path}: not an image archive (not a tar file)") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise NsboxError(f"{path}: not an image archive ({why})") from None
    raise NsboxError(f"{path}: not an image archive (no index.json or manifest.json in it)")


def _oci_images(link: str, index: Any) -> list[ArchivedImage]:
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise NsboxError(f"{link}: its index.json lists no image")
    images = []
    for i, m in enumerate(manifests):
        annotations = m.get("annotations") or {}
        ref_name = annotations.get("org.opencontainers.image.ref.name", "")
        name = next((annotations[a] for a in NAME_ANNOTATIONS if annotations.get(a)), "")
        if not any(c in name for c in "/:"):
            name = ""  # a bare tag names no image
        if ref_name:
            source = f"oci-archive:{link}:{ref_name}"
        elif len(manifests) == 1:
            source = f"oci-archive:{link}"
        else:
            raise NsboxError(f"{link}: image {i + 1} of its index.json has no name; skopeo cannot select it")
        images.append(ArchivedImage(source, [name] if name else []))
    return images


def _docker_images(link: str, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> list[ArchivedImage]:
    manifest = _member(tar, members, "manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise NsboxError("the archive's manifest.json lists no image")
    images = []
    for i, entry in enumerate(manifest):
        config = tar.extractfile(members[entry["Config"].removeprefix("./")])
        if config is None:
            raise NsboxError(f"{entry['Config']} in the archive is not a file")
        image_id = "sha256:" + hashlib.sha256(config.read()).hexdigest()
        images.append(ArchivedImage(f"docker-archive:{link}:@{i}", list(entry.get("RepoTags") or []), image_id))
    return images
