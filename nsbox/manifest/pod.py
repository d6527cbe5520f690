"""Pod documents: which are v1 Pods, and the Pod object's metadata and spec
read into a PodSpec; containers and volumes are read by their own readers
(containers.py, volumes.py) in a context the pod level decides first."""

from __future__ import annotations

import copy
from typing import Any

from .. import kube, objects
from ..errors import NsboxError
from ..model import HostAlias, PodSpec
from .containers import ContainerReader
from .policy import (
    ANNOTATION_BACKOFF_BASE,
    ANNOTATION_BACKOFF_MAX,
    ANNOTATION_HOST_ROOT,
    ANNOTATION_INIT,
    ANNOTATION_NETWORK,
    ANNOTATION_PIDS_LIMIT,
    ANNOTATION_POD_CPU,
    ANNOTATION_POD_MEMORY,
    INT32_MAX,
    NSBOX_ANNOTATIONS,
)
from .reader import PodContext, Reader, show
from .volumes import VolumeReader


def pods_from_documents(
    docs: list[tuple[str, Any]],
    namespace: str = "default",
    *,
    namespace_explicit: bool = False,
    configs: list[dict] | None = None,
) -> tuple[list[PodSpec], list[str]]:
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
                obj, label, namespace, namespace_explicit, seen
            )
            problems += [prefix + p for p in found_problems]
            warnings += [prefix + w for w in found_warnings]
            if found is not None:
                configs.append(found)
            continue
        reader = PodReader()
        pod = reader.read(obj, namespace, namespace_explicit)
        if pod is not None and pod.name:
            key = (pod.namespace, pod.name)
            if key in seen:
                reader.problems.append(f"metadata.name: Duplicate value: {show(pod.name)} (also in {seen[key]})")
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


def pod_names_from_documents(
    docs: list[tuple[str, Any]], namespace: str = "default", *, configs: list[tuple[str, str, str]] | None = None
) -> list[tuple[str, str]]:
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
        reader = PodReader()
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


class PodReader(Reader):
    """Reads one Pod object: collects problems and warnings, builds a PodSpec."""

    def identify(self, obj: Any) -> bool:
        """Whether `obj` is a v1 Pod; the problem is recorded if not."""
        if not isinstance(obj, dict):
            self.problem(f"a document must be an object, not {show(obj)}")
            return False
        api, kind = obj.get("apiVersion"), obj.get("kind")
        if api is None or kind is None:
            self.problem(
                "error validating data: ["
                + ", ".join(f"{k} not set" for k, v in (("apiVersion", api), ("kind", kind)) if v is None)
                + "]"
            )
            return False
        if kind != "Pod":
            self.problem(f"unsupported kind {show(kind)} (nsbox reads v1 Pods, ConfigMaps and Secrets)")
            return False
        if api != "v1":
            self.problem(
                f"unsupported apiVersion {show(api)} for kind Pod (nsbox reads v1 Pods, ConfigMaps and Secrets)"
            )
            return False
        return True

    def read(self, obj: Any, namespace: str, namespace_explicit: bool) -> PodSpec | None:
        """The PodSpec of a v1 Pod object, `namespace` where it names none; None if not a Pod."""
        if not self.identify(obj):
            return None
        self.fields(obj, "Pod", "")
        pod = PodSpec(name="", namespace=namespace, source="manifest", manifest=copy.deepcopy(obj))
        meta = self.get(obj, "metadata", "", "object")
        if obj.get("metadata") is None:
            self.required("metadata.name", "name or generateName is required")
        if meta is not None:
            self.metadata(meta, pod, namespace_explicit=namespace_explicit)
        spec = self.get(obj, "spec", "", "object")
        if obj.get("spec") is None:
            self.required("spec.containers")
        else:
            self.spec(spec, pod)
        return pod

    def nsbox_annotations(self, annotations: dict[str, str], host_network: bool) -> str:
        """nsbox.io/* annotations (docs/manifests.md, "nsbox.io annotations"):
        network, init, back-off, pod cgroup limits. Returns the pod's network."""
        where = "metadata.annotations"
        pod_network = "host" if host_network else "loopback"
        for key in annotations:
            if key.startswith("nsbox.io/") and key not in NSBOX_ANNOTATIONS:
                self.warn(f"{where}[{key}]: ignored (unknown nsbox annotation; known: {', '.join(NSBOX_ANNOTATIONS)})")
        network = annotations.get(ANNOTATION_NETWORK)
        if network is not None:
            if network not in ("loopback", "bridge"):
                self.unsupported(f"{where}[{ANNOTATION_NETWORK}]", network, ("bridge", "loopback"))
            elif host_network and network == "bridge":
                self.invalid(f"{where}[{ANNOTATION_NETWORK}]", network, "conflicts with spec.hostNetwork: true")
            elif not host_network:
                pod_network = network
        for key in (ANNOTATION_INIT, ANNOTATION_HOST_ROOT):
            flag = annotations.get(key)
            if flag is not None and flag not in ("true", "false"):
                self.unsupported(f"{where}[{key}]", flag, ("true", "false"))
        # The watcher reads the back-off annotations; they must be numbers it can use.
        for key in (ANNOTATION_BACKOFF_BASE, ANNOTATION_BACKOFF_MAX):
            if key in annotations and _positive_number(annotations[key]) is None:
                self.invalid(f"{where}[{key}]", annotations[key], "must be a number of seconds > 0")
        # It also reads the pod cgroup's limits from these: a value it cannot parse must fail the
        # apply, not the pod after apply has said yes.
        pids = annotations.get(ANNOTATION_PIDS_LIMIT)
        if pids is not None and not (pids.isascii() and pids.isdigit() and int(pids) > 0):
            self.invalid(f"{where}[{ANNOTATION_PIDS_LIMIT}]", pids, "must be a whole number of processes > 0")
        for key, parse in ((ANNOTATION_POD_CPU, kube.parse_cpu), (ANNOTATION_POD_MEMORY, kube.parse_memory)):
            if key in annotations:
                self.quantity(annotations[key], f"{where}[{key}]", parse)
        return pod_network

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
                self.warn(
                    "spec.terminationGracePeriodSeconds: must be >= 0; "
                    "negative values are invalid and will be treated as 1"
                )
                grace = 1
            pod.termination_grace_period = grace

        deadline = self.get(spec, "activeDeadlineSeconds", "spec", "integer")
        if deadline is not None:
            if not 1 <= deadline <= INT32_MAX:
                self.invalid("spec.activeDeadlineSeconds", deadline, f"must be between 1 and {INT32_MAX}, inclusive")
            else:
                pod.active_deadline_seconds = deadline

        host_network = self.get(spec, "hostNetwork", "spec", "boolean") is True
        pod.host_ipc = self.get(spec, "hostIPC", "spec", "boolean") is True
        pod.host_pid = self.get(spec, "hostPID", "spec", "boolean") is True
        pod.share_process_namespace = self.get(spec, "shareProcessNamespace", "spec", "boolean") is True
        if pod.share_process_namespace and pod.host_pid:
            self.invalid("spec.shareProcessNamespace", True, "ShareProcessNamespace and HostPID cannot both be enabled")
        pod.host_users = self.get(spec, "hostUsers", "spec", "boolean") is not False
        if not pod.host_users:
            # The API server's rule (validateHostUsers): a user namespace with no host namespace.
            for field_name, shared in (
                ("hostNetwork", host_network),
                ("hostPID", pod.host_pid),
                ("hostIPC", pod.host_ipc),
            ):
                if shared:
                    self.problem(f"spec.{field_name}: Forbidden: when `hostUsers` is false")

        hostname = self.get(spec, "hostname", "spec", "string")
        if hostname:
            for e in kube.dns1123_label_errors(hostname):
                self.invalid("spec.hostname", hostname, e)
            if host_network:
                self.warn("spec.hostname: ignored (a hostNetwork pod has the host's hostname)")
            pod.hostname = hostname

        pod.network = self.nsbox_annotations(pod.annotations, host_network)

        run_as_non_root = None
        security = self.get(spec, "securityContext", "spec", "object")
        if security is not None:
            self.fields(security, "PodSecurityContext", "spec.securityContext")
            pod.run_as_user = self.id_field(security, "runAsUser", "spec.securityContext")
            pod.run_as_group = self.id_field(security, "runAsGroup", "spec.securityContext")
            run_as_non_root = self.get(security, "runAsNonRoot", "spec.securityContext", "boolean")
            pod.seccomp, pod.seccomp_localhost = self.seccomp_profile(security, "spec.securityContext")
            self.groups(security, pod)
            self.sysctls(security, pod)
        for where, item in self.objects(spec, "hostAliases", "spec"):
            alias = self.host_alias(item, where)
            if alias is not None:
                pod.host_aliases.append(alias)

        volume_names: set[str] = set()
        volumes = VolumeReader(self.findings)
        for where, item in self.objects(spec, "volumes", "spec"):
            volume = volumes.volume(item, where, volume_names)
            if volume is not None:
                pod.volumes.append(volume)
        # What an env fieldRef to spec.serviceAccountName reads: the ServiceAccount admission
        # plugin sets an unset one to "default".
        account = spec.get("serviceAccountName") or spec.get("serviceAccount")
        ctx = PodContext(
            network=pod.network,
            labels=pod.labels,
            annotations=pod.annotations,
            volume_names=frozenset(volume_names),
            run_as_user=pod.run_as_user,
            run_as_non_root=run_as_non_root,
            service_account=account if isinstance(account, str) and account else "default",
            os_name=str((spec.get("os") or {}).get("name") or "") if isinstance(spec.get("os"), dict) else "",
        )

        if spec.get("containers") in (None, []):
            self.required("spec.containers")
        container_names: set[str] = set()
        containers = ContainerReader(self.findings)
        for key, target in (("initContainers", pod.init_containers), ("containers", pod.containers)):
            for where, item in self.objects(spec, key, "spec"):
                container = containers.container(item, where, ctx, container_names, init=key == "initContainers")
                if container is not None:
                    target.append(container)

        for ref_where, name in self.findings.container_refs:
            if name not in container_names:
                self.problem(f"{ref_where}: Not found: {show(name)}")

        if pod.annotations.get(ANNOTATION_INIT) == "true":
            for container in pod.all_containers():
                container.init = True

    # -- groups, sysctls, host aliases (API server: validatePodSpecSecurityContext, ValidateHostAliases)

    def choice(self, obj: dict, key: str, where: str, allowed: tuple[str, ...]) -> str:
        """A string field that must be one of `allowed`; "" when absent or refused."""
        value = self.get(obj, key, where, "string")
        if value is None:
            return ""
        if value not in allowed:
            self.unsupported(f"{where}.{key}", value, allowed)
            return ""
        return value

    def groups(self, security: dict, pod: PodSpec) -> None:
        where = "spec.securityContext"
        pod.fs_group = self.id_field(security, "fsGroup", where)
        pod.fs_group_change_policy = self.choice(security, "fsGroupChangePolicy", where, kube.FS_GROUP_CHANGE_POLICIES)
        groups = self.get(security, "supplementalGroups", where, "list") or []
        for i, gid in enumerate(groups):
            gid_where = f"{where}.supplementalGroups[{i}]"
            if isinstance(gid, bool) or not isinstance(gid, int):
                self.invalid(gid_where, gid, "must be an integer")
            elif not 0 <= gid <= INT32_MAX:
                self.invalid(gid_where, gid, f"must be between 0 and {INT32_MAX}, inclusive")
            else:
                pod.supplemental_groups.append(gid)
        pod.supplemental_groups_policy = self.choice(
            security, "supplementalGroupsPolicy", where, kube.SUPPLEMENTAL_GROUPS_POLICIES
        )

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
                self.problem(f"{where}.name: Duplicate value: {show(name)}")
                continue
            namespace = kube.sysctl_namespace(name)
            if not namespace:
                self.problem(
                    f"{where}.name: Forbidden: sysctl {show(name)} is not namespaced: a pod may set "
                    f"only {kube.NAMESPACED_SYSCTLS_TEXT}"
                )
                continue
            if namespace == "net" and pod.network == "host":
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


def _is_ip(text: str) -> bool:
    """An IPv4 address in dotted decimal or an IPv6 address, without a zone (netutils.ParseIPSloppy)."""
    import ipaddress  # here: only manifests with hostAliases pay for it

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
