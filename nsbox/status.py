"""What users see: Kubernetes-shaped Pod objects, the `get pods` table and `inspect`
(`describe` is in describe.py).

Everything here is a pure function of a `PodView` (spec + status.json +
deletion.json + whether the watcher lives), except `inspect`, which also asks
the kernel for namespace inodes.
"""

from __future__ import annotations

import os
import time

from nsbox import kube
from nsbox.errors import NsboxError
from nsbox.pods import PodView

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any


def _epoch(ts: str) -> float:
    return kube.epoch(ts) if ts else time.time()


def human_age(seconds: float) -> str:
    """kubectl's duration.HumanDuration: 45s, 3m20s, 45m, 5h3m, 3d4h, 30d, 2y."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = s // 3600
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if h < 24 * 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


# ---------------------------------------------------------------- the Pod object


def phase(v: PodView) -> str:
    if not v.watcher_alive:
        return "Unknown"
    return v.status.get("phase", "Pending")


def container_statuses(v: PodView, init: bool) -> list[dict[str, Any]]:
    recorded = {st["name"]: st for st in v.status.get("containers", [])}
    out = []
    for c in v.spec.init_containers if init else v.spec.containers:
        st = recorded.get(c.name, {})
        state = st.get("state") or {"waiting": {"reason": "ContainerCreating"}}
        if not v.watcher_alive and "running" in state:
            state = {"waiting": {"reason": "Unknown", "message": "the pod's watcher is gone"}}
        entry = {
            "name": c.name,
            "state": state,
            "lastState": st.get("lastState") or {},
            "ready": bool(st.get("ready")) and v.watcher_alive and v.deletion is None,
            "restartCount": st.get("restartCount", 0),
            "image": st.get("image") or c.image or "nsbox/host",
            "imageID": st.get("imageID", ""),
            "started": "running" in state and st.get("started", True) is not False,  # a startup probe holds it back
            # ContainerStopSignals (1.33): the effective one — the spec's, else the image's (docs/lifecycle.md)
            "stopSignal": c.stop_signal or _signal_name(st.get("stopSignal", "")),
        }
        if st.get("pid"):
            entry["containerID"] = f"nsbox://{v.spec.uid}/{c.name}"
            entry["user"] = {"linux": st["user"]} if "user" in st else _container_user(v, c)
        out.append(entry)
    return out


def _signal_name(image_signal: str) -> str:
    """An image's StopSignal ("QUIT", "SIGQUIT", "3") as the API names it; SIGTERM without one."""
    if not image_signal:
        return "SIGTERM"  # the common case costs no import (`get pods` reads every container)
    import signal

    from nsbox.watcher.termination import stop_signal

    number = stop_signal(image_signal)
    try:
        return signal.Signals(number).name
    except ValueError:
        return image_signal.upper() if image_signal.upper().startswith("SIGRT") else "SIGTERM"


def _container_user(v: PodView, c: Any) -> dict[str, Any]:
    """kubelet ≥ 1.31 (SupplementalGroupsPolicy): the identity the runtime gave the container's processes."""
    from nsbox import security

    who = security.user(v.spec, c)
    return {"linux": {"uid": who.uid, "gid": who.gid, "supplementalGroups": list(who.groups)}}


def pod_object(v: PodView) -> dict[str, Any]:
    from nsbox import manifest

    spec = v.spec
    meta: dict[str, Any] = {
        "name": spec.name,
        "namespace": spec.namespace,
        "uid": spec.uid,
        "creationTimestamp": spec.creation_timestamp,
    }
    if spec.labels:
        meta["labels"] = dict(spec.labels)
    if spec.annotations:
        meta["annotations"] = dict(spec.annotations)
    if v.deletion is not None:
        meta["deletionTimestamp"] = v.deletion.get("deletionTimestamp")
        meta["deletionGracePeriodSeconds"] = v.deletion.get("gracePeriodSeconds")
    mains = container_statuses(v, init=False)
    inits = container_statuses(v, init=True)
    status: dict[str, Any] = {"phase": phase(v)}
    if v.status.get("reason"):
        status["reason"] = v.status["reason"]
    if v.status.get("message"):
        status["message"] = v.status["message"]
    if not v.watcher_alive:
        status["reason"] = "WatcherLost"
        status["message"] = "the process that watches this pod is gone; its state cannot be trusted"
    pod_ip = v.status.get("podIP", "")
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if v.status.get("startTime"):
        status["startTime"] = v.status["startTime"]
    # When its probes last turned a container's readiness over: the Ready condition's
    # lastTransitionTime (kept out of containerStatuses, which has no such field).
    turned = {st["name"]: st.get("readyChangedAt", "") for st in v.status.get("containers", [])}
    status["conditions"] = kube.pod_conditions(
        [{**m, "readyChangedAt": turned.get(m["name"], "")} for m in mains],
        [{**i, "readyChangedAt": turned.get(i["name"], "")} for i in inits],
        created=spec.creation_timestamp,
        start_time=v.status.get("startTime", ""),
        phase=status["phase"],
        sidecars=spec.sidecars,
    )
    if inits:
        status["initContainerStatuses"] = inits
    status["containerStatuses"] = mains
    status["qosClass"] = kube.pod_qos_class(spec)
    obj = manifest.pod_to_manifest(spec)
    obj["metadata"] = meta
    obj["status"] = status
    return obj


def status_text(v: PodView) -> str:
    return kube.pod_status_text(
        container_statuses(v, init=False),
        container_statuses(v, init=True),
        phase=phase(v),
        reason=v.status.get("reason", ""),
        deletion=v.deletion is not None,
        watcher_lost=not v.watcher_alive,
        sidecars=v.spec.sidecars,
    )


def table(views: list[PodView], wide: bool, all_namespaces: bool) -> str:
    header = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        header += ["IP", "UID"]
    rows = [header]
    now = time.time()
    for v in views:
        mains, inits = container_statuses(v, init=False), container_statuses(v, init=True)
        restarts = kube.pod_restart_count(mains, inits, v.spec.sidecars)
        row = ([v.spec.namespace] if all_namespaces else []) + [
            v.spec.name,
            kube.pod_ready_text(mains, [s for s in inits if s["name"] in v.spec.sidecars]),
            status_text(v),
            str(restarts),
            human_age(now - _epoch(v.spec.creation_timestamp)),
        ]
        if wide:
            row += [v.status.get("podIP") or "<none>", v.spec.uid]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def condition_met(v: PodView, condition: str) -> bool:
    """`wait --for`: whether `condition=TYPE` (a pod condition that is True) or `phase=PHASE` holds,
    compared as kubectl does, without regard to case; `delete` holds only once the pod is gone."""
    if condition.startswith("condition="):
        conditions = {c["type"].lower(): c["status"] for c in pod_object(v)["status"]["conditions"]}
        return conditions.get(condition.split("=", 1)[1].lower()) == "True"
    if condition.startswith("phase="):
        return phase(v).lower() == condition.split("=", 1)[1].lower()
    if condition != "delete":
        raise NsboxError(f'unrecognized condition "{condition}": use condition=Ready, delete or phase=PHASE')
    return False


def match_selector(labels: dict[str, str], selector: str) -> bool:
    """Label selectors of kubectl's -l: k=v, k==v, k!=v, k, !k, comma-separated (all must hold)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, val = (x.strip() for x in term.split("!=", 1))
            if labels.get(k) == val:
                return False
        elif "=" in term:
            k, val = (x.strip() for x in term.replace("==", "=").split("=", 1))
            if labels.get(k) != val:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


# ---------------------------------------------------------------- inspect and describe

NAMESPACES = ("net", "ipc", "uts", "pid", "mnt", "cgroup")


def namespace_inodes(pid: int) -> dict[str, Any]:
    out = {}
    for ns in NAMESPACES:
        path = f"/proc/{pid}/ns/{ns}"
        try:
            out[ns] = {"path": path, "inode": os.stat(path).st_ino}
        except OSError:
            pass
    return out


def seccomp_choice(pod: Any, c: Any) -> Any:
    from nsbox import seccomp

    return seccomp.choice(pod, c)


def _userns_view(v: PodView) -> dict[str, Any]:
    """hostUsers: false: the host IDs the pod's 0..65535 are (nsbox/userns.py), from the host-wide pool."""
    from nsbox import userns

    first = userns.first_id(v.paths.root.path, v.spec.uid)
    mapping = [0, first, userns.RANGE_SIZE] if first else []
    return {"uidMap": mapping, "gidMap": mapping}


def inspect(v: PodView, container: str | None, cgroups: Any) -> dict[str, Any]:
    from nsbox import native

    watcher = v.status.get("watcher", {})
    wpid = watcher.get("pid", 0)
    alive = v.watcher_alive and wpid and native.process_start_time(wpid) == watcher.get("procStart")
    out: dict[str, Any] = {
        "name": v.spec.name,
        "namespace": v.spec.namespace,
        "uid": v.spec.uid,
        "root": v.paths.root.path,
        "stateDir": v.paths.dir,
        "watcher": {"pid": wpid if alive else None, "alive": bool(alive), "log": v.paths.watcher_log},
        "sandbox": {
            "namespaces": namespace_inodes(wpid) if alive else {},
            "hostname": v.spec.effective_hostname,
            "network": v.spec.network,
            "shm": v.paths.shm,
            **({"userNamespace": _userns_view(v)} if not v.spec.host_users else {}),
        },
        "cgroup": {
            "version": cgroups.version,
            "hybrid": cgroups.hybrid,
            "paths": cgroups.paths(cgroups.pod_path(v.spec.uid)),
        },
        "containers": [],
    }
    for c in v.spec.all_containers():
        if container and c.name != container:
            continue
        st = v.container_status(c.name) or {}
        pid = st.get("pid", 0)
        running = bool(pid) and native.process_start_time(pid) == st.get("procStart")
        rc = st.get("restartCount", 0)
        out["containers"].append(
            {
                "name": c.name,
                "init": c in v.spec.init_containers,
                "pid": pid if running else None,
                "namespaces": namespace_inodes(pid) if running else {},
                "cgroup": cgroups.paths(cgroups.container_path(v.spec.uid, c.name)),
                "logPath": v.paths.log_file(v.spec.namespace, v.spec.name, c.name, rc),
                "restartCount": rc,
                "command": c.argv,
                # The profile it runs under, and the compiled filter its processes get (nsbox.seccomp).
                "seccomp": {"profile": str(seccomp_choice(v.spec, c)), "filter": st.get("seccomp") or None},
            }
        )
    return out
