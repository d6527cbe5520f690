"""Commands that look at pods and into them: `get`, `inspect`, `describe`, `logs`, `exec`, `wait`, `top`.

Reading a pod changes nothing (`Runtime.view`); these commands repair what they
read (`Runtime.repair`), so that any command that sees a pod whose termination
lost its watcher starts it again (docs/lifecycle.md, Termination 6).
"""

from __future__ import annotations

import os
import sys
import time

from nsbox.cli import CONFIG_KINDS, POD_KINDS, command, print_error, print_object, runtime
from nsbox.errors import NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from nsbox.pods import PodView, Runtime


def looked_at(rt: Runtime, namespace: str, name: str) -> PodView:
    """The pod `name`, repaired (NotFound if there is none)."""
    return rt.repair(rt.get(namespace, name))


def get_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=[*POD_KINDS, *CONFIG_KINDS], metavar="pods|configmaps|secrets")
    p.add_argument("names", nargs="*")
    p.add_argument("-o", "--output")
    p.add_argument("-l", "--selector")
    p.add_argument("-A", "--all-namespaces", action="store_true")


@command("get", "list pods, configmaps or secrets", get_arguments)
def cmd_get(args: argparse.Namespace) -> int:
    if args.kind in CONFIG_KINDS:
        from nsbox.cli import objects

        return objects.get(args, CONFIG_KINDS[args.kind])
    from nsbox import status

    rt = runtime(args)
    names = args.names
    if names:
        views = [looked_at(rt, args.namespace, n) for n in names]
    else:
        views = [rt.repair(v) for v in rt.pods(None if args.all_namespaces else args.namespace)]
    if args.selector:
        views = [v for v in views if status.match_selector(v.spec.labels, args.selector)]
    out = args.output or ""
    if out in ("json", "yaml"):
        objs = [status.pod_object(v) for v in views]
        doc = (
            objs[0]
            if len(names) == 1
            else {"apiVersion": "v1", "kind": "List", "items": objs, "metadata": {"resourceVersion": ""}}
        )
        print_object(doc, out, sort_keys=False)
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


def inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pod")
    p.add_argument("-c", "--container")


@command("inspect", "runtime details (PIDs, cgroups, namespaces, logs) as JSON", inspect_arguments)
def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from nsbox import cgroups, status

    v = looked_at(runtime(args), args.namespace, args.pod)
    if args.container and v.spec.container(args.container) is None:
        raise NsboxError(f'container "{args.container}" not found in pod "{args.pod}"')
    print(json.dumps(status.inspect(v, args.container, cgroups.detect()), indent=2))
    return 0


def describe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=POD_KINDS, metavar="pod")
    p.add_argument("names", nargs="+")


@command("describe", "show everything about a pod", describe_arguments)
def cmd_describe(args: argparse.Namespace) -> int:
    from nsbox import cgroups, describe

    rt = runtime(args)
    for i, name in enumerate(args.names):
        if i:
            print()
        print(describe.describe(looked_at(rt, args.namespace, name), cgroups.detect()))
    return 0


def logs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pod")
    p.add_argument("-c", "--container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int)
    p.add_argument("--timestamps", action="store_true")
    p.add_argument("-p", "--previous", action="store_true")
    p.add_argument("--since")
    p.add_argument("--since-time")


@command("logs", "print a container's output", logs_arguments)
def cmd_logs(args: argparse.Namespace) -> int:
    from nsbox import logs
    from nsbox.pods import pick_container

    since_ns = _logs_since(args)
    if args.tail is not None and args.tail < -1:
        raise NsboxError("--tail must be greater than or equal to -1")
    rt = runtime(args)
    v = looked_at(rt, args.namespace, args.pod)
    c = pick_container(v, args.container)
    st = v.container_status(c.name) or {}
    rc = st.get("restartCount", 0)
    if args.previous:
        if rc == 0:
            raise NsboxError(f'previous terminated container "{c.name}" in pod "{args.pod}" not found')
        rc -= 1
    path = v.paths.log_file(v.spec.namespace, v.spec.name, c.name, rc)
    records = logs.read_records(path, None if args.tail == -1 else args.tail)  # -1: all, as kubectl
    if since_ns is not None:
        records = logs.since(records, since_ns)
    _write_log(logs.render(iter(records), args.timestamps))
    if not args.follow or args.previous:
        return 0
    follower = logs.Follower(path, os.path.getsize(path) if os.path.exists(path) else 0)
    while True:
        _write_log(logs.render(iter(follower.poll()), args.timestamps))
        now = rt.view(v.paths)
        if now is None or not rt.repair(now).watcher_alive:
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
            raise NsboxError(
                f'invalid argument "{args.since_time}" for "--since-time" flag: '
                "must be an RFC3339 time, e.g. 2006-01-02T15:04:05Z"
            )
        return t
    if args.since is None:
        return None
    ns = logs.parse_go_duration(args.since)
    if ns is None:
        raise NsboxError(f'invalid argument "{args.since}" for "--since" flag: time: invalid duration "{args.since}"')
    seconds = (ns + 500_000_000) // 1_000_000_000  # kubectl rounds it to whole seconds
    if seconds < 0:
        raise NsboxError("--since must be greater than 0")
    if seconds == 0:
        return None  # kubectl sends no sinceSeconds for 0
    return time.time_ns() - seconds * 1_000_000_000


def _write_log(items: Any) -> None:
    """kubectl logs prints stdout and stderr records alike on its stdout, in the order
    the container wrote them (the log file's order)."""
    out = sys.stdout.buffer
    for _, data in items:
        out.write(data)
        out.flush()


def exec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pod")
    p.add_argument("command", nargs="*")
    p.add_argument("-c", "--container")
    p.add_argument("-i", "--stdin", dest="interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")


@command("exec", "run a command in a container", exec_arguments)
def cmd_exec(args: argparse.Namespace) -> int:
    if not args.command:
        raise NsboxError("a command is required: nsbox exec POD [-c CONTAINER] -- COMMAND [ARG...]")
    return runtime(args).exec(
        args.namespace, args.pod, args.container, args.command, stdin=args.interactive, tty=args.tty
    )


def wait_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="pod/NAME")
    p.add_argument("--for", dest="condition", required=True)
    p.add_argument("--timeout", default="30s")


@command("wait", "wait for a condition on a pod", wait_arguments)
def cmd_wait(args: argparse.Namespace) -> int:
    from nsbox import status
    from nsbox.errors import NotFound

    rt = runtime(args)
    target = args.target.split("/", 1)[-1]
    deadline = time.monotonic() + parse_duration(args.timeout)
    while True:
        try:
            v = looked_at(rt, args.namespace, target)
        except NotFound:
            if args.condition == "delete":
                return 0
            raise
        if status.condition_met(v, args.condition):
            print(f"pod/{target} condition met")
            return 0
        if time.monotonic() >= deadline:
            print_error(f"timed out waiting for the condition on pods/{target}")
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


def top_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=POD_KINDS, metavar="pod")
    p.add_argument("name", nargs="?")
    p.add_argument("--containers", action="store_true")


@command("top", "CPU and memory per pod", top_arguments)
def cmd_top(args: argparse.Namespace) -> int:
    from nsbox import cgroups, kube

    cg = cgroups.detect()
    rt = runtime(args)
    views = [looked_at(rt, args.namespace, args.name)] if args.name else [rt.repair(v) for v in rt.pods(args.namespace)]
    rows = [
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"] if args.containers else ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    ]
    for v in views:
        targets = (
            [(c.name, cg.container_path(v.spec.uid, c.name)) for c in v.spec.containers]
            if args.containers
            else [("", cg.pod_path(v.spec.uid))]
        )
        for cname, rel in targets:
            cpu, memory = cg.usage(rel)
            row = [v.spec.name, cname] if args.containers else [v.spec.name]
            rows.append(
                row + ["-" if cpu is None else f"{cpu}m", "-" if memory is None else kube.format_quantity_bytes(memory)]
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0
