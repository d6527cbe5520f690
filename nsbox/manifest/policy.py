"""How nsbox treats each field of a v1 Pod (docs/manifests.md), and the values it accepts.

Four tables: HANDLED (honoured), IGNORED_SILENTLY (server-set fields, harmless
to re-apply), WARNED (meaningful only on a cluster: accepted, one `warning:`
line each, ignored) and REJECTED (nsbox cannot honour them, and ignoring them
would change what the pod does: an error). Any other field is an unknown
field, an error as in Kubernetes' strict field validation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# --- The policy ---------------------------------------------------------------
# Keys are Kubernetes API type names; a type's fields are listed where they go.

HANDLED: dict[str, frozenset[str]] = {
    k: frozenset(v.split())
    for k, v in {
        "Pod": "apiVersion kind metadata spec",
        "ObjectMeta": "name namespace labels annotations",
        "PodSpec": "containers initContainers volumes restartPolicy terminationGracePeriodSeconds "
        "activeDeadlineSeconds hostname hostNetwork hostIPC hostPID hostUsers shareProcessNamespace "
        "securityContext hostAliases",
        "PodSecurityContext": "runAsUser runAsGroup runAsNonRoot fsGroup fsGroupChangePolicy supplementalGroups "
        "supplementalGroupsPolicy sysctls seccompProfile",
        "Sysctl": "name value",
        "HostAlias": "ip hostnames",
        "Container": "name image imagePullPolicy command args workingDir env volumeMounts securityContext resources "
        "lifecycle stdin tty envFrom ports livenessProbe readinessProbe startupProbe restartPolicy "
        "terminationMessagePath terminationMessagePolicy",
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
        "allowPrivilegeEscalation readOnlyRootFilesystem seccompProfile",
        "SeccompProfile": "type localhostProfile",
        "Capabilities": "add drop",
        "ResourceRequirements": "limits requests",
        "ResourceList": "cpu memory ephemeral-storage",
        "Lifecycle": "postStart preStop stopSignal",
        "LifecycleHandler": "exec httpGet tcpSocket sleep",
        "Probe": "exec httpGet tcpSocket grpc initialDelaySeconds timeoutSeconds periodSeconds "
        "successThreshold failureThreshold terminationGracePeriodSeconds",
        "HTTPGetAction": "path port host scheme httpHeaders",
        "HTTPHeader": "name value",
        "TCPSocketAction": "port host",
        "GRPCAction": "port service",
        "ExecAction": "command",
        "SleepAction": "seconds",
        "ContainerPort": "containerPort protocol name",
    }.items()
}

# Set by the API server, or status: a `get -o yaml` output can be applied again.
IGNORED_SILENTLY: dict[str, frozenset[str]] = {
    k: frozenset(v.split())
    for k, v in {
        "Pod": "status",
        "ObjectMeta": "uid resourceVersion generation creationTimestamp deletionTimestamp "
        "deletionGracePeriodSeconds selfLink managedFields",
    }.items()
}

_SCHEDULING = "scheduling: there is one machine"
_PULL_SECRETS = "pulls use the host's registry credentials (skopeo's auth files), not Secrets"
_DNS = "no cluster DNS: containers use the host's resolver configuration"
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
    "PodSpec.imagePullSecrets": _PULL_SECRETS,
    "PodSpec.dnsPolicy": _DNS,
    "PodSpec.dnsConfig": _DNS,
    "PodSpec.subdomain": _DNS,
    "PodSpec.setHostnameAsFQDN": _DNS,
    "PodSpec.enableServiceLinks": "no Services, so no service environment variables",
    "PodSpec.readinessGates": "no controllers set pod conditions",
    "PodSecurityContext.seLinuxOptions": "SELinux labels are not applied",
    "PodSecurityContext.seLinuxChangePolicy": "SELinux labels are not applied",
    "PodSecurityContext.appArmorProfile": "AppArmor profiles are not applied",
    "PodSecurityContext.windowsOptions": "nsbox runs Linux pods",
    "Container.resizePolicy": "resources are not resized in place",
    "Container.stdinOnce": "nothing attaches to a manifest pod's stdin",
    "SecurityContext.seLinuxOptions": "SELinux labels are not applied",
    "SecurityContext.appArmorProfile": "AppArmor profiles are not applied",
    "SecurityContext.windowsOptions": "nsbox runs Linux pods",
}

_VOLUME_TYPE = (
    "Unsupported value: nsbox provides emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes only"
)
_NO_API_SERVER = "Forbidden: nsbox has no API server to issue service account tokens or trust bundles"
PROTOCOLS = ("SCTP", "TCP", "UDP")  # ContainerPort.protocol (API server: supported values)
_HOST_PORT = (
    "Forbidden: nsbox does not forward host ports; use hostNetwork, "
    "or the annotation nsbox.io/network: bridge and the pod IP"
)

# nsbox cannot honour these, and ignoring them would change what the pod does.
REJECTED: dict[str, str] = {
    **{
        f"Volume.{source}": _VOLUME_TYPE
        for source in (
            "persistentVolumeClaim ephemeral image csi nfs iscsi "
            "gitRepo glusterfs cephfs rbd fc flexVolume flocker cinder awsElasticBlockStore gcePersistentDisk "
            "azureDisk azureFile vsphereVolume quobyte photonPersistentDisk portworxVolume scaleIO storageos"
        ).split()
    },
    # (generateName without a name)
    "ObjectMeta.generateName": "Forbidden: nsbox needs metadata.name (kubectl apply cannot use generateName either)",
    "PodSpec.ephemeralContainers": "Forbidden: cannot be set on create",
    "PodSpec.resourceClaims": "Forbidden: dynamic resource allocation needs a cluster",
    "PodSpec.resources": "Forbidden: pod-level resources are not supported; set limits on the containers",
    "PodSpec.os": "Unsupported value: nsbox runs Linux pods",  # name other than linux
    "Container.volumeDevices": "Forbidden: block devices need persistent volumes",
    # Kubernetes 1.34's per-container restart rules; nsbox follows 1.33 (docs/lifecycle.md, "Sidecars").
    "Container.restartPolicyRules": "Forbidden: per-container restart rules are not supported",
    "EnvVarSource.fileKeyRef": "Forbidden: not supported",
    "VolumeProjection.serviceAccountToken": _NO_API_SERVER,
    "VolumeProjection.clusterTrustBundle": _NO_API_SERVER,
    "VolumeProjection.podCertificate": _NO_API_SERVER,
    "VolumeMount.subPathExpr": "Forbidden: not supported; use subPath",
    "VolumeMount.mountPropagation": "Forbidden: mount propagation is not supported",  # other than None
    "VolumeMount.recursiveReadOnly": "Forbidden: recursive read-only mounts are not supported",  # Enabled
    "SecurityContext.procMount": "Forbidden: an unmasked /proc is not supported",  # other than Default
    "ResourceRequirements.claims": "Forbidden: dynamic resource allocation needs a cluster",
    "ResourceList.*": "Unsupported value: nsbox limits cpu, memory and ephemeral-storage only",  # any other resource
    "ContainerPort.hostPort": _HOST_PORT,  # unless 0 (unset), or hostNetwork and equal to containerPort
    "ContainerPort.hostIP": _HOST_PORT,
}

# REJECTED entries that apply only to some values: (value, parent object, the pod's network) → reject?
REJECTED_ONLY_IF: dict[str, Callable[[Any, dict, str], bool]] = {
    "ObjectMeta.generateName": lambda _, meta, __: not meta.get("name"),
    "PodSpec.os": lambda v, _, __: not (isinstance(v, dict) and v.get("name") == "linux"),
    "VolumeMount.mountPropagation": lambda v, _, __: v != "None",
    "VolumeMount.recursiveReadOnly": lambda v, _, __: v not in ("Disabled", "IfPossible"),
    "SecurityContext.procMount": lambda v, _, __: v != "Default",
    "ContainerPort.hostPort": lambda v, port, network: (
        v != 0 and not (network == "host" and v == port.get("containerPort"))
    ),
    "ContainerPort.hostIP": lambda v, _, network: network != "host",
}

# nsbox's own annotations (docs/manifests.md, "nsbox.io annotations").
ANNOTATION_NETWORK = "nsbox.io/network"
ANNOTATION_INIT = "nsbox.io/init"
ANNOTATION_BACKOFF_BASE = "nsbox.io/backoff-base-seconds"
ANNOTATION_BACKOFF_MAX = "nsbox.io/backoff-max-seconds"
ANNOTATION_PIDS_LIMIT = "nsbox.io/pids-limit"  # the pod cgroup's pids.max (default 4096)
ANNOTATION_POD_CPU = "nsbox.io/pod-cpu"  # `pod create --cpu`: the pod cgroup's own limits
ANNOTATION_POD_MEMORY = "nsbox.io/pod-memory"
# "true": the containers see the host's files, their images recorded and not used (docs/images.md, "Host view").
ANNOTATION_HOST_ROOT = "nsbox.io/host-root"
NSBOX_ANNOTATIONS = (
    ANNOTATION_NETWORK,
    ANNOTATION_INIT,
    ANNOTATION_BACKOFF_BASE,
    ANNOTATION_BACKOFF_MAX,
    ANNOTATION_PIDS_LIMIT,
    ANNOTATION_POD_CPU,
    ANNOTATION_POD_MEMORY,
    ANNOTATION_HOST_ROOT,
)

# Downward API paths nsbox fills in at start; labels and annotations are resolved at apply.
ENV_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "status.podIP", "spec.nodeName")
ENV_FIELD_ALIASES = {"status.podIPs": "status.podIP"}  # one IP per pod: the list is that IP
ENV_META_FIELD = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]")
CONFIG_VOLUME_KINDS = ("configMap", "secret", "downwardAPI", "projected")
VOLUME_SOURCE_TYPES = {
    "configMap": "ConfigMapVolumeSource",
    "secret": "SecretVolumeSource",
    "downwardAPI": "DownwardAPIVolumeSource",
    "projected": "ProjectedVolumeSource",
}
PROJECTION_TYPES = {
    "configMap": "ConfigMapProjection",
    "secret": "SecretProjection",
    "downwardAPI": "DownwardAPIProjection",
}
# Downward API in files: the pod's whole label and annotation maps too (never in env).
VOLUME_FIELD_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid")
RESOURCE_FIELD_PATHS = (
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
)
_BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
DIVISORS = {"cpu": ("1m", "1"), "memory": _BYTE_DIVISORS, "ephemeral-storage": _BYTE_DIVISORS}
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")
EMPTY_DIR_MEDIA = ("", "Memory")
INT32_MAX = 2**31 - 1
NO_COMMAND = "a container without an image (or in a pod annotated nsbox.io/host-root) runs on the host's files"
