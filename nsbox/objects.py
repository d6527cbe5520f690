"""ConfigMaps and Secrets: the namespaced objects pods read their configuration from.

Stored under the root, one JSON file per object, as the v1 object the API
server would hold (a Secret's `data` base64-encoded, `stringData` already
folded into it):

    configmaps/<namespace>/<name>.json
    secrets/<namespace>/<name>.json      (secrets: mode 0600, never printed by describe or events)

Unlike pods, these objects are mutable: `apply` replaces them (unless
`immutable: true`), and the pods that use them see the change (README,
"ConfigMaps and Secrets").

`read_document` validates a manifest document as the API server would;
`apply` and `create` store it (under a lock per kind, so that a check and the
write it allows are one step); `table` is what `get` prints. The keys of
`create configmap|secret generic` are gathered by nsbox/sources.py.
"""

from __future__ import annotations

import base64
import os

from nsbox.errors import NsboxError
from nsbox.state import read_json, write_state

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

KINDS = {"ConfigMap": "configmaps", "Secret": "secrets"}  # kind -> directory under the root


def path(root: str, kind: str, namespace: str, name: str) -> str:
    return f"{root}/{KINDS[kind]}/{namespace}/{name}.json"


def _storable(namespace: str, name: str) -> bool:
    """Whether namespace/name can be an object at all: names from the command line
    (`get cm ../x`) never reach outside the store."""
    from nsbox import kube

    return not kube.dns1123_label_errors(namespace) and not kube.dns1123_subdomain_errors(name)


def load(root: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The stored object, or None when there is none."""
    if not _storable(namespace, name):
        return None
    try:
        return read_json(path(root, kind, namespace, name))
    except (NotADirectoryError, ValueError):
        return None


def save(root: str, obj: dict[str, Any]) -> None:
    """Write a validated object (atomically; readers see the old or the new one)."""
    meta = obj["metadata"]
    if not _storable(meta["namespace"], meta["name"]):
        raise NsboxError(f"invalid name {meta['namespace']}/{meta['name']}")
    target = path(root, obj["kind"], meta["namespace"], meta["name"])
    os.makedirs(os.path.dirname(target), 0o700, exist_ok=True)
    write_state(target, obj)


def remove(root: str, kind: str, namespace: str, name: str) -> bool:
    """Delete the object; False when there was none."""
    if not _storable(namespace, name):
        return False
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
            entries = os.listdir(f"{base}/{ns}")
        except (FileNotFoundError, NotADirectoryError):
            continue
        # Sorted by name, as the API server lists them ("a" before "a-2"; the files sort the other way).
        out += sorted((ns, e[:-5]) for e in entries if e.endswith(".json"))
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


# ---------------------------------------------------------------- reading manifests
# The API server's rules for these objects (validation of ConfigMap and Secret in
# k8s.io/kubernetes pkg/apis/core/validation), worded as its field errors are.

MAX_SIZE = 1024 * 1024  # core.MaxSecretSize: all values of one ConfigMap or Secret together
IMMUTABLE = "Forbidden: field is immutable when `immutable` is set"
REDACTED = "<secret contents redacted>"
_FIELDS = {
    "ConfigMap": frozenset("apiVersion kind metadata data binaryData immutable".split()),
    "Secret": frozenset("apiVersion kind metadata data stringData type immutable".split()),
}
# Secret types whose keys the API server checks: type -> keys that must be present.
_REQUIRED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}
_JSON_KEYS = {"kubernetes.io/dockerconfigjson": ".dockerconfigjson", "kubernetes.io/dockercfg": ".dockercfg"}
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def is_document(obj: Any) -> bool:
    """Whether a manifest document is a ConfigMap or a Secret (what this module reads)."""
    return isinstance(obj, dict) and isinstance(obj.get("kind"), str) and obj["kind"] in KINDS


def ref(obj: dict[str, Any]) -> str:
    """kubectl's KIND/NAME: configmap/NAME, secret/NAME."""
    return f"{obj['kind'].lower()}/{obj['metadata']['name']}"


def read_document(
    obj: dict[str, Any], label: str, namespace: str, namespace_explicit: bool, seen: dict[Any, str]
) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """Validate one ConfigMap or Secret document as the API server would:
    (the object to store, problems, warnings). `seen` holds the objects of the
    documents read before this one, for duplicates."""
    from nsbox.manifest.reader import Reader, show
    from nsbox.model import PodSpec

    kind = obj["kind"]
    r = Reader()
    api = obj.get("apiVersion")
    if api != "v1":
        r.problem(
            "error validating data: [apiVersion not set]"
            if api is None
            else f"unsupported apiVersion {show(api)} for kind {kind} ({kind}s are v1)"
        )
        return None, r.problems, r.warnings
    for key, value in obj.items():
        if value is not None and key not in _FIELDS[kind]:
            r.problem(f'unknown field "{key}"')
    holder = PodSpec(name="", namespace=namespace)  # the reader's metadata rules fill it
    meta = r.get(obj, "metadata", "", "object")
    if obj.get("metadata") is None:
        r.required("metadata.name", "name or generateName is required")
    if meta is not None:
        r.metadata(meta, holder, namespace_explicit=namespace_explicit)
    if not (meta or {}).get("namespace"):  # the namespace of -n
        from nsbox import kube

        for e in kube.dns1123_label_errors(namespace):
            r.invalid("metadata.namespace", namespace, e)
    metadata: dict[str, Any] = {"name": holder.name, "namespace": holder.namespace}
    if holder.labels:
        metadata["labels"] = holder.labels
    if holder.annotations:
        metadata["annotations"] = holder.annotations
    out: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": metadata}
    immutable = r.get(obj, "immutable", "", "boolean")
    if immutable is not None:
        out["immutable"] = immutable
    if kind == "ConfigMap":
        _read_config_map(r, obj, out)
    else:
        _read_secret(r, obj, out)
    if holder.name:
        ident = (kind, holder.namespace, holder.name)
        if ident in seen:
            r.problem(f"metadata.name: Duplicate value: {show(holder.name)} (also in {seen[ident]})")
        seen.setdefault(ident, label)
    return (None if r.problems else out), r.problems, r.warnings


def _read_config_map(r: Any, obj: dict[str, Any], out: dict[str, Any]) -> None:
    data = r.get(obj, "data", "", "string map") or {}
    binary: dict[str, bytes] = {}
    for key, text in (r.get(obj, "binaryData", "", "string map") or {}).items():
        value = _decode_base64(r, "ConfigMap", f"binaryData[{key}]", text)
        if value is not None:
            binary[key] = value
    for key in data:
        for e in config_key_errors(key):
            r.invalid(f"data[{key}]", key, e)
        if key in binary:
            r.invalid(f"data[{key}]", key, "duplicate of key present in binaryData")
    for key in binary:
        for e in config_key_errors(key):
            r.invalid(f"binaryData[{key}]", key, e)
    if sum(len(v.encode()) for v in data.values()) + sum(len(v) for v in binary.values()) > MAX_SIZE:
        r.problem(f"[]: Too long: must have at most {MAX_SIZE} bytes")
    if data:
        out["data"] = dict(data)
    if binary:
        out["binaryData"] = {k: base64.b64encode(v).decode() for k, v in binary.items()}


def _read_secret(r: Any, obj: dict[str, Any], out: dict[str, Any]) -> None:
    data: dict[str, bytes] = {}
    for key, text in (r.get(obj, "data", "", "string map") or {}).items():
        value = _decode_base64(r, "Secret", f"data[{key}]", text)
        if value is not None:
            data[key] = value
    # As the API server converts a v1 Secret: stringData is written over data, key by key.
    for key, text in (r.get(obj, "stringData", "", "string map") or {}).items():
        data[key] = text.encode()
    for key in data:
        for e in config_key_errors(key):
            r.invalid(f"data[{key}]", key, e)
    if sum(len(v) for v in data.values()) > MAX_SIZE:
        r.problem(f"data: Too long: must have at most {MAX_SIZE} bytes")
    kind = r.get(obj, "type", "", "string") or "Opaque"
    for problem in secret_type_errors(kind, data, out["metadata"].get("annotations") or {}):
        r.problem(problem)
    if data:
        out["data"] = {k: base64.b64encode(v).decode() for k, v in data.items()}
    out["type"] = kind


def config_key_errors(key: str) -> list[str]:
    from nsbox import kube

    return kube.config_key_errors(key)


def secret_type_errors(kind: str, data: dict[str, bytes], annotations: dict[str, str]) -> list[str]:
    """What a Secret of type `kind` lacks (the API server's per-type rules); other types,
    Opaque and custom ones, may hold any keys."""
    problems = []
    if kind == "kubernetes.io/basic-auth":
        # Either may be empty, but one of them must be there.
        if "username" not in data and "password" not in data:
            problems += ["data[username]: Required value", "data[password]: Required value"]
    elif kind == "kubernetes.io/service-account-token":
        if not annotations.get("kubernetes.io/service-account.name"):
            problems.append("metadata.annotations[kubernetes.io/service-account.name]: Required value")
    elif kind == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            problems.append("data[ssh-privatekey]: Required value")
    elif kind in _REQUIRED_KEYS:
        problems += [f"data[{k}]: Required value" for k in _REQUIRED_KEYS[kind] if k not in data]
        json_key = _JSON_KEYS.get(kind)
        if json_key in data:
            problem = _json_object_error(data[json_key])
            if problem:
                problems.append(f'data[{json_key}]: Invalid value: "{REDACTED}": {problem}')
    return problems


def _json_object_error(raw: bytes) -> str | None:
    """Why `raw` is not a JSON object (null is one, as for Go's json.Unmarshal into a map)."""
    import json

    try:
        value = json.loads(raw)
    except ValueError as e:
        return str(e)
    if value is None or isinstance(value, dict):
        return None
    kind = {list: "array", str: "string", bool: "bool"}.get(type(value), "number")
    return f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"


def _decode_base64(r: Any, kind: str, where: str, text: str) -> bytes | None:
    """Standard base64 with padding, newlines ignored, as Go decodes []byte fields of JSON."""
    bad = _base64_error_at(text)
    if bad is None:
        return base64.b64decode("".join(text.split("\r")).replace("\n", ""))
    r.problem(
        f'{kind} in version "v1" cannot be handled as a {kind}: illegal base64 data at input byte {bad} (in {where})'
    )
    return None


def _base64_error_at(text: str) -> int | None:
    """The offset Go's base64.StdEncoding reports for input it refuses, or None when it decodes."""
    raw = text.encode()
    quantum = 0  # characters of the current 4-character group
    pad_at = -1  # where the padding began
    for i, c in enumerate(raw):
        if c in (0x0A, 0x0D):
            continue
        if pad_at >= 0:
            if quantum == 2 and i == _next_char(raw, pad_at + 1):
                if c != 0x3D:
                    return pad_at  # "x=" must be "x=="
                quantum = 4
                continue
            return i  # anything after the padding
        if c == 0x3D:  # "=": only in place of the last one or two characters of a group
            if quantum < 2:
                return i
            pad_at = i
            continue
        if c not in _B64:
            return i
        quantum = (quantum + 1) % 4
    if pad_at >= 0:
        return len(raw) if quantum == 2 else None
    return len(raw) - quantum if quantum else None


def _next_char(raw: bytes, i: int) -> int:
    while i < len(raw) and raw[i] in (0x0A, 0x0D):
        i += 1
    return i


def update_errors(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Why `new` may not replace the stored `old` (the API server's update rules): an
    immutable object keeps its data and stays immutable; a Secret keeps its type."""
    if old is None:
        return []
    from nsbox.manifest.reader import show

    problems = []
    if new["kind"] == "Secret" and old.get("type", "Opaque") != new.get("type", "Opaque"):
        problems.append(f"type: Invalid value: {show(new.get('type'))}: field is immutable")
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            problems.append(f"immutable: {IMMUTABLE}")
        fields = ("data", "binaryData") if new["kind"] == "ConfigMap" else ("data",)
        problems += [f"{f}: {IMMUTABLE}" for f in fields if (old.get(f) or {}) != (new.get(f) or {})]
    return [f'The {new["kind"]} "{new["metadata"]["name"]}" is invalid: {p}' for p in problems]


def updates_refused(root: str, configs: list[dict[str, Any]]) -> list[str]:
    """Why some of `configs` may not replace what is stored (`update_errors` of each); changes nothing.
    `apply` checks them all before it stores any."""
    return [
        p
        for obj in configs
        for p in update_errors(load(root, obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]), obj)
    ]


# ---------------------------------------------------------------- storing


def _lock(root: str, kind: str) -> Any:
    """Serialises the read-check-write of objects of `kind` under `root` (an flock)."""
    from nsbox.state import FileLock

    os.makedirs(f"{root}/{KINDS[kind]}", 0o700, exist_ok=True)
    lock = FileLock(f"{root}/{KINDS[kind]}/.lock")
    lock.acquire()
    return lock


_CONTENT = ("data", "binaryData", "immutable", "type")


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return all(old.get(k) == new.get(k) for k in _CONTENT) and all(
        old["metadata"].get(k) == new["metadata"].get(k) for k in ("labels", "annotations")
    )


def _stamp(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Metadata the API server sets: uid and creationTimestamp (kept across updates), resourceVersion."""
    import uuid

    from nsbox import kube

    meta = obj["metadata"]
    if old is None:
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=kube.rfc3339(), resourceVersion="1")
    else:
        version = old["metadata"].get("resourceVersion", "0")
        meta.update(
            uid=old["metadata"]["uid"],
            creationTimestamp=old["metadata"]["creationTimestamp"],
            resourceVersion=str(int(version) + 1 if version.isdigit() else 1),
        )


def apply(root: str, obj: dict[str, Any]) -> str:
    """Store a validated object as `apply` does: "created", "configured" or "unchanged".
    An update the API server would refuse raises NsboxError and stores nothing."""
    meta = obj["metadata"]
    lock = _lock(root, obj["kind"])
    try:
        old = load(root, obj["kind"], meta["namespace"], meta["name"])
        problems = update_errors(old, obj)
        if problems:
            raise NsboxError("\n".join(problems))
        if old is not None and _same(old, obj):
            return "unchanged"
        _stamp(obj, old)
        save(root, obj)
        return "created" if old is None else "configured"
    finally:
        lock.release()


def delete(root: str, kind: str, namespace: str, name: str) -> bool:
    """Remove the object (under the lock of its kind); False when there was none."""
    lock = _lock(root, kind)
    try:
        return remove(root, kind, namespace, name)
    finally:
        lock.release()


def create(root: str, obj: dict[str, Any]) -> None:
    """Store a new object; AlreadyExists (worded as kubectl) when the name is taken."""
    from nsbox.errors import AlreadyExists

    meta = obj["metadata"]
    lock = _lock(root, obj["kind"])
    try:
        if load(root, obj["kind"], meta["namespace"], meta["name"]) is not None:
            raise AlreadyExists(
                f'failed to create {obj["kind"].lower()}: {KINDS[obj["kind"]]} "{meta["name"]}" already exists'
            )
        _stamp(obj, None)
        save(root, obj)
    finally:
        lock.release()


def find(
    root: str,
    kind: str,
    namespace: str,
    wanted: list[str],
    *,
    all_namespaces: bool = False,
    selector: str | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The stored objects `get` shows: those `wanted` in `namespace`, or without names all of
    `namespace` (of every namespace with `all_namespaces`), that match `selector`; and the
    wanted names not found."""
    if wanted:
        loaded = [(name, load(root, kind, namespace, name)) for name in wanted]
        found = [obj for _, obj in loaded if obj is not None]
        missing = [name for name, obj in loaded if obj is None]
    else:
        listed = names(root, kind, None if all_namespaces else namespace)
        found = [o for o in (load(root, kind, ns, name) for ns, name in listed) if o]
        missing = []
    if selector:
        from nsbox import status

        found = [o for o in found if status.match_selector(o["metadata"].get("labels") or {}, selector)]
    return found, missing


def check_absent(root: str, kind: str, namespace: str, name: str) -> None:
    """`create --dry-run=server`: AlreadyExists (worded as `create` words it) when the name is taken."""
    if load(root, kind, namespace, name) is not None:
        from nsbox.errors import AlreadyExists

        raise AlreadyExists(f'failed to create {kind.lower()}: {KINDS[kind]} "{name}" already exists')


# ---------------------------------------------------------------- showing


def data_count(obj: dict[str, Any]) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def table(objs: list[dict[str, Any]], all_namespaces: bool) -> str:
    """`get configmaps` / `get secrets` as kubectl prints them: NAME [TYPE] DATA AGE."""
    import time

    from nsbox import kube, status

    secrets = bool(objs) and objs[0]["kind"] == "Secret"
    header = (["NAMESPACE"] if all_namespaces else []) + ["NAME"] + (["TYPE"] if secrets else []) + ["DATA", "AGE"]
    rows = [header]
    now = time.time()
    for obj in objs:
        meta = obj["metadata"]
        rows.append(
            ([meta["namespace"]] if all_namespaces else [])
            + [meta["name"]]
            + ([obj.get("type", "Opaque")] if secrets else [])
            + [str(data_count(obj)), status.human_age(now - kube.epoch(meta["creationTimestamp"]))]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)
