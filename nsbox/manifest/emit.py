"""Back to a v1 Pod object: what `get -o yaml/json` shows, and whether an
applied pod is the one already there (`apply` prints "unchanged")."""

from __future__ import annotations

import copy
from typing import Any

from .. import kube
from ..model import ContainerPort, ContainerSpec, Handler, PodSpec, Probe, SecurityContext, Volume
from .policy import ANNOTATION_INIT, ANNOTATION_NETWORK


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
        pod_spec = _normalised_spec(spec, spec.manifest["spec"])
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


def _normalised_spec(spec: PodSpec, written: dict[str, Any]) -> dict[str, Any]:
    """The manifest's own pod spec (`written`), with what nsbox decided filled in."""
    out = _without_nulls(copy.deepcopy(written))
    out["restartPolicy"] = spec.restart_policy
    out["terminationGracePeriodSeconds"] = spec.termination_grace_period
    for volume in out.get("volumes") or []:
        if isinstance(volume, dict) and not any(k != "name" for k in volume):
            volume["emptyDir"] = {}
    for key, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for c in out.get(key) or []:
            if isinstance(c, dict) and isinstance(c.get("image"), str) and c["image"]:
                c.setdefault("imagePullPolicy", kube.default_pull_policy(c["image"]))  # the API server's default
            if isinstance(c, dict):  # the API server's defaults (docs/lifecycle.md, "Termination messages")
                c.setdefault("terminationMessagePath", TERMINATION_MESSAGE_PATH)
                c.setdefault("terminationMessagePolicy", "File")
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
    if not spec.host_users:
        out["hostUsers"] = False
    if spec.share_process_namespace:
        out["shareProcessNamespace"] = True
    security = {k: v for k, v in (("runAsUser", spec.run_as_user), ("runAsGroup", spec.run_as_group)) if v is not None}
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


TERMINATION_MESSAGE_PATH = "/dev/termination-log"  # the API server's default


def _container_manifest(c: ContainerSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c.name}
    if c.restart_policy:
        out["restartPolicy"] = c.restart_policy
    if c.image:
        out["image"] = c.image
    if c.image_pull_policy:
        out["imagePullPolicy"] = c.image_pull_policy
    if c.command:
        out["command"] = list(c.command)
    if c.args:
        out["args"] = list(c.args)
    if c.working_dir:
        out["workingDir"] = c.working_dir
    if c.env:
        out["env"] = [
            {"name": e.name, "valueFrom": {"fieldRef": {"fieldPath": e.field_ref}}}
            if e.field_ref
            else {"name": e.name, "value": e.value}
            for e in c.env
        ]
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
    out["terminationMessagePath"] = c.termination_message_path
    out["terminationMessagePolicy"] = c.termination_message_policy
    security = _security_manifest(c.security)
    if security:
        out["securityContext"] = security
    limits = {}
    if c.resources.cpu_millis is not None:
        limits["cpu"] = kube.format_cpu(c.resources.cpu_millis)
    if c.resources.memory_bytes is not None:
        limits["memory"] = kube.format_quantity_bytes(c.resources.memory_bytes)
    if c.resources.ephemeral_storage_bytes is not None:
        limits["ephemeral-storage"] = kube.format_quantity_bytes(c.resources.ephemeral_storage_bytes)
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
    lifecycle = {
        hook: _handler_manifest(handler)
        for hook, handler in (("postStart", c.post_start), ("preStop", c.pre_stop))
        if handler is not None
    }
    lifecycle_out: dict[str, Any] = dict(lifecycle)
    if c.stop_signal:
        lifecycle_out["stopSignal"] = c.stop_signal
    if lifecycle_out:
        out["lifecycle"] = lifecycle_out
    for key, probe in (
        ("livenessProbe", c.liveness_probe),
        ("readinessProbe", c.readiness_probe),
        ("startupProbe", c.startup_probe),
    ):
        if probe is not None:
            out[key] = _probe_manifest(probe)
    if c.stdin:
        out["stdin"] = True
    if c.tty:
        out["tty"] = True
    return out


def _handler_manifest(h: Handler) -> dict[str, Any]:
    """A v1 LifecycleHandler or ProbeHandler, with the API server's defaults filled in."""
    if h.kind == "exec":
        return {"exec": {"command": list(h.command)}}
    if h.kind == "sleep":
        return {"sleep": {"seconds": h.seconds}}
    port: dict[str, Any] = {"port": h.port_name or h.port}
    if h.kind == "grpc":
        return {"grpc": {**port, "service": h.service}}
    host = {"host": h.host} if h.host else {}
    if h.kind == "tcpSocket":
        return {"tcpSocket": {**port, **host}}
    headers = {"httpHeaders": [{"name": n, "value": v} for n, v in h.headers]} if h.headers else {}
    return {"httpGet": {"path": h.path, **port, **host, "scheme": h.scheme, **headers}}


def _probe_manifest(p: Probe) -> dict[str, Any]:
    out = _handler_manifest(p.handler)
    out.update(
        initialDelaySeconds=p.initial_delay,
        timeoutSeconds=p.timeout,
        periodSeconds=p.period,
        successThreshold=p.success_threshold,
        failureThreshold=p.failure_threshold,
    )
    if p.grace is not None:
        out["terminationGracePeriodSeconds"] = p.grace
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
    if s.seccomp:
        out["seccompProfile"] = {
            "type": s.seccomp,
            **({"localhostProfile": s.seccomp_localhost} if s.seccomp_localhost else {}),
        }
    return out
