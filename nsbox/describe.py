"""`nsbox describe pod`: what `kubectl describe pod` shows, in its layout, then a
"Runtime (nsbox):" section. A pure function of a `PodView` and the cgroup backend,
except for the namespace inodes it asks the kernel for.
"""

from __future__ import annotations

import time

from nsbox import kube
from nsbox.kube.probes import describe_probe
from nsbox.pods import PodView
from nsbox.status import _epoch, human_age, namespace_inodes, pod_object, status_text

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any


def describe(v: PodView, cgroups: Any) -> str:
    """`kubectl describe pod` (kubectl pkg/describe: describePod), in its layout and
    aligned as its tabwriter aligns it, then what only nsbox knows: a "Runtime (nsbox):"
    section (cgroups, namespaces, the watcher, host PIDs). A secret's value is never shown."""
    spec = v.spec
    obj = pod_object(v)
    st = obj["status"]
    out = [f"Name:\t{spec.name}", f"Namespace:\t{spec.namespace}", f"Node:\t{spec.node_name or '<none>'}"]
    if st.get("startTime"):
        out.append(f"Start Time:\t{_rfc1123z(st['startTime'])}")
    out += _multiline("Labels", spec.labels)
    out += _annotations(spec.annotations)
    if v.deletion is not None and st["phase"] not in ("Succeeded", "Failed"):
        # deletionTimestamp is when the grace period ends: it lasts since the deletion was asked for
        since = _epoch(v.deletion.get("deletionTimestamp", "")) - (v.deletion.get("gracePeriodSeconds") or 0)
        out.append(f"Status:\tTerminating (lasts {human_age(time.time() - since)})")
        out.append(f"Termination Grace Period:\t{v.deletion.get('gracePeriodSeconds')}s")
    else:
        out.append(f"Status:\t{st['phase']}")
    if st.get("reason"):
        out.append(f"Reason:\t{st['reason']}")
    if st.get("message"):
        out.append(f"Message:\t{st['message']}")
    if spec.seccomp:  # the pod-level field, as kubectl shows it
        out.append(f"SeccompProfile:\t{spec.seccomp}")
        if spec.seccomp == "Localhost":
            out.append(f"LocalhostProfile:\t{spec.seccomp_localhost}")
    out.append(f"IP:\t{st.get('podIP', '')}")
    out += ["IPs:", *(f"  IP:\t{ip['ip']}" for ip in st["podIPs"])] if st.get("podIPs") else ["IPs:\t<none>"]
    for title, key, init, containers in (
        ("Init Containers", "initContainerStatuses", True, spec.init_containers),
        ("Containers", "containerStatuses", False, spec.containers),
    ):
        if init and not containers:
            continue
        out.append(f"{title}:" + ("" if containers else " <none>"))
        statuses = {cs["name"]: cs for cs in st.get(key, [])}
        for c in containers:
            out += _describe_container(spec, c, statuses.get(c.name))
    out.append("Conditions:")
    out.append("  Type\tStatus")
    out += [f"  {c['type']} \t{c['status']} " for c in st["conditions"]]
    out += _describe_volumes(spec.volumes)
    out.append(f"QoS Class:\t{st['qosClass']}")
    out.append("Node-Selectors:\t<none>")
    out.append("Tolerations:\t<none>")
    events = v.status.get("events", [])
    if not events:
        out.append("Events:\t<none>")
    else:
        now = time.time()
        out += ["Events:", "  Type\tReason\tAge\tFrom\tMessage", "  ----\t------\t----\t----\t-------"]
        for e in events:
            src = f"container/{e['object']}" if e.get("object") else "watcher"
            out.append(
                f"  {e['type']}\t{e['reason']}\t{human_age(now - _epoch(e['time']))}\t{src}\t{e['message'].strip()}"
            )
    out += _describe_runtime(v, cgroups)
    return tabwrite(out).rstrip("\n")


def _describe_container(spec: Any, c: Any, cs: dict[str, Any] | None) -> list[str]:
    out = [f"  {c.name}:"]
    if cs is not None:
        out.append(f"    Container ID:\t{cs.get('containerID', '')}")
    out.append(f"    Image:\t{c.image or 'nsbox/host'}")
    if cs is not None:
        out.append(f"    Image ID:\t{cs.get('imageID', '')}")
    ports = ", ".join(f"{p.container_port}/{p.protocol}" for p in c.ports)
    host_ports = ", ".join(f"{p.host_port or 0}/{p.protocol}" for p in c.ports)
    out.append(f"    {'Ports' if ',' in ports else 'Port'}:\t{ports or '<none>'}")
    out.append(f"    {'Host Ports' if ',' in host_ports else 'Host Port'}:\t{host_ports or '<none>'}")
    for title, words in (("Command", c.command), ("Args", c.args)):
        if words:
            out.append(f"    {title}:")
            out += [f"      {line}" for word in words for line in word.split("\n")]
    if cs is not None:
        out += _describe_state("State", cs["state"])
        if (cs.get("lastState") or {}).get("terminated"):
            out += _describe_state("Last State", cs["lastState"])
        out.append(f"    Ready:\t{cs['ready']}")
        out.append(f"    Restart Count:\t{cs['restartCount']}")
    cpu_request, memory_request = kube.container_requests(c.resources)
    storage = c.resources.ephemeral_storage_bytes
    for title, cpu, memory, disk in (
        ("Limits", c.resources.cpu_millis, c.resources.memory_bytes, storage),
        ("Requests", cpu_request, memory_request, None),
    ):
        if cpu is not None or memory is not None or disk is not None:
            out.append(f"    {title}:")
            if cpu is not None:
                out.append(f"      cpu:\t{kube.format_cpu(cpu)}")
            if disk is not None:  # kubectl's order: by name
                out.append(f"      ephemeral-storage:\t{kube.format_quantity_bytes(disk)}")
            if memory is not None:
                out.append(f"      memory:\t{kube.format_quantity_bytes(memory)}")
    probes = (("Liveness", c.liveness_probe), ("Readiness", c.readiness_probe), ("Startup", c.startup_probe))
    for title, probe in probes:
        if probe is not None:
            out.append(f"    {title}:\t{describe_probe(probe)}")
    if c.env_from:
        out.append("    Environment Variables from:")
        for e in c.env_from:
            kind = "ConfigMap" if e.kind == "configMap" else "Secret"
            what = f"{kind} with prefix '{e.prefix}'" if e.prefix else kind
            out.append(f"      {e.name}\t{what}\tOptional: {str(e.optional).lower()}")
    out.append("    Environment:" + ("" if c.env else "\t<none>"))
    for e in c.env:
        out.append(f"      {e.name}:\t{_env_value(spec, c, e)}")
    out.append("    Mounts:" + ("" if c.volume_mounts else "\t<none>"))
    for m in sorted(c.volume_mounts, key=lambda m: m.mount_path):
        flags = ["ro" if m.read_only else "rw"] + ([f'path="{m.sub_path}"'] if m.sub_path else [])
        out.append(f"      {m.mount_path} from {m.name} ({','.join(flags)})")
    return out


def _env_value(spec: Any, c: Any, e: Any) -> str:
    """One variable as describe shows it: a value (later lines of a multi-line one on
    lines of their own), the pod field it comes from, a resource, or the ConfigMap or
    Secret key it is set to — never the key's value."""
    if e.field_ref:
        return f"{_pod_field(spec, e.field_ref)} (v1:{e.field_ref})"
    if e.resource:
        return f"{_resource_value(c, e.resource, e.divisor)} ({e.resource})"
    if e.ref_kind == "secret":
        return f"<set to the key '{e.ref_key}' in secret '{e.ref_name}'>\tOptional: {str(e.optional).lower()}"
    if e.ref_kind == "configMap":
        return f"<set to the key '{e.ref_key}' of config map '{e.ref_name}'>\tOptional: {str(e.optional).lower()}"
    return "\n      \t".join(e.value.split("\n"))


def _pod_field(spec: Any, path: str) -> str:
    """kubectl resolves metadata fields only (fieldpath.ExtractFieldPathAsString on the object)."""
    simple = {"metadata.name": spec.name, "metadata.namespace": spec.namespace, "metadata.uid": spec.uid}
    if path in simple:
        return simple[path]
    for prefix, values in (("metadata.labels", spec.labels), ("metadata.annotations", spec.annotations)):
        if path == prefix:
            return "\n".join(f'{k}="{val}"' for k, val in sorted(values.items()))
        if path.startswith(prefix + "['") and path.endswith("']"):
            return values.get(path[len(prefix) + 2 : -2], "")
    return ""


def _resource_value(c: Any, resource: str, divisor: str) -> str:
    """kubectl's ExtractContainerResourceValue on the container shown: the value divided
    by the divisor, rounded up; an unset limit is 0, shown as "node allocatable"."""
    cpu_request, memory_request = kube.container_requests(c.resources)
    values = {
        "limits.cpu": c.resources.cpu_millis,
        "requests.cpu": cpu_request,
        "limits.memory": c.resources.memory_bytes,
        "requests.memory": memory_request,
        "limits.ephemeral-storage": c.resources.ephemeral_storage_bytes,
        "requests.ephemeral-storage": None,  # reserves nothing
    }
    if resource not in values:
        return ""
    try:
        unit = kube.parse_cpu(divisor or "1") if resource.endswith("cpu") else kube.parse_memory(divisor or "1")
    except kube.QuantityError:
        return ""
    value = values[resource] or 0
    if value == 0 and resource.startswith("limits."):
        return "node allocatable"
    return str(-(-value // unit)) if unit else ""


def _describe_volumes(volumes: list[Any]) -> list[str]:
    if not volumes:
        return ["Volumes:\t<none>"]
    out = ["Volumes:"]
    for vol in volumes:
        out.append(f"  {vol.name}:")
        source = vol.sources[0] if vol.sources else None
        if vol.kind == "hostPath":
            out += [
                "    Type:\tHostPath (bare host directory volume)",
                f"    Path:\t{vol.host_path}",
                f"    HostPathType:\t{vol.host_path_type or '<none>'}",
            ]
        elif vol.kind == "configMap" and source is not None:
            out += [
                "    Type:\tConfigMap (a volume populated by a ConfigMap)",
                f"    Name:\t{source.name}",
                f"    Optional:\t{str(source.optional).lower()}",
            ]
        elif vol.kind == "secret" and source is not None:
            out += [
                "    Type:\tSecret (a volume populated by a Secret)",
                f"    SecretName:\t{source.name}",
                f"    Optional:\t{str(source.optional).lower()}",
            ]
        elif vol.kind == "downwardAPI":
            out += ["    Type:\tDownwardAPI (a volume populated by information about the pod)", "    Items:"]
            out += [f"      {f.field_ref or f.resource} -> {f.path}" for p in vol.sources for f in p.files]
        elif vol.kind == "projected":
            out.append("    Type:\tProjected (a volume that contains injected data from multiple sources)")
            for p in vol.sources:
                if p.kind == "secret":
                    out += [f"    SecretName:\t{p.name}", f"    Optional:\t{str(p.optional).lower()}"]
                elif p.kind == "downwardAPI":
                    out.append("    DownwardAPI:\ttrue")
                elif p.kind == "configMap":
                    out += [f"    ConfigMapName:\t{p.name}", f"    Optional:\t{str(p.optional).lower()}"]
        else:
            size = kube.format_quantity_bytes(vol.size_limit) if vol.size_limit else "<unset>"
            out += [
                "    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)",
                f"    Medium:\t{vol.medium}",
                f"    SizeLimit:\t{size}",
            ]
    return out


def _describe_runtime(v: PodView, cgroups: Any) -> list[str]:
    """What describe shows beyond kubectl's: how nsbox runs the pod on this machine."""
    spec = v.spec
    out = [
        "Runtime (nsbox):",
        f"  UID:\t{spec.uid}",
        f"  Created:\t{spec.creation_timestamp}",
        f"  Pod Status:\t{status_text(v)}",
    ]
    if v.deletion is not None:
        out.append(
            f"  Termination:\tdeletionTimestamp {v.deletion.get('deletionTimestamp')}, "
            f"grace period {v.deletion.get('gracePeriodSeconds')}s"
        )
    if not v.watcher_alive:
        procs = len(cgroups.procs(cgroups.pod_path(spec.uid)))
        out.append(
            f"  Watcher:\tlost — {procs} process(es) of this pod still run; `nsbox delete pod {spec.name}` cleans it up"
        )
    else:
        out.append(f"  Watcher:\tpid {v.status.get('watcher', {}).get('pid')}")
    out.append(f"  Hostname:\t{spec.effective_hostname}")
    out.append(f"  Network:\t{spec.network}")
    out.append(f"  Restart Policy:\t{spec.restart_policy}")
    out.append(f"  Grace Period:\t{spec.termination_grace_period}s")
    out.append(f"  Cgroup:\t{cgroups.pod_path(spec.uid)} (v{cgroups.version}{', hybrid' if cgroups.hybrid else ''})")
    if not spec.host_users:
        from nsbox import userns

        first = userns.first_id(v.paths.root.path, spec.uid)
        mapped = f"host IDs {first}-{first + userns.RANGE_SIZE - 1}" if first else "no range (released)"
        out.append(f"  User Namespace:\t0-{userns.RANGE_SIZE - 1} -> {mapped}")
    wpid = v.status.get("watcher", {}).get("pid")
    if v.watcher_alive and wpid:
        inodes = namespace_inodes(wpid)
        out.append(
            "  Namespaces:\t" + "  ".join(f"{k}:[{inodes[k]['inode']}]" for k in ("net", "ipc", "uts") if k in inodes)
        )
    for c in spec.all_containers():
        out.append(f"  {c.name}:")
        out.append(f"    Cgroup:\t{cgroups.container_path(spec.uid, c.name)}")
        rec = v.container_status(c.name) or {}
        if rec.get("pid") and v.watcher_alive:
            inodes = namespace_inodes(rec["pid"])
            out.append(f"    Host PID:\t{rec['pid']}")
            out.append("    Namespaces:\t" + "  ".join(f"{k}:[{i['inode']}]" for k, i in inodes.items()))
    return out


def _rfc1123z(stamp: str) -> str:
    """Go's time.RFC1123Z in local time, as kubectl prints times in describe."""
    return time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime(_epoch(stamp)))


def _multiline(title: str, values: dict[str, str]) -> list[str]:
    """kubectl's printLabelsMultiline: sorted key=value, one a line, or <none>."""
    if not values:
        return [f"{title}:\t<none>"]
    return [(f"{title}:\t" if i == 0 else "\t") + f"{k}={values[k]}" for i, k in enumerate(sorted(values))]


_MAX_ANNOTATION_LEN = 140  # kubectl describe maxAnnotationLen


def _annotations(values: dict[str, str]) -> list[str]:
    """kubectl's printAnnotationsMultiline: sorted `key: value`; a long or multi-line
    value goes on lines of its own under its key, each cut to 138 characters."""
    keys = sorted(k for k in values if k != "kubectl.kubernetes.io/last-applied-configuration")
    if not keys:
        return ["Annotations:\t<none>"]
    out = []
    for i, key in enumerate(keys):
        lead = "Annotations:\t" if i == 0 else "\t"
        value = values[key].removesuffix("\n")
        if len(value) + len(key) + 2 > _MAX_ANNOTATION_LEN or "\n" in value:
            out.append(f"{lead}{key}:")
            limit = _MAX_ANNOTATION_LEN - 2
            out += [f"\t  {line[:limit] + '...' if len(line) > limit else line}" for line in value.split("\n")]
        else:
            out.append(f"{lead}{key}: {value}")
    return out


def _describe_state(title: str, state: dict[str, Any]) -> list[str]:
    """kubectl's describeStatus: Running with Started, Waiting with Reason, or
    Terminated with Reason, Message, Exit Code, Signal, Started, Finished."""
    if "running" in state:
        return [f"    {title}:\tRunning", f"      Started:\t{_rfc1123z(state['running'].get('startedAt', ''))}"]
    if "terminated" in state:
        t = state["terminated"]
        out = [f"    {title}:\tTerminated"]
        if t.get("reason"):
            out.append(f"      Reason:\t{t['reason']}")
        if t.get("message"):
            out.append(f"      Message:\t{t['message']}")
        out.append(f"      Exit Code:\t{t.get('exitCode', 0)}")
        if t.get("signal"):
            out.append(f"      Signal:\t{t['signal']}")
        out.append(f"      Started:\t{_rfc1123z(t['startedAt']) if t.get('startedAt') else _GO_ZERO_TIME}")
        out.append(f"      Finished:\t{_rfc1123z(t['finishedAt']) if t.get('finishedAt') else _GO_ZERO_TIME}")
        return out
    out = [f"    {title}:\tWaiting"]
    reason = (state.get("waiting") or {}).get("reason")
    if reason:
        out.append(f"      Reason:\t{reason}")
    return out


_GO_ZERO_TIME = "Mon, 01 Jan 0001 00:00:00 +0000"  # an unset metav1.Time, as RFC1123Z


def tabwrite(lines: list[str], padding: int = 2) -> str:
    """Go's text/tabwriter as kubectl sets it up (minwidth 0, padding 2, spaces): a tab
    ends a cell, and each column of cells on consecutive lines is as wide as its widest
    cell plus the padding; a line with fewer cells ends the column's block."""
    rows = [r.split("\t") for line in lines for r in line.split("\n")]
    widths: list[list[int]] = [[] for _ in rows]

    def block(column: int, start: int, end: int) -> None:
        i = start
        while i < end:
            if len(rows[i]) - 1 <= column:
                i += 1
                continue
            j = i
            while j < end and len(rows[j]) - 1 > column:
                j += 1
            width = max(len(rows[k][column]) for k in range(i, j)) + padding
            for k in range(i, j):
                widths[k].append(width)
            block(column + 1, i, j)
            i = j

    block(0, 0, len(rows))
    return "".join("".join(cell.ljust(w) for cell, w in zip(r, widths[n])) + r[-1] + "\n" for n, r in enumerate(rows))
