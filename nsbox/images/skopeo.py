"""The transport: skopeo, run as a child, and its failures classified as the kubelet shows them.

skopeo does what a registry client must (auth files, `registries.conf` mirrors and
insecure registries, manifest lists resolved to this platform, digest
verification); nsbox only chooses the source and destination and reads its
stderr when it fails (docs/images.md, "Transport").
"""

from __future__ import annotations

import os
import re
import subprocess

from nsbox.errors import NsboxError
from nsbox.images import PullError
from nsbox.images.reference import is_local_registry

SKOPEO = "skopeo"
LOAD_HINT = "load it by hand with: nsbox image load -i FILE"

# Words of skopeo's (containers/image's) error messages and the reason each means, first match wins.
_REASONS = [
    ("Unauthorized", ("unauthorized", "authentication required", "denied", "status 401", "status 403", "forbidden")),
    ("NotFound", ("manifest unknown", "name unknown", "not found", "status 404", "no such image")),
    (
        "Unreachable",
        (
            "connection refused",
            "no such host",
            "i/o timeout",
            "timeout",
            "network is unreachable",
            "no route to host",
            "server misbehaving",
            "connection reset",
            "deadline exceeded",
            "tls: ",
            "x509: ",
            "http response to https client",
        ),
    ),
]

_MESSAGE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
# skopeo's wrappers around the reason, which say nothing the user does not know.
_WRAPPER = re.compile(r'^(?:Error parsing image name|Error initializing source|initializing source) "[^"]*": ')


def essential_line(stderr: str) -> str:
    """The line that says why: the `msg="..."` of skopeo's fatal log line, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        m = _MESSAGE.search(line)
        if m:
            return _WRAPPER.sub("", m.group(1).replace('\\"', '"'))
    return lines[-1] if lines else "skopeo failed"


def classify(stderr: str) -> str:
    """NotFound | Unauthorized | Unreachable | Failed, from what skopeo wrote on stderr."""
    text = stderr.lower()
    for reason, words in _REASONS:
        if any(w in text for w in words):
            return reason
    return "Failed"


_WHY = {
    "NotFound": "not found",
    "Unauthorized": "unauthorized (log in with `skopeo login`, or set REGISTRY_AUTH_FILE)",
    "Unreachable": "registry unreachable",
    "Failed": "failed",
}


def pull_error(ref: str, stderr: str) -> PullError:
    reason = classify(stderr)
    return PullError(
        f'failed to pull image "{ref}": {_WHY[reason]}: {essential_line(stderr)}; {LOAD_HINT}', reason=reason
    )


def run(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    """skopeo with `args`; its output captured, never shown.

    The child gets PR_SET_PDEATHSIG (SIGKILL): a killed nsbox does not leave a copy running.
    The module is imported here, before the fork: the child only makes the system call."""
    import prctl

    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    if conf:  # containers-registries.conf(5)'s override, which skopeo 1.9 reads only as a flag
        args = ["--registries-conf", conf, *args]
    try:
        return subprocess.run(
            [SKOPEO, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            preexec_fn=lambda: prctl.set_pdeathsig(9),
        )
    except FileNotFoundError:
        raise NsboxError("skopeo is not installed (apt-get install skopeo); nsbox needs it for images") from None


def tls_flags(host: str, option: str) -> list[str]:
    """Plain HTTP for a registry on this machine only; every other registry as registries.conf says."""
    return [f"{option}=false"] if is_local_registry(host) else []


def inspect_raw(ref: str, host: str, shown: str) -> bytes:
    """The manifest (or manifest list) the registry serves for `ref`, byte for byte."""
    p = run(["inspect", "--raw", *tls_flags(host, "--tls-verify"), f"docker://{ref}"])
    if p.returncode != 0:
        raise pull_error(shown, p.stderr.decode(errors="replace"))
    return p.stdout


def copy_from_registry(ref: str, host: str, layout: str, blob_dir: str, shown: str) -> None:
    """Copy `ref` (pinned by digest) into the OCI layout `layout`, its blobs into the shared `blob_dir`
    (blobs already there are not fetched again); a manifest list resolves to this platform."""
    p = run(
        [
            "copy",
            "--quiet",
            "--remove-signatures",
            *tls_flags(host, "--src-tls-verify"),
            "--dest-shared-blob-dir",
            blob_dir,
            f"docker://{ref}",
            f"oci:{layout}:image",
        ]
    )
    if p.returncode != 0:
        raise pull_error(shown, p.stderr.decode(errors="replace"))


def copy_from_archive(source: str, layout: str, blob_dir: str, archive: str) -> None:
    """Copy one image of an archive (`oci-archive:PATH[:NAME]`, `docker-archive:PATH[:@N]`) into `layout`."""
    p = run(
        ["copy", "--quiet", "--remove-signatures", "--dest-shared-blob-dir", blob_dir, source, f"oci:{layout}:image"]
    )
    if p.returncode != 0:
        raise NsboxError(f"cannot load {archive}: {essential_line(p.stderr.decode(errors='replace'))}")
