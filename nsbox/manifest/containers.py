"""A pod's containers: command, image, working directory, ports, security
context and resources; env (env.py), volumeMounts (volumes.py), lifecycle hooks
and probes (probes.py) are read beside them (docs/manifests.md)."""

from __future__ import annotations

import os
import signal

from .. import kube
from ..model import ContainerPort, ContainerSpec, Resources, SecurityContext
from .env import EnvReader
from .policy import ANNOTATION_HOST_ROOT, NO_COMMAND, PROTOCOLS
from .probes import HandlerReader
from .reader import PodContext, Reader
from .volumes import VolumeReader


class ContainerReader(Reader):
    """spec.initContainers[*] and spec.containers[*], in the context of their pod."""

    def container(
        self, item: dict, where: str, ctx: PodContext, seen: set[str], *, init: bool = False
    ) -> ContainerSpec | None:
        """One container (`init`: of spec.initContainers); its name is added to `seen` (the names
        of the containers read before)."""
        self.fields(item, "Container", where)
        name = self.name(item, where, seen)
        command = self.get(item, "command", where, "strings")
        args = self.get(item, "args", where, "strings")
        container = ContainerSpec(name=name or "", command=list(command or []), args=list(args or []))
        self.image(item, where, ctx, container)
        if item.get("command") in (None, []) and not container.runs_image:
            self.required(f"{where}.command", NO_COMMAND)

        working_dir = self.get(item, "workingDir", where, "string")
        if working_dir:
            if not working_dir.startswith("/"):
                self.invalid(f"{where}.workingDir", working_dir, "must be an absolute path")
            container.working_dir = working_dir

        env = EnvReader(self.findings)
        container.env = env.env(item, where, ctx)
        container.env_from = env.env_from(item, where)
        container.volume_mounts = VolumeReader(self.findings).volume_mounts(item, where, ctx.volume_names)
        container.security = self.security_context(item, where, ctx, container.runs_image)
        container.resources = self.resources(item, where)
        container.ports = self.ports(item, where, ctx.network)
        handlers = HandlerReader(self.findings)
        container.post_start, container.pre_stop = handlers.lifecycle(item, where, container.ports)
        probes = handlers.probes(item, where, container.ports)
        container.liveness_probe = probes["livenessProbe"]
        container.readiness_probe = probes["readinessProbe"]
        container.startup_probe = probes["startupProbe"]
        container.stop_signal = self.stop_signal(item, where, ctx)
        container.restart_policy = self.restart_policy(item, where, init)
        self.termination_message(item, where, container)
        container.stdin = self.get(item, "stdin", where, "boolean") is True
        container.tty = self.get(item, "tty", where, "boolean") is True
        return container if name else None

    def image(self, item: dict, where: str, ctx: PodContext, container: ContainerSpec) -> None:
        """`image` and `imagePullPolicy`: the container runs its image, or sees the host's files
        (no image, the pod annotated nsbox.io/host-root) or a local directory (docs/images.md)."""
        image = self.get(item, "image", where, "string")
        policy = self.get(item, "imagePullPolicy", where, "string")
        if policy is not None and policy not in kube.PULL_POLICIES:
            self.unsupported(f"{where}.imagePullPolicy", policy, kube.PULL_POLICIES)
        if not image:
            return
        if image != image.strip():
            self.invalid(f"{where}.image", image, "must not have leading or trailing whitespace")
        elif os.path.isdir(image):
            container.image = os.path.abspath(image)
        elif ctx.annotations.get(ANNOTATION_HOST_ROOT) == "true":
            container.image = image
            self.warn(
                f"{where}.image: not used: the pod is annotated {ANNOTATION_HOST_ROOT}, "
                "so the container sees the host's files"
            )
        else:
            container.image = image
            container.image_pull_policy = policy if policy in kube.PULL_POLICIES else kube.default_pull_policy(image)

    def ports(self, item: dict, where: str, network: str) -> list[ContainerPort]:
        """containers[*].ports; a host port only on the host's network (docs/manifests.md)."""
        out: list[ContainerPort] = []
        for port_where, port in self.objects(item, "ports", where):
            self.fields(port, "ContainerPort", port_where, network=network)
            number = self.get(port, "containerPort", port_where, "integer")
            if number is None and "containerPort" not in port:
                self.required(f"{port_where}.containerPort")
            elif number is not None and not 1 <= number <= 65535:
                self.invalid(f"{port_where}.containerPort", number, "must be between 1 and 65535, inclusive")
            port_name = self.get(port, "name", port_where, "string")
            protocol = self.get(port, "protocol", port_where, "string")
            if protocol is not None and protocol not in PROTOCOLS:
                self.unsupported(f"{port_where}.protocol", protocol, PROTOCOLS)
            host_port = self.get(port, "hostPort", port_where, "integer")
            if not host_port and network == "host":
                host_port = number  # API server defaulting: on the host's network, hostPort = containerPort
            if isinstance(number, int):
                out.append(
                    ContainerPort(
                        container_port=number,
                        name=port_name if isinstance(port_name, str) else "",
                        protocol=protocol if protocol in PROTOCOLS else "TCP",
                        host_port=host_port if isinstance(host_port, int) and host_port else None,
                    )
                )
        return out

    def security_context(self, item: dict, where: str, ctx: PodContext, runs_image: bool) -> SecurityContext:
        out = SecurityContext()
        sc = self.get(item, "securityContext", where, "object")
        sc_where = f"{where}.securityContext"
        run_as_non_root, non_root_where = ctx.run_as_non_root, "spec.securityContext.runAsNonRoot"
        if sc is not None:
            self.fields(sc, "SecurityContext", sc_where)
            out.privileged = self.get(sc, "privileged", sc_where, "boolean") is True
            out.allow_privilege_escalation = self.get(sc, "allowPrivilegeEscalation", sc_where, "boolean")
            out.read_only_root_filesystem = self.get(sc, "readOnlyRootFilesystem", sc_where, "boolean") is True
            out.run_as_user = self.id_field(sc, "runAsUser", sc_where)
            out.run_as_group = self.id_field(sc, "runAsGroup", sc_where)
            out.seccomp, out.seccomp_localhost = self.seccomp_profile(sc, sc_where)
            if sc.get("runAsNonRoot") is not None:
                run_as_non_root = self.get(sc, "runAsNonRoot", sc_where, "boolean")
                non_root_where = f"{sc_where}.runAsNonRoot"
            caps = self.get(sc, "capabilities", sc_where, "object")
            if caps is not None:
                caps_where = f"{sc_where}.capabilities"
                self.fields(caps, "Capabilities", caps_where)
                out.cap_add = self.capabilities(caps, "add", caps_where)
                out.cap_drop = self.capabilities(caps, "drop", caps_where)
            # apimachinery ValidateSecurityContext (AllowPrivilegeEscalation checks).
            if out.allow_privilege_escalation is False and out.privileged:
                self.invalid(
                    sc_where,
                    {"allowPrivilegeEscalation": False, "privileged": True},
                    "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
                )
            if out.allow_privilege_escalation is False and "SYS_ADMIN" in out.cap_add:
                self.invalid(
                    sc_where,
                    {"allowPrivilegeEscalation": False, "capabilities": {"add": ["SYS_ADMIN"]}},
                    "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
                )
        # The kubelet refuses to start such a container. Without an image there is no image user
        # to wait for, so it is said now; an image's user is checked when the container starts.
        user = out.run_as_user if out.run_as_user is not None else ctx.run_as_user
        out.run_as_non_root = run_as_non_root is True
        if run_as_non_root and not user and (user == 0 or not runs_image):
            self.invalid(non_root_where, True, "the container would run as root: set runAsUser to a non-zero UID")
        return out

    def capabilities(self, caps: dict, key: str, where: str) -> list[str]:
        names = self.get(caps, key, where, "strings") or []
        out = []
        for i, name in enumerate(names):
            try:
                out.append(kube.normalize_capability(name))
            except ValueError:
                self.invalid(f"{where}.{key}[{i}]", name, "unknown capability")
        return out

    def resources(self, item: dict, where: str) -> Resources:
        out = Resources()
        res = self.get(item, "resources", where, "object")
        if res is None:
            return out
        res_where = f"{where}.resources"
        self.fields(res, "ResourceRequirements", res_where)
        limits = self.get(res, "limits", res_where, "object") or {}
        self.fields(limits, "ResourceList", f"{res_where}.limits", map_keys=True)
        parsers = {"cpu": kube.parse_cpu, "memory": kube.parse_memory, "ephemeral-storage": kube.parse_memory}
        parsed: dict[str, int | None] = {}
        for key, parse in parsers.items():
            if limits.get(key) is not None:
                parsed[key] = self.quantity(limits[key], f"{res_where}.limits[{key}]", parse)
        # A zero limit is no limit (kubelet: a 0 quota or memory limit is left unset).
        out.cpu_millis = parsed.get("cpu") or None
        out.memory_bytes = parsed.get("memory") or None
        out.ephemeral_storage_bytes = parsed.get("ephemeral-storage") or None  # bounds the writable layer
        requests = self.get(res, "requests", res_where, "object") or {}
        self.fields(requests, "ResourceList", f"{res_where}.requests", map_keys=True)
        # The API server's defaulting: a request left unset while its limit is set is the limit.
        taken = {key: parsed.get(key) for key in parsers}  # requests.ephemeral-storage: checked, reserves nothing
        for key, parse in parsers.items():
            if requests.get(key) is None:
                continue
            request = self.quantity(requests[key], f"{res_where}.requests[{key}]", parse)
            taken[key] = request
            limit = parsed.get(key)
            if request is not None and limit is not None and request > limit:
                self.invalid(
                    f"{res_where}.requests[{key}]",
                    requests[key],
                    f"must be less than or equal to {key} limit of {limits[key]}",
                )
        out.cpu_request_millis = taken["cpu"] or None  # zero, like a zero limit, is none
        out.memory_request_bytes = taken["memory"] or None
        return out

    def restart_policy(self, item: dict, where: str, init: bool) -> str:
        """A container's own restartPolicy, as the API server of Kubernetes 1.33 validates it: an
        init container may say `Always` (a sidecar, docs/lifecycle.md "Sidecars"); an app
        container may not set it."""
        policy = self.get(item, "restartPolicy", where, "string")
        if policy is None:
            return ""
        if not init:
            self.problem(f"{where}.restartPolicy: Forbidden: may not be set for non-init containers")
            return ""
        if policy != "Always":
            self.unsupported(f"{where}.restartPolicy", policy, ("Always",))
            return ""
        return policy

    def stop_signal(self, item: dict, where: str, ctx: PodContext) -> str:
        """lifecycle.stopSignal (ContainerStopSignals): one of the API's Linux signal names, and
        only with spec.os.name set, as the API server requires."""
        lifecycle = item.get("lifecycle")
        value = lifecycle.get("stopSignal") if isinstance(lifecycle, dict) else None
        if value is None:
            return ""
        s_where = f"{where}.lifecycle.stopSignal"
        if not ctx.os_name:
            self.problem(f"{s_where}: Forbidden: may not be set for containers with empty `spec.os.name`")
            return ""
        if value not in STOP_SIGNALS:
            self.unsupported(s_where, value, STOP_SIGNALS)
            return ""
        return str(value)

    def termination_message(self, item: dict, where: str, container: ContainerSpec) -> None:
        """terminationMessagePath and terminationMessagePolicy, with the API server's defaults
        (docs/lifecycle.md, "Termination messages")."""
        path = self.get(item, "terminationMessagePath", where, "string")
        if path:
            if not path.startswith("/"):
                self.invalid(f"{where}.terminationMessagePath", path, "must be an absolute path")
            container.termination_message_path = os.path.normpath(path)
        policy = self.get(item, "terminationMessagePolicy", where, "string")
        if policy is not None:
            if policy not in TERMINATION_MESSAGE_POLICIES:
                self.unsupported(f"{where}.terminationMessagePolicy", policy, TERMINATION_MESSAGE_POLICIES)
            else:
                container.termination_message_policy = policy


TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")


def _linux_signal_names() -> tuple[str, ...]:
    """The API's Signal enum for Linux: the classic names, SIGRTMIN+1..15, SIGRTMAX-14..-1."""
    classic = sorted(
        {s.name for s in signal.Signals if not s.name.startswith("SIGRT")} | {"SIGCLD", "SIGIOT", "SIGPOLL"}
    )
    realtime = [f"SIGRTMIN+{i}" for i in range(1, 16)] + [f"SIGRTMAX-{i}" for i in range(14, 0, -1)]
    return (*classic, "SIGRTMIN", *realtime, "SIGRTMAX")


STOP_SIGNALS = _linux_signal_names()
