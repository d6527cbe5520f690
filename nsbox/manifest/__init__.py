"""Kubernetes v1/Pod manifests: loading, validation, conversion to `PodSpec`.

`load_documents` reads YAML or JSON (a file, a directory of them, or "-" for
stdin) into objects (load.py); `pods_from_documents` validates every object
before anything is created and turns each into a `PodSpec` (pod.py, with
containers.py, env.py and volumes.py over the base in reader.py);
`pod_to_manifest` goes back to the v1 Pod object that `get -o yaml/json`
shows (emit.py).

How nsbox treats each field of a Pod is a policy, written down in policy.py
(docs/manifests.md): HANDLED, IGNORED_SILENTLY, WARNED and REJECTED.

Error and warning lines carry no "error: " / "warning: " prefix: the CLI
adds it to each line. `resources.requests` are read (shown, in the QoS class
and the downward API) but reserve nothing: nsbox schedules nothing.
"""

from .emit import pod_to_manifest, same_pod
from .load import load_documents
from .pod import pod_names_from_documents, pods_from_documents
from .policy import (
    ANNOTATION_BACKOFF_BASE,
    ANNOTATION_BACKOFF_MAX,
    ANNOTATION_INIT,
    ANNOTATION_NETWORK,
    ANNOTATION_PIDS_LIMIT,
    ANNOTATION_POD_CPU,
    ANNOTATION_POD_MEMORY,
    CONFIG_VOLUME_KINDS,
    EMPTY_DIR_MEDIA,
    ENV_FIELD_PATHS,
    HANDLED,
    HOST_PATH_TYPES,
    IGNORED_SILENTLY,
    NO_COMMAND,
    NSBOX_ANNOTATIONS,
    REJECTED,
    RESOURCE_FIELD_PATHS,
    VOLUME_FIELD_PATHS,
    WARNED,
)

__all__ = [
    "load_documents",
    "pods_from_documents",
    "pod_names_from_documents",
    "pod_to_manifest",
    "same_pod",
    "HANDLED",
    "IGNORED_SILENTLY",
    "WARNED",
    "REJECTED",
    "NSBOX_ANNOTATIONS",
    "ANNOTATION_NETWORK",
    "ANNOTATION_INIT",
    "ANNOTATION_BACKOFF_BASE",
    "ANNOTATION_BACKOFF_MAX",
    "ANNOTATION_PIDS_LIMIT",
    "ANNOTATION_POD_CPU",
    "ANNOTATION_POD_MEMORY",
    "ENV_FIELD_PATHS",
    "CONFIG_VOLUME_KINDS",
    "VOLUME_FIELD_PATHS",
    "RESOURCE_FIELD_PATHS",
    "HOST_PATH_TYPES",
    "EMPTY_DIR_MEDIA",
    "NO_COMMAND",
]
