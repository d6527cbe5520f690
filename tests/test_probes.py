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
import tempfile
import time
from typing import Any

import pytest
import yaml
from conftest import alive, wait_for

# A small HTTP server for the pod's loopback: GET answers with the code in /tmp/code (200
# when absent) and writes the request's headers to /tmp/seen.json; argv: port [certfile].
SERVER = r"""
import http.server, json, os, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = int(open('/tmp/code').read()) if os.path.exists('/tmp/code') else 200
        with open('/tmp/seen.tmp', 'w') as f:
            json.dump({'path': self.path, 'headers': dict(self.headers.items())}, f)
        os.rename('/tmp/seen.tmp', '/tmp/seen.json')
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


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    spec.setdefault("terminationGracePeriodSeconds", 1)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": list(containers), **spec},
    }


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
