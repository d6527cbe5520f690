"""Lifecycle hooks and probes of a container: their handlers (exec, httpGet, tcpSocket,
grpc, sleep) and the probes' timing fields, defaulted and validated as the API server does
(pkg/apis/core/v1/defaults.go, pkg/apis/core/validation: validateHandler, validateProbe;
docs/lifecycle.md, "Probes")."""

from __future__ import annotations

import re

from ..model import ContainerPort, Handler, Probe
from .reader import Reader

PROBE_KINDS = ("livenessProbe", "readinessProbe", "startupProbe")
PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
HOOK_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")
SCHEMES = ("HTTP", "HTTPS")

# The defaults of v1.Probe (SetDefaults_Probe): a field left out (or 0) takes them.
_TIMINGS = (
    ("initialDelaySeconds", "initial_delay", 0),
    ("timeoutSeconds", "timeout", 1),
    ("periodSeconds", "period", 10),
    ("successThreshold", "success_threshold", 1),
    ("failureThreshold", "failure_threshold", 3),
)

_HEADER_NAME = re.compile(r"[-A-Za-z0-9]+")
_PORT_NAME_CHARS = re.compile(r"[-a-z0-9]+")
_HEADER_MSG = (
    "a valid HTTP header must consist of alphanumeric characters or '-' "
    "(e.g. 'X-Header-Name',  regex used for validation is '[-A-Za-z0-9]+')"
)


class HandlerReader(Reader):
    """containers[*].lifecycle and containers[*].{liveness,readiness,startup}Probe."""

    def lifecycle(self, item: dict, where: str, ports: list[ContainerPort]) -> tuple[Handler | None, Handler | None]:
        hooks: dict[str, Handler | None] = {"postStart": None, "preStop": None}
        lifecycle = self.get(item, "lifecycle", where, "object")
        if lifecycle is None:
            return None, None
        lc_where = f"{where}.lifecycle"
        self.fields(lifecycle, "Lifecycle", lc_where)
        for hook in hooks:
            handler = self.get(lifecycle, hook, lc_where, "object")
            if handler is not None:
                self.fields(handler, "LifecycleHandler", f"{lc_where}.{hook}")
                hooks[hook] = self.handler(handler, f"{lc_where}.{hook}", HOOK_HANDLERS, ports)
        return hooks["postStart"], hooks["preStop"]

    def probes(self, item: dict, where: str, ports: list[ContainerPort]) -> dict[str, Probe | None]:
        """{"livenessProbe": Probe | None, ...}; successThreshold must be 1 for liveness and
        startup, and terminationGracePeriodSeconds is theirs only (validateContainerCommon)."""
        out: dict[str, Probe | None] = {}
        # validateInitContainers: only a sidecar (an init container that restarts) is probed.
        plain_init = where.startswith("spec.initContainers") and item.get("restartPolicy") != "Always"
        for kind in PROBE_KINDS:
            obj = self.get(item, kind, where, "object")
            if obj is not None and plain_init:
                self.problem(
                    f"{where}.{kind}: Forbidden: may not be set for init containers without restartPolicy=Always"
                )
                obj = None
            out[kind] = None if obj is None else self.probe(obj, f"{where}.{kind}", ports)
            probe = out[kind]
            if probe is None:
                continue
            if kind != "readinessProbe" and probe.success_threshold != 1:
                self.invalid(f"{where}.{kind}.successThreshold", probe.success_threshold, "must be 1")
            if kind == "readinessProbe" and probe.grace is not None:
                self.invalid(
                    f"{where}.{kind}.terminationGracePeriodSeconds",
                    probe.grace,
                    "must not be set for readinessProbes",
                )
        return out

    def probe(self, obj: dict, where: str, ports: list[ContainerPort]) -> Probe | None:
        self.fields(obj, "Probe", where)
        handler = self.handler(obj, where, PROBE_HANDLERS, ports)
        timings: dict[str, int] = {}
        for key, attr, default in _TIMINGS:
            value = self.get(obj, key, where, "integer")
            if isinstance(value, int) and value < 0:
                self.invalid(f"{where}.{key}", value, "must be greater than or equal to 0")
            timings[attr] = value if isinstance(value, int) and value > 0 else default
        grace = self.get(obj, "terminationGracePeriodSeconds", where, "integer")
        if isinstance(grace, int) and grace <= 0:
            self.invalid(f"{where}.terminationGracePeriodSeconds", grace, "must be greater than 0")
        if handler is None:
            return None
        return Probe(handler, grace=grace if isinstance(grace, int) else None, **timings)

    def handler(self, obj: dict, where: str, allowed: tuple[str, ...], ports: list[ContainerPort]) -> Handler | None:
        """Exactly one handler type of `allowed` (the others are fields() problems already)."""
        given = [k for k in allowed if obj.get(k) is not None]
        if len(given) > 1:
            self.problem(f"{where}.{given[1]}: Forbidden: may not specify more than 1 handler type")
            return None
        if not given:
            if not any(obj.get(k) is not None for k in ("exec", "httpGet", "tcpSocket", "grpc", "sleep")):
                self.required(where, "must specify a handler type")
            return None
        kind = given[0]
        action = self.get(obj, kind, where, "object")
        if action is None:
            return None
        a_where = f"{where}.{kind}"
        read = {
            "exec": self._exec,
            "httpGet": self._http_get,
            "tcpSocket": self._tcp_socket,
            "grpc": self._grpc,
            "sleep": self._sleep,
        }[kind]
        return read(action, a_where, ports)

    def _exec(self, action: dict, where: str, ports: list[ContainerPort]) -> Handler | None:
        self.fields(action, "ExecAction", where)
        command = self.get(action, "command", where, "strings")
        if action.get("command") in (None, []):
            self.required(f"{where}.command")
            return None
        return Handler("exec", command=list(command)) if command else None

    def _http_get(self, action: dict, where: str, ports: list[ContainerPort]) -> Handler | None:
        self.fields(action, "HTTPGetAction", where)
        out = Handler("httpGet", path=self.get(action, "path", where, "string") or "/")
        if not self._port(action, where, ports, out):
            return None
        out.host = self.get(action, "host", where, "string") or ""
        scheme = self.get(action, "scheme", where, "string") or "HTTP"
        if scheme not in SCHEMES:
            self.unsupported(f"{where}.scheme", scheme, SCHEMES)
        out.scheme = scheme
        for h_where, header in self.objects(action, "httpHeaders", where):
            self.fields(header, "HTTPHeader", h_where)
            name = self.get(header, "name", h_where, "string")
            value = self.get(header, "value", h_where, "string")
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                self.invalid(f"{where}.httpHeaders", name or "", _HEADER_MSG)
                continue
            out.headers.append([name, value if isinstance(value, str) else ""])
        return out

    def _tcp_socket(self, action: dict, where: str, ports: list[ContainerPort]) -> Handler | None:
        self.fields(action, "TCPSocketAction", where)
        out = Handler("tcpSocket", host=self.get(action, "host", where, "string") or "")
        return out if self._port(action, where, ports, out) else None

    def _grpc(self, action: dict, where: str, ports: list[ContainerPort]) -> Handler | None:
        self.fields(action, "GRPCAction", where)
        port = self.get(action, "port", where, "integer")
        if port is None:
            if "port" not in action:
                self.required(f"{where}.port")
            return None
        if not 1 <= port <= 65535:
            self.invalid(f"{where}.port", port, "must be between 1 and 65535, inclusive")
            return None
        return Handler("grpc", port=port, service=self.get(action, "service", where, "string") or "")

    def _sleep(self, action: dict, where: str, ports: list[ContainerPort]) -> Handler | None:
        self.fields(action, "SleepAction", where)
        seconds = self.get(action, "seconds", where, "integer")
        if seconds is None:
            if action.get("seconds") is None:
                self.required(f"{where}.seconds")
            return None
        if seconds < 0:
            self.invalid(f"{where}.seconds", seconds, "must be greater than or equal to 0")
            return None
        return Handler("sleep", seconds=seconds)

    def _port(self, action: dict, where: str, ports: list[ContainerPort], out: Handler) -> bool:
        """`port`: a number, or the name of one of the container's ports (resolved here:
        the kubelet's findPortByName, said when the manifest is read rather than at each probe)."""
        port = action.get("port")
        p_where = f"{where}.port"
        if port is None:
            self.required(p_where)
            return False
        if isinstance(port, bool) or not isinstance(port, (int, str)):
            self.invalid(p_where, port, "must be an integer or a string")
            return False
        if isinstance(port, str) and port.isdigit():
            port = int(port)  # an IntOrString given as a string of digits
        if isinstance(port, int):
            if not 1 <= port <= 65535:
                self.invalid(p_where, port, "must be between 1 and 65535, inclusive")
                return False
            out.port = port
            return True
        for message in _port_name_problems(port):
            self.invalid(p_where, port, message)
            return False
        for p in ports:
            if p.name == port:
                out.port, out.port_name = p.container_port, port
                return True
        self.invalid(p_where, port, "must be the name of one of the container's ports")
        return False


def _port_name_problems(name: str) -> list[str]:
    """apimachinery IsValidPortName."""
    out = []
    if len(name) > 15:
        out.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS.fullmatch(name):
        out.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    elif not re.search(r"[a-z]", name):
        out.append("must contain at least one letter (a-z)")
    if "--" in name:
        out.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        out.append("must not begin or end with a hyphen")
    return out
