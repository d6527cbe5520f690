"""`get` and `delete` of ConfigMaps and Secrets (the `get` and `delete` commands hand them here).

Their tables show no values; -o yaml|json shows a Secret's (base64), as kubectl does.
"""

from __future__ import annotations

import os
import sys

from nsbox.cli import print_error, print_object
from nsbox.errors import NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    import argparse

    from nsbox.pods import Runtime


def get(args: argparse.Namespace, kind: str) -> int:
    """`get configmaps|secrets [NAME...]`."""
    from nsbox import objects

    found, missing = objects.find(
        os.path.abspath(args.root),
        kind,
        args.namespace,
        args.names,
        all_namespaces=args.all_namespaces,
        selector=args.selector,
    )
    for name in missing:
        print_error(f'{objects.KINDS[kind]} "{name}" not found')
    out = args.output or ""
    if out in ("json", "yaml"):
        if len(args.names) == 1:
            if found:
                print_object(found[0], out)
        else:
            print_object({"apiVersion": "v1", "kind": "List", "items": found, "metadata": {"resourceVersion": ""}}, out)
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
    return 1 if missing else 0


def delete(rt: Runtime, targets: list[tuple[str, str, str]]) -> int:
    """Delete ConfigMaps and Secrets by (kind, namespace, name): `configmap "NAME" deleted`."""
    from nsbox import apply, objects

    code = 0
    for kind, ns, name in targets:
        if apply.delete_config(rt, kind, ns, name):
            print(f'{kind.lower()} "{name}" deleted')
        else:
            print_error(f'{objects.KINDS[kind]} "{name}" not found')
            code = 1
    return code
