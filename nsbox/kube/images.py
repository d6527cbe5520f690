"""How a container's image config and its spec combine (docs/images.md, "Image pods").

Every rule is the kubelet's or containerd's CRI plugin's, as pure functions over
plain values: the image store and the file system are the caller's business.
"""

from __future__ import annotations

PULL_POLICIES = ("Always", "IfNotPresent", "Never")

# The kubelet's image pull back-off (pkg/kubelet/kuberuntime: backOffPeriod, MaxContainerBackOff).
IMAGE_BACKOFF_BASE = 10.0
IMAGE_BACKOFF_MAX = 300.0


def default_pull_policy(image: str) -> str:
    """The API server's default (pkg/apis/core/v1 SetDefaults_Container): Always when the
    tag is `latest`, written or implied (no tag and no digest), else IfNotPresent."""
    name, _, digest = image.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    if not tag:
        return "IfNotPresent" if digest else "Always"
    return "Always" if tag == "latest" else "IfNotPresent"


def command_line(command: list[str], args: list[str], entrypoint: list[str], cmd: list[str]) -> list[str]:
    """The process a container runs (the API reference's "Notes" on command and args):
    `command` replaces the image's Entrypoint and then its Cmd is not used either; `args`
    alone replaces Cmd and keeps Entrypoint."""
    if command:
        return command + args
    return entrypoint + (args if args else cmd)


def image_environment(image_env: list[str]) -> dict[str, str]:
    """The image's Env ("K=V" entries) as the base under the container's own variables."""
    out = {}
    for entry in image_env:
        key, sep, value = entry.partition("=")
        if key and sep:
            out[key] = value
    return out


class UnknownUser(ValueError):
    """The image's user names a user or group its /etc/passwd or /etc/group does not have."""


def resolve_user(user: str, passwd: list[list[str]], group: list[list[str]]) -> tuple[int, int | None]:
    """The image config's `User` ("uid", "uid:gid", "name", "name:group") as numbers, names
    looked up in the image's own files (containerd WithUser). The gid is None when the user
    gave none and the uid has no passwd entry: the caller decides (containerd uses 0)."""
    who, _, grp = user.partition(":")
    gid: int | None
    if not who:
        uid, gid = 0, 0  # no User: root, as the runtime spec's default process
    elif who.isdigit():
        uid = int(who)
        gid = next((int(e[3]) for e in passwd if len(e) > 3 and e[2] == who and e[3].isdigit()), None)
    else:
        entry = next((e for e in passwd if len(e) > 3 and e[0] == who and e[2].isdigit() and e[3].isdigit()), None)
        if entry is None:
            raise UnknownUser(f"unable to find user {who}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3])
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            g = next((e for e in group if len(e) > 2 and e[0] == grp and e[2].isdigit()), None)
            if g is None:
                raise UnknownUser(f"unable to find group {grp}: no matching entries in group file")
            gid = int(g[2])
    return uid, gid


def run_as_non_root_problem(run_as_user: int | None, image_user: str) -> str:
    """Why a container with runAsNonRoot must not start, or "" (kubelet verifyRunAsNonRoot)."""
    if run_as_user is not None:
        return "container's runAsUser breaks non-root policy" if run_as_user == 0 else ""
    who = image_user.partition(":")[0]
    if who and not who.isdigit():
        return f"container has runAsNonRoot and image has non-numeric user ({who}), cannot verify user is non-root"
    if not who or int(who) == 0:
        return "container has runAsNonRoot and image will run as root"
    return ""


def pulled_message(image: str, seconds: float, waited: float, size: int) -> str:
    """The kubelet's Pulled event after a pull (pkg/kubelet/images/image_manager.go)."""
    return (
        f'Successfully pulled image "{image}" in {_duration(seconds)} '
        f"({_duration(waited)} including waiting). Image size: {size} bytes."
    )


def _duration(seconds: float) -> str:
    """Go's time.Duration as the kubelet prints it, to the millisecond: "1.234s", "850ms"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
