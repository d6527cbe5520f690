"""Probes and the lifecycle handlers httpGet / tcpSocket / sleep (docs/lifecycle.md, "Probes"),
on the real kernel with private roots. Host-view pods run the host's python3 and sh; what the
probes did is checked from outside: restart counts and events, PIDs in /proc, what an HTTP
server inside the pod saw (files read through /proc/PID/root), `ss` inside the pod's netns.

The Kubernetes documentation's examples ("Configure Liveness, Readiness and Startup Probes")
run as written except for the timings that would take minutes: each says what it shortened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import pytest
import yaml
from conftest import alive, cgroup_dirs, cgroup_pids, pod, wait_for

# A small HTTP server for the pod's loopback: GET answers with the code in /tmp/code (200
# when absent), writes the request's headers to /tmp/seen.json and adds a line to /tmp/hits;
# /moved redirects to /final; argv: port [certfile].
SERVER = r"""
import http.server, json, os, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/moved':
            self.send_response(302)
            self.send_header('Location', '/final')
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        code = int(open('/tmp/code').read()) if os.path.exists('/tmp/code') else 200
        with open('/tmp/seen.tmp', 'w') as f:
            json.dump({'path': self.path, 'headers': dict(self.headers.items())}, f)
        os.rename('/tmp/seen.tmp', '/tmp/seen.json')
        with open('/tmp/hits', 'a') as f:
            f.write(self.path + '\n')
        body = b'ok from ' + self.path.encode()
        self.send_response(code)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)
if len(sys.argv) > 2:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2])
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"""


def server(port: int, *extra: str) -> list[str]:
    return ["python3", "-c", SERVER, str(port), *extra]


def apply(nsbox, doc: dict[str, Any]) -> None:
    nsbox("apply", "-f", "-", input=yaml.safe_dump(doc, sort_keys=False))


def events(nsbox, name: str, reason: str) -> list[str]:
    """The messages of the pod's events of `reason`, oldest first (as `describe` lists them)."""
    with open(f"{nsbox.root}/pods/{nsbox.uid(name)}/status.json") as f:
        return [e["message"] for e in json.load(f)["events"] if e["reason"] == reason]


def state(nsbox, name: str, container: str | None = None) -> dict[str, Any]:
    return nsbox.container_state(name, container)


def condition(nsbox, name: str, kind: str) -> dict[str, Any]:
    return next(c for c in nsbox.pod(name)["status"]["conditions"] if c["type"] == kind)


def ready_column(nsbox, name: str) -> str:
    return nsbox("get", "pods", name).stdout.splitlines()[1].split()[1]


def in_container(pid: int, path: str) -> str:
    return f"/proc/{pid}/root{path}"


def write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def listening(pid: int, port: int) -> bool:
    """`ss -ltn` in the pod's network namespace (entered through the container's PID)."""
    out = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True
    )
    return bool(out.stdout.strip())


@pytest.fixture
def cert_dir():
    d = tempfile.mkdtemp(prefix="nsbx-tls-")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=probe"]
        + ["-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem"],
        check=True,
        capture_output=True,
    )
    with open(f"{d}/both.pem", "w") as f:
        for part in ("key.pem", "cert.pem"):
            with open(f"{d}/{part}") as p:
                f.write(p.read())
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


# ---------------------------------------------------------------- the documentation's examples


def test_docs_exec_liveness_restarts_the_container_with_unhealthy_and_killing_events(nsbox):
    """kubernetes.io's exec-liveness.yaml; shortened: `sleep 30` to `sleep 3`, initialDelaySeconds
    5 to 1, periodSeconds 5 to 1 (and the pod's grace period to 1 s: `sleep` ignores SIGTERM);
    `args` become `command` (a host-view container has no image entrypoint)."""
    apply(
        nsbox,
        pod(
            "liveness-exec",
            {
                "name": "liveness",
                "command": ["/bin/sh", "-c", "touch /tmp/healthy; sleep 3; rm -f /tmp/healthy; sleep 600"],
                "livenessProbe": {
                    "exec": {"command": ["cat", "/tmp/healthy"]},
                    "initialDelaySeconds": 1,
                    "periodSeconds": 1,
                },
            },
        ),
    )
    first = nsbox.pid("liveness-exec")
    wait_for(lambda: state(nsbox, "liveness-exec")["restartCount"] == 1, timeout=30, what="a restart")
    assert not alive(first)
    second = nsbox.pid("liveness-exec")
    assert second != first
    unhealthy = events(nsbox, "liveness-exec", "Unhealthy")
    assert unhealthy[:3] == ["Liveness probe failed: cat: /tmp/healthy: No such file or directory\n"] * 3
    assert "Container liveness failed liveness probe, will be restarted" in events(nsbox, "liveness-exec", "Killing")
    last = state(nsbox, "liveness-exec")["lastState"]["terminated"]
    assert last["exitCode"] == 137 and last["reason"] == "Error"
    describe = nsbox("describe", "pod", "liveness-exec").stdout
    assert re.search(
        r"Liveness:\s+exec \[cat /tmp/healthy\] delay=1s timeout=1s period=1s #success=1 #failure=3\n", describe
    )


def test_docs_http_liveness_with_a_named_port_and_a_custom_header(nsbox):
    """kubernetes.io's http-liveness.yaml (the server answers 500 once /tmp/code says so, as the
    docs' server does after 10 s); shortened: initialDelaySeconds 3 to 0, periodSeconds 3 to 1."""
    apply(
        nsbox,
        pod(
            "liveness-http",
            {
                "name": "liveness",
                "command": server(8080),
                "ports": [{"name": "liveness-port", "containerPort": 8080}],
                "livenessProbe": {
                    "httpGet": {
                        "path": "/healthz",
                        "port": "liveness-port",
                        "httpHeaders": [{"name": "Custom-Header", "value": "Awesome"}],
                    },
                    "periodSeconds": 1,
                },
            },
        ),
    )
    pid = nsbox.pid("liveness-http")
    seen_file = in_container(pid, "/tmp/seen.json")
    wait_for(lambda: os.path.exists(seen_file), what="a probe request")
    with open(seen_file) as f:
        seen = json.load(f)
    assert seen["path"] == "/healthz"
    assert seen["headers"]["User-Agent"] == "kube-probe/1.32"
    assert seen["headers"]["Accept"] == "*/*"
    assert seen["headers"]["Custom-Header"] == "Awesome"
    assert seen["headers"]["Host"] == "127.0.0.1:8080"
    assert state(nsbox, "liveness-http")["restartCount"] == 0
    write(in_container(pid, "/tmp/code"), "500")
    wait_for(lambda: state(nsbox, "liveness-http")["restartCount"] == 1, timeout=20, what="a restart")
    assert not alive(pid)
    failures = [m for m in events(nsbox, "liveness-http", "Unhealthy") if "statuscode" in m]
    assert failures[:3] == ["Liveness probe failed: HTTP probe failed with statuscode: 500"] * 3
    spec = yaml.safe_load(nsbox("get", "pods", "liveness-http", "-o", "yaml").stdout)["spec"]  # schema-checked
    assert spec["containers"][0]["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "liveness-port",
        "httpHeaders": [{"name": "Custom-Header", "value": "Awesome"}],
    }
    describe = nsbox("describe", "pod", "liveness-http").stdout
    assert re.search(r"Liveness:\s+http-get http://:liveness-port/healthz delay=0s timeout=1s period=1s ", describe)


def test_docs_tcp_liveness_and_readiness(nsbox):
    """kubernetes.io's tcp-liveness-readiness.yaml with a python listener for goproxy; shortened:
    initialDelaySeconds 15 to 0 (readiness) and 2 (liveness), periodSeconds 10 to 1."""
    listen = "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',8080)); s.listen(); time.sleep(600)"
    apply(
        nsbox,
        pod(
            "goproxy",
            {
                "name": "goproxy",
                "command": ["python3", "-c", listen],
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                "livenessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 2, "periodSeconds": 1},
            },
        ),
    )
    pid = nsbox.pid("goproxy")
    wait_for(lambda: listening(pid, 8080), what="the listener, seen by ss in the pod's netns")
    wait_for(lambda: ready_column(nsbox, "goproxy") == "1/1", what="READY 1/1")
    assert condition(nsbox, "goproxy", "Ready")["status"] == "True"
    # Probes before python3 listens may fail ("connection refused"): too few to restart it.
    assert state(nsbox, "goproxy")["restartCount"] == 0


def test_tcp_readiness_on_a_closed_port_says_connection_refused_and_never_restarts(nsbox):
    apply(
        nsbox,
        pod(
            "closed",
            {
                "name": "c",
                "command": ["sleep", "600"],
                "readinessProbe": {"tcpSocket": {"port": 8081}, "periodSeconds": 1, "failureThreshold": 1},
            },
        ),
    )
    pid = nsbox.pid("closed")
    message = "Readiness probe failed: dial tcp 127.0.0.1:8081: connect: connection refused"
    wait_for(lambda: events(nsbox, "closed", "Unhealthy").count(message) >= 4, timeout=15, what="four failures")
    assert ready_column(nsbox, "closed") == "0/1"
    assert condition(nsbox, "closed", "ContainersReady")["reason"] == "ContainersNotReady"
    assert state(nsbox, "closed")["restartCount"] == 0 and alive(pid)


def test_readiness_flips_ready_and_conditions_without_restarts(nsbox):
    apply(
        nsbox,
        pod(
            "flip",
            {
                "name": "web",
                "command": server(8080),
                "readinessProbe": {"httpGet": {"port": 8080, "path": "/ready"}, "periodSeconds": 1},
            },
        ),
    )
    pid = nsbox.pid("flip")
    wait_for(lambda: ready_column(nsbox, "flip") == "1/1", what="READY 1/1")
    nsbox("wait", "--for=condition=Ready", "pod/flip", "--timeout=10s")
    became_ready = condition(nsbox, "flip", "Ready")
    assert became_ready["status"] == "True"
    time.sleep(1.2)  # a probe period passes (pacing, not synchronisation): the transition time stays
    assert condition(nsbox, "flip", "Ready")["lastTransitionTime"] == became_ready["lastTransitionTime"]

    write(in_container(pid, "/tmp/code"), "503")
    wait_for(lambda: ready_column(nsbox, "flip") == "0/1", timeout=15, what="READY 0/1")
    unready = condition(nsbox, "flip", "Ready")
    assert unready["status"] == "False" and unready["reason"] == "ContainersNotReady"
    assert unready["message"] == "containers with unready status: [web]"
    assert state(nsbox, "flip")["ready"] is False
    assert "Readiness probe failed: HTTP probe failed with statuscode: 503" in events(nsbox, "flip", "Unhealthy")

    os.unlink(in_container(pid, "/tmp/code"))
    wait_for(lambda: ready_column(nsbox, "flip") == "1/1", timeout=15, what="READY 1/1 again")
    assert state(nsbox, "flip")["restartCount"] == 0 and nsbox.pid("flip") == pid


def test_a_container_with_a_readiness_probe_is_not_ready_before_its_first_success(nsbox):
    apply(
        nsbox,
        pod(
            "late",
            {
                "name": "c",
                "command": ["sleep", "600"],
                "readinessProbe": {"exec": {"command": ["true"]}, "initialDelaySeconds": 3, "periodSeconds": 1},
            },
        ),
    )
    nsbox.pid("late")
    assert state(nsbox, "late")["ready"] is False
    assert ready_column(nsbox, "late") == "0/1"
    wait_for(lambda: state(nsbox, "late")["ready"], timeout=10, what="ready after the initial delay")


def test_docs_startup_probe_holds_liveness_and_readiness_back_until_it_succeeds(nsbox):
    """The docs' startup probe pattern (failureThreshold 30): while it has not succeeded, a
    liveness probe that would fail and a readiness probe that would succeed are not run."""
    apply(
        nsbox,
        pod(
            "slow-start",
            {
                "name": "c",
                "command": ["sleep", "600"],
                "startupProbe": {
                    "exec": {"command": ["cat", "/tmp/started"]},
                    "failureThreshold": 30,
                    "periodSeconds": 1,
                },
                "livenessProbe": {
                    "exec": {"command": ["cat", "/tmp/alive"]},
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                },
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
            },
        ),
    )
    pid = nsbox.pid("slow-start")
    wait_for(lambda: len(events(nsbox, "slow-start", "Unhealthy")) >= 3, timeout=10, what="startup failures")
    st = state(nsbox, "slow-start")
    assert (st["ready"], st["started"], st["restartCount"]) == (False, False, 0)
    assert all(m.startswith("Startup probe failed: ") for m in events(nsbox, "slow-start", "Unhealthy"))

    write(in_container(pid, "/tmp/alive"), "yes")
    write(in_container(pid, "/tmp/started"), "yes")
    wait_for(lambda: state(nsbox, "slow-start")["ready"], timeout=10, what="ready once started")
    assert state(nsbox, "slow-start")["started"] is True
    os.unlink(in_container(pid, "/tmp/alive"))  # now liveness is probed: it fails and restarts
    wait_for(lambda: state(nsbox, "slow-start")["restartCount"] == 1, timeout=15, what="a liveness restart")
    assert "Container c failed liveness probe, will be restarted" in events(nsbox, "slow-start", "Killing")


def test_a_startup_probe_that_reaches_its_failure_threshold_restarts_the_container(nsbox):
    apply(
        nsbox,
        pod(
            "never-starts",
            {
                "name": "c",
                "command": ["sleep", "600"],
                "startupProbe": {"exec": {"command": ["false"]}, "failureThreshold": 2, "periodSeconds": 1},
            },
            annotations=None,
        )
        | {"metadata": {"name": "never-starts", "annotations": {"nsbox.io/backoff-base-seconds": "1"}}},
    )
    pid = nsbox.pid("never-starts")
    wait_for(lambda: state(nsbox, "never-starts")["restartCount"] >= 1, timeout=20, what="a restart")
    assert not alive(pid)
    assert "Container c failed startup probe, will be restarted" in events(nsbox, "never-starts", "Killing")


def test_an_exec_probe_is_killed_at_its_timeout(nsbox):
    apply(
        nsbox,
        pod(
            "slow-probe",
            {
                "name": "c",
                "command": ["sleep", "600"],
                "readinessProbe": {"exec": {"command": ["sleep", "77"]}, "timeoutSeconds": 1, "periodSeconds": 2},
            },
        ),
    )
    nsbox.pid("slow-probe")
    message = 'Readiness probe failed: command "sleep 77" timed out'
    wait_for(lambda: message in events(nsbox, "slow-probe", "Unhealthy"), timeout=10, what="a timeout")

    uid = nsbox.uid("slow-probe")

    def probe_processes() -> set[int]:
        """The probe's `sleep 77`s: processes of the pod's cgroups (one hierarchy is enough)."""
        out = set()
        for p in cgroup_pids(cgroup_dirs(uid)[0]):
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if f.read() == b"sleep\x0077\x00":
                        out.add(p)
            except OSError:
                pass
        return out

    # Each run is killed at 1 s, a second before the next starts: one at a time at most, and
    # over 5 s (two or three periods) several runs, of which only the last may still live.
    seen: set[int] = set()
    end = time.monotonic() + 5
    while time.monotonic() < end:
        now = probe_processes()
        assert len(now) <= 1, now
        seen |= now
        time.sleep(0.1)  # sampling interval, not synchronisation
    assert len(seen) >= 2, seen
    assert sum(alive(p) for p in seen) <= 1


def test_https_probe_skips_certificate_verification(nsbox, cert_dir):
    apply(
        nsbox,
        pod(
            "tls",
            {
                "name": "c",
                "command": server(8443, "/certs/both.pem"),
                "volumeMounts": [{"name": "certs", "mountPath": "/certs"}],
                "readinessProbe": {"httpGet": {"port": 8443, "scheme": "HTTPS", "path": "/tls"}, "periodSeconds": 1},
            },
            volumes=[{"name": "certs", "hostPath": {"path": cert_dir}}],
        ),
    )
    pid = nsbox.pid("tls")
    wait_for(lambda: state(nsbox, "tls")["ready"], timeout=15, what="ready over HTTPS")
    with open(in_container(pid, "/tmp/seen.json")) as f:
        assert json.load(f)["path"] == "/tls"


def test_liveness_kill_uses_the_probes_termination_grace_period(nsbox):
    """The container ignores SIGTERM; the pod's grace period is 60 s, the probe's 2 s. The
    probe fails once the test makes /tmp/fail (not at the first check, due at the start)."""
    stubborn = ["sh", "-c", "trap '' TERM; touch /tmp/trapped; while :; do sleep 1; done"]
    apply(
        nsbox,
        pod(
            "grace",
            {
                "name": "c",
                "command": stubborn,
                "livenessProbe": {
                    "exec": {"command": ["sh", "-c", "! [ -e /tmp/fail ]"]},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                    "terminationGracePeriodSeconds": 2,
                },
            },
            terminationGracePeriodSeconds=60,
        ),
    )
    pid = nsbox.pid("grace")
    wait_for(lambda: os.path.exists(in_container(pid, "/tmp/trapped")), what="the container to ignore SIGTERM")
    write(in_container(pid, "/tmp/fail"), "")
    t0 = time.monotonic()
    wait_for(lambda: not alive(pid), timeout=15, what="the SIGKILL at the probe's grace period")
    took = time.monotonic() - t0
    assert 1.5 < took < 12, took
    finished = wait_for(lambda: state(nsbox, "grace")["lastState"].get("terminated"), what="the exit recorded")
    assert finished["exitCode"] == 137


# ---------------------------------------------------------------- lifecycle handlers


@pytest.fixture
def host_dir():
    d = tempfile.mkdtemp(prefix="nsbx-host-")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d)


def test_pre_stop_http_get_reaches_the_server_before_sigterm(nsbox, host_dir):
    apply(
        nsbox,
        pod(
            "hook-http",
            {
                "name": "web",
                "command": server(8080),
                "ports": [{"name": "http", "containerPort": 8080}],
                "volumeMounts": [{"name": "out", "mountPath": "/tmp"}],  # the server's record outlives the pod
                "lifecycle": {"preStop": {"httpGet": {"path": "/quit", "port": "http"}}},
            },
            volumes=[{"name": "out", "hostPath": {"path": host_dir}}],
            terminationGracePeriodSeconds=10,
        ),
    )
    pid = nsbox.pid("hook-http")
    wait_for(lambda: listening(pid, 8080), what="the server")
    nsbox("delete", "pod", "hook-http")
    with open(f"{host_dir}/seen.json") as f:
        seen = json.load(f)
    assert seen["path"] == "/quit" and seen["headers"]["User-Agent"] == "kube-probe/1.32"


def test_a_failed_post_start_tcp_socket_hook_kills_the_container(nsbox):
    apply(
        nsbox,
        pod(
            "hook-tcp",
            {
                "name": "c",
                "command": ["sleep", "600"],
                "lifecycle": {"postStart": {"tcpSocket": {"port": 9}}},
            },
            restartPolicy="Never",
        ),
    )
    wait_for(lambda: "terminated" in state(nsbox, "hook-tcp")["state"], timeout=15, what="the container killed")
    messages = events(nsbox, "hook-tcp", "FailedPostStartHook")
    assert messages == ["PostStart hook (tcpSocket) failed: dial tcp 127.0.0.1:9: connect: connection refused"]
    assert state(nsbox, "hook-tcp")["state"]["terminated"]["exitCode"] == 137


def test_a_sleep_pre_stop_is_a_wait_of_the_watcher_even_without_a_sleep_program(nsbox, host_dir):
    """The image is a local directory holding only a static busybox, without its applets' links:
    no `sleep` program (before, the hook ran `sleep` in the container and failed here)."""
    image = tempfile.mkdtemp(prefix="nsbx-bb-")
    try:
        os.makedirs(f"{image}/bin")
        shutil.copy("/bin/busybox", f"{image}/bin/busybox")
        for d in ("proc", "dev", "tmp", "out", "etc", "sys"):
            os.makedirs(f"{image}/{d}", exist_ok=True)
        bb = "/bin/busybox"
        script = f"trap '{bb} cat /proc/uptime > /out/term; exit 0' TERM; while :; do {bb} usleep 100000; done"
        apply(
            nsbox,
            pod(
                "hook-sleep",
                {
                    "name": "c",
                    "image": image,
                    "command": ["/bin/busybox", "sh", "-c", script],
                    "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                    "lifecycle": {"preStop": {"sleep": {"seconds": 2}}},
                },
                volumes=[{"name": "out", "hostPath": {"path": host_dir}}],
                terminationGracePeriodSeconds=10,
            ),
        )
        nsbox.pid("hook-sleep")
        with open("/proc/uptime") as f:
            t0 = float(f.read().split()[0])
        nsbox("delete", "pod", "hook-sleep")
        with open(f"{host_dir}/term") as f:
            term_at = float(f.read().split()[0])  # the same clock, read in the container at SIGTERM
        assert 1.8 < term_at - t0 < 8, term_at - t0
    finally:
        shutil.rmtree(image)


# ---------------------------------------------------------------- gRPC

# A real gRPC health server (grpcio's, from the test extra), run by this interpreter: SERVING
# overall until /tmp/down exists; the service "etcd" is NOT_SERVING.
GRPC_SERVER = r"""
import os, time
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
h = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(h, server)
server.add_insecure_port('127.0.0.1:2379')
h.set('etcd', health_pb2.HealthCheckResponse.NOT_SERVING)
server.start()
while True:
    down = os.path.exists('/tmp/down')
    h.set('', health_pb2.HealthCheckResponse.NOT_SERVING if down else health_pb2.HealthCheckResponse.SERVING)
    time.sleep(0.1)
"""


def test_docs_grpc_liveness_and_a_not_serving_service(nsbox):
    """kubernetes.io's grpc-liveness.yaml (etcd's port 2379) with grpcio's health server for etcd;
    shortened: initialDelaySeconds 10 to 2, periodSeconds (10) to 1."""
    pytest.importorskip("grpc_health.v1.health")
    apply(
        nsbox,
        pod(
            "etcd-with-grpc",
            {
                "name": "etcd",
                "command": [sys.executable, "-c", GRPC_SERVER],
                "ports": [{"containerPort": 2379}],
                "livenessProbe": {"grpc": {"port": 2379}, "initialDelaySeconds": 2, "periodSeconds": 1},
                "readinessProbe": {
                    "grpc": {"port": 2379, "service": "etcd"},
                    "initialDelaySeconds": 2,
                    "periodSeconds": 1,
                },
            },
        ),
    )
    pid = nsbox.pid("etcd-with-grpc")
    message = 'Readiness probe failed: service unhealthy (responded with "NOT_SERVING")'
    wait_for(lambda: message in events(nsbox, "etcd-with-grpc", "Unhealthy"), timeout=15, what="NOT_SERVING")
    assert state(nsbox, "etcd-with-grpc")["ready"] is False
    assert state(nsbox, "etcd-with-grpc")["restartCount"] == 0
    assert not any(m.startswith("Liveness") for m in events(nsbox, "etcd-with-grpc", "Unhealthy"))
    describe = nsbox("describe", "pod", "etcd-with-grpc").stdout
    assert re.search(r"Liveness:\s+grpc <pod>:2379  delay=2s timeout=1s period=1s #success=1 #failure=3\n", describe)

    write(in_container(pid, "/tmp/down"), "")
    wait_for(lambda: state(nsbox, "etcd-with-grpc")["restartCount"] == 1, timeout=20, what="a liveness restart")
    assert 'Liveness probe failed: service unhealthy (responded with "NOT_SERVING")' in events(
        nsbox, "etcd-with-grpc", "Unhealthy"
    )


# ---------------------------------------------------------------- the kubelet's rules, as data


def test_results_turn_only_after_the_thresholds_in_a_row():
    from nsbox.kube.probes import ResultRun

    readiness = ResultRun(False)
    assert [readiness.add(ok, 2, 3) for ok in (True, False, True, True)] == [False, False, False, True]
    assert readiness.reported is True
    assert [readiness.add(ok, 2, 3) for ok in (False, False, True, False, False, False)] == [
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    startup = ResultRun(None)
    assert startup.add(False, 1, 1) and startup.reported is False


def test_probes_and_handlers_as_kubectl_describes_them():
    from nsbox.kube.probes import describe_probe, go_duration
    from nsbox.model import Handler, Probe

    assert [go_duration(s) for s in (0, 5, 60, 90, 3600)] == ["0s", "5s", "1m0s", "1m30s", "1h0m0s"]
    assert describe_probe(Probe(Handler("tcpSocket", port=8080), initial_delay=15, period=20)) == (
        "tcp-socket :8080 delay=15s timeout=1s period=20s #success=1 #failure=3"
    )
    assert describe_probe(Probe(Handler("httpGet", path="/healthz", port=8443, scheme="HTTPS"))) == (
        "http-get https://:8443/healthz delay=0s timeout=1s period=10s #success=1 #failure=3"
    )


def exe(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except FileNotFoundError:
        return ""


def hits(pid: int) -> int:
    """How many requests the pod's SERVER has answered (its /tmp/hits)."""
    try:
        with open(in_container(pid, "/tmp/hits")) as f:
            return len(f.readlines())
    except FileNotFoundError:
        return 0


def stays_idle_while(watcher: int, progress: Any, what: str, timeout: float = 20.0) -> None:
    """`progress()` comes true while the watcher is nsbox-idle at every look (every 20 ms: a
    wake-up would show Python for half a second at least, its quiet spell)."""
    deadline = time.monotonic() + timeout
    while not progress():
        assert exe(watcher) == "nsbox-idle", f"the watcher woke up while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    assert exe(watcher) == "nsbox-idle"


def test_a_pod_probed_by_tcp_and_http_hibernates_while_its_probes_succeed(nsbox):
    """nsbox-idle checks tcpSocket and httpGet probes itself: the server keeps being asked, the
    watcher stays nsbox-idle, nothing restarts."""
    apply(
        nsbox,
        pod(
            "quiet",
            {
                "name": "web",
                "command": server(8080),
                "readinessProbe": {"httpGet": {"port": 8080, "path": "/ready"}, "periodSeconds": 1},
                "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
            },
        ),
    )
    pid = nsbox.pid("quiet")
    watcher = nsbox.inspect("quiet")["watcher"]["pid"]
    wait_for(lambda: ready_column(nsbox, "quiet") == "1/1", timeout=15, what="READY 1/1")
    wait_for(lambda: exe(watcher) == "nsbox-idle", timeout=20, what="the probed watcher to hibernate")
    before = hits(pid)
    stays_idle_while(watcher, lambda: hits(pid) >= before + 3, "three more probe requests")
    assert ready_column(nsbox, "quiet") == "1/1"
    assert state(nsbox, "quiet")["restartCount"] == 0 and alive(pid)
    with open(in_container(pid, "/tmp/seen.json")) as f:
        seen = json.load(f)
    assert seen["path"] == "/ready" and seen["headers"]["User-Agent"] == "kube-probe/1.32"
    assert seen["headers"]["Host"] == "127.0.0.1:8080" and seen["headers"]["Accept"] == "*/*"
    assert not [m for m in events(nsbox, "quiet", "Unhealthy") if "statuscode" in m]


def test_a_failure_seen_by_the_idle_watcher_turns_readiness_and_it_hibernates_again(nsbox):
    apply(
        nsbox,
        pod(
            "turns",
            {
                "name": "web",
                "command": server(8080),
                "readinessProbe": {"httpGet": {"port": 8080, "path": "/ready"}, "periodSeconds": 1},
            },
        ),
    )
    pid = nsbox.pid("turns")
    watcher = nsbox.inspect("turns")["watcher"]["pid"]
    wait_for(lambda: ready_column(nsbox, "turns") == "1/1", timeout=15, what="READY 1/1")
    wait_for(lambda: exe(watcher) == "nsbox-idle", timeout=20, what="the probed watcher to hibernate")
    write(in_container(pid, "/tmp/code"), "503")
    wait_for(lambda: ready_column(nsbox, "turns") == "0/1", timeout=15, what="READY 0/1")
    assert "Readiness probe failed: HTTP probe failed with statuscode: 503" in events(nsbox, "turns", "Unhealthy")
    os.unlink(in_container(pid, "/tmp/code"))
    wait_for(lambda: ready_column(nsbox, "turns") == "1/1", timeout=15, what="READY 1/1 again")
    wait_for(lambda: exe(watcher) == "nsbox-idle", timeout=20, what="the watcher to hibernate again")
    before = hits(pid)
    stays_idle_while(watcher, lambda: hits(pid) >= before + 2, "two more probe requests")
    assert state(nsbox, "turns")["restartCount"] == 0 and nsbox.pid("turns") == pid

    # One failure (of three needed) wakes Python, which writes the event: the Ready condition's
    # transition time survives the hibernation.
    became_ready = condition(nsbox, "turns", "Ready")["lastTransitionTime"]
    failures = len(events(nsbox, "turns", "Unhealthy"))
    write(in_container(pid, "/tmp/code"), "500")
    wait_for(lambda: len(events(nsbox, "turns", "Unhealthy")) > failures, timeout=15, what="one failure")
    os.unlink(in_container(pid, "/tmp/code"))
    assert ready_column(nsbox, "turns") == "1/1"
    assert condition(nsbox, "turns", "Ready")["lastTransitionTime"] == became_ready


def test_a_tcp_liveness_failure_seen_by_the_idle_watcher_kills_and_restarts(nsbox):
    """The listener goes away (its file says so): nsbox-idle's connect is refused, Python
    counts the failures and restarts the container, whose new listener passes again."""
    listen = (
        "import os,socket,time; s=socket.socket(); s.bind(('127.0.0.1',8080)); s.listen()\n"
        "while not os.path.exists('/tmp/stop'): time.sleep(0.05)\n"
        "s.close(); time.sleep(600)"
    )
    apply(
        nsbox,
        pod(
            "refused",
            {
                "name": "c",
                "command": ["python3", "-c", listen],
                "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 2},
            },
        ),
    )
    pid = nsbox.pid("refused")
    watcher = nsbox.inspect("refused")["watcher"]["pid"]
    wait_for(lambda: listening(pid, 8080), what="the listener")
    wait_for(lambda: exe(watcher) == "nsbox-idle", timeout=20, what="the probed watcher to hibernate")
    assert state(nsbox, "refused")["restartCount"] == 0
    write(in_container(pid, "/tmp/stop"), "")
    wait_for(lambda: state(nsbox, "refused")["restartCount"] == 1, timeout=20, what="a restart")
    assert not alive(pid)
    message = "Liveness probe failed: dial tcp 127.0.0.1:8080: connect: connection refused"
    assert events(nsbox, "refused", "Unhealthy").count(message) >= 2
    assert any("failed liveness probe" in m for m in events(nsbox, "refused", "Killing"))
    new_pid = nsbox.pid("refused")
    wait_for(lambda: listening(new_pid, 8080), what="the new listener")
    wait_for(lambda: exe(watcher) == "nsbox-idle", timeout=20, what="the watcher to hibernate after the restart")


def test_an_exec_probed_pod_hibernates_between_checks(nsbox):
    """nsbox-idle cannot run an exec probe: it wakes Python when one is due, and Python
    hibernates again after its quiet spell."""
    check = ["sh", "-c", "echo . >> /tmp/checks"]
    apply(
        nsbox,
        pod(
            "execd",
            {
                "name": "c",
                "command": ["sleep", "600"],
                "readinessProbe": {"exec": {"command": check}, "periodSeconds": 2},
            },
        ),
    )
    pid = nsbox.pid("execd")
    watcher = nsbox.inspect("execd")["watcher"]["pid"]

    def checks() -> int:
        try:
            with open(in_container(pid, "/tmp/checks")) as f:
                return len(f.readlines())
        except FileNotFoundError:
            return 0

    wait_for(lambda: ready_column(nsbox, "execd") == "1/1", timeout=15, what="READY 1/1")
    for _ in range(2):  # idle, then a check by a woken Python, then idle again
        wait_for(lambda: exe(watcher) == "nsbox-idle", timeout=20, what="the watcher to hibernate")
        before = checks()
        wait_for(lambda: checks() > before, timeout=20, what="the next check")
    wait_for(lambda: exe(watcher) == "nsbox-idle", timeout=20, what="the watcher to hibernate")
    assert ready_column(nsbox, "execd") == "1/1" and state(nsbox, "execd")["restartCount"] == 0


def test_http_probes_follow_a_redirect_to_the_same_host(nsbox):
    apply(
        nsbox,
        pod(
            "moved",
            {
                "name": "web",
                "command": server(8080),
                "readinessProbe": {"httpGet": {"port": 8080, "path": "/moved"}, "periodSeconds": 1},
            },
        ),
    )
    pid = nsbox.pid("moved")
    wait_for(lambda: state(nsbox, "moved")["ready"], timeout=15, what="ready through the redirect")
    with open(in_container(pid, "/tmp/seen.json")) as f:
        assert json.load(f)["path"] == "/final"
    write(in_container(pid, "/tmp/code"), "500")  # the redirect's target fails: so does the probe
    wait_for(lambda: not state(nsbox, "moved")["ready"], timeout=15, what="unready")
    assert "Readiness probe failed: HTTP probe failed with statuscode: 500" in events(nsbox, "moved", "Unhealthy")


def test_a_liveness_kill_runs_the_pre_stop_hook_then_the_stop_signal(nsbox, host_dir):
    # The probe fails exactly once: when the test makes /out/fail, which the failing check
    # removes. So the restarted container's first check, due the moment it starts
    # (docs/lifecycle.md), passes however far the container has got.
    script = "trap 'echo term >> /out/order; exit 0' TERM; touch /out/trapped; while :; do sleep 0.1; done"
    fail_once = "if [ -e /out/fail ]; then rm /out/fail; exit 1; fi"
    apply(
        nsbox,
        pod(
            "prestop-on-kill",
            {
                "name": "c",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /out/order"]}}},
                "livenessProbe": {
                    "exec": {"command": ["sh", "-c", fail_once]},
                    "periodSeconds": 1,
                    "failureThreshold": 1,
                },
            },
            volumes=[{"name": "out", "hostPath": {"path": host_dir}}],
            terminationGracePeriodSeconds=10,
        ),
    )
    wait_for(lambda: os.path.exists(f"{host_dir}/trapped"), what="the container to set its trap")
    with open(f"{host_dir}/fail", "w"):
        pass
    wait_for(lambda: state(nsbox, "prestop-on-kill")["restartCount"] == 1, timeout=15, what="a restart")
    with open(f"{host_dir}/order") as f:
        assert f.read().split() == ["prestop", "term"]
    assert state(nsbox, "prestop-on-kill")["lastState"]["terminated"]["exitCode"] == 0  # it obeyed SIGTERM
