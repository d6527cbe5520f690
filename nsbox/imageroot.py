"""A container that runs its image: what it starts as, read from the image's config and
its layers (docs/images.md, "Image pods").

The image config gives Entrypoint, Cmd, Env, WorkingDir and User; the container's spec
overrides them by Kubernetes' rules (kube.command_line and friends). A user name is
resolved in the image's own /etc/passwd, read from its layers as the overlay will show
it: the topmost layer that has the file wins, and a whiteout or an opaque directory above
hides what is below. The layers belong to an image anyone could have built, so a path is
walked without following symbolic links (mounts.open_beneath); a file reached only
through a link counts as absent.
"""

from __future__ import annotations

import os
import stat

from nsbox import kube, mounts, security
from nsbox.errors import WaitingForConfig
from nsbox.model import ContainerSpec, PodSpec
from nsbox.record import record

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from nsbox.images import Image

OPAQUE_XATTR = "trusted.overlay.opaque"


class ConfigProblem(WaitingForConfig):
    """The container cannot start as its spec and image say (the kubelet's
    CreateContainerConfigError, e.g. runAsNonRoot with a root image user): it waits."""

    reason = "CreateContainerConfigError"


@record
class Start:
    """What a container that runs its image starts as."""

    entrypoint: list[str]  # the image's; the container's command and args combine with them
    cmd: list[str]
    env: dict[str, str]  # the image's Env and the defaults, under which the container's own go
    cwd: str
    user: security.User


def read_file(layers: list[str], path: str) -> bytes | None:
    """`path` (relative, e.g. "etc/passwd") as the overlay of `layers` (bottom first) shows it;
    None when it is absent, deleted, not a regular file, or reached through a link."""
    parts = path.split("/")
    for layer in reversed(layers):
        try:
            fd = mounts.open_beneath(layer, path)
        except OSError:
            # Absent here; does this layer hide it in the layers below?
            if _hidden_below(layer, parts):
                return None
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None  # a whiteout (0/0 character device) or anything else
            with open(f"/proc/self/fd/{fd}", "rb") as f:
                return f.read(1 << 20)
        finally:
            os.close(fd)
    return None


def _hidden_below(layer: str, parts: list[str]) -> bool:
    """Whether `layer` has a whiteout or an opaque directory on the way to the path `parts`."""
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        try:
            fd = mounts.open_beneath(layer, prefix)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return True
            if stat.S_ISDIR(st.st_mode) and depth < len(parts):
                try:
                    if os.getxattr(f"/proc/self/fd/{fd}", OPAQUE_XATTR) == b"y":
                        return True
                except OSError:
                    pass
        finally:
            os.close(fd)
    return False


def colon_file(layers: list[str], path: str) -> list[list[str]]:
    """An /etc/passwd- or /etc/group-style file of the image, as entries."""
    data = read_file(layers, path)
    if data is None:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return [line.split(":") for line in lines if line.strip() and not line.startswith("#")]


def start(pod: PodSpec, c: ContainerSpec, image: Image) -> Start:
    """The command, environment, working directory and user of container `c` from `image`."""
    config = image.config
    passwd = colon_file(image.layers, "etc/passwd")
    sc = c.security
    run_as_user = sc.run_as_user if sc.run_as_user is not None else pod.run_as_user
    run_as_group = sc.run_as_group if sc.run_as_group is not None else pod.run_as_group
    if sc.run_as_non_root:
        problem = kube.run_as_non_root_problem(run_as_user, config.user)
        if problem:
            raise ConfigProblem(problem)
    if run_as_user is not None:
        uid, gid = run_as_user, _primary_gid(passwd, run_as_user)
    else:
        try:
            uid, gid = kube.resolve_user(config.user, passwd, colon_file(image.layers, "etc/group"))
        except kube.UnknownUser as e:
            raise ConfigProblem(str(e)) from None
    if run_as_group is not None:
        gid = run_as_group
    listed = [] if pod.supplemental_groups_policy == "Strict" else _listed_groups(image.layers, passwd, uid)
    user = security.User(
        uid,
        gid or 0,
        kube.supplementary_groups(
            gid or 0, pod.fs_group, pod.supplemental_groups, pod.supplemental_groups_policy, listed
        ),
    )
    env = {"PATH": _default_path(), "HOSTNAME": pod.effective_hostname}
    env.update(kube.image_environment(list(config.env)))
    env.setdefault("HOME", _home(passwd, uid))
    return Start(
        entrypoint=list(config.entrypoint),
        cmd=list(config.cmd),
        env=env,
        cwd=c.working_dir or config.working_dir or "/",
        user=user,
    )


def _default_path() -> str:
    from nsbox.container import DEFAULT_PATH

    return DEFAULT_PATH


def _primary_gid(passwd: list[list[str]], uid: int) -> int | None:
    return next((int(e[3]) for e in passwd if len(e) > 3 and e[2] == str(uid) and e[3].isdigit()), None)


def _home(passwd: list[list[str]], uid: int) -> str:
    """HOME as runc sets it when the image does not: the user's home, else "/"."""
    return next((e[5] for e in passwd if len(e) > 5 and e[2] == str(uid) and e[5]), "/")


def _listed_groups(layers: list[str], passwd: list[list[str]], uid: int) -> list[int]:
    """The image's groups that list the user's name as a member (security.groups_listing's rule)."""
    name = next((e[0] for e in passwd if len(e) > 2 and e[2] == str(uid)), None)
    if not name:
        return []
    return [
        int(e[2])
        for e in colon_file(layers, "etc/group")
        if len(e) > 3 and e[0] != name and name in e[3].split(",") and e[2].isdigit()
    ]
