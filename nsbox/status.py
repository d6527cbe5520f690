"""What users see: Kubernetes-shaped Pod objects, the `get pods` table, `describe` and `inspect`.

Everything here is a pure function of a `PodView` (spec + status.json +
deletion.json + whether the watcher lives), except `inspect`, which also asks
the kernel for namespace inodes.
"""

from __future__ import annotations

import os
import time

from nsbox import kube
from nsbox.pods import PodView

TYPE_CHECKING = False          # typing costs milliseconds of start-up: only type checkers import it
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
    for c in (v.spec.init_containers if init else v.spec.containers):
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
            "image": c.image or "nsbox/host",
            "imageID": "",
            "started": "running" in state,
        }
        if st.get("pid"):
            entry["containerID"] = f"nsbox://{v.spec.uid}/{c.name}"
            entry["user"] = _container_user(v, c)
        out.append(entry)
    return out


def _container_user(v: PodView, c: Any) -> dict[str, Any]:
    """kubelet ≥ 1.31 (SupplementalGroupsPolicy): the identity the runtime gave the container's processes."""
    from nsbox import security
    who = security.user(v.spec, c)
    return {"linux": {"uid": who.uid, "gid": who.gid, "supplementalGroups": list(who.groups)}}


def pod_object(v: PodView) -> dict[str, Any]:
    from nsbox import manifest
    spec = v.spec
    meta: dict[str, Any] = {"name": spec.name, "namespace": spec.namespace, "uid": spec.uid,
                            "creationTimestamp": spec.creation_timestamp}
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
    ready = bool(mains) and all(c["ready"] for c in mains)
    inits_done = all("terminated" in c["state"] and c["state"]["terminated"].get("exitCode") == 0 for c in inits)
    status["conditions"] = [
        {"type": "Initialized", "status": str(inits_done)},
        {"type": "Ready", "status": str(ready)},
        {"type": "ContainersReady", "status": str(ready)},
        {"type": "PodScheduled", "status": "True"},
    ]
    if inits:
        status["initContainerStatuses"] = inits
    status["containerStatuses"] = mains
    obj = manifest.pod_to_manifest(spec)
    obj["metadata"] = meta
    obj["status"] = status
    return obj


def status_text(v: PodView) -> str:
    return kube.pod_status_text(container_statuses(v, init=False), container_statuses(v, init=True),
                                phase=phase(v), reason=v.status.get("reason", ""),
                                deletion=v.deletion is not None, watcher_lost=not v.watcher_alive)


def table(views: list[PodView], wide: bool, all_namespaces: bool) -> str:
    header = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        header += ["IP", "UID"]
    rows = [header]
    now = time.time()
    for v in views:
        mains = container_statuses(v, init=False)
        restarts = kube.pod_restart_count(mains, container_statuses(v, init=True))
        row = ([v.spec.namespace] if all_namespaces else []) + [
            v.spec.name, kube.pod_ready_text(mains), status_text(v), str(restarts),
            human_age(now - _epoch(v.spec.creation_timestamp))]
        if wide:
            row += [v.status.get("podIP") or "<none>", v.spec.uid]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


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


def inspect(v: PodView, container: str | None, cgroups: Any) -> dict[str, Any]:
    from nsbox import native
    watcher = v.status.get("watcher", {})
    wpid = watcher.get("pid", 0)
    alive = v.watcher_alive and wpid and native.process_start_time(wpid) == watcher.get("procStart")
    out: dict[str, Any] = {
        "name": v.spec.name, "namespace": v.spec.namespace, "uid": v.spec.uid,
        "root": v.paths.root.path, "stateDir": v.paths.dir,
        "watcher": {"pid": wpid if alive else None, "alive": bool(alive), "log": v.paths.watcher_log},
        "sandbox": {"namespaces": namespace_inodes(wpid) if alive else {},
                    "hostname": v.spec.effective_hostname, "network": v.spec.network,
                    "shm": v.paths.shm},
        "cgroup": {"version": cgroups.version, "hybrid": cgroups.hybrid,
                   "paths": cgroups.paths(cgroups.pod_path(v.spec.uid))},
        "containers": [],
    }
    for c in v.spec.all_containers():
        if container and c.name != container:
            continue
        st = v.container_status(c.name) or {}
        pid = st.get("pid", 0)
        running = bool(pid) and native.process_start_time(pid) == st.get("procStart")
        rc = st.get("restartCount", 0)
        out["containers"].append({
            "name": c.name, "init": c in v.spec.init_containers,
            "pid": pid if running else None,
            "namespaces": namespace_inodes(pid) if running else {},
            "cgroup": cgroups.paths(cgroups.container_path(v.spec.uid, c.name)),
            "logPath": v.paths.log_file(v.spec.namespace, v.spec.name, c.name, rc),
            "restartCount": rc,
            "command": c.argv,
        })
    return out


def describe(v: PodView, cgroups: Any) -> str:
    spec = v.spec
    obj = pod_object(v)
    st = obj["status"]
    lines = [f"Name:             {spec.name}",
             f"Namespace:        {spec.namespace}",
             f"UID:              {spec.uid}",
             f"Created:          {spec.creation_timestamp}",
             f"Labels:           {_kv(spec.labels)}",
             f"Annotations:      {_kv(spec.annotations)}",
             f"Status:           {status_text(v)}",
             f"Phase:            {st['phase']}"]
    if v.deletion is not None:
        lines.append(f"Termination:      deletionTimestamp {v.deletion.get('deletionTimestamp')}, "
                     f"grace period {v.deletion.get('gracePeriodSeconds')}s")
    if st.get("reason"):
        lines.append(f"Reason:           {st['reason']}")
    if st.get("message"):
        lines.append(f"Message:          {st['message']}")
    if not v.watcher_alive:
        procs = len(cgroups.procs(cgroups.pod_path(spec.uid)))
        lines.append(f"Watcher:          lost — {procs} process(es) of this pod still run; "
                     f"`nsbox delete pod {spec.name}` cleans it up")
    else:
        lines.append(f"Watcher:          pid {v.status.get('watcher', {}).get('pid')}")
    lines.append(f"IP:               {st.get('podIP', '<none>')}")
    lines.append(f"Hostname:         {spec.effective_hostname}")
    lines.append(f"Network:          {spec.network}")
    lines.append(f"Restart Policy:   {spec.restart_policy}")
    lines.append(f"Grace Period:     {spec.termination_grace_period}s")
    lines.append(f"Cgroup:           {cgroups.pod_path(spec.uid)} (v{cgroups.version}"
                 f"{', hybrid' if cgroups.hybrid else ''})")
    wpid = v.status.get("watcher", {}).get("pid")
    if v.watcher_alive and wpid:
        inodes = namespace_inodes(wpid)
        lines.append("Namespaces:       " + "  ".join(f"{k}:[{inodes[k]['inode']}]" for k in ("net", "ipc", "uts")
                                                      if k in inodes))
    for title, init in (("Init Containers", True), ("Containers", False)):
        statuses = st.get("initContainerStatuses" if init else "containerStatuses", [])
        if not statuses:
            continue
        lines.append(f"{title}:")
        for cs in statuses:
            c = spec.container(cs["name"])
            assert c is not None
            lines.append(f"  {c.name}:")
            lines.append(f"    Command:        {' '.join(c.argv)}")
            lines += _describe_state("State", cs["state"])
            if cs.get("lastState"):
                lines += _describe_state("Last State", cs["lastState"])
            lines.append(f"    Ready:          {cs['ready']}")
            lines.append(f"    Restart Count:  {cs['restartCount']}")
            limits = []
            if c.resources.cpu_millis is not None:
                limits.append(f"cpu={kube.format_cpu(c.resources.cpu_millis)}")
            if c.resources.memory_bytes is not None:
                limits.append(f"memory={kube.format_quantity_bytes(c.resources.memory_bytes)}")
            if limits:
                lines.append(f"    Limits:         {', '.join(limits)}")
            lines.append(f"    Cgroup:         {cgroups.container_path(spec.uid, c.name)}")
            rec = v.container_status(c.name) or {}
            if rec.get("pid") and v.watcher_alive:
                inodes = namespace_inodes(rec["pid"])
                lines.append(f"    Host PID:       {rec['pid']}")
                lines.append("    Namespaces:     " + "  ".join(f"{k}:[{i['inode']}]" for k, i in inodes.items()))
            if c.volume_mounts:
                lines.append("    Mounts:         " + ", ".join(
                    f"{m.mount_path} from {m.name}{' (ro)' if m.read_only else ''}" for m in c.volume_mounts))
    if spec.volumes:
        lines.append("Volumes:")
        for vol in spec.volumes:
            what = f"hostPath {vol.host_path}" if vol.kind == "hostPath" else \
                f"emptyDir{' (Memory)' if vol.medium == 'Memory' else ''}"
            lines.append(f"  {vol.name}: {what}")
    lines.append("Events:")
    events = v.status.get("events", [])
    if not events:
        lines.append("  <none>")
    else:
        now = time.time()
        lines.append(f"  {'Type':<8} {'Reason':<18} {'Age':<6} {'From':<14} Message")
        for e in events:
            src = f"container/{e['object']}" if e.get("object") else "watcher"
            lines.append(f"  {e['type']:<8} {e['reason']:<18} {human_age(now - _epoch(e['time'])):<6} "
                         f"{src:<14} {e['message']}")
    return "\n".join(lines)


def _kv(d: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(d.items())) or "<none>"


def _describe_state(title: str, state: dict[str, Any]) -> list[str]:
    (name, detail), = state.items() if state else (("waiting", {}),)
    out = [f"    {title + ':':<16}{name.capitalize()}"]
    for key in ("reason", "exitCode", "signal", "message", "startedAt", "finishedAt"):
        if key in detail and detail[key] not in ("", None):
            out.append(f"      {key[0].upper() + key[1:]}: {detail[key]}")
    return out
