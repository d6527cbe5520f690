"""The `nsbox` command: argument parsing and output, nothing else.

Each command is a small function over `nsbox.pods.Runtime`. Errors the user
can act on arrive as NsboxError and leave as one `error:` line per problem
with exit code 1; usage errors exit 2 (argparse). Imports are lazy where they
are expensive (yaml, the manifest code), so that `nsbox get pods` and
`nsbox run` start fast.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time

from nsbox import __version__
from nsbox.errors import NsboxError
from nsbox.model import ContainerSpec, EnvVar, PodSpec, Resources, SecurityContext, Volume, VolumeMount
from nsbox.state import DEFAULT_ROOT

TYPE_CHECKING = False          # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn

    from nsbox.pods import PendingDelete

DELETE_WINDOW = 64             # pods one `delete` ends at the same time (a socket each)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = fn
        return fn
    return register


def runtime(args: argparse.Namespace) -> Any:
    from nsbox.pods import Runtime
    return Runtime(args.root)


# ---------------------------------------------------------------- pod construction from flags

def _kv_list(items: list[str], what: str) -> dict[str, str]:
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
        volumes=volumes,
    )
    if pod.termination_grace_period < 0:
        raise NsboxError("--grace-period must be >= 0")
    return pod


def container_from_flags(args: argparse.Namespace, name: str, command: list[str]) -> ContainerSpec:
    from nsbox import kube
    problem = kube.validate_dns1123_label(name)
    if problem:
        raise NsboxError(f'invalid container name "{name}": {problem}')
    if not command:
        raise NsboxError("a command is required: nsbox run NAME [options] -- COMMAND [ARG...]")
    sc = SecurityContext(privileged=args.privileged)
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
    except ValueError as e:
        raise NsboxError(str(e)) from None
    res.cpu_request_millis, res.memory_request_bytes = kube.container_requests(res)   # requests = limits, as defaulted
    mounts = []
    for m in args.mount or []:
        parts = m.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "ro"):
            raise NsboxError(f'--mount "{m}" must be VOLUME:PATH or VOLUME:PATH:ro')
        mounts.append(VolumeMount(name=parts[0], mount_path=parts[1], read_only=len(parts) == 3))
    env = [EnvVar(name=k, value=v) for k, v in _kv_list(args.env, "environment variable").items()]
    return ContainerSpec(
        name=name, command=command, env=env, working_dir=args.workdir or "",
        volume_mounts=mounts, security=sc, resources=res,
        pre_stop=["/bin/sh", "-c", args.pre_stop] if args.pre_stop else [],
        init=args.init, stdin=args.interactive, tty=args.tty,
    )


# ---------------------------------------------------------------- commands

@command("pod create")
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


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    rt = runtime(args)
    stdio = (0, 1, 2) if args.interactive or args.tty else None
    master = -1
    if args.tty:
        from nsbox import tty
        master, slave = tty.open_pty()
        stdio = (slave, slave, slave)
    try:
        return _run(args, rt, stdio, master)
    finally:
        if master >= 0:
            os.close(master)
            if stdio is not None:
                _close_quietly(stdio[0])


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _run(args: argparse.Namespace, rt: Any, stdio: tuple[int, int, int] | None, master: int) -> int:
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
    if master >= 0:
        _close_quietly(stdio[0])         # the container has the terminal's slave side now
        return attach_terminal(rt, view, args.name, master)
    return attach(rt, view, args.name)


def _waiter(rt: Any, view: Any, container: str) -> tuple[Any, dict[str, Any]]:
    import threading
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.setdefault("code", rt.wait_exit(view, container)), daemon=True)
    t.start()
    return t, result


def attach_terminal(rt: Any, view: Any, container: str, master: int) -> int:
    """`run -t`: relay the container's terminal until it ends; its exit code becomes ours."""
    from nsbox import tty
    waiter, result = _waiter(rt, view, container)
    tty.relay(master, finished=lambda: not waiter.is_alive())
    waiter.join()
    code = result.get("code")
    return 1 if code is None else code


def attach(rt: Any, view: Any, container: str) -> int:
    """Stream a container's log until it ends for good; its exit code becomes ours."""
    from nsbox import logs
    st = view.container_status(container) or {}
    path = view.paths.log_file(view.spec.namespace, view.spec.name, container, st.get("restartCount", 0))
    follower = logs.Follower(path, file=view.logs.get(container))
    records = follower.poll()            # open it now: with --rm it is removed when the pod ends
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


@command("apply")
def cmd_apply(args: argparse.Namespace) -> int:
    from nsbox import manifest
    docs = manifest.load_documents(args.filename)
    configs: list[dict[str, Any]] = []
    try:
        pods, warnings = manifest.pods_from_documents(docs, namespace=args.namespace,
                                                      namespace_explicit=args.namespace_given,
                                                      configs=configs)
    except NsboxError as e:
        for w in getattr(e, "warnings", []):
            print(f"warning: {w}", file=sys.stderr)
        raise
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    rt = runtime(args)
    # What only this machine can tell (executables, hostPaths) is checked for every new pod
    # before any is created, like the validation.
    problems = _config_update_errors(rt, configs)
    for pod in pods:
        if not rt.root.lookup(pod.namespace, pod.name):
            try:
                rt.check(pod)
            except NsboxError as e:
                problems.append(f"pod/{pod.name}: {e}")
    if problems:
        raise NsboxError("\n".join(problems))
    status = _apply_configs(rt, configs)     # first: the file's pods may use them
    for pod in pods:
        existing = rt.root.lookup(pod.namespace, pod.name)
        if existing:
            old = rt.view(rt.root.pod(existing))
            if old is not None and manifest.same_pod(old.spec, pod):
                print(f"pod/{pod.name} unchanged")
                continue
            print(f'error: pod "{pod.name}" already exists with a different spec '
                  f"(pods are immutable: delete it first)", file=sys.stderr)
            status = 1
            continue
        try:
            view = rt.create(pod)
            print(f"pod/{pod.name} created")
            for error in view.start_errors:   # the pod exists; its status shows StartError
                print(f"warning: {error}", file=sys.stderr)
        except NsboxError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
    return status


def _config_update_errors(rt: Any, configs: list[dict[str, Any]]) -> list[str]:
    if not configs:
        return []
    from nsbox import objects
    return [p for obj in configs for p in objects.update_errors(
        objects.load(rt.root.path, obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]), obj)]


def _apply_configs(rt: Any, configs: list[dict[str, Any]]) -> int:
    """Store the ConfigMaps and Secrets of an `apply`; print what became of each."""
    from nsbox import objects
    status = 0
    for obj in configs:
        meta = obj["metadata"]
        try:
            result = objects.apply(rt.root.path, obj)
        except NsboxError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{objects.ref(obj)} {result}")
        if result != "unchanged":
            rt.config_changed(meta["namespace"], obj["kind"], meta["name"])
    return status


@command("create")
def cmd_create(args: argparse.Namespace) -> int:
    """`create configmap NAME` / `create secret generic NAME`: an object from kubectl's sources."""
    from nsbox import objects
    kind = "Secret" if args.create_kind == "secret" else "ConfigMap"
    if args.output not in (None, "json", "yaml", "name"):
        raise NsboxError(f'unknown output format "{args.output}": use json, yaml or name')
    if args.from_env_file and (args.from_file or args.from_literal):
        raise NsboxError("from-env-file cannot be combined with from-file or from-literal")
    sources = objects.Sources(kind, args.name)
    for source in args.from_file or []:
        sources.file(source)
    for source in args.from_literal or []:
        sources.literal(source)
    for source in args.from_env_file or []:
        sources.env_file(source)
    doc = sources.object(args.namespace, getattr(args, "type", None) or "")
    obj, problems, _ = objects.read_document(doc, "", args.namespace, False, {})
    if obj is None:
        raise NsboxError("\n".join(f'{kind} "{args.name}" is invalid: {p}' for p in problems))
    dry_run = args.dry_run not in (None, "none")
    rt = runtime(args)
    if dry_run:
        if args.dry_run == "server" and objects.load(rt.root.path, kind, args.namespace, args.name) is not None:
            raise NsboxError(f'failed to create {kind.lower()}: {objects.KINDS[kind]} "{args.name}" already exists')
    else:
        objects.create(rt.root.path, obj)
        rt.config_changed(args.namespace, kind, args.name)
    if args.output in ("json", "yaml"):
        _print_object(obj, args.output)
    elif args.output == "name":
        print(objects.ref(obj))
    else:
        suffix = {"client": " (dry run)", "server": " (server dry run)"}.get(args.dry_run or "", "")
        print(f"{objects.ref(obj)} created{suffix}")
    return 0


def _print_object(doc: dict[str, Any], output: str) -> None:
    """One object (or a List) as kubectl prints it: keys sorted."""
    if output == "json":
        print(json.dumps(doc, indent=4, sort_keys=True))
    else:
        import yaml
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=True, default_flow_style=False))


CONFIG_KINDS = {"configmaps": "ConfigMap", "configmap": "ConfigMap", "cm": "ConfigMap",
                "secrets": "Secret", "secret": "Secret"}


def _get_configs(args: argparse.Namespace) -> int:
    """`get configmaps|secrets`: their tables show no values; -o yaml|json shows a Secret's (base64)."""
    from nsbox import objects, status
    kind = CONFIG_KINDS[args.kind]
    root = os.path.abspath(args.root)
    code = 0
    found = []
    if args.names:
        for name in args.names:
            obj = objects.load(root, kind, args.namespace, name)
            if obj is None:
                print(f'error: {objects.KINDS[kind]} "{name}" not found', file=sys.stderr)
                code = 1
            else:
                found.append(obj)
    else:
        ns = None if args.all_namespaces else args.namespace
        found = [o for o in (objects.load(root, kind, n, name) for n, name in objects.names(root, kind, ns)) if o]
    if args.selector:
        found = [o for o in found if status.match_selector(o["metadata"].get("labels") or {}, args.selector)]
    out = args.output or ""
    if out in ("json", "yaml"):
        if len(args.names) == 1:
            if found:
                _print_object(found[0], out)
        else:
            _print_object({"apiVersion": "v1", "kind": "List", "items": found,
                           "metadata": {"resourceVersion": ""}}, out)
    elif out == "name":
        for obj in found:
            print(objects.ref(obj))
    elif out in ("", "wide"):
        if found:
            print(objects.table(found, all_namespaces=args.all_namespaces))
        elif not args.names:
            where = "" if args.all_namespaces else f" in {args.namespace} namespace"
            print(f"No resources found{where}.", file=sys.stderr)
    else:
        raise NsboxError(f'unknown output format "{out}": use wide, json, yaml or name')
    return code


def _delete_configs(rt: Any, targets: list[tuple[str, str, str]]) -> int:
    """Delete ConfigMaps and Secrets by (kind, namespace, name): `configmap "NAME" deleted`."""
    from nsbox import objects
    code = 0
    for kind, ns, name in targets:
        if objects.delete(rt.root.path, kind, ns, name):
            print(f'{kind.lower()} "{name}" deleted')
            rt.config_changed(ns, kind, name)
        else:
            print(f'error: {objects.KINDS[kind]} "{name}" not found', file=sys.stderr)
            code = 1
    return code


@command("get")
def cmd_get(args: argparse.Namespace) -> int:
    if args.kind in CONFIG_KINDS:
        return _get_configs(args)
    from nsbox import status
    rt = runtime(args)
    names = args.names
    ns = None if args.all_namespaces else args.namespace
    if names:
        views = [rt.get(args.namespace, n) for n in names]
    else:
        views = list(rt.list(ns))
    if args.selector:
        views = [v for v in views if status.match_selector(v.spec.labels, args.selector)]
    out = args.output or ""
    if out in ("json", "yaml"):
        objs = [status.pod_object(v) for v in views]
        doc = objs[0] if len(names) == 1 else {"apiVersion": "v1", "kind": "List", "items": objs,
                                               "metadata": {"resourceVersion": ""}}
        if out == "json":
            print(json.dumps(doc, indent=4))
        else:
            import yaml
            sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    elif out == "name":
        for v in views:
            print(f"pod/{v.spec.name}")
    elif out in ("", "wide"):
        if not views:
            where = "" if args.all_namespaces else f" in {args.namespace} namespace"
            print(f"No resources found{where}.", file=sys.stderr)
            return 0
        print(status.table(views, wide=out == "wide", all_namespaces=args.all_namespaces))
    else:
        raise NsboxError(f'unknown output format "{out}": use wide, json, yaml or name')
    return 0


@command("inspect")
def cmd_inspect(args: argparse.Namespace) -> int:
    from nsbox import cgroups, status
    v = runtime(args).get(args.namespace, args.pod)
    if args.container and v.spec.container(args.container) is None:
        raise NsboxError(f'container "{args.container}" not found in pod "{args.pod}"')
    print(json.dumps(status.inspect(v, args.container, cgroups.detect()), indent=2))
    return 0


@command("describe")
def cmd_describe(args: argparse.Namespace) -> int:
    from nsbox import cgroups, status
    rt = runtime(args)
    for i, name in enumerate(args.names):
        if i:
            print()
        print(status.describe(rt.get(args.namespace, name), cgroups.detect()))
    return 0


@command("logs")
def cmd_logs(args: argparse.Namespace) -> int:
    from nsbox import logs
    from nsbox.pods import pick_container
    since_ns = _logs_since(args)
    if args.tail is not None and args.tail < -1:
        raise NsboxError("--tail must be greater than or equal to -1")
    rt = runtime(args)
    v = rt.get(args.namespace, args.pod)
    c = pick_container(v, args.container)
    st = v.container_status(c.name) or {}
    rc = st.get("restartCount", 0)
    if args.previous:
        if rc == 0:
            raise NsboxError(f'previous terminated container "{c.name}" in pod "{args.pod}" not found')
        rc -= 1
    path = v.paths.log_file(v.spec.namespace, v.spec.name, c.name, rc)
    records = logs.read_records(path, None if args.tail == -1 else args.tail)   # -1: all, as kubectl
    if since_ns is not None:
        records = logs.since(records, since_ns)
    _write_log(logs.render(iter(records), args.timestamps))
    if not args.follow or args.previous:
        return 0
    follower = logs.Follower(path, os.path.getsize(path) if os.path.exists(path) else 0)
    while True:
        _write_log(logs.render(iter(follower.poll()), args.timestamps))
        now = rt.view(v.paths)
        if now is None or not now.watcher_alive:
            break
        cur = now.container_status(c.name) or {}
        if cur.get("restartCount", 0) != rc or "running" not in cur.get("state", {}):
            _write_log(logs.render(iter(follower.poll()), args.timestamps))
            break
        time.sleep(0.1)
    return 0


def _logs_since(args: argparse.Namespace) -> int | None:
    """--since / --since-time as kubectl checks them: the time (ns since the epoch) from
    which records are shown, or None for all of them."""
    from nsbox import logs
    if args.since is not None and args.since_time is not None:
        raise NsboxError("at most one of `sinceTime` or `sinceSeconds` may be specified")
    if args.since_time is not None:
        t = logs.stamp_ns(args.since_time)
        if t is None:
            raise NsboxError(f'invalid argument "{args.since_time}" for "--since-time" flag: '
                             "must be an RFC3339 time, e.g. 2006-01-02T15:04:05Z")
        return t
    if args.since is None:
        return None
    ns = logs.parse_go_duration(args.since)
    if ns is None:
        raise NsboxError(f'invalid argument "{args.since}" for "--since" flag: '
                         f'time: invalid duration "{args.since}"')
    seconds = (ns + 500_000_000) // 1_000_000_000      # kubectl rounds it to whole seconds
    if seconds < 0:
        raise NsboxError("--since must be greater than 0")
    if seconds == 0:
        return None                                    # kubectl sends no sinceSeconds for 0
    return time.time_ns() - seconds * 1_000_000_000


def _write_log(items: Any) -> None:
    """kubectl logs prints stdout and stderr records alike on its stdout, in the order
    the container wrote them (the log file's order)."""
    out = sys.stdout.buffer
    for _, data in items:
        out.write(data)
        out.flush()


def _write_records(items: Any) -> None:
    for stream, data in items:
        out = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        out.write(data)
        out.flush()


@command("exec")
def cmd_exec(args: argparse.Namespace) -> int:
    if not args.command:
        raise NsboxError("a command is required: nsbox exec POD [-c CONTAINER] -- COMMAND [ARG...]")
    return runtime(args).exec(args.namespace, args.pod, args.container, args.command,
                              stdin=args.interactive, tty=args.tty)


@command("delete")
def cmd_delete(args: argparse.Namespace) -> int:
    rt = runtime(args)
    targets: list[tuple[str, str]] = []
    if args.kind in CONFIG_KINDS:
        kind = CONFIG_KINDS[args.kind]
        if args.all:
            from nsbox import objects
            names = [n for _, n in objects.names(rt.root.path, kind, args.namespace)]
        elif not args.names:
            raise NsboxError("resource(s) were provided, but no name was specified")
        else:
            names = args.names
        return _delete_configs(rt, [(kind, args.namespace, n) for n in names])
    config_status = 0
    if args.filename:
        from nsbox import manifest
        configs: list[tuple[str, str, str]] = []
        targets = manifest.pod_names_from_documents(manifest.load_documents(args.filename), args.namespace,
                                                    configs=configs)
        config_status = _delete_configs(rt, configs)
        if configs and not targets:
            return config_status
    elif args.all:
        targets = [(v.spec.namespace, v.spec.name) for v in rt.list(args.namespace)]
    else:
        targets = [(args.namespace, n) for n in args.names]
    if not targets and not args.all:
        raise NsboxError("resource(s) were provided, but no name was specified")
    if args.force:
        print("warning: Immediate deletion does not wait for confirmation that the running "
              "resource has been terminated. The resource may continue to run on the cluster "
              "indefinitely.", file=sys.stderr)
    # As kubectl does: every pod is asked first, then waited for, so that their grace
    # periods run at the same time (a window keeps the open sockets few).
    status = 0
    pending: collections.deque[PendingDelete] = collections.deque()

    def finish(p: PendingDelete) -> None:
        nonlocal status
        try:
            p.finish(args.wait)
            print(f'pod "{p.name}" {"force deleted" if args.force else "deleted"}')
        except NsboxError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1

    for ns, name in targets:
        try:
            pending.append(rt.request_delete(ns, name, grace=args.grace_period, force=args.force))
        except NsboxError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
        if len(pending) >= DELETE_WINDOW:
            finish(pending.popleft())
    while pending:
        finish(pending.popleft())
    return status or config_status


@command("wait")
def cmd_wait(args: argparse.Namespace) -> int:
    from nsbox import status
    from nsbox.errors import NotFound
    rt = runtime(args)
    target = args.target.split("/", 1)[-1]
    cond = args.condition
    deadline = time.monotonic() + parse_duration(args.timeout)
    while True:
        try:
            v = rt.get(args.namespace, target)
        except NotFound:
            if cond == "delete":
                return 0
            raise
        if cond.startswith("condition="):
            want = cond.split("=", 1)[1].lower()
            conds = {c["type"].lower(): c["status"] for c in status.pod_object(v)["status"]["conditions"]}
            if conds.get(want) == "True":
                print(f"pod/{target} condition met")
                return 0
        elif cond.startswith("phase="):
            if status.phase(v).lower() == cond.split("=", 1)[1].lower():
                print(f"pod/{target} condition met")
                return 0
        elif cond != "delete":
            raise NsboxError(f'unrecognized condition "{cond}": use condition=Ready, delete or phase=PHASE')
        if time.monotonic() >= deadline:
            print(f"error: timed out waiting for the condition on pods/{target}", file=sys.stderr)
            return 1
        time.sleep(0.1)


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * units[suffix]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        raise NsboxError(f'invalid duration "{text}" (e.g. 30s, 2m)') from None


@command("top")
def cmd_top(args: argparse.Namespace) -> int:
    from nsbox import cgroups, kube
    cg = cgroups.detect()
    rt = runtime(args)
    views = [rt.get(args.namespace, args.name)] if args.name else list(rt.list(args.namespace))
    rows = [["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"] if args.containers else ["NAME", "CPU(cores)", "MEMORY(bytes)"]]
    for v in views:
        targets = [(c.name, cg.container_path(v.spec.uid, c.name)) for c in v.spec.containers] \
            if args.containers else [("", cg.pod_path(v.spec.uid))]
        for cname, rel in targets:
            a = cg.stats(rel).get("cpu_usage_ns")
            time.sleep(0.0)
            t0 = time.monotonic()
            mem = cg.stats(rel).get("memory_bytes")
            cpu = "-"
            if a is not None:
                time.sleep(0.2)
                b = cg.stats(rel).get("cpu_usage_ns") or a
                cpu = f"{int((b - a) / 1e6 / (time.monotonic() - t0 + 1e-9))}m"
            memtxt = kube.format_quantity_bytes(mem) if mem is not None else "-"
            rows.append(([v.spec.name, cname] if args.containers else [v.spec.name]) + [cpu, memtxt])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


@command("doctor")
def cmd_doctor(args: argparse.Namespace) -> int:
    from nsbox import doctor
    return doctor.run(args.root)


@command("gc")
def cmd_gc(args: argparse.Namespace) -> int:
    for line in runtime(args).gc(idle_bridges=args.all):
        print(line)
    return 0


@command("demo")
def cmd_demo(args: argparse.Namespace) -> int:
    from nsbox import demo
    return demo.run(args.which)


@command("version")
def cmd_version(args: argparse.Namespace) -> int:
    import platform
    print(f"nsbox {__version__}")
    print(f"python {platform.python_version()}")
    print(f"kernel {platform.release()}")
    return 0


# ---------------------------------------------------------------- the parser

class _NotBuilt:
    """Stands for the parser of a command other than the one being run: its options are not built.
    Making all fifteen sub-parsers costs more than parsing; help and errors of the command that runs
    are unchanged, and without a known command word the whole parser is built."""

    def add_argument(self, *args: Any, **kw: Any) -> None:
        pass

    def add_subparsers(self, **kw: Any) -> "_NotBuilt":
        return self

    def add_parser(self, *args: Any, **kw: Any) -> "_NotBuilt":
        return self


def _command_word(argv: list[str]) -> str | None:
    """The command `argv` runs ("get", "pod", ...), or None when it names none or asks for help."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return None
        if arg in ("--root", "-n", "--namespace"):
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return None


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, sized by os.get_terminal_size. argparse makes one per
    add_argument, and its own sizing imports shutil (bz2, lzma, fnmatch: 3 ms per command)."""

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS") or os.get_terminal_size(sys.__stdout__.fileno()).columns)
        except (ValueError, OSError, AttributeError):
            columns = 80
        super().__init__(prog, width=max(columns - 2, 20))


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `only` (a command word), that command's part of it."""
    common = _Parser(add_help=False)
    common.add_argument("--root", default=argparse.SUPPRESS, help=f"state directory (default $NSBOX_ROOT or {DEFAULT_ROOT})")
    common.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="Kubernetes namespace (default: default)")

    p = _Parser(prog="nsbox", parents=[common],
                                description="Kubernetes-style pods on one Linux machine.")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    def add(name: str, help: str, **kw: Any) -> Any:
        if only is not None and name != only:
            return _NotBuilt()
        return sub.add_parser(name, help=help, parents=[common], **kw)

    a = add("apply", "create the Pods of a manifest")
    a.add_argument("-f", "--filename", required=True, help="YAML or JSON file, or - for stdin")

    pod = add("pod", "pod commands (create)")
    podsub = pod.add_subparsers(dest="pod_cmd", metavar="SUBCOMMAND")
    podsub.required = True
    pc = podsub.add_parser("create", help="create an empty pod (sandbox only)", parents=[common])
    pc.add_argument("name")
    _pod_flags(pc)
    pc.add_argument("--cpu")
    pc.add_argument("--memory")

    r = add("run", "run a command in a new pod (or, with --pod, a new container in a pod)")
    r.add_argument("name")
    r.add_argument("command", nargs="*")
    r.add_argument("--pod", help="add the container to this existing pod")
    _pod_flags(r)
    _container_flags(r)
    r.add_argument("--rm", action="store_true", help="remove the pod when its container has ended")
    r.add_argument("-a", "--attach", action="store_true", help="stream output, wait, exit with the container's code")

    cr = add("create", "create a ConfigMap or a Secret from literals and files")
    crsub = cr.add_subparsers(dest="create_kind", metavar="KIND")
    crsub.required = True
    cm = crsub.add_parser("configmap", aliases=["cm"], help="a ConfigMap", parents=[common])
    _config_source_flags(cm)
    se = crsub.add_parser("secret", help="a Secret", parents=[common])
    sesub = se.add_subparsers(dest="secret_kind", metavar="TYPE")
    sesub.required = True
    sg = sesub.add_parser("generic", help="a Secret from literals and files", parents=[common])
    _config_source_flags(sg)
    sg.add_argument("--type", help="the Secret's type (default Opaque)")

    g = add("get", "list pods, configmaps or secrets")
    g.add_argument("kind", choices=["pods", "pod", "po", *CONFIG_KINDS], metavar="pods|configmaps|secrets")
    g.add_argument("names", nargs="*")
    g.add_argument("-o", "--output")
    g.add_argument("-l", "--selector")
    g.add_argument("-A", "--all-namespaces", action="store_true")

    i = add("inspect", "runtime details (PIDs, cgroups, namespaces, logs) as JSON")
    i.add_argument("pod")
    i.add_argument("-c", "--container")

    d = add("describe", "show everything about a pod")
    d.add_argument("kind", choices=["pods", "pod", "po"], metavar="pod")
    d.add_argument("names", nargs="+")

    lg = add("logs", "print a container's output")
    lg.add_argument("pod")
    lg.add_argument("-c", "--container")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("--tail", type=int)
    lg.add_argument("--timestamps", action="store_true")
    lg.add_argument("-p", "--previous", action="store_true")
    lg.add_argument("--since")
    lg.add_argument("--since-time")

    e = add("exec", "run a command in a container")
    e.add_argument("pod")
    e.add_argument("command", nargs="*")
    e.add_argument("-c", "--container")
    e.add_argument("-i", "--stdin", dest="interactive", action="store_true")
    e.add_argument("-t", "--tty", action="store_true")

    de = add("delete", "delete pods gracefully (or configmaps, secrets)")
    de.add_argument("kind", nargs="?", choices=["pods", "pod", "po", *CONFIG_KINDS], metavar="pod|configmap|secret")
    de.add_argument("names", nargs="*")
    de.add_argument("-f", "--filename")
    de.add_argument("--all", action="store_true")
    de.add_argument("--grace-period", type=int, default=None)
    de.add_argument("--force", action="store_true")
    de.add_argument("--wait", type=_bool, default=True, metavar="true|false")

    w = add("wait", "wait for a condition on a pod")
    w.add_argument("target", metavar="pod/NAME")
    w.add_argument("--for", dest="condition", required=True)
    w.add_argument("--timeout", default="30s")

    t = add("top", "CPU and memory per pod")
    t.add_argument("kind", choices=["pods", "pod", "po"], metavar="pod")
    t.add_argument("name", nargs="?")
    t.add_argument("--containers", action="store_true")

    add("doctor", "check that this machine can run nsbox")
    g = add("gc", "reclaim what crashed pods left behind")
    g.add_argument("--all", action="store_true", help="also remove the pod network bridges no pod uses")
    dm = add("demo", "show what a pod is, with real tools")
    dm.add_argument("which", nargs="?", default="all", choices=["localhost", "ipc", "volume", "all"])
    add("version", "print versions")
    return p


def _pod_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label", "-l", action="append", metavar="K=V")
    p.add_argument("--grace-period", dest="pod_grace_period", type=int, metavar="S")
    p.add_argument("--restart", choices=["Always", "OnFailure", "Never"])
    p.add_argument("--share-pid", action="store_true")
    p.add_argument("--hostname")
    p.add_argument("--network", choices=["loopback", "bridge", "host"])
    p.add_argument("--volume", action="append", metavar="NAME[=HOSTPATH]")


def _config_source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--from-literal", action="append", metavar="KEY=VALUE")
    p.add_argument("--from-file", action="append", metavar="[KEY=]PATH", help="a file, or each regular file of a directory")
    p.add_argument("--from-env-file", action="append", metavar="PATH", help="KEY=VALUE lines")
    p.add_argument("-o", "--output", help="json, yaml or name: print the object")
    p.add_argument("--dry-run", nargs="?", const="client", choices=["none", "client", "server"],
                   help="client: show the object, store nothing")


def _container_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--cap-add", action="append", metavar="CAP")
    p.add_argument("--cap-drop", action="append", metavar="CAP")
    p.add_argument("-e", "--env", action="append", metavar="K=V")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user", metavar="UID[:GID]")
    p.add_argument("--mount", action="append", metavar="VOL:PATH[:ro]")
    p.add_argument("--pre-stop", metavar="SHELL_CMD")
    p.add_argument("--cpu")
    p.add_argument("--memory")
    p.add_argument("--init", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f'expected true or false, not "{text}"')


def parse(argv: list[str]) -> argparse.Namespace:
    # Everything after the first "--" is the container's command, untouched by option parsing.
    command: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    word = _command_word(argv)
    parser = build_parser(word if word in COMMANDS or word == "pod" else None)
    args = parser.parse_args(argv)
    if command is not None:
        if not hasattr(args, "command"):
            parser.error("unexpected arguments after --")
        args.command = (args.command or []) + command
    args.namespace_given = hasattr(args, "namespace")
    if not hasattr(args, "namespace"):
        args.namespace = "default"
    if not hasattr(args, "root"):
        args.root = os.environ.get("NSBOX_ROOT") or DEFAULT_ROOT
    return args


def main(argv: list[str] | None = None) -> NoReturn:
    """The console entry point: run one command and leave without the interpreter's clean-up.

    Tearing down the interpreter (freeing every module and object one by one) costs
    15-20 ms, more than many commands do; the CLI holds nothing that needs it: its
    files are written with fsync and closed, and its locks go with the process.
    """
    os._exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    """Run one command and return its exit status (usage errors raise SystemExit(2))."""
    args = parse(sys.argv[1:] if argv is None else argv)
    name = "pod create" if args.cmd == "pod" else args.cmd
    try:
        if os.geteuid() != 0 and name != "version":
            raise NsboxError("nsbox must run as root")
        code = COMMANDS[name](args)
    except NsboxError as e:
        for line in str(e).splitlines() or ["failed"]:
            print(f"error: {line}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0                        # the reader went away: `nsbox get pods | head -1`
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)      # a full disk under stdout, say
        code = 1
    return _flush(code)


def _flush(code: int) -> int:
    """Write out what is buffered: output that cannot be written fails the command, a closed pipe does not."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            pass
        except (OSError, ValueError):
            code = code or 1
    return code
