"""What the watcher knows of its pod that pod.json does not say, in one record.

It goes three ways, each written here once:
- to status.json (`to_status`), which the CLI reads and the watcher alone writes;
- from a dead watcher's status.json to the watcher that adopts the pod (`from_status`);
- across hibernation, through nsbox-idle's memfd (`to_dict`, `from_dict`), with what only
  a live process has: descriptors and monotonic times.

The memfd's keys are those of earlier versions, so that a watcher which hibernated before
an upgrade wakes up after it.
"""

from __future__ import annotations

from nsbox import kube
from nsbox.record import field, record

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any


@record
class PodState:
    phase: str = "Pending"
    reason: str = ""  # with phase Failed: DeadlineExceeded, Evicted (final)
    message: str = ""
    start_time: str = field(factory=kube.rfc3339)
    pod_ip: str = ""  # --network bridge: this pod's address (network.py)
    pause_pid: int = 0  # PID 1 of the shared PID namespace (shareProcessNamespace)
    pause_start: int = 0
    events: list[dict[str, Any]] = field(factory=list)
    exit_codes: dict[str, int] = field(factory=dict)  # containers that ended for good
    etc_files: dict[str, str] = field(factory=dict)  # /etc/hosts & co. written for the pod (sandbox.py)
    mount_errors: dict[str, str] = field(factory=dict)  # config volume -> why it cannot be set up (FailedMount)
    pid_ns_fd: int = -1  # containers join this PID namespace
    host_netns_fd: int = -1  # the host's netns: the bridge's veth is plumbed there, and images pulled
    userns_first: int = 0  # hostUsers: false: the first host ID of the pod's range (nsbox/userns.py)

    @property
    def ended(self) -> bool:
        """Failed for good (DeadlineExceeded, Evicted): nothing starts or restarts any more."""
        return self.phase == "Failed" and bool(self.reason)

    def to_status(self, watcher: dict[str, Any], containers: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "reason": self.reason,
            "message": self.message,
            "startTime": self.start_time,
            **({"podIP": self.pod_ip} if self.pod_ip else {}),
            "pause": {"pid": self.pause_pid, "procStart": self.pause_start} if self.pause_pid else None,
            "watcher": watcher,
            "containers": containers,
            "events": self.events,
        }

    @classmethod
    def from_status(cls, old: dict[str, Any]) -> PodState:
        """What a new watcher takes over from its dead predecessor's status.json; the pause
        process is the caller's to check (it may have died since)."""
        state = cls(pod_ip=old.get("podIP", ""), events=old.get("events", []))
        state.start_time = old.get("startTime") or state.start_time
        if old.get("phase") == "Failed" and old.get("reason"):
            state.phase, state.reason, state.message = "Failed", old["reason"], old.get("message", "")
        pause = old.get("pause") or {}
        state.pause_pid, state.pause_start = pause.get("pid", 0), pause.get("procStart", 0)
        return state

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "reason": self.reason,
            "message": self.message,
            "startTime": self.start_time,
            "podIP": self.pod_ip,
            "pause": [self.pause_pid, self.pause_start],
            "events": self.events,
            "exitCodes": self.exit_codes,
            "etcFiles": self.etc_files,
            "mountErrors": self.mount_errors,
            "pidNsFd": self.pid_ns_fd,
            "hostNetnsFd": self.host_netns_fd,
            "usernsFirst": self.userns_first,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PodState:
        pause_pid, pause_start = d["pause"]
        return cls(
            phase=d["phase"],
            reason=d["reason"],
            message=d["message"],
            start_time=d["startTime"],
            pod_ip=d["podIP"],
            pause_pid=pause_pid,
            pause_start=pause_start,
            events=d["events"],
            exit_codes=d["exitCodes"],
            etc_files=d["etcFiles"],
            mount_errors=d.get("mountErrors", {}),
            pid_ns_fd=d["pidNsFd"],
            host_netns_fd=d["hostNetnsFd"],
            userns_first=d.get("usernsFirst", 0),
        )


def _creating() -> dict[str, Any]:
    return {"waiting": {"reason": "ContainerCreating"}}


@record
class ContainerState:
    """The part of a container's view (containers.Running) that outlives the watcher's process."""

    pid: int = 0
    proc_start: int = 0  # /proc/PID/stat start time, to re-adopt safely
    child: bool = False  # our child (we reap it) or adopted (we only watch it)
    pidfd: int = -1
    restart_count: int = 0
    backoff_index: int = 0
    started_mono: float = 0.0
    state: dict[str, Any] = field(factory=_creating)
    last_state: dict[str, Any] = field(factory=dict)
    log_fd: int = -1
    oom_before: int = 0
    image_id: str = ""  # the image it runs (status imageID), once resolved
    # an image container's "image", "user", "cwd", "stopSignal"; "seccomp": its filter's path (nsbox.seccomp)
    started_as: dict[str, Any] = field(factory=dict)

    @property
    def running(self) -> bool:
        return self.pid > 0

    def load_status(self, st: dict[str, Any]) -> None:
        """From a dead watcher's status.json: the process is the caller's to check."""
        self.restart_count = st.get("restartCount", 0)
        self.state, self.last_state = st.get("state", self.state), st.get("lastState", {})
        self.image_id = st.get("imageID", "")
        self.started_as = {k: st[k] for k in ("image", "user", "cwd", "stopSignal", "seccomp") if k in st}

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "procStart": self.proc_start,
            "child": self.child,
            "pidfd": self.pidfd,
            "restartCount": self.restart_count,
            "backoffIndex": self.backoff_index,
            "startedMono": self.started_mono,
            "state": self.state,
            "lastState": self.last_state,
            "logFd": self.log_fd,
            "oomBefore": self.oom_before,
            "imageID": self.image_id,
            "startedAs": self.started_as,
        }

    def load(self, d: dict[str, Any]) -> None:
        """The reverse of to_dict, into this container's view (made from its spec)."""
        self.pid, self.proc_start, self.child, self.pidfd = d["pid"], d["procStart"], d["child"], d["pidfd"]
        self.restart_count, self.backoff_index = d["restartCount"], d["backoffIndex"]
        self.started_mono, self.state, self.last_state = d["startedMono"], d["state"], d["lastState"]
        self.log_fd, self.oom_before = d["logFd"], d["oomBefore"]
        self.image_id, self.started_as = d.get("imageID", ""), d.get("startedAs", {})
