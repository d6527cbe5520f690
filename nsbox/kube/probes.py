"""The kubelet's probe rules that are plain data (pkg/kubelet/prober): results counted
against the thresholds, the request a network probe sends, and the messages it reports
(docs/lifecycle.md, "Probes")."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

PROBE_USER_AGENT = "kube-probe/1.32"  # the kubelet's: kube-probe/<major>.<minor>
PROBE_OUTPUT_LIMIT = 10 * 1024  # the body or output kept for the event (the kubelet's maxRespBodyLength)

KIND_TITLES = {"liveness": "Liveness", "readiness": "Readiness", "startup": "Startup"}


class ResultRun:
    """The reported result of one probe of one container: it changes only after
    successThreshold successes or failureThreshold failures in a row (prober worker.doProbe).
    Readiness starts failed, liveness succeeded, startup unknown (None)."""

    __slots__ = ("reported", "last", "run")

    def __init__(self, initial: bool | None):
        self.reported = initial
        self.last: bool | None = None
        self.run = 0

    def add(self, ok: bool, success_threshold: int, failure_threshold: int) -> bool:
        """Count one result; True when the reported result changes with it."""
        self.run = self.run + 1 if self.last == ok else 1
        self.last = ok
        if (ok and self.run < success_threshold) or (not ok and self.run < failure_threshold):
            return False
        changed = self.reported != ok
        self.reported = ok
        return changed

    def reset(self) -> None:
        """A liveness or startup failure restarts the container: count afresh for the next one."""
        self.last, self.run = None, 0


def http_url(handler: Any, host: str) -> str:
    path = handler.path if handler.path.startswith("/") else "/" + handler.path
    bracketed = f"[{host}]" if ":" in host else host
    return f"{handler.scheme.lower()}://{bracketed}:{handler.port}{path}"


def http_request_headers(handler: Any, host: str) -> list[tuple[str, str]]:
    """The headers of an httpGet probe, as the kubelet sends them: its User-Agent and
    Accept unless the probe sets its own, then the probe's httpHeaders (a Host header
    among them names the virtual host)."""
    given = {name.lower() for name, _ in handler.headers}
    out = [] if "host" in given else [("Host", f"{host}:{handler.port}")]
    if "user-agent" not in given:
        out.append(("User-Agent", PROBE_USER_AGENT))
    if "accept" not in given:
        out.append(("Accept", "*/*"))
    return out + [(name, value) for name, value in handler.headers]


def http_succeeded(status: int) -> bool:
    """2xx and 3xx (a redirect not followed: netprobe.py follows those to the same host)."""
    return 200 <= status < 400


def go_duration(seconds: int) -> str:
    """A whole number of seconds as Go's time.Duration prints it: 5s, 1m30s, 1h0m0s."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def describe_handler(handler: Any) -> str:
    """A handler as `kubectl describe` shows it."""
    port = handler.port_name or handler.port
    if handler.kind == "exec":
        return "exec [" + " ".join(handler.command) + "]"
    if handler.kind == "httpGet":
        path = handler.path if handler.path.startswith("/") else "/" + handler.path
        return f"http-get {handler.scheme.lower()}://{handler.host}:{port}{path}"
    if handler.kind == "tcpSocket":
        return f"tcp-socket {handler.host}:{port}"
    if handler.kind == "grpc":
        return f"grpc <pod>:{port} {handler.service}"
    return f"sleep {handler.seconds}s"


def describe_probe(probe: Any) -> str:
    """`Liveness:  exec [cat /tmp/healthy] delay=5s timeout=1s period=5s #success=1 #failure=3`."""
    return (
        f"{describe_handler(probe.handler)} delay={go_duration(probe.initial_delay)} "
        f"timeout={go_duration(probe.timeout)} period={go_duration(probe.period)} "
        f"#success={probe.success_threshold} #failure={probe.failure_threshold}"
    )
