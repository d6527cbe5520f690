"""Image references: the short names people write and the full names the store keys on.

The rules are Docker's reference grammar as containerd and the kubelet apply it
(docs/images.md, "Names"): a first component with `.` or `:`, or equal to
`localhost`, is a registry host, anything else is on `docker.io`; a one-component
name on `docker.io` is in `library/`; no tag and no digest means `:latest`.
"""

from __future__ import annotations

import re

from nsbox.errors import NsboxError

DEFAULT_REGISTRY = "docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

# Docker's reference grammar (distribution/reference): lowercase path components
# separated by `.`, `_`, `__` or dashes; a tag of up to 128 word characters.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")


class Reference:
    """A parsed, normalised reference: registry host, repository path, tag and digest."""

    def __init__(self, host: str, path: str, tag: str, digest: str):
        self.host, self.path, self.tag, self.digest = host, path, tag, digest

    @property
    def repository(self) -> str:
        """`docker.io/library/busybox`: the name without tag or digest."""
        return f"{self.host}/{self.path}"

    def __str__(self) -> str:
        name = self.repository
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name

    def pinned(self, digest: str) -> str:
        """`repository@digest`: what a pull copies, so that what was checked is what is copied."""
        return f"{self.repository}@{digest}"


def parse(ref: str) -> Reference:
    """`ref` split and normalised; NsboxError naming what is wrong with it."""
    if not ref or ref != ref.strip():
        raise NsboxError(f'invalid image reference "{ref}"')
    rest, digest = ref, ""
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise NsboxError(f'invalid image reference "{ref}": the digest must be sha256: and 64 hex digits')
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise NsboxError(f'invalid image reference "{ref}": bad tag "{tag}"')
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first, remainder
        if not _HOST.fullmatch(host):
            raise NsboxError(f'invalid image reference "{ref}": bad registry host "{host}"')
    else:
        host, path = DEFAULT_REGISTRY, rest
    if host in ("index.docker.io", "registry-1.docker.io"):
        host = DEFAULT_REGISTRY
    if host == DEFAULT_REGISTRY and "/" not in path:
        path = OFFICIAL_PREFIX + path
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            why = "repository names must be lowercase" if component.lower() != component else "bad name"
            raise NsboxError(f'invalid image reference "{ref}": {why}')
    if not tag and not digest:
        tag = DEFAULT_TAG
    return Reference(host, path, tag, digest)


def is_local_registry(host: str) -> bool:
    """A registry on this machine (`localhost`, 127.0.0.0/8, ::1), reached over plain HTTP without a flag."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
