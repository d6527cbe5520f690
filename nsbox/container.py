"""How one container process is started, and how a command is run inside a running one.

`start_request` turns a ContainerSpec into a `native.SpawnRequest`: the
environment, the executable, the namespaces to create, the mount plan, the
cgroup and the identity. `exec_request` builds the request for a process that
joins an existing container (`nsbox exec`, preStop and postStart hooks).
"""

from __future__ import annotations

import os

from nsbox import kube, mounts, native, security
from nsbox.errors import NsboxError
from nsbox.model import ContainerSpec, PodSpec
from nsbox.state import PodPaths

# `projection` (ConfigMaps, Secrets, resources) is imported where a container uses it.
TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from nsbox import imageroot, projection

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The namespaces a container joins, in the order setns() needs: mnt last, since
# after it the paths of the others are no longer reachable.
JOIN_ORDER = (
    ("ipc", native.CLONE_NEWIPC),
    ("uts", native.CLONE_NEWUTS),
    ("net", native.CLONE_NEWNET),
    ("pid", native.CLONE_NEWPID),
    ("mnt", native.CLONE_NEWNS),
)


def environment(
    pod: PodSpec,
    c: ContainerSpec,
    pod_ip: str = "",
    config: projection.EnvConfig | None = None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The container's variables over `base` (an image's Env and defaults; without an image,
    PATH, HOSTNAME and HOME): `config` holds what came from ConfigMaps and Secrets (resolved
    at start: projection.env_config); without it those variables are left out."""
    if base is None:
        base = {"PATH": DEFAULT_PATH, "HOSTNAME": pod.effective_hostname, "HOME": "/root"}
    env = dict(base)
    if c.tty:
        env["TERM"] = "xterm"
    if config is not None:
        env.update(config.from_env)
    fields = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "status.podIP": pod_ip,
        "spec.nodeName": pod.node_name or os.uname().nodename,
    }
    for i, var in enumerate(c.env):
        if var.ref_kind:
            if config is not None and i in config.values:
                env[var.name] = config.values[i]
        elif var.resource:
            from nsbox import projection

            env[var.name] = projection.resource_value(pod, var.resource_container or c.name, var.resource, var.divisor)
        else:
            env[var.name] = (
                fields.get(var.field_ref, "") if var.field_ref else kube.expand_env_references(var.value, env)
            )
    return env


def argv(c: ContainerSpec, env: dict[str, str], start: imageroot.Start | None = None) -> list[str]:
    """The command line, $(VAR) references expanded; with an image, combined with its
    Entrypoint and Cmd (which are not expanded, as the kubelet does)."""
    command = [kube.expand_env_references(a, env) for a in c.command]
    args = [kube.expand_env_references(a, env) for a in c.args]
    if start is None:
        return command + args
    line = kube.command_line(command, args, start.entrypoint, start.cmd)
    if not line:
        raise NsboxError(f'image "{c.image}" has no Entrypoint or Cmd, and the container gives no command')
    return line


def executable_candidates(name: str, env: dict[str, str], root: str = "/", cwd: str = "/") -> list[str]:
    """Paths to try with execve, in PATH order, looked up inside `root` (like execvpe)."""
    if "/" in name:
        return [name]
    dirs = env.get("PATH", DEFAULT_PATH).split(":")
    return [os.path.join(d or cwd, name) for d in dirs]


def find_executable(name: str, env: dict[str, str], root: str = "/", cwd: str = "/") -> str | None:
    """The first candidate that exists and is executable when seen from `root`, or None."""
    for path in executable_candidates(name, env, root, cwd):
        host = os.path.join(root, os.path.join(cwd, path).lstrip("/"))
        if os.path.isfile(host) and os.access(host, os.X_OK):
            return path
    return None


def check_command(pod: PodSpec, c: ContainerSpec) -> None:
    """Fail early, before anything is created, when a container's executable does not exist.
    A container that runs its image is checked when it starts: the image may not be here yet."""
    if c.runs_image:
        return
    env = environment(pod, c)
    args = argv(c, env)
    root = c.image if c.image and os.path.isdir(c.image) else "/"
    if find_executable(args[0], env, root, c.working_dir or "/") is None:
        where = "" if "/" in args[0] else " in $PATH"
        raise NsboxError(f'container "{c.name}": executable "{args[0]}" not found{where}')


def volume_mounts(pod: PodSpec, c: ContainerSpec, paths: PodPaths) -> list[mounts.Volume]:
    result = []
    for m in c.volume_mounts:
        v = pod.volume(m.name)
        if v is None:
            raise NsboxError(f'container "{c.name}": volume "{m.name}" not found')
        source = v.host_path if v.kind == "hostPath" else paths.volume(v.name)
        sub_path, read_only = m.sub_path, m.read_only
        if v.kind not in ("emptyDir", "hostPath"):  # configMap, secret, downwardAPI, projected
            read_only = True  # as the kubelet mounts them
            if sub_path:
                from nsbox import projection

                sub_path = projection.resolve_sub_path(source, sub_path)
        if sub_path:
            check_subpath(source, sub_path)
        result.append(mounts.Volume(source, os.path.normpath("/" + m.mount_path), read_only, sub_path))
    return result


def termination_message_mount(c: ContainerSpec, paths: PodPaths) -> mounts.Volume:
    """The pod's file for `c`'s termination message, bound at its terminationMessagePath after
    the volumes, as the kubelet binds it (docs/lifecycle.md, "Termination messages")."""
    return mounts.Volume(paths.termination_message(c.name), c.termination_message_path, read_only=False, mapped=False)


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return {}
    return dict(e.decode(errors="replace").partition("=")[::2] for e in entries if b"=" in e)


def check_subpath(volume_dir: str, sub_path: str) -> None:
    """Make the missing directories of `sub_path`, or raise a clear error.

    The pod owns its volume's content and may change it at any time: a path
    checked here and then mounted by name could be swapped for a link out of
    the volume in between. So the check walks the path without following
    symbolic links (as the kubelet does), and the mount (the "bind-beneath"
    step) resolves it again in the container's child with the same rule and
    mounts what it resolved.
    """
    if sub_path.startswith("/") or ".." in sub_path.split("/"):
        raise NsboxError(f'subPath "{sub_path}" must be a relative path inside the volume')
    try:
        os.close(mounts.open_beneath(volume_dir, sub_path, create=True))
    except OSError as e:
        raise NsboxError(f'subPath "{sub_path}": {e.strerror}') from None


def start_request(
    pod: PodSpec,
    c: ContainerSpec,
    paths: PodPaths,
    etc_files: dict[str, str],
    *,
    pod_ip: str = "",
    pid_ns_fd: int = -1,
    console: str = "",
    config: projection.EnvConfig | None = None,
    image: tuple[imageroot.Start, str, str] | None = None,
    cgroup_ns: bool = False,
    userns_owner: int = 0,
) -> native.SpawnRequest:
    """The request that starts container `c` as a child of the pod's watcher. A container
    that runs its image gives `image`: what it starts as (imageroot.start), and the
    directory its layers' overlay is mounted from with the `lowerdir=` value relative
    to it (images.Store.lowerdirs). With `cgroup_ns` (cgroup v2) the container gets its own
    cgroup namespace, rooted at its cgroup, as the kubelet's containers do on v2. A pod with
    hostUsers: false gives the host ID that root inside is (`userns_owner`); the caller sets
    the request's `userns_fd` (nsbox/userns.py)."""
    start = image[0] if image is not None else None
    ident = security.identity(pod, c, start.user if start is not None else None)
    env = environment(pod, c, pod_ip, config, start.env if start is not None else None)
    args = argv(c, env, start)
    cwd = start.cwd if start is not None else (c.working_dir or "/")
    if image is not None:
        lower_cwd, lower, hide = image[1], image[2], []
    else:
        local = c.image if c.image and os.path.isdir(c.image) else ""
        lower_cwd, lower, hide = "", os.path.abspath(local) if local else "/", [paths.root.path]
    plan = mounts.container_root_plan(
        scratch=paths.container_dir(c.name),
        lower=lower,
        lower_cwd=lower_cwd,
        privileged=ident.privileged,
        read_only_root=c.security.read_only_root_filesystem,
        shm=paths.shm,
        etc_files=etc_files,
        volumes=[*volume_mounts(pod, c, paths), termination_message_mount(c, paths)],
        hide=hide,
        console=console,
        upper_size=mounts.upper_size(c.resources.ephemeral_storage_bytes),
        userns_owner=userns_owner,
    )
    if cwd != "/":
        # Made inside the new root, symbolic links followed as the container sees them (never out of it).
        root = plan[-1].target
        plan.insert(len(plan) - 1, native.MountOp("mkdir", mounts.in_root(root, cwd), root=root))
        if userns_owner and not c.security.read_only_root_filesystem:
            # A working directory nsbox made is the pod's root's, as its mount points' parents are.
            for d in [*mounts.made_parents([cwd]), cwd]:
                plan.insert(len(plan) - 1, native.MountOp("chown", root + d, owner=userns_owner))
    from nsbox import seccomp

    syscall_filter = seccomp.for_container(paths.root.path, pod, c, ident.caps.bounding)
    flags = native.CLONE_NEWNS
    join: list[tuple[int, int]] = []
    if pid_ns_fd >= 0:
        join.append((pid_ns_fd, native.CLONE_NEWPID))
    elif not pod.host_pid:
        flags |= native.CLONE_NEWPID
    return native.SpawnRequest(
        argv=args,
        exec_paths=executable_candidates(args[0], env, cwd=cwd),
        env=[f"{k}={v}" for k, v in env.items()],
        cwd=cwd,
        clone_flags=flags,
        unshare_flags=native.CLONE_NEWCGROUP if cgroup_ns else 0,
        join=join,
        ops=plan,
        uid=ident.uid,
        gid=ident.gid,
        groups=ident.groups,
        caps=ident.caps,
        no_new_privs=ident.no_new_privs,
        init=c.init,
        new_session_keyring=True,
        seccomp=syscall_filter.program if syscall_filter is not None else b"",
        seccomp_path=syscall_filter.path if syscall_filter is not None else "",
    )


def exec_request(
    pod: PodSpec, c: ContainerSpec, pid: int, command: list[str], *, pod_ip: str = "", started: dict | None = None
) -> tuple[native.SpawnRequest, list[int]]:
    """A request for `command` inside the running container whose main process is `pid`.
    A container that runs its image gives `started`, its recorded status: the user and the
    working directory it was started with (from its image); its variables are those of its
    main process, the image's included.

    Returns the request and the namespace fds it holds, which the caller
    closes once the process is spawned.
    """
    fds = []
    try:
        for name, _nstype in JOIN_ORDER:
            fds.append(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
    except FileNotFoundError:
        for fd in fds:
            os.close(fd)
        raise NsboxError(f'container "{c.name}" is not running') from None
    join = [(fd, nstype) for fd, (_, nstype) in zip(fds, JOIN_ORDER)]
    # A container with a cgroup namespace of its own (cgroup v2): the command joins it too.
    try:
        if os.stat(f"/proc/{pid}/ns/cgroup").st_ino != os.stat("/proc/self/ns/cgroup").st_ino:
            fds.append(os.open(f"/proc/{pid}/ns/cgroup", os.O_RDONLY | os.O_CLOEXEC))
            join.insert(0, (fds[-1], native.CLONE_NEWCGROUP))
    except FileNotFoundError:
        for fd in fds:
            os.close(fd)
        raise NsboxError(f'container "{c.name}" is not running') from None
    # A hostUsers: false pod's user namespace, joined last (nsbox/userns.py).
    from nsbox import userns

    userns_fd = userns.process_userns_fd(pid)
    if userns_fd >= 0:
        fds.append(userns_fd)
    if c.runs_image and started and started.get("user"):
        user = started["user"]
        who = security.User(user["uid"], user["gid"], list(user.get("supplementalGroups", [])))
        ident = security.identity(pod, c, who)
        env = _environ(pid)
        cwd = started.get("cwd") or "/"
    else:
        ident = security.identity(pod, c)
        config = None
        if c.env_from or any(e.ref_kind for e in c.env):
            # The values the container started with (objects may have changed since): its environ.
            from nsbox import projection

            config = projection.config_from_environ(c, _environ(pid))
        env = environment(pod, c, pod_ip, config)
        cwd = c.working_dir or "/"
    exe = find_executable(command[0], env, f"/proc/{pid}/root", cwd)
    program = b""
    try:
        if exe is None:
            where = "" if "/" in command[0] else " in $PATH"
            raise NsboxError(f'executable "{command[0]}" not found{where} in container "{c.name}"')
        if started and started.get("seccomp"):
            # The filter the container started with (docs/security.md, "System calls").
            from nsbox import seccomp

            program = seccomp.read_filter(started["seccomp"])
    except NsboxError:
        for fd in fds:
            os.close(fd)
        raise
    req = native.SpawnRequest(
        argv=command,
        exec_paths=[exe],
        env=[f"{k}={v}" for k, v in env.items()],
        cwd=cwd,
        join=join,
        uid=ident.uid,
        gid=ident.gid,
        groups=ident.groups,
        caps=ident.caps,
        no_new_privs=ident.no_new_privs,
        new_session_keyring=True,
        seccomp=program,
        userns_fd=userns_fd,
    )
    return req, fds
