"""The four measurements of issue 8: one-shot, pod operations, footprint, scale."""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import time

from bench.common import (
    TRAP_WAIT,
    BenchError,
    Case,
    Series,
    interleave,
    log,
    mem_available_kib,
    smaps_rollup,
    timed,
)

SLEEP = ["sleep", "1000000"]


# ---------------------------------------------------------------- 1. one-shot


def oneshot(rts: dict, refs: list, reps: int) -> list[Series]:
    """New pod, /bin/true, wait for its exit, remove everything: the whole cycle, per runtime."""
    order = ["nsbox", "nsbox warm", "podman", "crun", "runc", "bwrap", "unshare"]
    cases = [Case(n, measure=rts[n].oneshot) for n in order if n in rts]
    if "nsbox" in rts:
        # seccomp (docs/security.md, "System calls"): the default profile's filter comes from the
        # cache; Unconfined installs none; a cold cache compiles it (libseccomp) first.
        rt = rts["nsbox"]
        cases.insert(1, Case("nsbox Unconfined", measure=lambda i, rt=rt: rt.oneshot(i, "Unconfined")))
        cases.insert(2, Case("nsbox, cold seccomp cache", prepare=rt.clear_seccomp_cache, measure=rt.oneshot))
    cases += [Case(name, measure=lambda i, argv=argv, env=env: timed(argv, env=env)) for name, argv, env in refs]
    log(f"one-shot: {', '.join(c.runtime for c in cases)} × {reps}")
    return interleave("one-shot: new pod, /bin/true, wait, remove", cases, reps)


# ---------------------------------------------------------------- 2. pod operations


def pod_ops(rts: dict, reps: int) -> list[Series]:
    out: list[Series] = []
    names = [n for n in ("nsbox", "nsbox warm", "podman", "crun", "runc") if n in rts]

    # pod create alone (a sandbox with lo up)
    cases = []
    for n in names:
        rt = rts[n]
        cases.append(
            Case(
                n,
                prepare=lambda i: f"pc{i}",
                measure=rt.pod_create,
                after=lambda name, rt=rt: name and rt.force_delete(name),
            )
        )
        if n == "podman":
            # podman's `pod create` makes no namespaces until the pod starts: time both
            cases.append(
                Case(
                    "podman create+start",
                    prepare=lambda i: f"pcs{i}",
                    measure=lambda name, rt=rt: rt.pod_create(name) + rt.pod_start(name),
                    after=lambda name, rt=rt: name and rt.force_delete(name),
                )
            )
    log(f"pod create: {', '.join(c.runtime for c in cases)} × {reps}")
    out += interleave("pod create (sandbox, lo up)", cases, reps)

    # add a container to a running pod
    cases = []
    for n in names:
        rt = rts[n]
        cases.append(
            Case(
                n,
                prepare=lambda i, rt=rt, n=n: _running_pod(rt, n, f"ad{i}", ["sleep", "100"]),
                measure=lambda name, rt=rt: rt.add_container(name, "c", ["sleep", "100"]),
                after=lambda name, rt=rt: name and rt.force_delete(name),
            )
        )
        if n == "nsbox":
            cases.append(
                Case(
                    "nsbox Unconfined",
                    prepare=lambda i, rt=rt: _running_pod(rt, "nsbox", f"adu{i}", ["sleep", "100"]),
                    measure=lambda name, rt=rt: rt.add_container(name, "c", ["sleep", "100"], "Unconfined"),
                    after=lambda name, rt=rt: name and rt.force_delete(name),
                )
            )
            # The first request to a quiet pod wakes its watcher from nsbox-idle: a Python start.
            cases.append(
                Case(
                    "nsbox, idle pod",
                    prepare=lambda i, rt=rt: _idle(rt, _running_pod(rt, "nsbox", f"adi{i}", [])),
                    measure=lambda name, rt=rt: rt.add_container(name, "c", ["sleep", "100"]),
                    after=lambda name, rt=rt: name and rt.force_delete(name),
                )
            )
    log(f"add container: {', '.join(c.runtime for c in cases)} × {reps}")
    out += interleave("add a container to a running pod (sleep 100)", cases, reps)

    # delete a pod whose container exits on SIGTERM
    cases = []
    for n in names:
        rt = rts[n]

        def prep(i: int, rt=rt, n=n, prefix: str = "dl") -> str:
            name = _running_pod(rt, n, f"{prefix}{i}", ["sh", "-c", TRAP_WAIT])
            rt.add_container(name, "c", ["sh", "-c", TRAP_WAIT])
            time.sleep(0.3)  # let the shell install its trap before the SIGTERM
            return name

        cases.append(
            Case(n, prepare=prep, measure=rt.delete_pod, after=lambda name, rt=rt: name and rt.force_delete(name))
        )
        if n == "nsbox":
            cases.append(
                Case(
                    "nsbox, idle pod",
                    prepare=lambda i, rt=rt, prep=prep: _idle(rt, prep(i, prefix="dli")),
                    measure=rt.delete_pod,
                    after=lambda name, rt=rt: name and rt.force_delete(name),
                )
            )
    log(f"delete cooperative pod: {', '.join(c.runtime for c in cases)} × {reps}")
    out += interleave("delete a pod whose container exits on SIGTERM", cases, reps)
    return out


def _running_pod(rt, n: str, name: str, command: list[str]) -> str:
    """A started pod, ready for a container `c` running `command` (runc/crun: its bundle written)."""
    rt.pod_create(name)
    if n == "podman":
        rt.pod_start(name)
    if n in ("crun", "runc"):
        rt.prepare_container(name, "c", command)
    return name


def _idle(rt, name: str) -> str:
    """`name`, once the watcher of that nsbox pod has hibernated."""
    rt.wait_idle(name)
    return name


# ---------------------------------------------------------------- 3. footprint


def footprint(rts: dict, k: int, baselines: list) -> list[dict]:
    """K running pods with one `sleep` container each; memory per pod from smaps_rollup."""
    rows = []
    for n in ("nsbox", "podman", "crun", "runc"):
        if n not in rts:
            continue
        rt = rts[n]
        names = [f"fp{i}" for i in range(k)]
        log(f"footprint: {n}, {k} pods")
        avail0 = mem_available_kib()
        try:
            for name in names:
                rt.run_pod(name, SLEEP)
            time.sleep(1.5)
            procs = rt.pod_processes(names)
            avail1 = mem_available_kib()
            row = {"runtime": n, "pods": k, "mem_available_drop_kib": (avail0 - avail1) / k}
            for group in ("overhead", "workload"):
                rss = pss = cnt = 0
                for name in names:
                    for pid in procs[name][group]:
                        r, p = smaps_rollup(pid)
                        rss, pss, cnt = rss + r, pss + p, cnt + 1
                row[group] = {"rss_kib": rss / k, "pss_kib": pss / k, "procs": cnt / k}
            rows.append(row)
        except (BenchError, OSError, ValueError) as e:
            log(f"footprint {n}: {e}")
            rows.append({"runtime": n, "error": str(e)[:200]})
        finally:
            for name in names:
                try:
                    rt.force_delete(name)
                except (BenchError, OSError) as e:
                    log(f"footprint {n}: clean-up of {name}: {e}")
    for label, argv, env in baselines:
        import subprocess

        procs = [subprocess.Popen(argv, env=env) for _ in range(k)]
        time.sleep(1.0)
        rss = pss = 0
        for p in procs:
            r, s = smaps_rollup(p.pid)
            rss, pss = rss + r, pss + s
        for p in procs:
            p.kill()
            p.wait()
        rows.append(
            {
                "runtime": label,
                "pods": k,
                "reference": True,
                "overhead": {"rss_kib": rss / k, "pss_kib": pss / k, "procs": 1},
            }
        )
    return rows


# ---------------------------------------------------------------- 4. scale


def scale(rt, n: int, checkpoints: list[int], batch: int, mem_of=None) -> dict:
    """N pods one after another, then N in parallel batches; list and delete-all times, leftovers."""
    res: dict = {"runtime": rt.name, "n": n, "seq": [], "list": {}, "mem": {}, "batch": batch}
    cmd = [TRAP_WAIT]
    log(f"scale: {rt.name}: {n} pods one after another")
    try:
        for i in range(n):
            res["seq"].append(rt.run_pod(f"s{i}", ["sh", "-c", *cmd]))
            if i + 1 in checkpoints:
                res["list"][i + 1] = statistics.median(rt.list_pods() for _ in range(3))
                if mem_of is not None:
                    res["mem"][i + 1] = mem_of()
                log(
                    f"scale: {rt.name}: {i + 1} pods, last create {res['seq'][-1]:.0f} ms, "
                    f"list {res['list'][i + 1]:.0f} ms"
                )
        if hasattr(rt, "remember_cgroups"):
            rt.remember_cgroups()
        res["delete_all_ms"] = timed_delete_all(rt)
        res["leftovers_seq"] = rt.leftovers() if hasattr(rt, "leftovers") else []

        log(f"scale: {rt.name}: {n} pods in parallel batches of {batch}")
        res["par"] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=batch) as pool:
            for start in range(0, n, batch):
                names = [f"p{i}" for i in range(start, min(n, start + batch))]
                t0 = time.perf_counter()
                list(pool.map(lambda name: rt.run_pod(name, ["sh", "-c", *cmd]), names))
                res["par"].append(((time.perf_counter() - t0) * 1000, len(names)))
        if hasattr(rt, "remember_cgroups"):
            rt.remember_cgroups()
        res["delete_all_par_ms"] = timed_delete_all(rt)
        res["leftovers"] = rt.leftovers() if hasattr(rt, "leftovers") else []
    except (BenchError, OSError) as e:
        log(f"scale {rt.name}: {e}")
        res["error"] = str(e)[:300]
    return res


def quiet_delete(rt, n: int, batch: int) -> dict:
    """`delete pod --all` of N quiet pods: created in parallel batches of B, then timed once every
    watcher is nsbox-idle (/proc/PID/exe), so that what is timed is the end of hibernated pods
    (issue 18; docs/design.md §3). Leftovers are checked as in the scale test."""
    res: dict = {"runtime": rt.name, "n": n, "batch": batch}
    log(f"quiet delete: {n} pods in parallel batches of {batch}")
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=batch) as pool:
            for start in range(0, n, batch):
                names = [f"q{i}" for i in range(start, min(n, start + batch))]
                list(pool.map(lambda name: rt.run_pod(name, ["sh", "-c", TRAP_WAIT]), names))
        res["idle_wait_s"] = wait_all_idle(rt, n, timeout=60 + n * 0.05)
        rt.remember_cgroups()
        log(f"quiet delete: {n} watchers are nsbox-idle; delete pod --all")
        res["delete_all_ms"] = timed_delete_all(rt)
        res["leftovers"] = rt.leftovers()
        log(f"quiet delete: {n} pods: {res['delete_all_ms'] / 1000:.1f} s, leftovers {res['leftovers']}")
    except (BenchError, OSError) as e:
        log(f"quiet delete: {e}")
        res["error"] = str(e)[:300]
    return res


def wait_all_idle(rt, n: int, timeout: float) -> float:
    """Until N watchers of the bench's root run nsbox-idle; the seconds that took."""
    t0 = time.monotonic()
    while True:
        idle = 0
        for pid in rt.watchers():
            try:
                idle += os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "nsbox-idle"
            except OSError:
                pass
        if idle >= n:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise BenchError(f"only {idle} of {n} watchers hibernated within {timeout:.0f} s")
        time.sleep(0.5)


def timed_delete_all(rt) -> float:
    t0 = time.perf_counter()
    rt.delete_all()
    return (time.perf_counter() - t0) * 1000


def nsbox_scale_memory(rt) -> dict:
    """Total RSS/PSS of all watchers (and separately their containers) of the bench's root."""
    from bench.common import children_map, descendants

    ws = rt.watchers()
    kids = children_map()
    wr = wp = cr = cp = 0
    for w in ws:
        r, p = smaps_rollup(w)
        wr, wp = wr + r, wp + p
        for d in descendants(w, kids):
            r, p = smaps_rollup(d)
            cr, cp = cr + r, cp + p
    k = max(1, len(ws))
    return {
        "watchers": len(ws),
        "watcher_rss_kib": wr / k,
        "watcher_pss_kib": wp / k,
        "container_rss_kib": cr / k,
        "container_pss_kib": cp / k,
        "mem_available_kib": mem_available_kib(),
    }


def podman_scale_memory(rt) -> dict:
    """conmon + catatonit (+ container) processes of the bench's podman storage."""
    from bench.common import all_pids, children_map, cmdline, comm, descendants

    conmons = [p for p in all_pids() if comm(p) == "conmon" and rt.dir in cmdline(p)]
    kids = children_map()
    over_r = over_p = work_r = work_p = 0
    for c in conmons:
        r, p = smaps_rollup(c)
        over_r, over_p = over_r + r, over_p + p
        for d in descendants(c, kids):
            r, p = smaps_rollup(d)
            if comm(d) == "catatonit":
                over_r, over_p = over_r + r, over_p + p
            else:
                work_r, work_p = work_r + r, work_p + p
    pods = max(1, len(conmons) // 2)
    return {
        "conmons": len(conmons),
        "overhead_rss_kib": over_r / pods,
        "overhead_pss_kib": over_p / pods,
        "container_rss_kib": work_r / pods,
        "container_pss_kib": work_p / pods,
        "mem_available_kib": mem_available_kib(),
    }


# ---------------------------------------------------------------- 6. probed pods


# Every pod's workload: busybox's httpd, which answers GET /hostname with /etc/hostname.
PROBED_SERVER = ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc"]
PROBE_KINDS = {
    "none": None,
    "httpGet": {"httpGet": {"port": 8080, "path": "/hostname"}},
    "tcpSocket": {"tcpSocket": {"port": 8080}},
    "exec": {"exec": {"command": ["cat", "/etc/hostname"]}},
}


def _probed_pod(name: str, handler: dict | None, period: int) -> str:
    import json

    c: dict = {"name": "web", "command": PROBED_SERVER}
    if handler is not None:
        c["readinessProbe"] = {**handler, "periodSeconds": period}
        c["livenessProbe"] = {**handler, "periodSeconds": period}
    doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c]}}
    return json.dumps(doc)


def probes(rt, k: int, kinds: list[str], period: int, window: float) -> list[dict]:
    """K pods, each a busybox httpd with a readiness and a liveness probe of one kind every
    `period` s (or none); memory per pod sampled once a second over `window` seconds, and
    how many watchers were awake (Python) at each sample: nsbox-idle checks tcpSocket and
    httpGet itself, exec wakes Python for each check."""
    import subprocess
    import tempfile

    from bench.common import run

    rows = []
    for kind in kinds:
        names = [f"pr{i}" for i in range(k)]
        log(f"probes: {kind}, {k} pods, period {period} s")
        try:
            for name in names:
                with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
                    f.write(_probed_pod(name, PROBE_KINDS[kind], period))
                    f.flush()
                    run(rt.cmd("apply", "-f", f.name), env=rt.env)
            ready_by = time.monotonic() + 60
            while time.monotonic() < ready_by:
                out = subprocess.run(rt.cmd("get", "pods"), env=rt.env, capture_output=True, text=True).stdout
                if sum(" 1/1 " in line for line in out.splitlines()[1:]) >= k:
                    break
                time.sleep(0.5)
            time.sleep(1.5)  # the last watchers' quiet spell
            samples = []
            end = time.monotonic() + window
            while time.monotonic() < end:
                t0 = time.monotonic()
                procs = rt.pod_processes(names)
                sample = {"awake": 0, "overhead_pss_kib": 0, "overhead_rss_kib": 0, "workload_pss_kib": 0}
                for name in names:
                    for pid in procs[name]["overhead"]:
                        try:
                            asleep = os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "nsbox-idle"
                            r, p = smaps_rollup(pid)
                        except OSError:
                            continue
                        sample["awake"] += not asleep
                        sample["overhead_rss_kib"] += r
                        sample["overhead_pss_kib"] += p
                    for pid in procs[name]["workload"]:
                        try:
                            sample["workload_pss_kib"] += smaps_rollup(pid)[1]
                        except OSError:
                            pass
                samples.append(sample)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
            ready = subprocess.run(rt.cmd("get", "pods"), env=rt.env, capture_output=True, text=True).stdout
            restarts = sum(int(line.split()[3]) for line in ready.splitlines()[1:] if len(line.split()) > 3)

            def per_pod(key: str, samples: list = samples) -> dict:
                values = [s[key] / k for s in samples]
                return {"mean": statistics.mean(values), "max": max(values)}

            rows.append(
                {
                    "probe": kind,
                    "pods": k,
                    "period": period,
                    "samples": len(samples),
                    "overhead_pss_kib": per_pod("overhead_pss_kib"),
                    "overhead_rss_kib": per_pod("overhead_rss_kib"),
                    "workload_pss_kib": per_pod("workload_pss_kib"),
                    "awake": {
                        "mean": statistics.mean(s["awake"] for s in samples),
                        "max": max(s["awake"] for s in samples),
                    },
                    "restarts": restarts,
                }
            )
        except (BenchError, OSError, ValueError) as e:
            log(f"probes {kind}: {e}")
            rows.append({"probe": kind, "error": str(e)[:200]})
        finally:
            for name in names:
                try:
                    rt.force_delete(name)
                except (BenchError, OSError) as e:
                    log(f"probes {kind}: clean-up of {name}: {e}")
    return rows
