"""Commands that make things: `apply`, `pod create`, `run`, `create configmap|secret generic`.

Flags become a PodSpec here (that is parsing); what happens to it is the runtime's
(nsbox.pods, nsbox.apply, nsbox.objects, nsbox.sources).
"""

from __future__ import annotations

import os
import sys

from nsbox.cli import command, print_error, print_object, print_warning, runtime, subcommand
from nsbox.errors import NsboxError
from nsbox.model import ContainerSpec, EnvVar, Handler, PodSpec, Resources, SecurityContext, Volume, VolumeMount

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    import argparse
    from typing import Any


# ---------------------------------------------------------------- apply


def apply_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filename", required=True, help="YAML or JSON file, or - for stdin")


@command("apply", "create the Pods of a manifest", apply_arguments)
def cmd_apply(args: argparse.Namespace) -> int:
    from nsbox import apply, manifest

    docs = manifest.load_documents(args.filename)
    configs: list[dict[str, Any]] = []
    try:
        pods, warnings = manifest.pods_from_documents(
            docs, namespace=args.namespace, namespace_explicit=args.namespace_given, configs=configs
        )
    except NsboxError as e:
        for w in getattr(e, "warnings", []):
            print_warning(w)
        raise
    for w in warnings:
        print_warning(w)
    rt = runtime(args)
    apply.check(rt, pods, configs)
    status = 0
    for outcome in apply.apply(rt, pods, configs):
        if outcome.error:
            print_error(outcome.error)
            status = 1
        else:
            print(f"{outcome.ref} {outcome.result}")
        for w in outcome.warnings:
            print_warning(w)
    return status


# ---------------------------------------------------------------- pod create


def pod_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label", "-l", action="append", metavar="K=V")
    p.add_argument("--grace-period", dest="pod_grace_period", type=int, metavar="S")
    p.add_argument("--restart", choices=["Always", "OnFailure", "Never"])
    p.add_argument("--share-pid", action="store_true")
    p.add_argument("--userns", action="store_true")  # hostUsers: false
    p.add_argument("--hostname")
    p.add_argument("--network", choices=["loopback", "bridge", "host"])
    p.add_argument("--volume", action="append", metavar="NAME[=HOSTPATH]")


def pod_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="pod_cmd", metavar="SUBCOMMAND")
    sub.required = True
    pc = subcommand(sub, "create", "create an empty pod (sandbox only)")
    pc.add_argument("name")
    pod_flags(pc)
    pc.add_argument("--cpu")
    pc.add_argument("--memory")


@command("pod", "pod commands (create)", pod_arguments)
def cmd_pod_create(args: argparse.Namespace) -> int:
    from nsbox import kube

    pod = pod_from_flags(args, args.name, "Always")
    for k, v, parse in (("cpu", args.cpu, kube.parse_cpu), ("memory", args.memory, kube.parse_memory)):
        if v:
            try:
                parse(v)
            except ValueError as e:
                raise NsboxError(f"--{k}: {e}") from None
            pod.annotations[f"nsbox.io/pod-{k}"] = v
    view = runtime(args).create(pod)
    print(view.spec.uid)
    return 0


def _kv_list(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise NsboxError(f'{what} "{item}" must be KEY=VALUE')
        k, v = item.split("=", 1)
        out[k] = v
    return out


def _int_arg(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise NsboxError(f'{what} must be a whole number, not "{value}"') from None


def pod_from_flags(args: argparse.Namespace, name: str, restart_default: str) -> PodSpec:
    from nsbox import kube

    problem = kube.validate_pod_name(name)
    if problem:
        raise NsboxError(f'invalid pod name "{name}": {problem}')
    if args.namespace and kube.validate_dns1123_label(args.namespace):
        raise NsboxError(f'invalid namespace "{args.namespace}": {kube.validate_dns1123_label(args.namespace)}')
    volumes = []
    for item in getattr(args, "volume", None) or []:
        vname, _, host = item.partition("=")
        if kube.validate_dns1123_label(vname):
            raise NsboxError(f'invalid volume name "{vname}": {kube.validate_dns1123_label(vname)}')
        if host:
            volumes.append(Volume(name=vname, kind="hostPath", host_path=os.path.abspath(host)))
        else:
            volumes.append(Volume(name=vname))
    pod = PodSpec(
        name=name,
        namespace=args.namespace,
        labels=_kv_list(getattr(args, "label", None), "label"),
        restart_policy=args.restart or restart_default,
        termination_grace_period=args.pod_grace_period if args.pod_grace_period is not None else 30,
        hostname=getattr(args, "hostname", None) or "",
        network=getattr(args, "network", None) or "loopback",
        share_process_namespace=bool(getattr(args, "share_pid", False)),
        host_users=not getattr(args, "userns", False),
        volumes=volumes,
    )
    if not pod.host_users and pod.network == "host":
        # The API server's rule for hostUsers: false and hostNetwork.
        raise NsboxError("--userns cannot be used with --network host (a user namespace needs the pod's own network)")
    if pod.termination_grace_period < 0:
        raise NsboxError("--grace-period must be >= 0")
    return pod


# ---------------------------------------------------------------- run


def container_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--privileged", action="store_true")
    p.add_argument(
        "--seccomp-profile",
        metavar="PROFILE",
        help="RuntimeDefault (the default), Unconfined, or localhost/PATH: a profile under ROOT/seccomp",
    )
    p.add_argument("--cap-add", action="append", metavar="CAP")
    p.add_argument("--cap-drop", action="append", metavar="CAP")
    p.add_argument("-e", "--env", action="append", metavar="K=V")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user", metavar="UID[:GID]")
    p.add_argument("--mount", action="append", metavar="VOL:PATH[:ro]")
    p.add_argument("--pre-stop", metavar="SHELL_CMD")
    p.add_argument("--cpu")
    p.add_argument("--memory")
    p.add_argument(
        "--ephemeral-storage",
        metavar="SIZE",
        help="what it may write to its root (default 1Gi), as limits.ephemeral-storage",
    )
    p.add_argument("--init", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")


def run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("command", nargs="*")
    p.add_argument("--image", metavar="REF", help="run this image (CMD, if given, replaces its entrypoint)")
    p.add_argument(
        "--image-pull-policy",
        choices=["Always", "IfNotPresent", "Never"],
        metavar="POLICY",
        help="Always, IfNotPresent or Never, as in a manifest (default: Always for :latest or no tag, "
        "else IfNotPresent)",
    )
    p.add_argument("--pod", help="add the container to this existing pod")
    pod_flags(p)
    container_flags(p)
    p.add_argument("--rm", action="store_true", help="remove the pod when its container has ended")
    p.add_argument("-a", "--attach", action="store_true", help="stream output, wait, exit with the container's code")


@command("run", "run a command in a new pod (or, with --pod, a new container in a pod)", run_arguments)
def cmd_run(args: argparse.Namespace) -> int:
    rt = runtime(args)
    stdio = None
    master = -1
    stdin_to = [-1]  # our end of a `run -i` stdin pipe, until the thread that feeds it owns it
    if args.tty:
        from nsbox import tty

        master, slave = tty.open_pty()
        stdio = (slave, slave, slave)
    elif args.interactive:
        # A pipe, never our own stdin: a terminal handed in could be read (or driven) by
        # whatever the container leaves running after we return (docs/security.md, section 7).
        stdin_from, stdin_to[0] = os.pipe2(os.O_CLOEXEC)
        stdio = (stdin_from, 1, 2)
    try:
        return _run(args, rt, stdio, master, stdin_to)
    finally:
        if master >= 0:
            os.close(master)
        if stdio is not None:
            _close_quietly(stdio[0])
        if stdin_to[0] >= 0:
            _close_quietly(stdin_to[0])


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _run(
    args: argparse.Namespace, rt: Any, stdio: tuple[int, int, int] | None, master: int, stdin_to: list[int]
) -> int:
    if args.image and not os.path.isdir(args.image):
        _have_image(rt, args.image, args.image_pull_policy)
    if args.pod:
        c = container_from_flags(args, args.name, args.command)
        view = rt.add_container(args.namespace, args.pod, c, stdio=stdio)
        pod_name = args.pod
    else:
        pod = pod_from_flags(args, args.name, "Never")
        pod.auto_remove = args.rm
        pod.containers = [container_from_flags(args, args.name, args.command)]
        follow = args.attach or args.interactive or args.tty
        view = rt.create(pod, stdio=stdio, remove_on_start_failure=True, follow=follow)
        pod_name = args.name
    if not (args.attach or args.interactive or args.tty):
        print(f"pod/{pod_name} created" if not args.pod else f"container/{args.name} started in pod/{pod_name}")
        return 0
    if master >= 0 and stdio is not None:
        _close_quietly(stdio[0])  # the container has the terminal's slave side now
        return attach_terminal(rt, view, args.name, master, forward_stdin=args.interactive)
    if stdin_to[0] >= 0:
        _forward_stdin(stdin_to[0])
        stdin_to[0] = -1  # the thread closes it
    return attach(rt, view, args.name)


def _have_image(rt: Any, ref: str, policy: str | None) -> None:
    """`run --image`: the image is here before the pod is made, or the command fails as
    `podman run` does, with nothing created. With policy Always the pod's own start pulls
    again, as the kubelet does (cheap when the registry has nothing new)."""
    from nsbox import images

    store = images.Store(rt.image_store)
    store.ensure(images.normalize(ref), "Never" if policy == "Never" else "IfNotPresent")


def _seccomp_arg(value: str | None) -> tuple[str, str]:
    """`--seccomp-profile`: the container's seccompProfile (type, localhostProfile)."""
    if value is None:
        return "", ""
    if value in ("RuntimeDefault", "Unconfined"):
        return value, ""
    path = value.removeprefix("localhost/")
    if path == value or not path:
        raise NsboxError(f'--seccomp-profile "{value}": must be RuntimeDefault, Unconfined or localhost/PATH')
    if path.startswith("/") or ".." in path.split("/"):
        raise NsboxError(f'--seccomp-profile "{value}": PATH must be relative to ROOT/seccomp, without ".."')
    return "Localhost", path


def container_from_flags(args: argparse.Namespace, name: str, command: list[str]) -> ContainerSpec:
    from nsbox import kube

    problem = kube.validate_dns1123_label(name)
    if problem:
        raise NsboxError(f'invalid container name "{name}": {problem}')
    image, policy = getattr(args, "image", None) or "", ""
    if os.path.isdir(image):
        image = os.path.abspath(image)  # a local directory is the root, as in a manifest
    elif image:
        policy = getattr(args, "image_pull_policy", None) or kube.default_pull_policy(image)
    if not command and not policy:
        raise NsboxError("a command is required: nsbox run NAME [options] -- COMMAND [ARG...] (or --image REF)")
    sc = SecurityContext(privileged=args.privileged)
    sc.seccomp, sc.seccomp_localhost = _seccomp_arg(getattr(args, "seccomp_profile", None))
    try:
        sc.cap_add = [kube.normalize_capability(c) for c in args.cap_add or []]
        sc.cap_drop = [kube.normalize_capability(c) for c in args.cap_drop or []]
    except ValueError as e:
        raise NsboxError(str(e)) from None
    if args.user:
        uid, _, gid = args.user.partition(":")
        sc.run_as_user = _int_arg(uid, "--user")
        if gid:
            sc.run_as_group = _int_arg(gid, "--user group")
    res = Resources()
    try:
        if args.cpu:
            res.cpu_millis = kube.parse_cpu(args.cpu)
        if args.memory:
            res.memory_bytes = kube.parse_memory(args.memory)
        if getattr(args, "ephemeral_storage", None):
            res.ephemeral_storage_bytes = kube.parse_memory(args.ephemeral_storage)
    except ValueError as e:
        raise NsboxError(str(e)) from None
    res.cpu_request_millis, res.memory_request_bytes = kube.container_requests(res)  # requests = limits, as defaulted
    mounts = []
    for m in args.mount or []:
        parts = m.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "ro"):
            raise NsboxError(f'--mount "{m}" must be VOLUME:PATH or VOLUME:PATH:ro')
        mounts.append(VolumeMount(name=parts[0], mount_path=parts[1], read_only=len(parts) == 3))
    env = [EnvVar(name=k, value=v) for k, v in _kv_list(args.env, "environment variable").items()]
    return ContainerSpec(
        name=name,
        command=command,
        image=image,
        image_pull_policy=policy,
        env=env,
        working_dir=args.workdir or "",
        volume_mounts=mounts,
        security=sc,
        resources=res,
        pre_stop=Handler("exec", command=["/bin/sh", "-c", args.pre_stop]) if args.pre_stop else None,
        init=args.init,
        stdin=args.interactive,
        tty=args.tty,
    )


def _waiter(rt: Any, view: Any, container: str) -> tuple[Any, dict[str, Any]]:
    import threading

    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.setdefault("code", rt.wait_exit(view, container)), daemon=True)
    t.start()
    return t, result


def attach_terminal(rt: Any, view: Any, container: str, master: int, *, forward_stdin: bool) -> int:
    """`run -t`: relay the container's terminal until it ends (and, with -i, what the
    user types into it); its exit code becomes ours."""
    from nsbox import tty

    waiter, result = _waiter(rt, view, container)
    tty.relay(master, finished=lambda: not waiter.is_alive(), forward_stdin=forward_stdin)
    waiter.join()
    code = result.get("code")
    return 1 if code is None else code


def _forward_stdin(pipe: int) -> None:
    """`run -i`: copy our stdin into the container's pipe, in a thread of its own (the main one
    streams the log), until our end of input or the container's end; then close the pipe."""
    import threading

    def copy() -> None:
        try:
            while data := os.read(sys.stdin.fileno(), 65536):
                view = memoryview(data)
                while view:
                    view = view[os.write(pipe, view) :]
        except OSError:  # EPIPE: nothing reads it any more
            pass
        finally:
            os.close(pipe)

    threading.Thread(target=copy, daemon=True).start()


def attach(rt: Any, view: Any, container: str) -> int:
    """Stream a container's log until it ends for good; its exit code becomes ours."""
    from nsbox import logs

    st = view.container_status(container) or {}
    path = view.paths.log_file(view.spec.namespace, view.spec.name, container, st.get("restartCount", 0))
    follower = logs.Follower(path, file=view.logs.get(container))
    records = follower.poll()  # open it now: with --rm it is removed when the pod ends
    waiter, result = _waiter(rt, view, container)
    while True:
        finished = not waiter.is_alive()
        _write_records(logs.render(iter(records + follower.poll()), timestamps=False))
        records = []
        if finished:
            break
        waiter.join(0.05)
    code = result.get("code")
    return 1 if code is None else code


def _write_records(items: Any) -> None:
    """Each record to the stream the container wrote it to."""
    for stream, data in items:
        out = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        out.write(data)
        out.flush()


# ---------------------------------------------------------------- create configmap|secret generic


def config_source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--from-literal", action="append", metavar="KEY=VALUE")
    p.add_argument(
        "--from-file", action="append", metavar="[KEY=]PATH", help="a file, or each regular file of a directory"
    )
    p.add_argument("--from-env-file", action="append", metavar="PATH", help="KEY=VALUE lines")
    p.add_argument("-o", "--output", help="json, yaml or name: print the object")
    p.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        choices=["none", "client", "server"],
        help="client: show the object, store nothing",
    )


def create_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="create_kind", metavar="KIND")
    sub.required = True
    config_source_flags(subcommand(sub, "configmap", "a ConfigMap", aliases=["cm"]))
    secret = subcommand(sub, "secret", "a Secret")
    secret_sub = secret.add_subparsers(dest="secret_kind", metavar="TYPE")
    secret_sub.required = True
    generic = subcommand(secret_sub, "generic", "a Secret from literals and files")
    config_source_flags(generic)
    generic.add_argument("--type", help="the Secret's type (default Opaque)")


@command("create", "create a ConfigMap or a Secret from literals and files", create_arguments)
def cmd_create(args: argparse.Namespace) -> int:
    """`create configmap NAME` / `create secret generic NAME`: an object from kubectl's sources."""
    from nsbox import objects, sources

    kind = "Secret" if args.create_kind == "secret" else "ConfigMap"
    if args.output not in (None, "json", "yaml", "name"):
        raise NsboxError(f'unknown output format "{args.output}": use json, yaml or name')
    obj = sources.build(
        kind,
        args.name,
        args.namespace,
        files=args.from_file or [],
        literals=args.from_literal or [],
        env_files=args.from_env_file or [],
        secret_type=getattr(args, "type", None) or "",
    )
    rt = runtime(args)
    if args.dry_run == "server":
        objects.check_absent(rt.root.path, kind, args.namespace, args.name)
    elif args.dry_run in (None, "none"):
        objects.create(rt.root.path, obj)
        rt.config_changed(args.namespace, kind, args.name)
    if args.output in ("json", "yaml"):
        print_object(obj, args.output)
    elif args.output == "name":
        print(objects.ref(obj))
    else:
        suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(args.dry_run or "", "")
        print(f"{objects.ref(obj)} created{suffix}")
    return 0
