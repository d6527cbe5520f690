"""Reading manifests: files, a directory of them or stdin; YAML or JSON.

Duplicate keys are errors and timestamps stay strings, as in Kubernetes'
strict decoding. PyYAML is imported only when a YAML document is read (it
costs ~100 ms, docs/design.md §6).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import NsboxError

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def load_documents(path: str) -> list[tuple[str, Any]]:
    """Read every object of a manifest: a file, a directory of .yaml/.yml/.json
    files (as `kubectl apply -f DIR`), or "-" for stdin.

    Multi-document YAML and concatenated JSON objects give several objects;
    `kind: List` (or any `...List` with items) is flattened; empty documents
    are skipped. Returns (source label, object) pairs, the label being
    "FILE#docN" or "FILE#docN.items[I]". Raises NsboxError, one line, for
    input that cannot be read or parsed (with the line and column)."""
    if path == "-":
        return _parse(_decode(sys.stdin.buffer.read(), "STDIN"), "STDIN")
    if os.path.isdir(path):
        docs: list[tuple[str, Any]] = []
        for entry in sorted(os.listdir(path)):
            full = os.path.join(path, entry)
            if entry.endswith(_MANIFEST_SUFFIXES) and os.path.isfile(full):
                docs += _parse(_read(full), full)
        return docs
    return _parse(_read(path), path)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise NsboxError(f'the path "{path}" does not exist') from None
    except OSError as e:
        raise NsboxError(f'cannot read "{path}": {e.strerror}') from None
    return _decode(data, path)


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NsboxError(f"{name}: not UTF-8 text (byte {e.start})") from None


def _parse(text: str, name: str) -> list[tuple[str, Any]]:
    objects = None
    if name.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            objects = _parse_json(text)
        except ValueError as e:
            if name.endswith(".json"):
                where = f"line {e.lineno}, column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e)
                raise NsboxError(f"{name}: {where}") from None
            # Not JSON after all: flow-style YAML also starts with "{".
    if objects is None:
        objects = _parse_yaml(text, name)
    docs: list[tuple[str, Any]] = []
    for n, obj in enumerate(objects, 1):
        _flatten(f"{name}#doc{n}", obj, docs)
    return docs


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'duplicate field "{key}"')
        out[key] = value
    return out


def _parse_json(text: str) -> list[Any]:
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates)
    objects: list[Any] = []
    i = 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return objects
        obj, i = decoder.raw_decode(text, i)
        objects.append(obj)


def _parse_yaml(text: str, name: str) -> list[Any]:
    import yaml  # here, not at the top: only manifests pay for it

    try:
        return [_json_compatible(doc) for doc in yaml.load_all(text, Loader=_yaml_loader(yaml))]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        if mark is None:
            raise NsboxError(f"{name}: {problem}") from None
        raise NsboxError(f"{name}: line {mark.line + 1}, column {mark.column + 1}: {problem}") from None
    except yaml.YAMLError as e:
        raise NsboxError(f"{name}: {str(e).splitlines()[0] if str(e) else 'invalid YAML'}") from None


_LOADER = None


def _yaml_loader(yaml):
    """A safe loader (the C one when available) that, like Kubernetes' strict
    decoding, rejects duplicate keys and keeps timestamps as strings."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER

    # libyaml's C loader where PyYAML was built with it: chosen at run time
    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    def mapping(loader, node):
        loader.flatten_mapping(node)
        out: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                duplicate = key in out
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a string", key_node.start_mark
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f'duplicate field "{key}"', key_node.start_mark)
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    Loader.add_constructor("tag:yaml.org,2002:map", mapping)
    Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))
    _LOADER = Loader
    return Loader


def _json_compatible(value: Any) -> Any:
    # As sigs.k8s.io/yaml converts YAML to JSON: keys become strings.
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else json.dumps(k)): _json_compatible(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_compatible(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return value


def _flatten(label: str, obj: Any, out: list[tuple[str, Any]]) -> None:
    if obj is None:
        return
    if (
        isinstance(obj, dict)
        and isinstance(obj.get("kind"), str)
        and obj["kind"].endswith("List")
        and isinstance(obj.get("items"), list)
    ):
        for i, item in enumerate(obj["items"]):
            _flatten(f"{label}.items[{i}]", item, out)
        return
    out.append((label, obj))
