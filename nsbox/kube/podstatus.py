"""A pod's requests, QoS class and conditions, as the kubelet reports them."""

from __future__ import annotations

from .lifecycle import _last_terminated, _state, app_containers_begun, epoch, sidecar_done

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from typing import Any

# --- Requests, QoS class and pod conditions -------------------------------------


def container_requests(resources: Any) -> tuple[int | None, int | None]:
    """(cpu millicores, memory bytes) requested by a container (a `Resources`), with the
    API server's defaulting: a request left unset while its limit is set is the limit."""
    cpu = resources.cpu_request_millis
    memory = resources.memory_request_bytes
    return (resources.cpu_millis if cpu is None else cpu, resources.memory_bytes if memory is None else memory)


def pod_qos_class(spec: Any) -> str:
    """status.qosClass of a pod (a `PodSpec`), as the kubelet computes it (pkg/apis/core/helper/qos):
    requests and limits of cpu and memory, zero meaning unset, summed over every container
    (init ones too). None at all: BestEffort. Every container limiting both, and the sums of
    requests equal to the sums of limits: Guaranteed. Anything else: Burstable."""
    requests: dict[str, int] = {}
    limits: dict[str, int] = {}
    guaranteed = True
    for c in spec.all_containers():
        cpu_request, memory_request = container_requests(c.resources)
        for name, value in (("cpu", cpu_request), ("memory", memory_request)):
            if value:
                requests[name] = requests.get(name, 0) + value
        found = set()
        for name, value in (("cpu", c.resources.cpu_millis), ("memory", c.resources.memory_bytes)):
            if value:
                limits[name] = limits.get(name, 0) + value
                found.add(name)
        if found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests.keys() == limits.keys() and all(limits[k] == v for k, v in requests.items()):
        return "Guaranteed"
    return "Burstable"


def _latest(stamps: list[str]) -> str:
    stamps = [s for s in stamps if s]
    return max(stamps, key=epoch) if stamps else ""


def _names(statuses: list[dict]) -> str:
    return "[" + " ".join(s["name"] for s in statuses) + "]"  # Go's %s of a []string


def pod_conditions(
    containers: list[dict],
    init_containers: Sequence[dict] = (),
    *,
    created: str,
    start_time: str = "",
    phase: str = "Pending",
    sidecars: Collection[str] = (),
) -> list[dict]:
    """status.conditions of a pod, in the kubelet's order (pkg/kubelet/status/generate.go):
    PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled.

    Statuses are `containerStatuses` entries (with `ready` already decided). nsbox
    records no condition transitions: each lastTransitionTime is the recorded moment
    the condition last changed — the pod's creation (PodScheduled: nothing schedules
    it), its start (its sandbox), the last init container's finish, the last start
    of a container or the last turn of its readiness (`readyChangedAt`, set by its
    probes), or the last finish of an unready one — so reads agree."""

    def condition(kind: str, ok: bool, since: str, reason: str = "", message: str = "") -> dict:
        out = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": since or start_time or created}
        if not ok and reason:
            out["reason"] = reason
        if not ok and message:
            out["message"] = message
        return out

    def finished(s: dict) -> str:
        state, detail = _state(s)
        if state == "terminated":
            return detail.get("finishedAt", "")
        return (_last_terminated(s) or {}).get("finishedAt", "")

    ended = phase in ("Succeeded", "Failed")
    sandbox = bool(start_time) and not ended
    sandbox_since = (
        start_time
        if sandbox
        else (_latest([finished(s) for s in [*init_containers, *containers]]) if start_time else created)
    )

    begun = app_containers_begun(containers)
    incomplete = [  # a sidecar is complete once started (KEP-753)
        s
        for s in init_containers
        if not (_state(s)[0] == "terminated" and _state(s)[1].get("exitCode") == 0)
        and not sidecar_done(s, sidecars, begun)
    ]
    initialized = condition(
        "Initialized",
        not incomplete,
        _latest([finished(s) or _state(s)[1].get("startedAt", "") for s in init_containers]) if not incomplete else "",
        "ContainersNotInitialized",
        f"containers with incomplete status: {_names(incomplete)}",
    )

    # Sidecars count for readiness beside the app containers (the kubelet's GenerateContainersReadyCondition).
    checked = [*containers, *(s for s in init_containers if s.get("name") in sidecars)]
    unready = [s for s in checked if not s.get("ready")]
    if not unready and containers:
        since = _latest([t for s in checked for t in (_state(s)[1].get("startedAt", ""), s.get("readyChangedAt", ""))])
        reason = message = ""
    else:
        since = _latest([t for s in unready for t in (finished(s), s.get("readyChangedAt", ""))])
        reason = "PodCompleted" if phase == "Succeeded" else "ContainersNotReady"
        message = "" if phase == "Succeeded" else f"containers with unready status: {_names(unready)}"
    ready = not unready and bool(containers)
    return [
        condition("PodReadyToStartContainers", sandbox, sandbox_since),
        initialized,
        condition("Ready", ready, since, reason, message),
        condition("ContainersReady", ready, since, reason, message),
        condition("PodScheduled", True, created),
    ]
