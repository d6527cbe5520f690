"""The field-walking base every manifest reader shares: problems in the API
server's wording, the policy tables applied to one object, typed access.

A reader collects problems and warnings into `Findings`; readers of the parts
of one object share one. `Reader.metadata` reads ObjectMeta, for Pods and
for ConfigMaps and Secrets (nsbox.objects).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

from .. import kube
from ..model import PodSpec
from .policy import (
    DIVISORS,
    HANDLED,
    IGNORED_SILENTLY,
    INT32_MAX,
    REJECTED,
    REJECTED_ONLY_IF,
    RESOURCE_FIELD_PATHS,
    WARNED,
)

# Kubernetes field-error wording (apimachinery field.Error).


def show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_Q = TypeVar("_Q")  # what a quantity parser returns: an int, or a Fraction


class Findings:
    """What reading one object found. `container_refs` holds the
    resourceFieldRef.containerName seen (path, name), checked once every
    container of the pod is known."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.container_refs: list[tuple[str, str]] = []


class PodContext(NamedTuple):
    """What the pod level decided that its containers read: the network
    ("loopback", "bridge" or "host"), the labels and annotations (resolved into
    env at apply), the volumes' names, the pod securityContext's user rules."""

    network: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    volume_names: frozenset[str]
    run_as_user: int | None
    run_as_non_root: bool | None
    service_account: str = "default"  # spec.serviceAccountName as the API server stores it
    os_name: str = ""  # spec.os.name: lifecycle.stopSignal needs it (API server)


class Reader:
    """Reads one object's fields; problems and warnings go to `findings`."""

    def __init__(self, findings: Findings | None = None):
        self.findings = findings if findings is not None else Findings()
        self.problems = self.findings.problems
        self.warnings = self.findings.warnings

    # -- reporting

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def required(self, path: str, detail: str = "") -> None:
        self.problem(f"{path}: Required value" + (f": {detail}" if detail else ""))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.problem(f"{path}: Invalid value: {show(value)}: {detail}")

    def unsupported(self, path: str, value: Any, supported: tuple[str, ...]) -> None:
        self.problem(
            f"{path}: Unsupported value: {show(value)}: supported values: " + ", ".join(show(s) for s in supported)
        )

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    # -- the policy tables

    def fields(self, obj: dict, kind: str, path: str, *, map_keys: bool = False, network: str = "loopback") -> None:
        """Sort every field of `obj` (of Kubernetes type `kind`) by the policy
        (docs/manifests.md); `network` is the pod's, for the ports' rules."""
        for key, value in obj.items():
            if value is None:
                continue  # null is absent, as in Kubernetes
            ref = f"{kind}.{key}"
            where = f"{path}[{key}]" if map_keys else join(path, key)
            if key in HANDLED.get(kind, ()) or key in IGNORED_SILENTLY.get(kind, ()):
                continue
            if ref in WARNED:
                self.warn(f"{where}: ignored ({WARNED[ref]})")
                continue
            if ref not in REJECTED and f"{kind}.*" in REJECTED:
                ref = f"{kind}.*"
            if ref in REJECTED:
                condition = REJECTED_ONLY_IF.get(ref)
                if condition is None or condition(value, obj, network):
                    self.problem(f"{where}: {REJECTED[ref]}")
                continue
            self.problem(f'unknown field "{where}"')

    # -- typed access: None when absent (or null); a problem when of the wrong type

    def get(self, obj: dict, key: str, path: str, kind: str) -> Any:
        value = obj.get(key)
        if value is None:
            return None
        where = join(path, key)
        if kind == "string" and not isinstance(value, str):
            self.invalid(where, value, "must be a string")
        elif kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
            self.invalid(where, value, "must be an integer")
        elif kind == "boolean" and not isinstance(value, bool):
            self.invalid(where, value, "must be a boolean")
        elif kind == "object" and not isinstance(value, dict):
            self.invalid(where, value, "must be an object")
        elif kind == "list" and not isinstance(value, list):
            self.invalid(where, value, "must be a list")
        elif kind == "strings":
            if not isinstance(value, list):
                self.invalid(where, value, "must be a list of strings")
                return None
            bad = [(i, v) for i, v in enumerate(value) if not isinstance(v, str)]
            for i, v in bad:
                self.invalid(f"{where}[{i}]", v, "must be a string")
            return None if bad else value
        elif kind == "string map":
            if not isinstance(value, dict):
                self.invalid(where, value, "must be a map of strings")
                return None
            bad = [(k, v) for k, v in value.items() if not isinstance(v, str)]
            for k, v in bad:
                self.invalid(f"{where}[{k}]", v, "must be a string")
            return None if bad else value
        else:
            return value
        return None

    def seccomp_profile(self, security: dict, path: str) -> tuple[str, str]:
        """A securityContext's seccompProfile as (type, localhostProfile), ("", "") when unset;
        validated as the API server does (ValidateSeccompProfileField), with the kubelet's rule
        that a Localhost profile is a relative path below its seccomp directory (nsbox.seccomp)."""
        profile = self.get(security, "seccompProfile", path, "object")
        if profile is None:
            return "", ""
        from nsbox.seccomp import KINDS

        where = join(path, "seccompProfile")
        self.fields(profile, "SeccompProfile", where)
        kind = self.get(profile, "type", where, "string")
        localhost = self.get(profile, "localhostProfile", where, "string")
        if kind is None:
            self.required(join(where, "type"))
            return "", ""
        if kind not in KINDS:
            self.unsupported(join(where, "type"), kind, KINDS)
            return "", ""
        if kind != "Localhost":
            if localhost is not None:
                self.invalid(join(where, "localhostProfile"), localhost, "can only be set if seccomp type is Localhost")
            return kind, ""
        if not localhost:
            self.required(join(where, "localhostProfile"), "must be set when seccomp type is Localhost")
        elif localhost.startswith("/"):
            self.invalid(join(where, "localhostProfile"), localhost, "must be a relative path")
        elif ".." in localhost.split("/"):
            self.invalid(join(where, "localhostProfile"), localhost, "must not contain '..'")
        else:
            return kind, localhost
        return "", ""

    def objects(self, obj: dict, key: str, path: str) -> list[tuple[str, dict]]:
        """The items of a list of objects, with their paths."""
        items = self.get(obj, key, path, "list") or []
        out = []
        for i, item in enumerate(items):
            where = f"{join(path, key)}[{i}]"
            if isinstance(item, dict):
                out.append((where, item))
            else:
                self.invalid(where, item, "must be an object")
        return out

    def id_field(self, obj: dict, key: str, path: str) -> int | None:
        value = self.get(obj, key, path, "integer")
        if value is not None and not 0 <= value <= INT32_MAX:
            self.invalid(join(path, key), value, f"must be between 0 and {INT32_MAX}, inclusive")
            return None
        return value

    def metadata(self, meta: dict, pod: PodSpec, *, namespace_explicit: bool) -> None:
        """ObjectMeta into `pod` (name, namespace, labels, annotations). `pod.namespace`
        is the default; with `namespace_explicit` (the CLI's -n), another one is an error."""
        default_namespace = pod.namespace
        self.fields(meta, "ObjectMeta", "metadata")
        name = self.get(meta, "name", "metadata", "string")
        if meta.get("name") in (None, ""):
            if meta.get("generateName") is None:
                self.required("metadata.name", "name or generateName is required")
        elif name is not None:
            for e in kube.dns1123_subdomain_errors(name):
                self.invalid("metadata.name", name, e)
            pod.name = name

        ns = self.get(meta, "namespace", "metadata", "string")
        if ns:
            for e in kube.dns1123_label_errors(ns):
                self.invalid("metadata.namespace", ns, e)
            if namespace_explicit and ns != default_namespace:
                self.problem(
                    f'the namespace from the provided object "{ns}" does not match the namespace '
                    f"\"{default_namespace}\". You must pass '--namespace={ns}' to perform this operation."
                )
            pod.namespace = ns

        labels = self.get(meta, "labels", "metadata", "string map") or {}
        for key, value in labels.items():
            for e in kube.qualified_name_errors(key):
                self.invalid("metadata.labels", key, e)
            for e in kube.label_value_errors(value):
                self.invalid("metadata.labels", value, e)
        annotations = self.get(meta, "annotations", "metadata", "string map") or {}
        for key in annotations:
            for e in kube.qualified_name_errors(key.lower()):
                self.invalid("metadata.annotations", key, e)
        if sum(len(k) + len(v) for k, v in annotations.items()) > kube.ANNOTATIONS_TOTAL_MAX:
            self.problem(f"metadata.annotations: Too long: must have at most {kube.ANNOTATIONS_TOTAL_MAX} bytes")
        pod.labels = dict(labels)
        pod.annotations = dict(annotations)

    def resource_field_ref(self, ref: dict, where: str, *, in_volume: bool) -> tuple[str, str, str]:
        """resource, containerName, divisor of a resourceFieldRef (validateContainerResourceFieldSelector)."""
        self.fields(ref, "ResourceFieldSelector", where)
        container = self.get(ref, "containerName", where, "string") or ""
        if container:
            self.findings.container_refs.append((f"{where}.containerName", container))
        resource = self.get(ref, "resource", where, "string") or ""
        if in_volume and not container:
            self.required(f"{where}.containerName")
        elif not resource:
            self.required(f"{where}.resource")
        elif resource not in RESOURCE_FIELD_PATHS:
            self.unsupported(f"{where}.resource", resource, RESOURCE_FIELD_PATHS)
        divisor = ref.get("divisor")
        text = ""
        if divisor is not None and resource in RESOURCE_FIELD_PATHS:
            value = self.quantity(divisor, f"{where}.divisor", kube.quantity_value)
            unit = resource.split(".", 1)[1]
            allowed = DIVISORS[unit]
            if value is not None and value not in [kube.quantity_value(d) for d in allowed]:
                shown = " and ".join(allowed) if unit == "cpu" else ", ".join(allowed)
                what = "local ephemeral storage" if unit == "ephemeral-storage" else unit
                self.invalid(
                    f"{where}.divisor",
                    resource,
                    f"only divisor's values {shown} are supported with the {what} resource",
                )
            text = str(divisor)
        return resource, container, text

    def local_path(self, entry: dict, where: str) -> str | None:
        """An item's `path`: relative, no `..` element, not starting with `..` (ValidateLocalNonReservedPath)."""
        value = self.get(entry, "path", where, "string")
        if not value:
            self.required(f"{where}.path")
            return None
        if value.startswith("/"):
            self.invalid(f"{where}.path", value, "must be a relative path")
        if ".." in value.split("/"):
            self.invalid(f"{where}.path", value, "must not contain '..'")
        if value.startswith("..") and not value.startswith("../"):
            self.invalid(f"{where}.path", value, "must not start with '..'")
        return value

    def file_mode(self, obj: dict, key: str, where: str) -> int | None:
        mode = self.get(obj, key, where, "integer")
        if mode is not None and not 0 <= mode <= 0o777:
            self.invalid(join(where, key), mode, "must be a number between 0 and 0777 (octal), both inclusive")
            return None
        return mode

    def name(self, item: dict, where: str, seen: set[str]) -> str | None:
        """A DNS-1123 label `name`, unique among `seen` (volumes, containers)."""
        name = self.get(item, "name", where, "string")
        if item.get("name") in (None, ""):
            self.required(f"{where}.name")
        if not name:
            return None
        for e in kube.dns1123_label_errors(name):
            self.invalid(f"{where}.name", name, e)
        if name in seen:
            self.problem(f"{where}.name: Duplicate value: {show(name)}")
        seen.add(name)
        return name

    def quantity(self, value: Any, where: str, parse: Callable[[Any], _Q]) -> _Q | None:
        try:
            return parse(value)
        except kube.QuantityError as e:
            self.invalid(where, value, e.reason)
            return None
