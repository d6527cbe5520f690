"""`apply`: make what a manifest describes exist, as far as pods allow.

Everything is checked before anything changes: ConfigMap and Secret updates the
API server would refuse, and what only this machine can tell about each new pod
(executables, hostPaths). Then the ConfigMaps and Secrets are stored first (the
file's pods may use them), and each new pod is created (docs/manifests.md,
"All or nothing"). Pods are immutable: one that exists with the same spec is
`unchanged`, one with a different spec is an error (docs/manifests.md, "Immutable pods").
"""

from __future__ import annotations

from nsbox import objects
from nsbox.errors import NsboxError

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from nsbox.model import PodSpec
    from nsbox.pods import Runtime


class Outcome:
    """What became of one object: `ref result` (e.g. `pod/web created`), or an error, and warnings."""

    def __init__(self, ref: str, result: str = "", error: str = "", warnings: list[str] | None = None):
        self.ref, self.result, self.error, self.warnings = ref, result, error, warnings or []


def check(rt: Runtime, pods: list[PodSpec], configs: list[dict[str, Any]]) -> None:
    """NsboxError, one line per problem, if the manifest cannot be applied; changes nothing."""
    problems = objects.updates_refused(rt.root.path, configs) if configs else []
    for pod in pods:
        if not rt.root.lookup(pod.namespace, pod.name):
            try:
                rt.check(pod)
            except NsboxError as e:
                problems.append(f"pod/{pod.name}: {e}")
    if problems:
        raise NsboxError("\n".join(problems))


def apply(rt: Runtime, pods: list[PodSpec], configs: list[dict[str, Any]]) -> Iterator[Outcome]:
    """Store the objects, then create the new pods; an Outcome for each, as it happens
    (the pods that use a changed object are told once its outcome has been taken)."""
    for obj in configs:
        meta = obj["metadata"]
        try:
            result = objects.apply(rt.root.path, obj)
        except NsboxError as e:
            yield Outcome(objects.ref(obj), error=str(e))
            continue
        yield Outcome(objects.ref(obj), result)
        if result != "unchanged":
            rt.config_changed(meta["namespace"], obj["kind"], meta["name"])
    for pod in pods:
        yield _apply_pod(rt, pod)


def _apply_pod(rt: Runtime, pod: PodSpec) -> Outcome:
    ref = f"pod/{pod.name}"
    existing = rt.root.lookup(pod.namespace, pod.name)
    if existing:
        from nsbox import manifest

        old = rt.view(rt.root.pod(existing))
        if old is not None:
            rt.repair(old)
            if manifest.same_pod(old.spec, pod):
                return Outcome(ref, "unchanged")
        return Outcome(
            ref, error=f'pod "{pod.name}" already exists with a different spec (pods are immutable: delete it first)'
        )
    try:
        view = rt.create(pod)
    except NsboxError as e:
        return Outcome(ref, error=str(e))
    return Outcome(ref, "created", warnings=view.start_errors)  # the pod exists; its status shows StartError


def delete_config(rt: Runtime, kind: str, namespace: str, name: str) -> bool:
    """Delete a ConfigMap or Secret and tell the pods that use it; False if there was none."""
    if not objects.delete(rt.root.path, kind, namespace, name):
        return False
    rt.config_changed(namespace, kind, name)
    return True
