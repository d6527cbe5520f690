"""The internal description of a pod: what to run, independent of where it came from.

Both the command line (`run`, `pod create`) and Kubernetes manifests (`apply`)
produce a `PodSpec`; everything below (the watcher, the spawn path) reads only
this. It is stored as JSON in the pod's state directory, so every field is a
plain value and `to_dict`/`from_dict` round-trip exactly.
"""

from __future__ import annotations

from nsbox.record import as_dict, field, record

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any


@record
class VolumeMount:
    name: str
    mount_path: str
    read_only: bool = False
    sub_path: str = ""


@record
class KeyToPath:
    """One file of a configMap or secret source: the object's `key` written at `path`."""

    key: str
    path: str
    mode: int | None = None  # None = the volume's defaultMode


@record
class DownwardFile:
    """One file of a downwardAPI source: a pod field or a container resource."""

    path: str
    # "metadata.name" | "metadata.namespace" | "metadata.uid" | "metadata.labels" | "metadata.annotations"
    field_ref: str = ""
    resource: str = ""  # resourceFieldRef.resource: "limits.cpu", "requests.memory", ...
    container: str = ""  # resourceFieldRef.containerName
    divisor: str = ""  # resourceFieldRef.divisor as written ("" = 1)
    mode: int | None = None


@record
class Projection:
    """One source of files in a configMap, secret, downwardAPI or projected volume."""

    kind: str  # "configMap" | "secret" | "downwardAPI"
    name: str = ""  # configMap/secret: the object's name
    items: list[KeyToPath] = field(factory=list)  # configMap/secret: [] = every key, at its own name
    optional: bool = False  # configMap/secret: a missing object (or key) is not an error
    files: list[DownwardFile] = field(factory=list)  # downwardAPI


@record
class Volume:
    name: str
    kind: str = "emptyDir"  # "emptyDir" | "hostPath" | "configMap" | "secret" | "downwardAPI" | "projected"
    medium: str = ""  # emptyDir: "" (disk) or "Memory" (tmpfs)
    size_limit: int | None = None  # bytes; emptyDir only
    host_path: str = ""  # hostPath only
    host_path_type: str = ""  # hostPath: "", "Directory", "DirectoryOrCreate", "File", ...
    sources: list[Projection] = field(factory=list)  # configMap/secret/downwardAPI: one; projected: in order
    default_mode: int | None = None  # configMap/secret/downwardAPI/projected; None = 0644


@record
class HostAlias:
    ip: str
    hostnames: list[str] = field(factory=list)


@record
class SecurityContext:
    privileged: bool = False
    cap_add: list[str] = field(factory=list)  # canonical names without CAP_, or "ALL"
    cap_drop: list[str] = field(factory=list)
    run_as_user: int | None = None
    run_as_group: int | None = None
    allow_privilege_escalation: bool | None = None
    read_only_root_filesystem: bool = False
    run_as_non_root: bool = False  # the effective runAsNonRoot (container's, else pod's); checked at start
    seccomp: str = ""  # seccompProfile.type: "" (the pod's) | RuntimeDefault | Unconfined | Localhost (nsbox.seccomp)
    seccomp_localhost: str = ""  # Localhost: localhostProfile, relative to <root>/seccomp


@record
class Resources:
    cpu_millis: int | None = None  # limits.cpu in millicores
    memory_bytes: int | None = None  # limits.memory
    # requests.cpu: reserves nothing (no scheduler); shown, in the QoS class and the downward API
    cpu_request_millis: int | None = None
    memory_request_bytes: int | None = None  # requests.memory
    # limits.ephemeral-storage: the size of the container's writable layer (mounts.upper_size)
    ephemeral_storage_bytes: int | None = None


@record
class EnvVar:
    name: str
    value: str = ""
    # downward API: "metadata.name", "metadata.namespace", "metadata.uid", "status.podIP", "spec.nodeName"
    field_ref: str = ""
    resource: str = ""  # resourceFieldRef: "limits.cpu", "limits.memory", "requests.cpu", "requests.memory"
    resource_container: str = ""  # resourceFieldRef.containerName ("" = this container)
    divisor: str = ""  # resourceFieldRef.divisor as written ("" = 1)
    ref_kind: str = ""  # configMapKeyRef / secretKeyRef: "configMap" | "secret"
    ref_name: str = ""  # the object's name
    ref_key: str = ""  # its key
    optional: bool = False


@record
class EnvFrom:
    """envFrom: every key of a ConfigMap or Secret as a variable, with `prefix`."""

    kind: str  # "configMap" | "secret"
    name: str
    prefix: str = ""
    optional: bool = False


@record
class ContainerPort:
    container_port: int
    name: str = ""
    protocol: str = "TCP"
    host_port: int | None = None


@record
class Handler:
    """What a probe or a lifecycle hook does (docs/lifecycle.md, "Probes"): exactly one of
    exec `command`, an HTTP GET, a TCP connect, a gRPC health check or a sleep. A port named
    in the manifest is resolved to its number when the manifest is read."""

    kind: str  # "exec" | "httpGet" | "tcpSocket" | "grpc" | "sleep"
    command: list[str] = field(factory=list)  # exec
    port: int = 0  # httpGet, tcpSocket, grpc
    port_name: str = ""  # the name it was given by, for describe ("" = a number)
    host: str = ""  # httpGet, tcpSocket: "" = the pod's IP (on loopback pods 127.0.0.1)
    path: str = ""  # httpGet
    scheme: str = "HTTP"  # httpGet: HTTP | HTTPS
    headers: list[list[str]] = field(factory=list)  # httpGet: [name, value] in order
    service: str = ""  # grpc: the health service's name
    seconds: int = 0  # sleep


@record
class Probe:
    """A liveness, readiness or startup probe: its handler and the kubelet's timing fields."""

    handler: Handler
    initial_delay: int = 0
    period: int = 10
    timeout: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    grace: int | None = None  # terminationGracePeriodSeconds (liveness, startup); None = the pod's


@record
class ContainerSpec:
    name: str
    command: list[str]
    args: list[str] = field(factory=list)
    env: list[EnvVar] = field(factory=list)
    env_from: list[EnvFrom] = field(factory=list)
    ports: list[ContainerPort] = field(factory=list)
    working_dir: str = ""
    image: str = ""  # as written: an image reference, or a local directory used as the root
    image_pull_policy: str = ""  # Always | IfNotPresent | Never when the container runs its image, else ""
    volume_mounts: list[VolumeMount] = field(factory=list)
    security: SecurityContext = field(factory=SecurityContext)
    resources: Resources = field(factory=Resources)
    post_start: Handler | None = None
    pre_stop: Handler | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    init: bool = False  # run under nsbox's tiny init (signal forwarding, reaping)
    stdin: bool = False  # -i: keep stdin open (attached by the CLI)
    tty: bool = False  # -t
    # An init container's own restartPolicy: "Always" makes it a sidecar (docs/lifecycle.md, "Sidecars").
    restart_policy: str = ""
    stop_signal: str = ""  # lifecycle.stopSignal ("SIGQUIT"): wins over the image's StopSignal; "" = the image's
    termination_message_path: str = "/dev/termination-log"  # where the container may write why it ended
    termination_message_policy: str = "File"  # File | FallbackToLogsOnError

    @property
    def is_sidecar(self) -> bool:
        """An init container that keeps running beside the app containers (KEP-753)."""
        return self.restart_policy == "Always"

    @property
    def argv(self) -> list[str]:
        return self.command + self.args

    @property
    def runs_image(self) -> bool:
        """Its root is its image's layers (not the host's view or a local directory)."""
        return bool(self.image_pull_policy)


@record
class PodSpec:
    name: str
    namespace: str = "default"
    uid: str = ""
    labels: dict[str, str] = field(factory=dict)
    annotations: dict[str, str] = field(factory=dict)
    creation_timestamp: str = ""  # RFC 3339, UTC
    containers: list[ContainerSpec] = field(factory=list)
    init_containers: list[ContainerSpec] = field(factory=list)
    volumes: list[Volume] = field(factory=list)
    restart_policy: str = "Always"  # Always | OnFailure | Never
    termination_grace_period: int = 30
    active_deadline_seconds: int | None = None
    hostname: str = ""  # "" = the pod name (truncated to 63)
    network: str = "loopback"  # loopback | bridge | host
    host_ipc: bool = False
    host_pid: bool = False
    host_users: bool = True  # false: the pod's own user namespace (nsbox/userns.py)
    share_process_namespace: bool = False
    run_as_user: int | None = None  # pod securityContext defaults
    run_as_group: int | None = None
    fs_group: int | None = None  # pod securityContext: supplementary group of every process, owner of volumes
    fs_group_change_policy: str = ""  # "" (= Always) | "Always" | "OnRootMismatch"
    supplemental_groups: list[int] = field(factory=list)
    supplemental_groups_policy: str = ""  # "" (= Merge) | "Merge" | "Strict"
    sysctls: dict[str, str] = field(factory=dict)  # namespaced sysctls, set in the pod's namespaces (in order)
    host_aliases: list[HostAlias] = field(factory=list)
    auto_remove: bool = False  # `run --rm`: the pod removes itself when its containers have ended
    source: str = "cli"  # "cli" or "manifest"; a manifest pod keeps its original object
    manifest: dict[str, Any] | None = None
    node_name: str = ""  # spec.nodeName: this machine's name, read when the pod is created
    image_store: str = ""  # the image store its containers' images come from (docs/images.md)
    seccomp: str = ""  # pod securityContext.seccompProfile.type: "" = RuntimeDefault (nsbox.seccomp)
    seccomp_localhost: str = ""

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PodSpec:
        d = dict(d)
        d["containers"] = [_container_from_dict(c) for c in d.get("containers", [])]
        d["init_containers"] = [_container_from_dict(c) for c in d.get("init_containers", [])]
        d["volumes"] = [_volume_from_dict(v) for v in d.get("volumes", [])]
        d["host_aliases"] = [HostAlias(**h) for h in d.get("host_aliases", [])]
        return cls(**d)

    def all_containers(self) -> list[ContainerSpec]:
        return self.init_containers + self.containers

    @property
    def sidecars(self) -> frozenset[str]:
        """The names of the init containers that are sidecars (restartPolicy: Always)."""
        return frozenset(c.name for c in self.init_containers if c.is_sidecar)

    def container(self, name: str) -> ContainerSpec | None:
        for c in self.all_containers():
            if c.name == name:
                return c
        return None

    def volume(self, name: str) -> Volume | None:
        for v in self.volumes:
            if v.name == name:
                return v
        return None

    @property
    def effective_hostname(self) -> str:
        from nsbox import kube

        return kube.truncate_pod_hostname(self.hostname or self.name)


def _volume_from_dict(d: dict[str, Any]) -> Volume:
    d = dict(d)
    d["sources"] = [
        Projection(
            **{
                **p,
                "items": [KeyToPath(**i) for i in p.get("items", [])],
                "files": [DownwardFile(**f) for f in p.get("files", [])],
            }
        )
        for p in d.get("sources", [])
    ]
    return Volume(**d)


def _container_from_dict(d: dict[str, Any]) -> ContainerSpec:
    d = dict(d)
    d["env"] = [EnvVar(**e) for e in d.get("env", [])]
    d["env_from"] = [EnvFrom(**e) for e in d.get("env_from", [])]
    d["ports"] = [ContainerPort(**p) for p in d.get("ports", [])]
    d["volume_mounts"] = [VolumeMount(**m) for m in d.get("volume_mounts", [])]
    d["security"] = SecurityContext(**d.get("security", {}))
    d["resources"] = Resources(**d.get("resources", {}))
    for hook in ("post_start", "pre_stop"):
        d[hook] = _handler_from_dict(d.get(hook))
    for probe in ("liveness_probe", "readiness_probe", "startup_probe"):
        if d.get(probe):
            d[probe] = Probe(**{**d[probe], "handler": _handler_from_dict(d[probe]["handler"])})
    return ContainerSpec(**d)


def _handler_from_dict(d: dict[str, Any] | list[str] | None) -> Handler | None:
    if not d:
        return None
    if isinstance(d, list):  # the state of a pod made before handlers had kinds: an exec command
        return Handler("exec", command=d)
    return Handler(**d)
