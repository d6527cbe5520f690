"""One network check, in a short-lived fork of the watcher (actions.py): an HTTP GET, a
TCP connect or a gRPC health check against the pod's network namespace, with blocking
sockets and one deadline. Results and messages are the kubelet's (pkg/probe/http, tcp,
grpc), with Go's wording for the errors it reports ("dial tcp ...: connect: connection
refused"). Imported only in the fork: the watcher itself never loads http.client or ssl."""

from __future__ import annotations

import errno
import os
import socket
import time

from nsbox.kube.probes import PROBE_OUTPUT_LIMIT, http_request_headers, http_succeeded, http_url

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.model import Handler


def check(handler: Handler, pod_ip: str, timeout: float) -> dict[str, Any]:
    """{"ok": bool, "output": str}."""
    host = handler.host or pod_ip
    deadline = time.monotonic() + timeout
    if handler.kind == "tcpSocket":
        return _tcp(host, handler.port, deadline)
    if handler.kind == "httpGet":
        return _http_get(handler, host, deadline)
    if handler.kind == "grpc":
        from nsbox.watcher import grpchealth

        return grpchealth.check(host, handler.port, handler.service, deadline)
    return {"ok": False, "output": f"unknown handler {handler.kind!r}"}


def _dial_error(host: str, port: int, e: OSError) -> str:
    """Go's net.OpError text: "dial tcp 127.0.0.1:8080: connect: connection refused"."""
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(e, TimeoutError):
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(e, socket.gaierror):
        return f"dial tcp: lookup {host}: no such host"
    reason = os.strerror(e.errno).lower() if e.errno else str(e)
    if e.errno == errno.ECONNREFUSED:
        reason = "connection refused"
    return f"dial tcp {addr}: connect: {reason}"


def _connect(host: str, port: int, deadline: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=max(0.001, deadline - time.monotonic()))


def _tcp(host: str, port: int, deadline: float) -> dict[str, Any]:
    try:
        _connect(host, port, deadline).close()
    except OSError as e:
        return {"ok": False, "output": _dial_error(host, port, e)}
    return {"ok": True, "output": ""}


MAX_REDIRECTS = 10  # Go's http.Client default, which the kubelet keeps


def _http_get(handler: Handler, host: str, deadline: float) -> dict[str, Any]:
    """GET, following redirects to the same host (up to 10) as the kubelet does; a redirect
    elsewhere ends the probe with success (the kubelet's "Probe terminated redirects")."""
    from urllib.parse import urljoin, urlsplit

    from nsbox.model import Handler
    from nsbox.record import as_dict

    for _ in range(MAX_REDIRECTS + 1):
        url = http_url(handler, host)
        outcome = _get_once(handler, host, url, deadline)
        if isinstance(outcome, dict):
            return outcome
        status, body, location = outcome
        if not (300 <= status < 400 and location):
            break
        target = urlsplit(urljoin(url, location))
        if target.hostname != host or target.scheme not in ("http", "https"):
            return {"ok": True, "output": f"Probe terminated redirects, Response body: {body}"}
        scheme = target.scheme.upper()
        path = target.path + (f"?{target.query}" if target.query else "")
        port = target.port or (443 if scheme == "HTTPS" else 80)
        handler = Handler(**{**as_dict(handler), "scheme": scheme, "path": path or "/", "port": port})
    else:
        return {"ok": False, "output": f'Get "{url}": stopped after {MAX_REDIRECTS} redirects'}
    if http_succeeded(status):
        return {"ok": True, "output": body}
    return {"ok": False, "output": f"HTTP probe failed with statuscode: {status}"}


def _get_once(handler: Handler, host: str, url: str, deadline: float) -> dict[str, Any] | tuple[int, str, str]:
    """(status, body, Location) of one GET, or the failed result."""
    try:
        sock = _connect(host, handler.port, deadline)
    except OSError as e:
        return {"ok": False, "output": f'Get "{url}": {_dial_error(host, handler.port, e)}'}
    try:
        if handler.scheme == "HTTPS":
            import ssl

            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the kubelet: InsecureSkipVerify
            sock = context.wrap_socket(sock, server_hostname=host if not _is_address(host) else None)
        return _exchange(sock, handler, host, deadline)
    except TimeoutError:
        return {
            "ok": False,
            "output": f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
        }
    except (OSError, ValueError) as e:
        return {"ok": False, "output": f'Get "{url}": {e}'}
    finally:
        sock.close()


def _exchange(sock: socket.socket, handler: Handler, host: str, deadline: float) -> tuple[int, str, str]:
    """One HTTP/1.1 GET on `sock`; the status, the first 10 KiB of the body, the Location."""
    import http.client

    path = handler.path if handler.path.startswith("/") else "/" + handler.path
    request = [f"GET {path} HTTP/1.1"]
    request += [f"{name}: {value}" for name, value in http_request_headers(handler, host)]
    request += ["Connection: close", "", ""]
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    sock.sendall("\r\n".join(request).encode("latin-1"))
    response = http.client.HTTPResponse(sock, method="GET")
    response.begin()
    body = response.read(PROBE_OUTPUT_LIMIT)
    return response.status, body.decode(errors="replace"), response.getheader("Location") or ""


def _is_address(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
