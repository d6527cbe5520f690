"""Reading manifests: files, a directory of them or stdin; YAML or JSON.

Duplicate keys are errors and timestamps stay strings, as in Kubernetes'
strict decoding. PyYAML is imported only when a YAML document is read (it
costs ~100 ms, docs/design.md §6).

Hostile input is refused before it is built (docs/manifests.md, "Limits"):
a file (or stdin) larger than MAX_MANIFEST_BYTES, nesting deeper than
MAX_NESTING, and YAML aliases that expand a document by more than
MAX_ALIAS_EXPANSION values (the "billion laughs"); ordinary anchors and
aliases, merge keys included, work.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..errors import NsboxError

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

# The API server's own request limit (3 MiB, maxRequestBodyBytes); an object is
# smaller still in practice (etcd stores at most 1.5 MiB).
MAX_MANIFEST_BYTES = 3 * 1024 * 1024
# A Pod is about 10 levels deep; nothing in the objects nsbox reads needs 100.
MAX_NESTING = 100
# Values that aliases may add to one document: generous for anchors shared by
# a few containers, and bounded so that expansion cannot exhaust memory.
MAX_ALIAS_EXPANSION = 100_000


def load_documents(path: str) -> list[tuple[str, Any]]:
    """Read every object of a manifest: a file, a directory of .yaml/.yml/.json
    files (as `kubectl apply -f DIR`), or "-" for stdin.

    Multi-document YAML and concatenated JSON objects give several objects;
    `kind: List` (or any `...List` with items) is flattened; empty documents
    are skipped. Returns (source label, object) pairs, the label being
    "FILE#docN" or "FILE#docN.items[I]". Raises NsboxError, one line, for
    input that cannot be read or parsed (with the line and column)."""
    if path == "-":
        return _parse(_decode(_bounded(sys.stdin.buffer, "STDIN"), "STDIN"), "STDIN")
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
            data = _bounded(f, path)
    except FileNotFoundError:
        raise NsboxError(f'the path "{path}" does not exist') from None
    except OSError as e:
        raise NsboxError(f'cannot read "{path}": {e.strerror}') from None
    return _decode(data, path)


def _bounded(f: Any, name: str) -> bytes:
    data = f.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise NsboxError(f"{name}: larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB, the limit of a manifest")
    return data


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
            for obj in objects:
                _check_nesting(obj, name)
        except RecursionError:
            raise NsboxError(f"{name}: nested deeper than {MAX_NESTING} levels") from None
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
        _check_yaml_events(yaml.parse(text, Loader=_yaml_loader(yaml)), name)
        return [_json_compatible(doc) for doc in yaml.load_all(text, Loader=_yaml_loader(yaml))]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        if mark is None:
            raise NsboxError(f"{name}: {problem}") from None
        raise NsboxError(f"{name}: line {mark.line + 1}, column {mark.column + 1}: {problem}") from None
    except yaml.YAMLError as e:
        raise NsboxError(f"{name}: {str(e).splitlines()[0] if str(e) else 'invalid YAML'}") from None


def _check_nesting(obj: Any, name: str) -> None:
    """A parsed JSON value nested deeper than MAX_NESTING is refused (walked without recursion)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_NESTING:
                    raise NsboxError(f"{name}: nested deeper than {MAX_NESTING} levels")
                stack.append((child, depth + 1))


def _check_yaml_events(events: Any, name: str) -> None:
    """Refuse, from the parser's events and before anything is built, nesting deeper than
    MAX_NESTING and aliases that would add more than MAX_ALIAS_EXPANSION values to a document
    (the nesting an alias brings counts where it is used). An alias to a node that encloses
    it (a recursive structure, which JSON cannot hold) is refused too."""
    import yaml

    sizes: dict[str, tuple[int, int]] = {}  # anchor -> (values, depth) of the node it names
    open_frames: list[list[Any]] = []  # per collection being read: [anchor, values, depth below]
    expanded = 0

    def add(values: int, depth: int) -> None:
        if len(open_frames) + depth > MAX_NESTING:
            raise NsboxError(f"{name}: nested deeper than {MAX_NESTING} levels")
        if open_frames:
            frame = open_frames[-1]
            frame[1] += values
            frame[2] = max(frame[2], depth)

    for event in events:
        if isinstance(event, yaml.DocumentStartEvent):
            sizes.clear()
            expanded = 0
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = (1, 0)
            add(1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if any(frame[0] == event.anchor for frame in open_frames):
                raise NsboxError(f"{name}: the alias *{event.anchor} refers to a node that contains it")
            values, depth = sizes.get(event.anchor or "", (1, 0))  # an unknown one: the loader says so
            expanded += values
            if expanded > MAX_ALIAS_EXPANSION:
                raise NsboxError(f"{name}: aliases expand the document beyond {MAX_ALIAS_EXPANSION} values (refused)")
            add(values, depth)
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(open_frames) + 1 > MAX_NESTING:
                raise NsboxError(f"{name}: nested deeper than {MAX_NESTING} levels")
            open_frames.append([event.anchor, 1, 0])
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, values, depth = open_frames.pop()
            if anchor:
                sizes[anchor] = (values, depth + 1)
            add(values, depth + 1)


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
        explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # the merged (<<) pairs first, in the order that lets the later win
        merged = len(node.value) - explicit
        out: dict = {}
        seen: set = set()  # the explicit keys: those may not repeat, but override merged ones
        for i, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a string", key_node.start_mark
                ) from None
            if i >= merged:
                seen.add(key)
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
