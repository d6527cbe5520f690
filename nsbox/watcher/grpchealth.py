"""A gRPC probe: one grpc.health.v1.Health/Check call over cleartext HTTP/2, in the probe's
fork (netprobe.py), with the kubelet's results and messages (pkg/probe/grpc).

HTTP/2 framing and HPACK come from the `h2` package (pure Python, python-hyper): about 70 ms
and 5 MB to import, paid by the short-lived fork of a gRPC probe only, never by the watcher.
grpcio would cost 80 ms, 17 MB and a C extension for one unary call. The two protobuf
messages are one field each and are written and read here by hand.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import unquote

from nsbox.kube.probes import PROBE_USER_AGENT

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

CHECK_PATH = "/grpc.health.v1.Health/Check"
# grpc.health.v1.HealthCheckResponse.ServingStatus
STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
GRPC_UNIMPLEMENTED = "12"


def check(host: str, port: int, service: str, deadline: float) -> dict[str, Any]:
    """{"ok": bool, "output": str}, as the kubelet words its gRPC results."""
    from nsbox.watcher.netprobe import _connect, _dial_error

    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    timeout = f"{max(1, round(deadline - time.monotonic()))}s"
    try:
        import h2.connection  # noqa: F401 - a dependency (pyproject.toml); said plainly when missing
    except ImportError:
        return _fail("gRPC probes need the Python package h2 (pip install h2, or Debian's python3-h2)")
    try:
        sock = _connect(host, port, deadline)
    except OSError as e:
        return _fail(f'timeout: failed to connect service "{addr}" within {timeout}: {_dial_error(host, port, e)}')
    try:
        status, trailers, body = _call(sock, addr, service, deadline)
    except TimeoutError:
        return _fail(f"timeout: health rpc did not complete within {timeout}")
    except (OSError, ValueError) as e:
        return _fail(f"error: health rpc probe failed: {e}")
    finally:
        sock.close()
    code = trailers.get("grpc-status", "")
    if code != "0":
        message = unquote(trailers.get("grpc-message", ""))
        if code == GRPC_UNIMPLEMENTED:
            return _fail(
                "this server doesn't implement the grpc health protocol (grpc.health.v1.Health): "
                f"rpc error: code = Unimplemented desc = {message}"
            )
        return _fail(f"error: health rpc probe failed: rpc error: code = {code or status} desc = {message}")
    serving = _serving_status(body)
    if serving != 1:
        return _fail(f'service unhealthy (responded with "{STATUS_NAMES.get(serving, str(serving))}")')
    return {"ok": True, "output": "service healthy"}


def _fail(output: str) -> dict[str, Any]:
    return {"ok": False, "output": output}


def _call(sock: socket.socket, authority: str, service: str, deadline: float) -> tuple[str, dict[str, str], bytes]:
    """One unary call; (the :status, the trailers (or the headers of a trailers-only answer),
    the response's length-prefixed message bytes)."""
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    stream = conn.get_next_available_stream_id()
    conn.send_headers(
        stream,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", CHECK_PATH),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", PROBE_USER_AGENT),
        ],
    )
    conn.send_data(stream, _frame(_request(service)), end_stream=True)
    headers: dict[str, str] = {}
    trailers: dict[str, str] = {}
    body = bytearray()
    ended = False
    while not ended:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.sendall(conn.data_to_send())
        data = sock.recv(65536)
        if not data:
            raise ValueError("connection closed before the response ended")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                headers = {str(k): str(v) for k, v in event.headers}
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = {str(k): str(v) for k, v in event.headers}
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                raise ValueError(f"stream reset (error code {event.error_code})")
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
    return headers.get(":status", ""), trailers or headers, bytes(body)


def _request(service: str) -> bytes:
    """HealthCheckRequest{service = 1}: nothing for the server's overall health."""
    raw = service.encode()
    return b"\x0a" + _varint(len(raw)) + raw if raw else b""


def _frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message  # not compressed, length, message


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _serving_status(body: bytes) -> int:
    """HealthCheckResponse.status (field 1, a varint) from one length-prefixed message; 0 if absent."""
    if len(body) < 5:
        return 0
    message = body[5 : 5 + int.from_bytes(body[1:5], "big")]
    i = 0
    while i < len(message):
        tag = message[i]
        i += 1
        value, shift = 0, 0
        while i < len(message):
            byte = message[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if tag == 0x08:
            return value
        if tag & 0x07 == 2:  # a length-delimited field we do not know: skip it
            i += value
    return 0
