"""ConfigMaps and Secrets: the namespaced objects pods read their configuration from.

Stored under the root, one JSON file per object, as the v1 object the API
server would hold (a Secret's `data` base64-encoded, `stringData` already
folded into it):

    configmaps/<namespace>/<name>.json
    secrets/<namespace>/<name>.json      (secrets: mode 0600, never printed by describe or events)

Unlike pods, these objects are mutable: `apply` replaces them (unless
`immutable: true`), and the pods that use them see the change (README,
"ConfigMaps and Secrets").
"""

from __future__ import annotations

import base64
import os

from nsbox.errors import NsboxError
from nsbox.state import read_json, write_json

TYPE_CHECKING = False          # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

KINDS = {"ConfigMap": "configmaps", "Secret": "secrets"}   # kind -> directory under the root


def path(root: str, kind: str, namespace: str, name: str) -> str:
    return f"{root}/{KINDS[kind]}/{namespace}/{name}.json"


def load(root: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The stored object, or None when there is none."""
    try:
        return read_json(path(root, kind, namespace, name))
    except (NotADirectoryError, ValueError):
        return None


def save(root: str, obj: dict[str, Any]) -> None:
    """Write a validated object (atomically; readers see the old or the new one)."""
    meta = obj["metadata"]
    target = path(root, obj["kind"], meta["namespace"], meta["name"])
    os.makedirs(os.path.dirname(target), 0o700, exist_ok=True)
    write_json(target, obj)


def remove(root: str, kind: str, namespace: str, name: str) -> bool:
    """Delete the object; False when there was none."""
    try:
        os.unlink(path(root, kind, namespace, name))
        return True
    except FileNotFoundError:
        return False


def names(root: str, kind: str, namespace: str | None) -> list[tuple[str, str]]:
    """(namespace, name) of every stored object of `kind`, sorted; all namespaces when None."""
    base = f"{root}/{KINDS[kind]}"
    try:
        namespaces = [namespace] if namespace else sorted(os.listdir(base))
    except FileNotFoundError:
        return []
    out = []
    for ns in namespaces:
        try:
            entries = sorted(os.listdir(f"{base}/{ns}"))
        except (FileNotFoundError, NotADirectoryError):
            continue
        out += [(ns, e[:-5]) for e in entries if e.endswith(".json")]
    return out


def data_of(obj: dict[str, Any]) -> dict[str, bytes]:
    """Every key of a stored object with its bytes: a ConfigMap's `data` (UTF-8) and
    `binaryData` (base64), a Secret's `data` (base64)."""
    out: dict[str, bytes] = {}
    try:
        if obj["kind"] == "ConfigMap":
            out.update((k, v.encode()) for k, v in (obj.get("data") or {}).items())
            out.update((k, base64.b64decode(v)) for k, v in (obj.get("binaryData") or {}).items())
        else:
            out.update((k, base64.b64decode(v)) for k, v in (obj.get("data") or {}).items())
    except (ValueError, AttributeError) as e:
        raise NsboxError(f'{obj["kind"]} "{obj["metadata"]["name"]}" is damaged: {e}') from None
    return out
