"""Sidecar containers (docs/lifecycle.md, "Sidecars"; KEP-753): init containers with
`restartPolicy: Always`, end to end through the CLI, observed through /proc and files the
containers write to a host directory."""

from __future__ import annotations

import os
import signal
import time

from conftest import alive, wait_for

from nsbox import kube, manifest
from nsbox.errors import NsboxError

HOST_VIEW = {"nsbox.io/host-root": "true", "nsbox.io/backoff-base-seconds": "1"}


def start_ticks(pid: int) -> int:
    """A process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def stamp(path: str) -> float:
    with open(path) as f:
        return float(f.read().strip())


def written(path: str) -> str:
    """What a container wrote to `path` ("" while nothing yet)."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def status_of(pod: dict, name: str) -> dict:
    for st in pod["status"].get("initContainerStatuses", []) + pod["status"]["containerStatuses"]:
        if st["name"] == name:
            return st
    raise AssertionError(f"no status for {name}")


def condition(pod: dict, kind: str) -> str:
    return next(c["status"] for c in pod["status"]["conditions"] if c["type"] == kind)


def pod_yaml(name: str, spec: str, restart_policy: str = "Always", grace: int = 30) -> str:
    return f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  annotations:
    nsbox.io/host-root: "true"
    nsbox.io/backoff-base-seconds: "1"
spec:
  restartPolicy: {restart_policy}
  terminationGracePeriodSeconds: {grace}
{spec}"""


# The pod template of the Deployment in kubernetes.io's "Sidecar Containers", with the
# annotation that lets it run on the host's files (no alpine image needed).
DOCS_EXAMPLE = """\
apiVersion: v1
kind: Pod
metadata:
  name: myapp
  labels:
    app: myapp
  annotations:
    nsbox.io/host-root: "true"
spec:
  containers:
    - name: myapp
      image: alpine:latest
      command: ['sh', '-c', 'while true; do echo "logging" >> /opt/logs.txt; sleep 1; done']
      volumeMounts:
        - name: data
          mountPath: /opt
  initContainers:
    - name: logshipper
      image: alpine:latest
      restartPolicy: Always
      command: ['sh', '-c', 'tail -F /opt/logs.txt']
      volumeMounts:
        - name: data
          mountPath: /opt
  volumes:
    - name: data
      emptyDir: {}
"""


def test_the_kubernetes_documentation_example_ships_the_apps_log(nsbox):
    nsbox("apply", "-f", "-", input=DOCS_EXAMPLE)
    shipper, app = nsbox.pid("myapp", "logshipper"), nsbox.pid("myapp", "myapp")
    assert start_ticks(shipper) <= start_ticks(app), "the sidecar started after the app container"
    wait_for(
        lambda: "logging" in nsbox("logs", "myapp", "-c", "logshipper").stdout,
        timeout=15,
        what="the sidecar to ship the app's log",
    )
    pod = nsbox.pod("myapp")
    shipper_status = status_of(pod, "logshipper")
    assert "running" in shipper_status["state"]
    assert shipper_status["started"] is True and shipper_status["ready"] is True
    assert shipper_status["stopSignal"] == "SIGTERM"
    assert [s["name"] for s in pod["status"]["initContainerStatuses"]] == ["logshipper"]
    assert pod["status"]["phase"] == "Running"
    assert condition(pod, "Initialized") == "True"
    row = nsbox("get", "pods", "myapp").stdout.splitlines()[1].split()
    assert row[1:3] == ["2/2", "Running"]
    spec = pod["spec"]
    assert spec["initContainers"][0]["restartPolicy"] == "Always"
    assert spec["containers"][0]["terminationMessagePath"] == "/dev/termination-log"
    assert spec["containers"][0]["terminationMessagePolicy"] == "File"


def test_the_next_init_container_waits_until_the_sidecar_runs(nsbox, tmp_path):
    # The sidecar needs a ConfigMap that does not exist yet: it cannot start (waiting,
    # CreateContainerConfigError), and the init container after it must not run meanwhile.
    out = str(tmp_path)
    spec = f"""\
  volumes:
  - name: out
    hostPath: {{path: {out}}}
  initContainers:
  - name: sidecar
    restartPolicy: Always
    command: ["sleep", "300"]
    env:
    - name: GO
      valueFrom: {{configMapKeyRef: {{name: go, key: go}}}}
  - name: setup
    command: ["sh", "-c", "cut -d' ' -f22 /proc/$$$$/stat > /out/setup-start"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  containers:
  - name: app
    command: ["sleep", "300"]
"""
    nsbox("apply", "-f", "-", input=pod_yaml("ordered", spec))

    def sidecar_waiting() -> bool:
        waiting = status_of(nsbox.pod("ordered"), "sidecar")["state"].get("waiting", {})
        return waiting.get("reason") == "CreateContainerConfigError"

    wait_for(sidecar_waiting, what="the sidecar to wait for its ConfigMap")
    # The watcher decided on `setup` in the turn that recorded the sidecar's waiting state:
    # had it started `setup` regardless, the file would be there by now (or its status shown).
    assert status_of(nsbox.pod("ordered"), "setup")["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert not os.path.exists(f"{out}/setup-start"), "the next init container ran before the sidecar"
    assert nsbox("get", "pods", "ordered").stdout.splitlines()[1].split()[2].startswith("Init:")
    assert condition(nsbox.pod("ordered"), "Initialized") == "False"
    nsbox("create", "configmap", "go", "--from-literal=go=yes")
    sidecar = nsbox.pid("ordered", "sidecar")
    app = nsbox.pid("ordered", "app")
    with open(f"{out}/setup-start") as f:
        setup = int(f.read())
    assert start_ticks(sidecar) <= setup <= start_ticks(app)
    pod = nsbox.pod("ordered")
    assert status_of(pod, "setup")["state"]["terminated"]["exitCode"] == 0
    assert condition(pod, "Initialized") == "True"


def test_a_sidecar_is_restarted_on_its_own_whatever_the_pods_policy(nsbox):
    spec = """\
  initContainers:
  - name: sidecar
    restartPolicy: Always
    command: ["sleep", "300"]
  containers:
  - name: app
    command: ["sleep", "300"]
"""
    nsbox("apply", "-f", "-", input=pod_yaml("restarts", spec, restart_policy="Never"))
    first, app = nsbox.pid("restarts", "sidecar"), nsbox.pid("restarts", "app")
    os.kill(first, signal.SIGKILL)

    def restarted() -> int | None:
        st = status_of(nsbox.pod("restarts"), "sidecar")
        return st["restartCount"] == 1 and "running" in st["state"] and nsbox.pid("restarts", "sidecar")

    second = wait_for(restarted, timeout=15, what="the sidecar to be restarted")
    assert second != first and alive(second)
    pod = nsbox.pod("restarts")
    assert status_of(pod, "sidecar")["lastState"]["terminated"]["signal"] == signal.SIGKILL
    assert status_of(pod, "app")["restartCount"] == 0 and nsbox.pid("restarts", "app") == app
    assert pod["status"]["phase"] == "Running"
    assert nsbox("get", "pods", "restarts").stdout.splitlines()[1].split()[3] == "1"  # RESTARTS


def test_a_job_like_pod_completes_and_its_sidecar_is_stopped(nsbox, tmp_path):
    out = str(tmp_path)
    spec = f"""\
  volumes:
  - name: out
    hostPath: {{path: {out}}}
  initContainers:
  - name: sidecar
    restartPolicy: Always
    command: ["sh", "-c", "trap 'date +%s.%N > /out/sidecar-term; exit 0' TERM; while :; do sleep 0.05; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  containers:
  - name: job
    command: ["sh", "-c", "sleep 1; date +%s.%N > /out/job-end"]
    volumeMounts: [{{name: out, mountPath: /out}}]
"""
    nsbox("apply", "-f", "-", input=pod_yaml("job", spec, restart_policy="Never"))
    wait_for(lambda: nsbox.pod("job")["status"]["phase"] == "Succeeded", timeout=20, what="the pod to succeed")
    wait_for(lambda: written(f"{out}/sidecar-term"), timeout=10, what="the sidecar to get SIGTERM")
    assert stamp(f"{out}/sidecar-term") >= stamp(f"{out}/job-end"), "the sidecar was stopped before the job ended"

    def sidecar_terminated() -> dict | None:
        return status_of(nsbox.pod("job"), "sidecar")["state"].get("terminated")

    assert wait_for(sidecar_terminated, what="the sidecar's terminated state")["exitCode"] == 0
    pod = nsbox.pod("job")
    assert status_of(pod, "sidecar")["restartCount"] == 0
    assert pod["status"]["phase"] == "Succeeded"
    assert nsbox("get", "pods", "job").stdout.splitlines()[1].split()[2] == "Completed"


def test_a_failed_app_container_fails_the_pod_whatever_its_sidecar_did(nsbox):
    spec = """\
  initContainers:
  - name: sidecar
    restartPolicy: Always
    command: ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"]
  containers:
  - name: job
    command: ["sh", "-c", "exit 3"]
"""
    nsbox("apply", "-f", "-", input=pod_yaml("failing", spec, restart_policy="Never"))
    wait_for(lambda: nsbox.pod("failing")["status"]["phase"] == "Failed", timeout=20, what="the pod to fail")
    wait_for(
        lambda: "terminated" in status_of(nsbox.pod("failing"), "sidecar")["state"],
        timeout=10,
        what="the sidecar to be stopped",
    )
    assert nsbox.pod("failing")["status"]["phase"] == "Failed"


def test_an_init_container_that_fails_for_good_stops_the_sidecar_before_it(nsbox, tmp_path):
    out = str(tmp_path)
    spec = f"""\
  volumes:
  - name: out
    hostPath: {{path: {out}}}
  initContainers:
  - name: sidecar
    restartPolicy: Always
    command: ["sh", "-c", "trap 'echo term > /out/sidecar-term; exit 0' TERM; while :; do sleep 0.05; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  - name: setup
    command: ["sh", "-c", "sleep 1; exit 4"]
  containers:
  - name: app
    command: ["sleep", "300"]
"""
    nsbox("apply", "-f", "-", input=pod_yaml("init-fails", spec, restart_policy="Never"))
    wait_for(lambda: nsbox.pod("init-fails")["status"]["phase"] == "Failed", timeout=20, what="the pod to fail")
    wait_for(
        lambda: "terminated" in status_of(nsbox.pod("init-fails"), "sidecar")["state"],
        timeout=10,
        what="the sidecar to be stopped",
    )
    assert open(f"{out}/sidecar-term").read() == "term\n"  # stopped with SIGTERM, not killed
    pod = nsbox.pod("init-fails")
    assert status_of(pod, "sidecar")["restartCount"] == 0
    assert "waiting" in status_of(pod, "app")["state"]  # never started
    assert nsbox("get", "pods", "init-fails").stdout.splitlines()[1].split()[2] == "Init:Error"


def test_deletion_stops_the_app_containers_first_then_the_sidecars_in_reverse_order(nsbox, tmp_path):
    out = str(tmp_path)

    def handler(name: str) -> str:
        # Each one records when it got SIGTERM, then takes 0.5 s to exit.
        return (
            f"""["sh", "-c", "trap 'date +%s.%N > /out/{name}; sleep 0.5; exit 0' TERM; """
            """while :; do sleep 0.05; done"]"""
        )

    spec = f"""\
  volumes:
  - name: out
    hostPath: {{path: {out}}}
  initContainers:
  - name: first
    restartPolicy: Always
    command: {handler("first")}
    volumeMounts: [{{name: out, mountPath: /out}}]
  - name: second
    restartPolicy: Always
    command: {handler("second")}
    volumeMounts: [{{name: out, mountPath: /out}}]
  containers:
  - name: app
    command: {handler("app")}
    volumeMounts: [{{name: out, mountPath: /out}}]
"""
    nsbox("apply", "-f", "-", input=pod_yaml("ordered-stop", spec, grace=20))
    for name in ("first", "second", "app"):
        nsbox.pid("ordered-stop", name)
    t0 = time.monotonic()
    nsbox("delete", "pod", "ordered-stop")
    took = time.monotonic() - t0
    app, second, first = (stamp(f"{out}/{n}") for n in ("app", "second", "first"))
    assert second - app >= 0.45, "the last sidecar got SIGTERM before the app container had ended"
    assert first - second >= 0.45, "the first sidecar got SIGTERM before the second had ended"
    assert took < 12, "the pod should go once its containers have exited, not at the end of the grace period"


def _pod(spec: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def _read(spec: dict) -> list[str]:
    """The problems the manifest reader finds in a pod with `spec` ([] when it is valid)."""
    try:
        manifest.pods_from_documents([("test", _pod(spec))])
    except NsboxError as e:
        return str(e).split("\n")
    return []


APP = {"name": "a", "command": ["true"]}


def test_restart_policy_is_read_as_the_api_server_of_kubernetes_1_33_validates_it():
    sidecar = {"name": "s", "command": ["true"], "restartPolicy": "Always"}
    (pod,), _ = manifest.pods_from_documents([("test", _pod({"initContainers": [sidecar], "containers": [APP]}))])
    assert pod.init_containers[0].is_sidecar and pod.sidecars == {"s"} and not pod.containers[0].is_sidecar
    assert _read({"initContainers": [{**sidecar, "restartPolicy": "Never"}], "containers": [APP]}) == [
        'spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always"'
    ]
    assert _read({"containers": [{**APP, "restartPolicy": "Always"}]}) == [
        "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"
    ]


# --------------------------------------------------------------- the status, as kubectl and the kubelet tell it


def _st(name: str, state: dict, **extra: object) -> dict:
    return {"name": name, "state": state, "restartCount": 0, **extra}


RUNNING = {"running": {"startedAt": "2026-12-05T10:00:00Z"}}
WAITING = {"waiting": {"reason": "ContainerCreating"}}
COMPLETED = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2026-12-05T10:00:05Z"}}
STOPPED = {"terminated": {"exitCode": 143, "reason": "Error", "signal": 15, "finishedAt": "2026-12-05T10:00:06Z"}}


def test_a_started_sidecar_counts_as_initialized_and_never_in_the_phase():
    sidecar = _st("s", RUNNING, started=True, ready=True, restartCount=2)
    init = _st("i", RUNNING)
    app = _st("a", WAITING)
    assert kube.pod_status_text([app], [sidecar, init], sidecars={"s"}) == "Init:1/2"
    assert kube.pod_phase([app], [sidecar, init], sidecars={"s"}) == "Pending"
    not_started = _st("s", RUNNING, started=False)  # running, its startup probe not passed yet
    assert kube.pod_status_text([app], [not_started, init], sidecars={"s"}) == "Init:0/2"
    assert kube.pod_phase([app], [not_started, init], sidecars={"s"}) == "Pending"
    conditions = kube.pod_conditions(
        [app], [sidecar, _st("i", COMPLETED)], created="2026-12-05T10:00:00Z", sidecars={"s"}
    )
    assert next(c for c in conditions if c["type"] == "Initialized")["status"] == "True"
    # A Job-like pod: the app container succeeded, its sidecar stopped by SIGTERM.
    done = [_st("a", COMPLETED)]
    assert kube.pod_phase(done, [_st("s", STOPPED)], "Never", sidecars={"s"}) == "Succeeded"
    assert kube.pod_phase(done, [sidecar], "Never", sidecars={"s"}) == "Succeeded"
    assert kube.pod_status_text(done, [_st("s", STOPPED)], phase="Succeeded", sidecars={"s"}) == "Completed"


def test_ready_and_restarts_count_sidecars_with_the_app_containers():
    sidecar = _st("s", RUNNING, started=True, ready=True, restartCount=2)
    app = _st("a", RUNNING, ready=True, restartCount=1)
    assert kube.pod_ready_text([app], [sidecar]) == "2/2"
    assert kube.pod_restart_count([app], [sidecar, _st("i", COMPLETED)], sidecars={"s"}) == 3


def test_a_sidecar_with_a_startup_probe_holds_the_next_init_container_until_it_succeeds(nsbox, tmp_path):
    # The sidecar runs at once but is "started" only once its startup probe succeeds: when the
    # marker file the test creates appears. Until then `setup` must not run.
    out, marker = str(tmp_path), str(tmp_path / "up")
    spec = f"""\
  volumes:
  - name: out
    hostPath: {{path: {out}}}
  initContainers:
  - name: sidecar
    restartPolicy: Always
    command: ["sleep", "300"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    startupProbe:
      exec: {{command: ["test", "-e", "/out/up"]}}
      periodSeconds: 1
      failureThreshold: 120
  - name: setup
    command: ["sh", "-c", "echo ran > /out/setup-ran"]
    volumeMounts: [{{name: out, mountPath: /out}}]
  containers:
  - name: app
    command: ["sleep", "300"]
"""
    nsbox("apply", "-f", "-", input=pod_yaml("probed", spec))
    nsbox.pid("probed", "sidecar")
    wait_for(lambda: status_of(nsbox.pod("probed"), "sidecar")["state"].get("running"), what="the sidecar to run")
    # Its probe has run and failed (an Unhealthy event) while setup has not run.
    wait_for(lambda: "Startup probe failed" in nsbox("describe", "pod", "probed").stdout, what="a failed check")
    assert status_of(nsbox.pod("probed"), "sidecar")["started"] is False
    assert not written(f"{out}/setup-ran"), "the next init container ran before the sidecar's startup probe"
    open(marker, "w").close()
    wait_for(lambda: written(f"{out}/setup-ran"), timeout=30, what="setup to run once the probe succeeded")
    nsbox.pid("probed", "app")
    assert status_of(nsbox.pod("probed"), "sidecar")["started"] is True
