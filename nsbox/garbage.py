"""`gc`: reclaim what crashed pods left behind: their state, cgroups, logs, addresses and user namespace ranges."""

from __future__ import annotations

import os

from nsbox.model import PodSpec
from nsbox.state import read_json, remove_tree

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.pods import Runtime


def collect(rt: Runtime, idle_bridges: bool = False) -> list[str]:
    """Reclaim what crashed pods left behind; returns what was done, one line each.
    The network is host-wide: addresses of pods gone from any root are released, and with
    `idle_bridges` (`gc --all`) the bridges no pod uses are removed."""
    from nsbox import cgroups

    done = []
    named = {uid: (ns, name) for ns, name, uid in rt.root.names()}
    for uid in rt.root.pod_uids():
        paths = rt.root.pod(uid)
        if paths.watcher_alive():
            continue
        spec_raw = read_json(paths.pod_json)
        if uid in named and spec_raw is not None:
            if read_json(paths.deletion_json) is not None:
                rt.resume_termination(paths)
                done.append(f"pod {uid}: termination resumed")
            continue
        # No name points here (a force delete or a create that was killed), or no spec is left
        # (a power loss can empty a state file: state.write_state): reclaim it, and its name.
        if spec_raw:
            spec = PodSpec.from_dict(spec_raw)
        else:
            namespace, name = named.get(uid, ("default", ""))
            spec = PodSpec(name=name, namespace=namespace, uid=uid)
        spec.uid = uid
        rt._destroy_without_watcher(paths, spec)
        if spec.name:
            remove_tree(paths.log_dir(spec.namespace, spec.name))
        done.append(f"pod {uid}: reclaimed")
    cg = cgroups.detect()
    pods = set(rt.root.pod_uids())
    for uid in cg.list_pods():
        if uid in pods or cgroup_root(cg, uid) != rt.root.path:
            continue
        rel = cg.pod_path(uid)
        if cg.populated(rel):
            cg.kill(rel)
        cg.remove(rel)
        done.append(f"cgroup {rel}: removed")
    logs_dir = os.path.join(rt.root.path, "logs")
    for entry in sorted(os.listdir(logs_dir)) if os.path.isdir(logs_dir) else []:
        if entry.rsplit("_", 1)[-1] not in pods:
            remove_tree(os.path.join(logs_dir, entry))
            done.append(f"logs {entry}: removed")
    from nsbox import network, userns

    done += network.collect(remove_idle_bridges=idle_bridges)
    done += userns.collect()
    return done


def cgroup_root(cg: Any, uid: str) -> str | None:
    """The root a pod cgroup was made for (recorded as an xattr by the watcher)."""
    from nsbox.watcher.holder import CGROUP_ROOT_XATTR

    for path in cg.paths(cg.pod_path(uid)).values():
        try:
            return os.getxattr(path, CGROUP_ROOT_XATTR).decode()
        except OSError:
            continue
    return None
