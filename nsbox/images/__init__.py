"""Container images: a host-wide store of blobs and unpacked layers, fed by skopeo.

This front holds what the pod side needs on its start path, and nothing heavy:
where the store is, how a reference is normalised, the Kubernetes pull-policy
default, the records an image is described by, and the pull error. The store
itself (`Store`, in `nsbox/images/store.py`) is imported when first used.
The layout on disk and the rules are in docs/images.md.
"""

from __future__ import annotations

import os

from nsbox.errors import NsboxError
from nsbox.images.reference import parse
from nsbox.record import field, record

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.images.store import Store

__all__ = [
    "DEFAULT_STORE",
    "Image",
    "ImageConfig",
    "PullError",
    "Store",
    "normalize",
    "store_path",
]

DEFAULT_STORE = "/var/lib/nsbox/images"
STORE_ENV = "NSBOX_IMAGE_STORE"


def store_path(option: str | None = None) -> str:
    """The store's directory: the `--image-store` option, else $NSBOX_IMAGE_STORE, else DEFAULT_STORE."""
    return os.path.abspath(option or os.environ.get(STORE_ENV) or DEFAULT_STORE)


def normalize(ref: str) -> str:
    """The full name of `ref`: 'busybox' -> 'docker.io/library/busybox:latest' (docs/images.md, "Names")."""
    return str(parse(ref))


class PullError(NsboxError):
    """An image could not be had; `reason` is what the kubelet's waiting reason is made of:
    NotFound | Unauthorized | Unreachable | Failed, or NeverPull (absent with policy Never)."""

    def __init__(self, message: str, reason: str = "Failed"):
        super().__init__(message)
        self.reason = reason


@record
class ImageConfig:
    """What the image says about running it (the OCI image config's `config` object)."""

    entrypoint: list[str] = field(factory=list)
    cmd: list[str] = field(factory=list)
    env: list[str] = field(factory=list)
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    labels: dict[str, str] = field(factory=dict)
    exposed_ports: list[str] = field(factory=list)

    @classmethod
    def from_oci(cls, config: dict[str, Any]) -> ImageConfig:
        """From the `config` object of an OCI or Docker image config (its keys are capitalised)."""
        return cls(
            entrypoint=list(config.get("Entrypoint") or []),
            cmd=list(config.get("Cmd") or []),
            env=list(config.get("Env") or []),
            working_dir=config.get("WorkingDir") or "",
            user=config.get("User") or "",
            stop_signal=config.get("StopSignal") or "",
            labels=dict(config.get("Labels") or {}),
            exposed_ports=sorted(config.get("ExposedPorts") or {}),
        )


@record
class Image:
    """One named image in the store.

    `id` is the config digest (Docker's and podman's image id), `digest` the manifest
    digest, `repo_digest` `repository@digest-of-what-the-registry-served` (a manifest
    list's digest when it served a list; empty for a loaded image). `layers` are the
    unpacked layer directories, bottom first; `diff_ids` their digests, `blobs` every
    blob the image is made of (manifest, config, layers), which prune keeps.
    """

    name: str  # the full name, or "" for an image loaded without one
    id: str
    digest: str
    repo_digest: str = ""
    size: int = 0
    layers: list[str] = field(factory=list)
    config: ImageConfig = field(factory=ImageConfig)
    diff_ids: list[str] = field(factory=list)
    blobs: list[str] = field(factory=list)
    created: float = 0.0  # when this record was written (seconds since the epoch)

    @property
    def image_id(self) -> str:
        """What a container status shows as `imageID`: the repo digest, or the config digest of a loaded image."""
        return self.repo_digest or self.id

    def ids(self) -> set[str]:
        """Every identifier a lease or a reference may name this image by."""
        return {i for i in (self.id, self.digest, self.repo_digest) if i}


def __getattr__(name: str) -> Any:
    if name == "Store":
        from nsbox.images.store import Store

        return Store
    raise AttributeError(f"module 'nsbox.images' has no attribute {name!r}")
