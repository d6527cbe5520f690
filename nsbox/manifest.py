"""Kubernetes v1/Pod manifests: loading, validation, conversion to `PodSpec`.

`load_documents` reads YAML or JSON (a file, a directory of them, or "-" for
stdin) into objects; `pods_from_documents` validates every object before
anything is created and turns each into a `PodSpec`; `pod_to_manifest` goes
back to the v1 Pod object that `get -o yaml/json` shows.

How nsbox treats each field of a Pod is a policy, written down below in four
tables: HANDLED (honoured), IGNORED_SILENTLY (server-set fields, harmless to
re-apply), WARNED (meaningful only on a cluster: accepted, one `warning:`
line each, ignored) and REJECTED (nsbox cannot honour them, and ignoring
them would change what the pod does: an error). Any other field is an
unknown field, an error as in Kubernetes' strict field validation.

Error and warning lines carry no "error: " / "warning: " prefix: the CLI
adds it to each line. `resources.requests` are read (shown, in the QoS class
and the downward API) but reserve nothing: nsbox schedules nothing.

PyYAML is imported only when a YAML document is read (it costs ~100 ms).
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from typing import Any, Callable

from . import kube, objects
from .errors import NsboxError
from .model import (ContainerSpec, DownwardFile, EnvFrom, EnvVar, HostAlias, KeyToPath, PodSpec, Projection,
                    Resources, SecurityContext, Volume, VolumeMount)
from .model import ContainerPort

# --- The policy ---------------------------------------------------------------
# Keys are Kubernetes API type names; a type's fields are listed where they go.

HANDLED: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in {
    "Pod": "apiVersion kind metadata spec",
    "ObjectMeta": "name namespace labels annotations",
    "PodSpec": "containers initContainers volumes restartPolicy terminationGracePeriodSeconds "
               "activeDeadlineSeconds hostname hostNetwork hostIPC hostPID shareProcessNamespace "
               "securityContext hostAliases",
    "PodSecurityContext": "runAsUser runAsGroup runAsNonRoot fsGroup fsGroupChangePolicy supplementalGroups "
                          "supplementalGroupsPolicy sysctls",
    "Sysctl": "name value",
    "HostAlias": "ip hostnames",
    "Container": "name image command args workingDir env volumeMounts securityContext resources "
                 "lifecycle stdin tty envFrom ports",
    "EnvVar": "name value valueFrom",
    "EnvVarSource": "fieldRef configMapKeyRef secretKeyRef resourceFieldRef",
    "ConfigMapKeySelector": "name key optional",
    "SecretKeySelector": "name key optional",
    "ResourceFieldSelector": "containerName resource divisor",
    "EnvFromSource": "prefix configMapRef secretRef",
    "ConfigMapEnvSource": "name optional",
    "SecretEnvSource": "name optional",
    "ObjectFieldSelector": "fieldPath apiVersion",
    "VolumeMount": "name mountPath readOnly subPath",
    "Volume": "name emptyDir hostPath configMap secret downwardAPI projected",
    "ConfigMapVolumeSource": "name items defaultMode optional",
    "SecretVolumeSource": "secretName items defaultMode optional",
    "KeyToPath": "key path mode",
    "DownwardAPIVolumeSource": "items defaultMode",
    "DownwardAPIVolumeFile": "path fieldRef resourceFieldRef mode",
    "ProjectedVolumeSource": "sources defaultMode",
    "VolumeProjection": "configMap secret downwardAPI",
    "ConfigMapProjection": "name items optional",
    "SecretProjection": "name items optional",
    "DownwardAPIProjection": "items",
    "EmptyDirVolumeSource": "medium sizeLimit",
    "HostPathVolumeSource": "path type",
    "SecurityContext": "privileged capabilities runAsUser runAsGroup runAsNonRoot "
                       "allowPrivilegeEscalation readOnlyRootFilesystem",
    "Capabilities": "add drop",
    "ResourceRequirements": "limits requests",
    "ResourceList": "cpu memory",
    "Lifecycle": "postStart preStop",
    "LifecycleHandler": "exec sleep",
    "ExecAction": "command",
    "SleepAction": "seconds",
    "ContainerPort": "containerPort protocol name",
}.items()}

# Set by the API server, or status: a `get -o yaml` output can be applied again.
IGNORED_SILENTLY: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in {
    "Pod": "status",
    "ObjectMeta": "uid resourceVersion generation creationTimestamp deletionTimestamp "
                  "deletionGracePeriodSeconds selfLink managedFields",
}.items()}

_SCHEDULING = "scheduling: there is one machine"
_IMAGES = "nsbox runs no images"
_DNS = "no cluster DNS: containers use the host's resolver configuration"
_PROBES = "probes are not implemented yet; a running container counts as ready"
_SA = "no API server: no service account token is mounted"

# Meaningful only on a cluster: accepted, one warning each, ignored.
WARNED: dict[str, str] = {
    "ObjectMeta.ownerReferences": "no controllers run here",
    "ObjectMeta.finalizers": "no controllers run here; deletion is not held back",
    "PodSpec.nodeSelector": _SCHEDULING,
    "PodSpec.nodeName": _SCHEDULING,
    "PodSpec.affinity": _SCHEDULING,
    "PodSpec.tolerations": _SCHEDULING,
    "PodSpec.topologySpreadConstraints": _SCHEDULING,
    "PodSpec.schedulerName": _SCHEDULING,
    "PodSpec.schedulingGates": _SCHEDULING,
    "PodSpec.priorityClassName": _SCHEDULING,
    "PodSpec.priority": _SCHEDULING,
    "PodSpec.preemptionPolicy": _SCHEDULING,
    "PodSpec.overhead": _SCHEDULING,
    "PodSpec.runtimeClassName": "nsbox is the runtime",
    "PodSpec.serviceAccountName": _SA,
    "PodSpec.serviceAccount": _SA,
    "PodSpec.automountServiceAccountToken": _SA,
    "PodSpec.imagePullSecrets": _IMAGES,
    "PodSpec.dnsPolicy": _DNS,
    "PodSpec.dnsConfig": _DNS,
    "PodSpec.subdomain": _DNS,
    "PodSpec.setHostnameAsFQDN": _DNS,
    "PodSpec.enableServiceLinks": "no Services, so no service environment variables",
    "PodSpec.readinessGates": "no controllers set pod conditions",
    "PodSecurityContext.seLinuxOptions": "SELinux labels are not applied",
    "PodSecurityContext.seLinuxChangePolicy": "SELinux labels are not applied",
    "PodSecurityContext.seccompProfile": "seccomp profiles are not applied",
    "PodSecurityContext.appArmorProfile": "AppArmor profiles are not applied",
    "PodSecurityContext.windowsOptions": "nsbox runs Linux pods",
    "Container.imagePullPolicy": _IMAGES,
    "Container.livenessProbe": _PROBES,
    "Container.readinessProbe": _PROBES,
    "Container.startupProbe": _PROBES,
    "Container.terminationMessagePath": "termination messages are not collected",
    "Container.terminationMessagePolicy": "termination messages are not collected",
    "Container.resizePolicy": "resources are not resized in place",
    "Container.stdinOnce": "nothing attaches to a manifest pod's stdin",
    "SecurityContext.seLinuxOptions": "SELinux labels are not applied",
    "SecurityContext.seccompProfile": "seccomp profiles are not applied",
    "SecurityContext.appArmorProfile": "AppArmor profiles are not applied",
    "SecurityContext.windowsOptions": "nsbox runs Linux pods",
    "ResourceList.ephemeral-storage": "local storage is not limited",
}

_VOLUME_TYPE = ("Unsupported value: nsbox provides emptyDir, hostPath, configMap, secret, downwardAPI "
                "and projected volumes only")
_NO_API_SERVER = "Forbidden: nsbox has no API server to issue service account tokens or trust bundles"
_HANDLER = "Unsupported value: nsbox runs exec and sleep handlers only"
_PROTOCOLS = ("SCTP", "TCP", "UDP")     # ContainerPort.protocol (API server: supported values)
_HOST_PORT = ("Forbidden: nsbox does not forward host ports; use hostNetwork, "
              "or the annotation nsbox.io/network: bridge and the pod IP")

# nsbox cannot honour these, and ignoring them would change what the pod does.
REJECTED: dict[str, str] = {
    **{f"Volume.{source}": _VOLUME_TYPE for source in (
        "persistentVolumeClaim ephemeral image csi nfs iscsi "
        "gitRepo glusterfs cephfs rbd fc flexVolume flocker cinder awsElasticBlockStore gcePersistentDisk "
        "azureDisk azureFile vsphereVolume quobyte photonPersistentDisk portworxVolume scaleIO storageos"
    ).split()},
    # (generateName without a name)
    "ObjectMeta.generateName": "Forbidden: nsbox needs metadata.name (kubectl apply cannot use generateName either)",
    "PodSpec.ephemeralContainers": "Forbidden: cannot be set on create",
    "PodSpec.resourceClaims": "Forbidden: dynamic resource allocation needs a cluster",
    "PodSpec.resources": "Forbidden: pod-level resources are not supported; set limits on the containers",
    "PodSpec.hostUsers": "Forbidden: user namespaces are not supported",                # when false
    "PodSpec.os": "Unsupported value: nsbox runs Linux pods",                            # name other than linux
    "Container.volumeDevices": "Forbidden: block devices need persistent volumes",
    "Container.restartPolicy": "Forbidden: sidecar containers are not supported",
    "Container.restartPolicyRules": "Forbidden: sidecar containers are not supported",
    "EnvVarSource.fileKeyRef": "Forbidden: not supported",
    "VolumeProjection.serviceAccountToken": _NO_API_SERVER,
    "VolumeProjection.clusterTrustBundle": _NO_API_SERVER,
    "VolumeProjection.podCertificate": _NO_API_SERVER,
    "VolumeMount.subPathExpr": "Forbidden: not supported; use subPath",
    "VolumeMount.mountPropagation": "Forbidden: mount propagation is not supported",    # other than None
    "VolumeMount.recursiveReadOnly": "Forbidden: recursive read-only mounts are not supported",  # Enabled
    "SecurityContext.procMount": "Forbidden: an unmasked /proc is not supported",        # other than Default
    "Lifecycle.stopSignal": "Forbidden: custom stop signals are not supported",
    "LifecycleHandler.httpGet": _HANDLER,
    "LifecycleHandler.tcpSocket": _HANDLER,
    "ResourceRequirements.claims": "Forbidden: dynamic resource allocation needs a cluster",
    "ResourceList.*": "Unsupported value: nsbox limits cpu and memory only",            # any other resource
    "ContainerPort.hostPort": _HOST_PORT,   # unless 0 (unset), or hostNetwork and equal to containerPort
    "ContainerPort.hostIP": _HOST_PORT,
}

# REJECTED entries that apply only to some values: (value, parent object, reader) → reject?
_REJECTED_ONLY_IF: dict[str, Callable[[Any, dict, "_PodReader"], bool]] = {
    "ObjectMeta.generateName": lambda _, meta, __: not meta.get("name"),
    "PodSpec.hostUsers": lambda v, _, __: v is False,
    "PodSpec.os": lambda v, _, __: not (isinstance(v, dict) and v.get("name") == "linux"),
    "VolumeMount.mountPropagation": lambda v, _, __: v != "None",
    "VolumeMount.recursiveReadOnly": lambda v, _, __: v not in ("Disabled", "IfPossible"),
    "SecurityContext.procMount": lambda v, _, __: v != "Default",
    "ContainerPort.hostPort": lambda v, port, r: v != 0 and not (r.network == "host" and v == port.get("containerPort")),
    "ContainerPort.hostIP": lambda v, _, r: r.network != "host",
}

# nsbox's own annotations (SPEC §3, §4, §5.8).
ANNOTATION_NETWORK = "nsbox.io/network"
ANNOTATION_INIT = "nsbox.io/init"
ANNOTATION_BACKOFF_BASE = "nsbox.io/backoff-base-seconds"
ANNOTATION_BACKOFF_MAX = "nsbox.io/backoff-max-seconds"
ANNOTATION_PIDS_LIMIT = "nsbox.io/pids-limit"           # the pod cgroup's pids.max (default 4096)
ANNOTATION_POD_CPU = "nsbox.io/pod-cpu"                 # `pod create --cpu`: the pod cgroup's own limits
ANNOTATION_POD_MEMORY = "nsbox.io/pod-memory"
NSBOX_ANNOTATIONS = (ANNOTATION_NETWORK, ANNOTATION_INIT, ANNOTATION_BACKOFF_BASE, ANNOTATION_BACKOFF_MAX,
                     ANNOTATION_PIDS_LIMIT, ANNOTATION_POD_CPU, ANNOTATION_POD_MEMORY)

# Downward API paths nsbox fills in at start; labels and annotations are resolved at apply.
ENV_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "status.podIP", "spec.nodeName")
_ENV_FIELD_ALIASES = {"status.podIPs": "status.podIP"}   # one IP per pod: the list is that IP
_ENV_META_FIELD = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]")
CONFIG_VOLUME_KINDS = ("configMap", "secret", "downwardAPI", "projected")
_VOLUME_SOURCE_TYPES = {"configMap": "ConfigMapVolumeSource", "secret": "SecretVolumeSource",
                        "downwardAPI": "DownwardAPIVolumeSource", "projected": "ProjectedVolumeSource"}
_PROJECTION_TYPES = {"configMap": "ConfigMapProjection", "secret": "SecretProjection",
                     "downwardAPI": "DownwardAPIProjection"}
# Downward API in files: the pod's whole label and annotation maps too (never in env).
VOLUME_FIELD_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                      "metadata.uid")
RESOURCE_FIELD_PATHS = ("limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu",
                        "requests.ephemeral-storage", "requests.memory")
_BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
_DIVISORS = {"cpu": ("1m", "1"), "memory": _BYTE_DIVISORS, "ephemeral-storage": _BYTE_DIVISORS}
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice")
EMPTY_DIR_MEDIA = ("", "Memory")
_INT32_MAX = 2**31 - 1
NO_COMMAND = "nsbox runs no images, so every container needs a command"


# --- Loading ------------------------------------------------------------------

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
    objects, i = [], 0
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

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
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
                    None, None, "a mapping key must be a string", key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate field "{key}"', key_node.start_mark)
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
    if isinstance(obj, dict) and isinstance(obj.get("kind"), str) and obj["kind"].endswith("List") \
            and isinstance(obj.get("items"), list):
        for i, item in enumerate(obj["items"]):
            _flatten(f"{label}.items[{i}]", item, out)
        return
    out.append((label, obj))


# --- Validation and conversion -------------------------------------------------

def pods_from_documents(docs: list[tuple[str, Any]], namespace: str = "default", *,
                        namespace_explicit: bool = False,
                        configs: list[dict] | None = None) -> tuple[list[PodSpec], list[str]]:
    """Validate every document, then convert them: (pods, warnings).

    `namespace` is used where metadata.namespace is absent; when the CLI's
    `-n` was given explicitly (`namespace_explicit`), a different namespace
    in a document is an error, as in kubectl. Problems of all documents are
    collected; if there is any, NsboxError is raised whose message holds one
    problem per line (prefixed by the document's label when there are
    several documents) and nothing may be created. The exception's
    `warnings` attribute holds the warnings gathered so far.

    With a `configs` list, ConfigMap and Secret documents are read too (by
    nsbox.objects, with the same all-or-nothing rule) and appended to it."""
    if not docs:
        raise NsboxError("no objects passed to apply")
    several = len(docs) > 1
    pods: list[PodSpec] = []
    problems: list[str] = []
    warnings: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for label, obj in docs:
        prefix = f"{label}: " if several else ""
        if configs is not None and objects.is_document(obj):
            found, found_problems, found_warnings = objects.read_document(
                obj, label, namespace, namespace_explicit, seen)
            problems += [prefix + p for p in found_problems]
            warnings += [prefix + w for w in found_warnings]
            if found is not None:
                configs.append(found)
            continue
        reader = _PodReader(namespace, namespace_explicit)
        pod = reader.read(obj)
        if pod is not None and pod.name:
            key = (pod.namespace, pod.name)
            if key in seen:
                reader.problems.append(f'metadata.name: Duplicate value: {_show(pod.name)} (also in {seen[key]})')
            seen.setdefault(key, label)
        problems += [prefix + p for p in reader.problems]
        warnings += [prefix + w for w in reader.warnings]
        if pod is not None:
            pods.append(pod)
    if problems:
        error = NsboxError("\n".join(problems))
        error.warnings = warnings
        raise error
    return pods, warnings


def pod_names_from_documents(docs: list[tuple[str, Any]], namespace: str = "default", *,
                             configs: list[tuple[str, str, str]] | None = None) -> list[tuple[str, str]]:
    """(namespace, name) of every Pod in the documents, for `delete -f`.

    Only what identifies a pod is checked (kind, apiVersion, metadata.name);
    NsboxError lists every problem. With a `configs` list, the (kind,
    namespace, name) of every ConfigMap and Secret is appended to it."""
    names, problems = [], []
    several = len(docs) > 1
    for label, obj in docs:
        prefix = f"{label}: " if several else ""
        if configs is not None and objects.is_document(obj):
            meta = obj.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            ns = meta.get("namespace") if isinstance(meta, dict) else None
            if not isinstance(name, str) or not name:
                problems.append(prefix + "metadata.name: Required value: name or generateName is required")
            else:
                configs.append((obj["kind"], ns if isinstance(ns, str) and ns else namespace, name))
            continue
        reader = _PodReader(namespace, False)
        if reader.identify(obj):
            meta = obj.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            ns = meta.get("namespace") if isinstance(meta, dict) else None
            if not isinstance(name, str) or not name:
                reader.problem("metadata.name: Required value: name or generateName is required")
            else:
                names.append((ns if isinstance(ns, str) and ns else namespace, name))
        problems += [prefix + p for p in reader.problems]
    if not docs:
        problems.append("no objects passed to delete")
    if problems:
        raise NsboxError("\n".join(problems))
    return names


# Kubernetes field-error wording (apimachinery field.Error).

def _show(value: Any) -> str:
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


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _PodReader:
    """Reads one Pod object: collects problems and warnings, builds a PodSpec."""

    def __init__(self, namespace: str, namespace_explicit: bool):
        self.default_namespace = namespace
        self.namespace_explicit = namespace_explicit
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.network = "loopback"
        self.volume_names: set[str] = set()
        self.container_names: set[str] = set()
        self.labels: dict[str, str] = {}
        self.annotations: dict[str, str] = {}
        self.pod_run_as_user: int | None = None
        self.service_account = "default"
        self.pod_run_as_non_root: bool | None = None
        self.resource_containers: list[tuple[str, str]] = []   # resourceFieldRef.containerName, checked last

    # -- reporting

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def required(self, path: str, detail: str = "") -> None:
        self.problem(f"{path}: Required value" + (f": {detail}" if detail else ""))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.problem(f"{path}: Invalid value: {_show(value)}: {detail}")

    def unsupported(self, path: str, value: Any, supported: tuple[str, ...]) -> None:
        self.problem(f"{path}: Unsupported value: {_show(value)}: supported values: "
                     + ", ".join(_show(s) for s in supported))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    # -- the policy tables

    def fields(self, obj: dict, kind: str, path: str, *, map_keys: bool = False) -> None:
        """Sort every field of `obj` (of Kubernetes type `kind`) by the policy."""
        for key, value in obj.items():
            if value is None:
                continue  # null is absent, as in Kubernetes
            ref = f"{kind}.{key}"
            where = f"{path}[{key}]" if map_keys else _join(path, key)
            if key in HANDLED.get(kind, ()) or key in IGNORED_SILENTLY.get(kind, ()):
                continue
            if ref in WARNED:
                self.warn(f"{where}: ignored ({WARNED[ref]})")
                continue
            if ref not in REJECTED and f"{kind}.*" in REJECTED:
                ref = f"{kind}.*"
            if ref in REJECTED:
                condition = _REJECTED_ONLY_IF.get(ref)
                if condition is None or condition(value, obj, self):
                    self.problem(f"{where}: {REJECTED[ref]}")
                continue
            self.problem(f'unknown field "{where}"')

    # -- typed access: None when absent (or null); a problem when of the wrong type

    def get(self, obj: dict, key: str, path: str, kind: str) -> Any:
        value = obj.get(key)
        if value is None:
            return None
        where = _join(path, key)
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

    def objects(self, obj: dict, key: str, path: str) -> list[tuple[str, dict]]:
        """The items of a list of objects, with their paths."""
        items = self.get(obj, key, path, "list") or []
        out = []
        for i, item in enumerate(items):
            where = f"{_join(path, key)}[{i}]"
            if isinstance(item, dict):
                out.append((where, item))
            else:
                self.invalid(where, item, "must be an object")
        return out

    # -- the Pod

    def identify(self, obj: Any) -> bool:
        """Whether `obj` is a v1 Pod; the problem is recorded if not."""
        if not isinstance(obj, dict):
            self.problem(f"a document must be an object, not {_show(obj)}")
            return False
        api, kind = obj.get("apiVersion"), obj.get("kind")
        if api is None or kind is None:
            self.problem("error validating data: ["
                         + ", ".join(f"{k} not set" for k, v in (("apiVersion", api), ("kind", kind)) if v is None)
                         + "]")
            return False
        if kind != "Pod":
            self.problem(f"unsupported kind {_show(kind)} (nsbox runs only v1 Pods)")
            return False
        if api != "v1":
            self.problem(f"unsupported apiVersion {_show(api)} for kind Pod (nsbox runs only v1 Pods)")
            return False
        return True

    def read(self, obj: Any) -> PodSpec | None:
        if not self.identify(obj):
            return None
        self.fields(obj, "Pod", "")
        pod = PodSpec(name="", namespace=self.default_namespace, source="manifest",
                      manifest=copy.deepcopy(obj))
        meta = self.get(obj, "metadata", "", "object")
        if obj.get("metadata") is None:
            self.required("metadata.name", "name or generateName is required")
        if meta is not None:
            self.metadata(meta, pod)
        spec = self.get(obj, "spec", "", "object")
        if obj.get("spec") is None:
            self.required("spec.containers")
        else:
            self.spec(spec, pod)
        return pod

    def metadata(self, meta: dict, pod: PodSpec) -> None:
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
            if self.namespace_explicit and ns != self.default_namespace:
                self.problem(f'the namespace from the provided object "{ns}" does not match the namespace '
                             f'"{self.default_namespace}". You must pass \'--namespace={ns}\' to perform this operation.')
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
        self.labels, self.annotations = pod.labels, pod.annotations

    def nsbox_annotations(self, host_network: bool) -> None:
        """nsbox.io/* annotations: network, init, back-off (SPEC §3–§5)."""
        where = "metadata.annotations"
        for key in self.annotations:
            if key.startswith("nsbox.io/") and key not in NSBOX_ANNOTATIONS:
                self.warn(f"{where}[{key}]: ignored (unknown nsbox annotation; known: {', '.join(NSBOX_ANNOTATIONS)})")
        network = self.annotations.get(ANNOTATION_NETWORK)
        if network is not None:
            if network not in ("loopback", "bridge"):
                self.unsupported(f"{where}[{ANNOTATION_NETWORK}]", network, ("bridge", "loopback"))
            elif host_network and network == "bridge":
                self.invalid(f"{where}[{ANNOTATION_NETWORK}]", network, "conflicts with spec.hostNetwork: true")
            elif not host_network:
                self.network = network
        init = self.annotations.get(ANNOTATION_INIT)
        if init is not None and init not in ("true", "false"):
            self.unsupported(f"{where}[{ANNOTATION_INIT}]", init, ("true", "false"))
        # The watcher reads the back-off annotations; they must be numbers it can use.
        for key in (ANNOTATION_BACKOFF_BASE, ANNOTATION_BACKOFF_MAX):
            if key in self.annotations and _positive_number(self.annotations[key]) is None:
                self.invalid(f"{where}[{key}]", self.annotations[key], "must be a number of seconds > 0")
        # It also reads the pod cgroup's limits from these: a value it cannot parse must fail the
        # apply, not the pod after apply has said yes.
        pids = self.annotations.get(ANNOTATION_PIDS_LIMIT)
        if pids is not None and not (pids.isascii() and pids.isdigit() and int(pids) > 0):
            self.invalid(f"{where}[{ANNOTATION_PIDS_LIMIT}]", pids, "must be a whole number of processes > 0")
        for key, parse in ((ANNOTATION_POD_CPU, kube.parse_cpu), (ANNOTATION_POD_MEMORY, kube.parse_memory)):
            if key in self.annotations:
                self.quantity(self.annotations[key], f"{where}[{key}]", parse)

    def spec(self, spec: dict, pod: PodSpec) -> None:
        self.fields(spec, "PodSpec", "spec")
        policy = self.get(spec, "restartPolicy", "spec", "string")
        if policy is not None:
            if policy not in kube.RESTART_POLICIES:
                self.unsupported("spec.restartPolicy", policy, kube.RESTART_POLICIES)
            else:
                pod.restart_policy = policy

        grace = self.get(spec, "terminationGracePeriodSeconds", "spec", "integer")
        if grace is not None:
            if grace < 0:
                # API server (pkg/api/pod/warnings.go): stored as 1, with this warning.
                self.warn("spec.terminationGracePeriodSeconds: must be >= 0; "
                          "negative values are invalid and will be treated as 1")
                grace = 1
            pod.termination_grace_period = grace

        deadline = self.get(spec, "activeDeadlineSeconds", "spec", "integer")
        if deadline is not None:
            if not 1 <= deadline <= _INT32_MAX:
                self.invalid("spec.activeDeadlineSeconds", deadline, f"must be between 1 and {_INT32_MAX}, inclusive")
            else:
                pod.active_deadline_seconds = deadline

        host_network = self.get(spec, "hostNetwork", "spec", "boolean") is True
        pod.host_ipc = self.get(spec, "hostIPC", "spec", "boolean") is True
        pod.host_pid = self.get(spec, "hostPID", "spec", "boolean") is True
        pod.share_process_namespace = self.get(spec, "shareProcessNamespace", "spec", "boolean") is True
        if pod.share_process_namespace and pod.host_pid:
            self.invalid("spec.shareProcessNamespace", True, "ShareProcessNamespace and HostPID cannot both be enabled")

        hostname = self.get(spec, "hostname", "spec", "string")
        if hostname:
            for e in kube.dns1123_label_errors(hostname):
                self.invalid("spec.hostname", hostname, e)
            if host_network:
                self.warn("spec.hostname: ignored (a hostNetwork pod has the host's hostname)")
            pod.hostname = hostname

        if host_network:
            self.network = "host"
        self.nsbox_annotations(host_network)
        pod.network = self.network

        security = self.get(spec, "securityContext", "spec", "object")
        if security is not None:
            self.fields(security, "PodSecurityContext", "spec.securityContext")
            pod.run_as_user = self.id_field(security, "runAsUser", "spec.securityContext")
            pod.run_as_group = self.id_field(security, "runAsGroup", "spec.securityContext")
            self.pod_run_as_user = pod.run_as_user
            self.pod_run_as_non_root = self.get(security, "runAsNonRoot", "spec.securityContext", "boolean")
            self.groups(security, pod)
            self.sysctls(security, pod)
        for where, item in self.objects(spec, "hostAliases", "spec"):
            alias = self.host_alias(item, where)
            if alias is not None:
                pod.host_aliases.append(alias)

        for where, item in self.objects(spec, "volumes", "spec"):
            volume = self.volume(item, where)
            if volume is not None:
                pod.volumes.append(volume)

        # What an env fieldRef to spec.serviceAccountName reads: the name as the API server stores
        # it, where the ServiceAccount admission plugin sets an unset one to "default".
        account = spec.get("serviceAccountName") or spec.get("serviceAccount")
        self.service_account = account if isinstance(account, str) and account else "default"

        if spec.get("containers") in (None, []):
            self.required("spec.containers")
        for key, target in (("initContainers", pod.init_containers), ("containers", pod.containers)):
            for where, item in self.objects(spec, key, "spec"):
                container = self.container(item, where)
                if container is not None:
                    target.append(container)

        for ref_where, name in self.resource_containers:
            if name not in self.container_names:
                self.problem(f"{ref_where}: Not found: {_show(name)}")

        if self.annotations.get(ANNOTATION_INIT) == "true":
            for container in pod.all_containers():
                container.init = True

    def id_field(self, obj: dict, key: str, path: str) -> int | None:
        value = self.get(obj, key, path, "integer")
        if value is not None and not 0 <= value <= _INT32_MAX:
            self.invalid(_join(path, key), value, f"must be between 0 and {_INT32_MAX}, inclusive")
            return None
        return value

    # -- groups, sysctls, host aliases (API server: validatePodSpecSecurityContext, ValidateHostAliases)

    def groups(self, security: dict, pod: PodSpec) -> None:
        where = "spec.securityContext"
        pod.fs_group = self.id_field(security, "fsGroup", where)
        policy = self.get(security, "fsGroupChangePolicy", where, "string")
        if policy is not None:
            if policy not in kube.FS_GROUP_CHANGE_POLICIES:
                self.unsupported(f"{where}.fsGroupChangePolicy", policy, kube.FS_GROUP_CHANGE_POLICIES)
            else:
                pod.fs_group_change_policy = policy
        groups = self.get(security, "supplementalGroups", where, "list") or []
        for i, gid in enumerate(groups):
            gid_where = f"{where}.supplementalGroups[{i}]"
            if isinstance(gid, bool) or not isinstance(gid, int):
                self.invalid(gid_where, gid, "must be an integer")
            elif not 0 <= gid <= _INT32_MAX:
                self.invalid(gid_where, gid, f"must be between 0 and {_INT32_MAX}, inclusive")
            else:
                pod.supplemental_groups.append(gid)
        policy = self.get(security, "supplementalGroupsPolicy", where, "string")
        if policy is not None:
            if policy not in kube.SUPPLEMENTAL_GROUPS_POLICIES:
                self.unsupported(f"{where}.supplementalGroupsPolicy", policy, kube.SUPPLEMENTAL_GROUPS_POLICIES)
            else:
                pod.supplemental_groups_policy = policy

    def sysctls(self, security: dict, pod: PodSpec) -> None:
        """Only sysctls the kernel keeps per namespace, and never one of a namespace shared with the host."""
        for where, item in self.objects(security, "sysctls", "spec.securityContext"):
            self.fields(item, "Sysctl", where)
            name = self.get(item, "name", where, "string")
            value = self.get(item, "value", where, "string") or ""
            if not name:
                if item.get("name") in (None, ""):
                    self.required(f"{where}.name")
                continue
            errors = kube.sysctl_name_errors(name)
            for e in errors:
                self.invalid(f"{where}.name", name, e)
            if errors:
                continue
            if name in pod.sysctls:
                self.problem(f"{where}.name: Duplicate value: {_show(name)}")
                continue
            namespace = kube.sysctl_namespace(name)
            if not namespace:
                self.problem(f"{where}.name: Forbidden: sysctl {_show(name)} is not namespaced: a pod may set "
                             f"only {kube.NAMESPACED_SYSCTLS_TEXT}")
                continue
            if namespace == "net" and self.network == "host":
                self.invalid(f"{where}.name", name, "may not be specified when 'hostNetwork' is true")
                continue
            if namespace == "ipc" and pod.host_ipc:
                self.invalid(f"{where}.name", name, "may not be specified when 'hostIPC' is true")
                continue
            pod.sysctls[name] = value

    def host_alias(self, item: dict, where: str) -> HostAlias | None:
        self.fields(item, "HostAlias", where)
        ip = self.get(item, "ip", where, "string")
        names = self.get(item, "hostnames", where, "strings")
        ok = ip is not None
        if item.get("ip") in (None, ""):
            self.required(f"{where}.ip")
        elif ip is not None and not _is_ip(ip):
            self.invalid(f"{where}.ip", ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
            ok = False
        if not item.get("hostnames"):
            self.required(f"{where}.hostnames")
            ok = False
        for i, name in enumerate(names or []):
            for e in kube.dns1123_subdomain_errors(name):
                self.invalid(f"{where}.hostnames[{i}]", name, e)
                ok = False
        return HostAlias(ip, list(names)) if ok and names else None

    # -- volumes

    def volume(self, item: dict, where: str) -> Volume | None:
        self.fields(item, "Volume", where)
        name = self.name(item, where, self.volume_names)
        rejected = any(f"Volume.{k}" in REJECTED and v is not None for k, v in item.items())
        # In the API server's order (validateVolumeSource): the second one found is reported.
        sources = [k for k in ("emptyDir", "hostPath", "secret", "downwardAPI", "configMap", "projected")
                   if item.get(k) is not None]
        if len(sources) > 1:
            self.problem(f"{where}.{sources[1]}: Forbidden: may not specify more than 1 volume type")
            return None
        if rejected or name is None:
            return None
        volume = Volume(name=name)
        if sources and sources[0] in CONFIG_VOLUME_KINDS:
            return self.config_volume(item, sources[0], where, volume)
        if sources == ["hostPath"]:
            source = self.get(item, "hostPath", where, "object")
            if source is None:
                return None
            path = f"{where}.hostPath"
            self.fields(source, "HostPathVolumeSource", path)
            host_path = self.get(source, "path", path, "string")
            if host_path is None or host_path == "":
                self.required(f"{path}.path")
            elif not host_path.startswith("/"):
                self.invalid(f"{path}.path", host_path, "must be an absolute path")
            elif ".." in host_path.split("/"):
                self.invalid(f"{path}.path", host_path, "must not contain '..'")
            kind = self.get(source, "type", path, "string") or ""
            if kind not in HOST_PATH_TYPES:
                self.unsupported(f"{path}.type", kind, HOST_PATH_TYPES)
            volume.kind, volume.host_path, volume.host_path_type = "hostPath", host_path or "", kind
            return volume
        # emptyDir, also when no source is given (API server SetDefaults_Volume).
        source = self.get(item, "emptyDir", where, "object") if sources else {}
        if source is None:
            return None
        path = f"{where}.emptyDir"
        self.fields(source, "EmptyDirVolumeSource", path)
        medium = self.get(source, "medium", path, "string") or ""
        if medium not in EMPTY_DIR_MEDIA:
            self.unsupported(f"{path}.medium", medium, EMPTY_DIR_MEDIA)
        volume.medium = medium
        if source.get("sizeLimit") is not None:
            volume.size_limit = self.quantity(source["sizeLimit"], f"{path}.sizeLimit", kube.parse_memory)
        return volume

    def config_volume(self, item: dict, kind: str, where: str, volume: Volume) -> Volume | None:
        """A configMap, secret, downwardAPI or projected volume (README, "ConfigMaps, Secrets
        and the downward API"); the API server's rules (validateConfigMapVolumeSource & co.)."""
        path = f"{where}.{kind}"
        source = self.get(item, kind, where, "object")
        if source is None:
            return None
        volume.kind = kind
        self.fields(source, _VOLUME_SOURCE_TYPES[kind], path)
        volume.default_mode = self.file_mode(source, "defaultMode", path)
        if kind == "projected":
            # validateProjectionSources: every path once across the sources, one kind per source.
            paths: set[str] = set()
            for source_where, projection in self.objects(source, "sources", path):
                self.fields(projection, "VolumeProjection", source_where)
                given = [k for k in ("secret", "configMap", "downwardAPI") if projection.get(k) is not None]
                for k in given:
                    p = self.projection(projection, k, source_where, projected=True)
                    if p is None:
                        continue
                    for entry in p.items or p.files:
                        if entry.path and entry.path in paths:
                            self.invalid(path, entry.path if k == "downwardAPI" else p.name,
                                         "conflicting duplicate paths")
                        paths.add(entry.path)
                    volume.sources.append(p)
                if len(given) > 1:
                    self.problem(f"{source_where}: Forbidden: may not specify more than 1 volume type")
        else:
            p = self.projection(item, kind, where, projected=False)
            if p is not None:
                volume.sources.append(p)
        return volume

    def projection(self, parent: dict, kind: str, where: str, *, projected: bool) -> Projection | None:
        source = self.get(parent, kind, where, "object")
        if source is None:
            return None
        path = f"{where}.{kind}"
        if projected:
            self.fields(source, _PROJECTION_TYPES[kind], path)
        if kind == "downwardAPI":
            files = []
            for _file_where, entry in self.objects(source, "items", path):
                f = self.downward_file(entry, path)      # validateDownwardAPIVolumeFile names no index
                if f is not None:
                    files.append(f)
            return Projection(kind="downwardAPI", files=files)
        key = "secretName" if kind == "secret" and not projected else "name"
        name = self.get(source, key, path, "string") or ""
        if not name:
            self.required(f"{path}.{key}")
        optional = self.get(source, "optional", path, "boolean") is True
        items = []
        for item_where, entry in self.objects(source, "items", path):
            self.fields(entry, "KeyToPath", item_where)
            key_name = self.get(entry, "key", item_where, "string") or ""
            if not key_name:
                self.required(f"{item_where}.key")
            file_path = self.local_path(entry, item_where)
            items.append(KeyToPath(key=key_name, path=file_path or "", mode=self.file_mode(entry, "mode", item_where)))
        return Projection(kind=kind, name=name, items=items, optional=optional)

    def downward_file(self, entry: dict, where: str) -> DownwardFile | None:
        self.fields(entry, "DownwardAPIVolumeFile", where)
        out = DownwardFile(path=self.local_path(entry, where) or "", mode=self.file_mode(entry, "mode", where))
        field_ref = self.get(entry, "fieldRef", where, "object")
        resource_ref = self.get(entry, "resourceFieldRef", where, "object")
        if field_ref is not None:
            ref_where = f"{where}.fieldRef"
            self.fields(field_ref, "ObjectFieldSelector", ref_where)
            api = self.get(field_ref, "apiVersion", ref_where, "string")
            if api and api != "v1":
                self.unsupported(f"{ref_where}.apiVersion", api, ("v1",))
            field_path = self.get(field_ref, "fieldPath", ref_where, "string")
            if not field_path:
                self.required(f"{ref_where}.fieldPath")
            elif field_path in VOLUME_FIELD_PATHS or _ENV_META_FIELD.fullmatch(field_path):
                out.field_ref = field_path
            else:
                self.unsupported(f"{ref_where}.fieldPath", field_path, VOLUME_FIELD_PATHS)
            if resource_ref is not None:
                self.invalid(where, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously")
        elif resource_ref is not None:
            out.resource, out.container, out.divisor = self.resource_field_ref(
                resource_ref, f"{where}.resourceFieldRef", in_volume=True)
        else:
            self.required(where, "one of fieldRef and resourceFieldRef is required")
        return out

    def resource_field_ref(self, ref: dict, where: str, *, in_volume: bool) -> tuple[str, str, str]:
        """resource, containerName, divisor of a resourceFieldRef (validateContainerResourceFieldSelector)."""
        self.fields(ref, "ResourceFieldSelector", where)
        container = self.get(ref, "containerName", where, "string") or ""
        if container:
            self.resource_containers.append((f"{where}.containerName", container))
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
            allowed = _DIVISORS[unit]
            if value is not None and value not in [kube.quantity_value(d) for d in allowed]:
                shown = " and ".join(allowed) if unit == "cpu" else ", ".join(allowed)
                what = "local ephemeral storage" if unit == "ephemeral-storage" else unit
                self.invalid(f"{where}.divisor", resource,
                             f"only divisor's values {shown} are supported with the {what} resource")
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
            self.invalid(_join(where, key), mode, "must be a number between 0 and 0777 (octal), both inclusive")
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
            self.problem(f"{where}.name: Duplicate value: {_show(name)}")
        seen.add(name)
        return name

    def quantity(self, value: Any, where: str, parse: Callable[[Any], int]) -> int | None:
        try:
            return parse(value)
        except kube.QuantityError as e:
            self.invalid(where, value, e.reason)
            return None

    # -- containers

    def container(self, item: dict, where: str) -> ContainerSpec | None:
        self.fields(item, "Container", where)
        name = self.name(item, where, self.container_names)
        command = self.get(item, "command", where, "strings")
        args = self.get(item, "args", where, "strings")
        if item.get("command") in (None, []):
            self.required(f"{where}.command", NO_COMMAND)
        container = ContainerSpec(name=name or "", command=list(command or []), args=list(args or []))

        image = self.get(item, "image", where, "string")
        if image:
            if os.path.isdir(image):
                container.image = os.path.abspath(image)
            else:
                container.image = image
                self.warn(f"{where}.image: ignored ({_show(image)} is not a local directory: "
                          "nsbox runs no images, and the container sees the host's files)")

        working_dir = self.get(item, "workingDir", where, "string")
        if working_dir:
            if not working_dir.startswith("/"):
                self.invalid(f"{where}.workingDir", working_dir, "must be an absolute path")
            container.working_dir = working_dir

        container.env = self.env(item, where)
        container.env_from = self.env_from(item, where)
        container.volume_mounts = self.volume_mounts(item, where)
        container.security = self.security_context(item, where)
        container.resources = self.resources(item, where)
        container.post_start, container.pre_stop = self.lifecycle(item, where)
        container.stdin = self.get(item, "stdin", where, "boolean") is True
        container.tty = self.get(item, "tty", where, "boolean") is True
        for port_where, port in self.objects(item, "ports", where):
            self.fields(port, "ContainerPort", port_where)
            number = self.get(port, "containerPort", port_where, "integer")
            if number is None and "containerPort" not in port:
                self.required(f"{port_where}.containerPort")
            elif number is not None and not 1 <= number <= 65535:
                self.invalid(f"{port_where}.containerPort", number, "must be between 1 and 65535, inclusive")
            port_name = self.get(port, "name", port_where, "string")
            protocol = self.get(port, "protocol", port_where, "string")
            if protocol is not None and protocol not in _PROTOCOLS:
                self.unsupported(f"{port_where}.protocol", protocol, _PROTOCOLS)
            host_port = self.get(port, "hostPort", port_where, "integer")
            if not host_port and self.network == "host":
                host_port = number      # API server defaulting: on the host's network, hostPort = containerPort
            if isinstance(number, int):
                container.ports.append(ContainerPort(
                    container_port=number, name=port_name if isinstance(port_name, str) else "",
                    protocol=protocol if protocol in _PROTOCOLS else "TCP",
                    host_port=host_port if isinstance(host_port, int) and host_port else None))
        return container if name else None

    def env(self, item: dict, where: str) -> list[EnvVar]:
        out: list[EnvVar] = []
        defined: set[str] = set()
        for env_where, entry in self.objects(item, "env", where):
            self.fields(entry, "EnvVar", env_where)
            name = self.get(entry, "name", env_where, "string")
            if entry.get("name") in (None, ""):
                self.required(f"{env_where}.name")
            if not name:
                continue
            error = kube.env_var_name_error(name)
            if error:
                self.invalid(f"{env_where}.name", name, error)
            if name in defined:
                # API server warning (pkg/api/pod/warnings.go).
                self.warn(f'{env_where}: hides previous definition of "{name}", which may be dropped when using apply')
            defined.add(name)
            var = EnvVar(name=name, value=self.get(entry, "value", env_where, "string") or "")
            source = self.get(entry, "valueFrom", env_where, "object")
            if source is not None:
                source_where = f"{env_where}.valueFrom"
                if var.value:
                    self.invalid(source_where, "", "may not be specified when `value` is not empty")
                self.fields(source, "EnvVarSource", source_where)
                given = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
                         if source.get(k) is not None]
                if len(given) > 1:
                    self.invalid(source_where, "", "may not have more than one field specified at a time")
                ref = self.get(source, "fieldRef", source_where, "object")
                resource = self.get(source, "resourceFieldRef", source_where, "object")
                if ref is not None:
                    self.field_ref(ref, f"{source_where}.fieldRef", var)
                if resource is not None:
                    var.resource, var.resource_container, var.divisor = self.resource_field_ref(
                        resource, f"{source_where}.resourceFieldRef", in_volume=False)
                for kind in ("configMap", "secret"):
                    key_ref = self.get(source, f"{kind}KeyRef", source_where, "object")
                    if key_ref is not None:
                        self.key_ref(key_ref, f"{source_where}.{kind}KeyRef", kind, var)
                if not any(v is not None for v in source.values()):
                    self.invalid(source_where, "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                 "`configMapKeyRef` or `secretKeyRef`")
            out.append(var)
        return out

    def key_ref(self, ref: dict, where: str, kind: str, var: EnvVar) -> None:
        """configMapKeyRef / secretKeyRef (validateConfigMapKeySelector, validateSecretKeySelector)."""
        self.fields(ref, "ConfigMapKeySelector" if kind == "configMap" else "SecretKeySelector", where)
        name = self.get(ref, "name", where, "string") or ""
        for e in kube.dns1123_subdomain_errors(name):        # ValidateSecretName, also for ""
            self.invalid(f"{where}.name", name, e)
        key = self.get(ref, "key", where, "string") or ""
        if not key:
            self.required(f"{where}.key")
        for e in kube.config_key_errors(key) if key else ():
            self.invalid(f"{where}.key", key, e)
        var.ref_kind, var.ref_name, var.ref_key = kind, name, key
        var.optional = self.get(ref, "optional", where, "boolean") is True

    def env_from(self, item: dict, where: str) -> list[EnvFrom]:
        """envFrom: configMapRef or secretRef, with an optional prefix (validateEnvFrom)."""
        out: list[EnvFrom] = []
        for from_where, entry in self.objects(item, "envFrom", where):
            self.fields(entry, "EnvFromSource", from_where)
            prefix = self.get(entry, "prefix", from_where, "string") or ""
            if prefix:
                error = kube.env_var_name_error(prefix)
                if error:
                    self.invalid(f"{from_where}.prefix", prefix, error)
            given = [k for k in ("configMapRef", "secretRef") if entry.get(k) is not None]
            for key in given:
                ref_where = f"{from_where}.{key}"
                ref = self.get(entry, key, from_where, "object")
                if ref is None:
                    continue
                self.fields(ref, "ConfigMapEnvSource" if key == "configMapRef" else "SecretEnvSource", ref_where)
                name = self.get(ref, "name", ref_where, "string") or ""
                if not name:
                    self.required(f"{ref_where}.name")
                for e in kube.dns1123_subdomain_errors(name) if name else ():
                    self.invalid(f"{ref_where}.name", name, e)
                out.append(EnvFrom(kind="configMap" if key == "configMapRef" else "secret", name=name,
                                   prefix=prefix, optional=self.get(ref, "optional", ref_where, "boolean") is True))
            env_from_where = _join(where, "envFrom")
            if not given:
                self.invalid(env_from_where, "", "must specify one of: `configMapRef` or `secretRef`")
            elif len(given) > 1:
                self.invalid(env_from_where, "", "may not have more than one field specified at a time")
        return out

    def field_ref(self, ref: dict, where: str, var: EnvVar) -> None:
        self.fields(ref, "ObjectFieldSelector", where)
        api = self.get(ref, "apiVersion", where, "string")
        if api and api != "v1":
            self.unsupported(f"{where}.apiVersion", api, ("v1",))
        field = self.get(ref, "fieldPath", where, "string")
        if not field:
            self.required(f"{where}.fieldPath")
            return
        field = _ENV_FIELD_ALIASES.get(field, field)
        meta = _ENV_META_FIELD.fullmatch(field)
        if field in ENV_FIELD_PATHS:
            var.field_ref = field
        elif meta:
            # Labels and annotations of an nsbox pod never change: resolve them now.
            source = self.labels if meta.group(1) == "labels" else self.annotations
            var.value = source.get(meta.group(2), "")
        elif field == "spec.serviceAccountName":
            var.value = self.service_account          # fixed for the pod's life, as labels are
        else:
            self.unsupported(f"{where}.fieldPath", field, ENV_FIELD_PATHS + (
                "metadata.labels['<KEY>']", "metadata.annotations['<KEY>']", "status.podIPs",
                "spec.serviceAccountName"))

    def volume_mounts(self, item: dict, where: str) -> list[VolumeMount]:
        out: list[VolumeMount] = []
        paths: set[str] = set()
        for mount_where, entry in self.objects(item, "volumeMounts", where):
            self.fields(entry, "VolumeMount", mount_where)
            name = self.get(entry, "name", mount_where, "string")
            if not name:
                self.required(f"{mount_where}.name")
            elif name not in self.volume_names:
                self.problem(f"{mount_where}.name: Not found: {_show(name)}")
            mount_path = self.get(entry, "mountPath", mount_where, "string")
            if not mount_path:
                self.required(f"{mount_where}.mountPath")
            elif not mount_path.startswith("/"):
                self.invalid(f"{mount_where}.mountPath", mount_path, "must be an absolute path")
            elif mount_path.rstrip("/") in paths:
                self.invalid(f"{mount_where}.mountPath", mount_path, "must be unique")
            else:
                paths.add(mount_path.rstrip("/"))
            sub_path = self.get(entry, "subPath", mount_where, "string") or ""
            if sub_path.startswith("/"):
                self.invalid(f"{mount_where}.subPath", sub_path, "must be a relative path")
            elif ".." in sub_path.split("/"):
                self.invalid(f"{mount_where}.subPath", sub_path, "must not contain '..'")
            read_only = self.get(entry, "readOnly", mount_where, "boolean") is True
            out.append(VolumeMount(name=name or "", mount_path=mount_path or "", read_only=read_only,
                                   sub_path=sub_path))
        return out

    def security_context(self, item: dict, where: str) -> SecurityContext:
        out = SecurityContext()
        sc = self.get(item, "securityContext", where, "object")
        sc_where = f"{where}.securityContext"
        run_as_non_root, non_root_where = self.pod_run_as_non_root, "spec.securityContext.runAsNonRoot"
        if sc is not None:
            self.fields(sc, "SecurityContext", sc_where)
            out.privileged = self.get(sc, "privileged", sc_where, "boolean") is True
            out.allow_privilege_escalation = self.get(sc, "allowPrivilegeEscalation", sc_where, "boolean")
            out.read_only_root_filesystem = self.get(sc, "readOnlyRootFilesystem", sc_where, "boolean") is True
            out.run_as_user = self.id_field(sc, "runAsUser", sc_where)
            out.run_as_group = self.id_field(sc, "runAsGroup", sc_where)
            if sc.get("runAsNonRoot") is not None:
                run_as_non_root = self.get(sc, "runAsNonRoot", sc_where, "boolean")
                non_root_where = f"{sc_where}.runAsNonRoot"
            caps = self.get(sc, "capabilities", sc_where, "object")
            if caps is not None:
                caps_where = f"{sc_where}.capabilities"
                self.fields(caps, "Capabilities", caps_where)
                out.cap_add = self.capabilities(caps, "add", caps_where)
                out.cap_drop = self.capabilities(caps, "drop", caps_where)
            # apimachinery ValidateSecurityContext (AllowPrivilegeEscalation checks).
            if out.allow_privilege_escalation is False and out.privileged:
                self.invalid(sc_where, {"allowPrivilegeEscalation": False, "privileged": True},
                             "cannot set `allowPrivilegeEscalation` to false and `privileged` to true")
            if out.allow_privilege_escalation is False and "SYS_ADMIN" in out.cap_add:
                self.invalid(sc_where, {"allowPrivilegeEscalation": False, "capabilities": {"add": ["SYS_ADMIN"]}},
                             "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN")
        # The kubelet refuses to start such a container; nsbox has no image user, so it says so now.
        user = out.run_as_user if out.run_as_user is not None else self.pod_run_as_user
        if run_as_non_root and not user:
            self.invalid(non_root_where, True, "the container would run as root: set runAsUser to a non-zero UID")
        return out

    def capabilities(self, caps: dict, key: str, where: str) -> list[str]:
        names = self.get(caps, key, where, "strings") or []
        out = []
        for i, name in enumerate(names):
            try:
                out.append(kube.normalize_capability(name))
            except ValueError:
                self.invalid(f"{where}.{key}[{i}]", name, "unknown capability")
        return out

    def resources(self, item: dict, where: str) -> Resources:
        out = Resources()
        res = self.get(item, "resources", where, "object")
        if res is None:
            return out
        res_where = f"{where}.resources"
        self.fields(res, "ResourceRequirements", res_where)
        limits = self.get(res, "limits", res_where, "object") or {}
        self.fields(limits, "ResourceList", f"{res_where}.limits", map_keys=True)
        parsers = {"cpu": kube.parse_cpu, "memory": kube.parse_memory}
        parsed: dict[str, int | None] = {}
        for key, parse in parsers.items():
            if limits.get(key) is not None:
                parsed[key] = self.quantity(limits[key], f"{res_where}.limits[{key}]", parse)
        # A zero limit is no limit (kubelet: a 0 quota or memory limit is left unset).
        out.cpu_millis = parsed.get("cpu") or None
        out.memory_bytes = parsed.get("memory") or None
        requests = self.get(res, "requests", res_where, "object") or {}
        self.fields(requests, "ResourceList", f"{res_where}.requests", map_keys=True)
        # The API server's defaulting: a request left unset while its limit is set is the limit.
        taken = {"cpu": parsed.get("cpu"), "memory": parsed.get("memory")}
        for key, parse in parsers.items():
            if requests.get(key) is None:
                continue
            request = self.quantity(requests[key], f"{res_where}.requests[{key}]", parse)
            taken[key] = request
            limit = parsed.get(key)
            if request is not None and limit is not None and request > limit:
                self.invalid(f"{res_where}.requests[{key}]", requests[key],
                             f"must be less than or equal to {key} limit of {limits[key]}")
        out.cpu_request_millis = taken["cpu"] or None       # zero, like a zero limit, is none
        out.memory_request_bytes = taken["memory"] or None
        return out

    def lifecycle(self, item: dict, where: str) -> tuple[list[str], list[str]]:
        hooks = {"postStart": [], "preStop": []}
        lifecycle = self.get(item, "lifecycle", where, "object")
        if lifecycle is None:
            return hooks["postStart"], hooks["preStop"]
        lc_where = f"{where}.lifecycle"
        self.fields(lifecycle, "Lifecycle", lc_where)
        for hook in hooks:
            handler = self.get(lifecycle, hook, lc_where, "object")
            if handler is None:
                continue
            h_where = f"{lc_where}.{hook}"
            self.fields(handler, "LifecycleHandler", h_where)
            given = [k for k, v in handler.items() if v is not None]
            if len(given) > 1:
                self.problem(f"{h_where}.{given[1]}: Forbidden: may not specify more than 1 handler type")
                continue
            if not given:
                self.required(h_where, "must specify a handler type")
                continue
            exec_action = self.get(handler, "exec", h_where, "object")
            if exec_action is not None:
                self.fields(exec_action, "ExecAction", f"{h_where}.exec")
                command = self.get(exec_action, "command", f"{h_where}.exec", "strings")
                if exec_action.get("command") in (None, []):
                    self.required(f"{h_where}.exec.command")
                hooks[hook] = list(command or [])
            sleep = self.get(handler, "sleep", h_where, "object")
            if sleep is not None:
                # kubelet sleeps itself; nsbox runs `sleep` in the container: the same wait.
                self.fields(sleep, "SleepAction", f"{h_where}.sleep")
                seconds = self.get(sleep, "seconds", f"{h_where}.sleep", "integer")
                if seconds is None:
                    if sleep.get("seconds") is None:
                        self.required(f"{h_where}.sleep.seconds")
                elif seconds < 0:
                    self.invalid(f"{h_where}.sleep.seconds", seconds, "must be greater than or equal to 0")
                else:
                    hooks[hook] = ["sleep", str(seconds)]
        return hooks["postStart"], hooks["preStop"]


def _is_ip(text: str) -> bool:
    """An IPv4 address in dotted decimal or an IPv6 address, without a zone (netutils.ParseIPSloppy)."""
    import ipaddress                      # here: only manifests with hostAliases pay for it
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _positive_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < float("inf") else None


# --- Back to a v1 Pod object ------------------------------------------------------

def pod_to_manifest(spec: PodSpec) -> dict[str, Any]:
    """The v1 Pod object (apiVersion, kind, metadata, spec) shown by `get -o yaml/json`.

    A manifest pod shows its original spec, normalised: nulls dropped, the
    defaults nsbox applied written in (restartPolicy, terminationGracePeriodSeconds,
    a volume without a source is an emptyDir), and containers added later with
    `run --pod` appended. A CLI pod's spec is built from the PodSpec; applying
    it gives back the same pod. metadata holds name, namespace, uid,
    creationTimestamp, labels and annotations. `status` is added by the caller."""
    metadata: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace}
    if spec.uid:
        metadata["uid"] = spec.uid
    if spec.creation_timestamp:
        metadata["creationTimestamp"] = spec.creation_timestamp
    if spec.labels:
        metadata["labels"] = dict(spec.labels)
    annotations = dict(spec.annotations)
    if spec.manifest is None:
        annotations.update(_nsbox_annotations_of(spec))
    if annotations:
        metadata["annotations"] = annotations
    if spec.manifest is not None and isinstance(spec.manifest.get("spec"), dict):
        pod_spec = _normalised_spec(spec)
    else:
        pod_spec = _built_spec(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def same_pod(existing: PodSpec, new: PodSpec) -> bool:
    """Whether `new` describes the pod `existing` already is (`apply` prints
    "unchanged"): the same v1 object apart from uid and creationTimestamp."""
    def comparable(spec: PodSpec) -> dict:
        obj = pod_to_manifest(spec)
        obj["metadata"].pop("uid", None)
        obj["metadata"].pop("creationTimestamp", None)
        return obj
    return comparable(existing) == comparable(new)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _normalised_spec(spec: PodSpec) -> dict[str, Any]:
    out = _without_nulls(copy.deepcopy(spec.manifest["spec"]))
    out["restartPolicy"] = spec.restart_policy
    out["terminationGracePeriodSeconds"] = spec.termination_grace_period
    for volume in out.get("volumes") or []:
        if isinstance(volume, dict) and not any(k != "name" for k in volume):
            volume["emptyDir"] = {}
    for key, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        listed = {c.get("name") for c in out.get(key) or [] if isinstance(c, dict)}
        added = [_container_manifest(c) for c in containers if c.name not in listed]
        if added:
            out[key] = list(out.get(key) or []) + added
    return out


def _nsbox_annotations_of(spec: PodSpec) -> dict[str, str]:
    out = {}
    if spec.network == "bridge":
        out[ANNOTATION_NETWORK] = "bridge"
    containers = spec.all_containers()
    if containers and all(c.init for c in containers):
        out[ANNOTATION_INIT] = "true"
    return out


def _built_spec(spec: PodSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.volumes:
        out["volumes"] = [_volume_manifest(v) for v in spec.volumes]
    if spec.init_containers:
        out["initContainers"] = [_container_manifest(c) for c in spec.init_containers]
    out["containers"] = [_container_manifest(c) for c in spec.containers]
    out["restartPolicy"] = spec.restart_policy
    out["terminationGracePeriodSeconds"] = spec.termination_grace_period
    if spec.active_deadline_seconds is not None:
        out["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.hostname:
        out["hostname"] = spec.hostname
    if spec.network == "host":
        out["hostNetwork"] = True
    if spec.host_ipc:
        out["hostIPC"] = True
    if spec.host_pid:
        out["hostPID"] = True
    if spec.share_process_namespace:
        out["shareProcessNamespace"] = True
    security = {k: v for k, v in (("runAsUser", spec.run_as_user), ("runAsGroup", spec.run_as_group))
                if v is not None}
    security.update(_groups_and_sysctls_manifest(spec))
    if security:
        out["securityContext"] = security
    if spec.host_aliases:
        out["hostAliases"] = [{"ip": a.ip, "hostnames": list(a.hostnames)} for a in spec.host_aliases]
    return out


def _groups_and_sysctls_manifest(spec: PodSpec) -> dict[str, Any]:
    """The pod securityContext fields of groups and sysctls (the CLI sets none of them today)."""
    out: dict[str, Any] = {}
    if spec.fs_group is not None:
        out["fsGroup"] = spec.fs_group
    if spec.fs_group_change_policy:
        out["fsGroupChangePolicy"] = spec.fs_group_change_policy
    if spec.supplemental_groups:
        out["supplementalGroups"] = list(spec.supplemental_groups)
    if spec.supplemental_groups_policy:
        out["supplementalGroupsPolicy"] = spec.supplemental_groups_policy
    if spec.sysctls:
        out["sysctls"] = [{"name": k, "value": v} for k, v in spec.sysctls.items()]
    return out


def _volume_manifest(volume: Volume) -> dict[str, Any]:
    if volume.kind == "hostPath":
        source: dict[str, Any] = {"path": volume.host_path}
        if volume.host_path_type:
            source["type"] = volume.host_path_type
        return {"name": volume.name, "hostPath": source}
    source = {}
    if volume.medium:
        source["medium"] = volume.medium
    if volume.size_limit is not None:
        source["sizeLimit"] = kube.format_quantity_bytes(volume.size_limit)
    return {"name": volume.name, "emptyDir": source}


def _container_manifest(c: ContainerSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name}
    if c.image:
        out["image"] = c.image
    out["command"] = list(c.command)
    if c.args:
        out["args"] = list(c.args)
    if c.working_dir:
        out["workingDir"] = c.working_dir
    if c.env:
        out["env"] = [{"name": e.name, "valueFrom": {"fieldRef": {"fieldPath": e.field_ref}}} if e.field_ref
                      else {"name": e.name, "value": e.value} for e in c.env]
    if c.volume_mounts:
        mounts = []
        for m in c.volume_mounts:
            mount: dict[str, Any] = {"name": m.name, "mountPath": m.mount_path}
            if m.read_only:
                mount["readOnly"] = True
            if m.sub_path:
                mount["subPath"] = m.sub_path
            mounts.append(mount)
        out["volumeMounts"] = mounts
    security = _security_manifest(c.security)
    if security:
        out["securityContext"] = security
    limits = {}
    if c.resources.cpu_millis is not None:
        limits["cpu"] = kube.format_cpu(c.resources.cpu_millis)
    if c.resources.memory_bytes is not None:
        limits["memory"] = kube.format_quantity_bytes(c.resources.memory_bytes)
    requests = {}
    cpu_request, memory_request = kube.container_requests(c.resources)
    if cpu_request is not None:
        requests["cpu"] = kube.format_cpu(cpu_request)
    if memory_request is not None:
        requests["memory"] = kube.format_quantity_bytes(memory_request)
    resources = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    if resources:
        out["resources"] = resources
    if c.ports:
        out["ports"] = [_port_manifest(p) for p in c.ports]
    lifecycle = {hook: {"exec": {"command": list(command)}}
                 for hook, command in (("postStart", c.post_start), ("preStop", c.pre_stop)) if command}
    if lifecycle:
        out["lifecycle"] = lifecycle
    if c.stdin:
        out["stdin"] = True
    if c.tty:
        out["tty"] = True
    return out


def _port_manifest(p: ContainerPort) -> dict[str, Any]:
    out: dict[str, Any] = {"containerPort": p.container_port, "protocol": p.protocol}
    if p.name:
        out["name"] = p.name
    if p.host_port:
        out["hostPort"] = p.host_port
    return out


def _security_manifest(s: SecurityContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.privileged:
        out["privileged"] = True
    caps = {k: list(v) for k, v in (("add", s.cap_add), ("drop", s.cap_drop)) if v}
    if caps:
        out["capabilities"] = caps
    if s.run_as_user is not None:
        out["runAsUser"] = s.run_as_user
    if s.run_as_group is not None:
        out["runAsGroup"] = s.run_as_group
    if s.allow_privilege_escalation is not None:
        out["allowPrivilegeEscalation"] = s.allow_privilege_escalation
    if s.read_only_root_filesystem:
        out["readOnlyRootFilesystem"] = True
    return out
