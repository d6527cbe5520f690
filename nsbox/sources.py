"""`create configmap|secret generic`: an object from kubectl's sources (literals, files, env files).

kubectl's rules (k8s.io/kubectl pkg/cmd/create, pkg/cmd/util/env_file.go), errors worded as it words them.
"""

from __future__ import annotations

import base64
import os

from nsbox import objects
from nsbox.errors import NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any


def build(
    kind: str,
    name: str,
    namespace: str,
    *,
    files: list[str],
    literals: list[str],
    env_files: list[str],
    secret_type: str = "",
) -> dict[str, Any]:
    """The valid object `create configmap|secret generic` makes from kubectl's sources; NsboxError if none."""
    if env_files and (files or literals):
        raise NsboxError("from-env-file cannot be combined with from-file or from-literal")
    sources = Sources(kind, name)
    for source in files:
        sources.file(source)
    for source in literals:
        sources.literal(source)
    for source in env_files:
        sources.env_file(source)
    obj, problems, _ = objects.read_document(sources.object(namespace, secret_type), "", namespace, False, {})
    if obj is None:
        raise NsboxError("\n".join(f'{kind} "{name}" is invalid: {p}' for p in problems))
    return obj


class Sources:
    """The keys `create` gathers, in kubectl's order: files, then literals, then env files."""

    def __init__(self, kind: str, name: str):
        self.kind = kind
        self.name = name
        self.data: dict[str, bytes] = {}
        self.text: set[str] = set()  # ConfigMap keys whose value is UTF-8 (`data`, not `binaryData`)

    def add(self, key: str, value: bytes, text: bool) -> None:
        errors = objects.config_key_errors(key)
        if self.kind == "Secret":
            if errors:
                raise NsboxError(f'"{key}" is not valid key name for a Secret {";".join(errors)}')
            if key in self.data:
                raise NsboxError(f"cannot add key {key}, another key by that name already exists")
        else:
            if errors:
                raise NsboxError(f'"{key}" is not a valid key name for a ConfigMap: {",".join(errors)}')
            if key in self.data:
                where = "Data" if key in self.text else "BinaryData"
                raise NsboxError(
                    f'cannot add key "{key}", another key by that name already exists '
                    f'in {where} for ConfigMap "{self.name}"'
                )
        self.data[key] = value
        if text:
            self.text.add(key)

    def literal(self, source: str) -> None:
        if source.startswith("=") or "=" not in source:
            raise NsboxError(f"invalid literal source {source}, expected key=value")
        key, value = source.split("=", 1)
        self.add(key, value.strip("\"'").encode(), True)  # as kubectl: quotes around the value go

    def file(self, source: str) -> None:
        key, path = _file_source(source)
        info = _stat(path)
        import stat

        if stat.S_ISDIR(info.st_mode):
            if "=" in source:
                raise NsboxError("cannot give a key name for a directory path")
            with os.scandir(path) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if entry.is_file(follow_symlinks=False):
                        self._file(entry.name, entry.path)
        else:
            self._file(key, path)

    def _file(self, key: str, path: str) -> None:
        try:
            with open(path, "rb") as f:
                value = f.read()
        except OSError as e:
            raise NsboxError(f"open {path}: {(e.strerror or str(e)).lower()}") from None
        try:
            value.decode("utf-8")
            text = True
        except UnicodeDecodeError:
            text = False
        self.add(key, value, text)

    def env_file(self, path: str) -> None:
        """KEY=VALUE lines; blank lines and lines starting with # skipped, leading blanks
        dropped, a bare KEY takes the value of this process's environment."""
        import stat

        if stat.S_ISDIR(_stat(path).st_mode):
            raise NsboxError("env config file cannot be a directory")
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for n, raw in enumerate(lines):
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise NsboxError(f"env file {path} contains invalid utf8 bytes at line {n + 1}") from None
            if n == 0:
                line = line.removeprefix("\ufeff")
            line = line.lstrip()
            if not line or line.startswith("#"):
                continue
            key, eq, value = line.partition("=")
            errors = _env_key_errors(key)
            if errors:
                raise NsboxError(f'"{key}" is not a valid key name: {";".join(errors)}')
            self.add(key, (value if eq else os.environ.get(key, "")).encode(), True)

    def object(self, namespace: str, secret_type: str = "") -> dict[str, Any]:
        """The object as a manifest document would give it (validated by read_document)."""
        obj: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": self.kind,
            "metadata": {"name": self.name, "namespace": namespace},
        }
        if self.kind == "Secret":
            obj["data"] = {k: base64.b64encode(v).decode() for k, v in self.data.items()}
            if secret_type:
                obj["type"] = secret_type
        else:
            obj["data"] = {k: v.decode() for k, v in self.data.items() if k in self.text}
            obj["binaryData"] = {k: base64.b64encode(v).decode() for k, v in self.data.items() if k not in self.text}
        return obj


def _file_source(source: str) -> tuple[str, str]:
    """[KEY=]PATH of --from-file: the key defaults to the file's base name."""
    count = source.count("=")
    if count == 0:
        return os.path.basename(source.rstrip("/")) or source, source
    if count > 1:
        raise NsboxError("key names or file paths cannot contain '='")
    key, path = source.split("=")
    if not key:
        raise NsboxError(f"key name for file path {path} missing")
    if not path:
        raise NsboxError(f"file path for key name {key} missing")
    return key, path


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as e:
        raise NsboxError(f"error reading {path}: {(e.strerror or str(e)).lower()}") from None


def _env_key_errors(key: str) -> list[str]:
    from nsbox import kube

    return kube.env_file_key_errors(key)
