"""`delete`: pods gracefully, several at once (or ConfigMaps and Secrets)."""

from __future__ import annotations

import argparse
import collections
import sys

from nsbox.cli import CONFIG_KINDS, POD_KINDS, command, print_error, runtime
from nsbox.errors import NotFound, NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from nsbox.deletion import PendingDelete

DELETE_WINDOW = 64  # pods one `delete` ends at the same time (a socket each)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f'expected true or false, not "{text}"')


def delete_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", choices=[*POD_KINDS, *CONFIG_KINDS], metavar="pod|configmap|secret")
    p.add_argument("names", nargs="*")
    p.add_argument("-f", "--filename")
    p.add_argument("--all", action="store_true")
    p.add_argument("--grace-period", type=int, default=None)
    p.add_argument("--force", action="store_true")
    p.add_argument("--wait", type=_bool, default=True, metavar="true|false")


@command("delete", "delete pods gracefully (or configmaps, secrets)", delete_arguments)
def cmd_delete(args: argparse.Namespace) -> int:
    from nsbox.cli import objects

    rt = runtime(args)
    targets: list[tuple[str, str]] = []
    if args.kind in CONFIG_KINDS:
        kind = CONFIG_KINDS[args.kind]
        if args.all:
            from nsbox import objects as stored

            names = [n for _, n in stored.names(rt.root.path, kind, args.namespace)]
        elif not args.names:
            raise NsboxError("resource(s) were provided, but no name was specified")
        else:
            names = args.names
        return objects.delete(rt, [(kind, args.namespace, n) for n in names])
    config_status = 0
    if args.filename:
        from nsbox import manifest

        configs: list[tuple[str, str, str]] = []
        targets = manifest.pod_names_from_documents(
            manifest.load_documents(args.filename), args.namespace, configs=configs
        )
        config_status = objects.delete(rt, configs)
        if configs and not targets:
            return config_status
    elif args.all:
        targets = [(v.spec.namespace, v.spec.name) for v in map(rt.repair, rt.pods(args.namespace))]
    else:
        targets = [(args.namespace, n) for n in args.names]
    if not targets and not args.all:
        raise NsboxError("resource(s) were provided, but no name was specified")
    if args.force:
        print(
            "warning: Immediate deletion does not wait for confirmation that the running "
            "resource has been terminated. The resource may continue to run on the cluster "
            "indefinitely.",
            file=sys.stderr,
        )
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
            print_error(str(e))
            status = 1

    for ns, name in targets:
        try:
            pending.append(rt.request_delete(ns, name, grace=args.grace_period, force=args.force))
        except NotFound as e:
            # A pod that --all listed and that went before it was asked (another delete, a
            # `run --rm`) is what --all wanted: as in kubectl, --all implies --ignore-not-found.
            if not args.all:
                print_error(str(e))
                status = 1
        except NsboxError as e:
            print_error(str(e))
            status = 1
        if len(pending) >= DELETE_WINDOW:
            finish(pending.popleft())
    while pending:
        finish(pending.popleft())
    return status or config_status
