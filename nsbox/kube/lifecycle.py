"""A pod's life as the API server, the kubelet and kubectl tell it: grace periods
and SIGKILL, restart policies and back-off, times, the phase, the STATUS, READY
and RESTARTS columns.

Container and pod statuses are taken as plain dicts in the shape of the
Kubernetes `containerStatuses` entries, so the watcher can store them as they
are and `get -o json` can print them as they are:

    {"name": "app",
     "state": {"running": {"startedAt": "..."}}
            | {"waiting": {"reason": "CrashLoopBackOff", "message": "..."}}
            | {"terminated": {"exitCode": 137, "signal": 9, "reason": "Error",
                              "startedAt": "...", "finishedAt": "..."}},
     "lastState": {} | {"terminated": {...}},
     "restartCount": 0,
     "ready": True}
"""

from __future__ import annotations

import time

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

# --- Termination (kubectl delete, API server, kubelet) ------------------------

DEFAULT_GRACE_PERIOD = 30  # API server default for terminationGracePeriodSeconds
KILL_MIN_GAP = 2  # kubelet minimumGracePeriodInSeconds: SIGTERM → SIGKILL never less


def effective_grace_period(flag: int | None, force: bool, pod_value: int | None) -> int:
    """The grace period G a deletion uses (docs/lifecycle.md, Termination 1 and 7).

    - `--grace-period` wins when given and >= 0 (kubectl treats a negative
      flag as "not given", its default being -1);
    - else the pod's terminationGracePeriodSeconds (a negative one counts as
      1, as the API server stores it), else 30;
    - `--grace-period=0` without `--force` means 1 (kubectl delete);
    - with `--force` the result is always 0: the pod leaves the state at once
      and its processes get SIGTERM, then SIGKILL `KILL_MIN_GAP` s later
      (which is exactly `sigkill_at(0, t)`).
    """
    if force:
        return 0
    if flag is not None and flag >= 0:
        return 1 if flag == 0 else flag
    if pod_value is None:
        return DEFAULT_GRACE_PERIOD
    return 1 if pod_value < 0 else pod_value


def sigkill_at(grace_deadline: float, sigterm_sent: float) -> float:
    """When the remaining processes get SIGKILL (docs/lifecycle.md, Termination 4; the kubelet): at the end
    of the grace period, but never sooner than KILL_MIN_GAP s after SIGTERM."""
    return max(grace_deadline, sigterm_sent + KILL_MIN_GAP)


# --- Restarts (kubelet) -------------------------------------------------------

RESTART_POLICIES = ("Always", "OnFailure", "Never")
BACKOFF_BASE = 10  # kubelet: initial crash-loop back-off
BACKOFF_MAX = 300  # kubelet: MaxContainerBackOff
BACKOFF_RESET_AFTER = 600  # kubelet: back-off forgotten after 2 × max without a new failure


def restart_backoff(restart_count: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
    """Seconds to wait, after a container exits, before restarting it.

    `restart_count` is the container's restartCount when it exited (the
    number of restarts since the back-off was last reset). As the kubelet
    does (kuberuntime doBackOff + flowcontrol.Backoff), the first restart is
    immediate and the back-off starts from there: 0, 10, 20, 40, … 300, 300.
    The watcher resets the count it passes here after a container has run
    BACKOFF_RESET_AFTER seconds.
    """
    if restart_count <= 0:
        return 0.0
    # Cap the exponent: 2**1000 would be a float overflow long after reaching `cap`.
    return float(min(base * 2 ** min(restart_count - 1, 64), cap))


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a regular container that exited is restarted (kubelet ShouldContainerBeRestarted)."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    if policy == "Never":
        return False
    raise ValueError(f'unknown restart policy "{policy}"')


def should_restart_init(policy: str, exit_code: int) -> bool:
    """Init containers: a success moves on; a failure is retried unless the pod's
    policy is Never, in which case the pod fails (kubelet)."""
    return exit_code != 0 and policy != "Never"


def exit_code_for_signal(signal: int) -> int:
    """A container killed by signal N reports exitCode 128+N (runc / containerd)."""
    return 128 + signal


def rfc3339(seconds_from_now: float = 0) -> str:
    """A metav1.Time as the API server writes it (UTC, whole seconds): creation, start,
    finish and event times; deletionTimestamp is now + the grace period."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds_from_now))


def epoch(stamp: str) -> float:
    """Seconds since the epoch of a time that rfc3339() wrote ("2026-11-26T23:24:58Z").

    Sliced, not time.strptime'd: `get pods` reads one per pod, and strptime costs tens of µs.
    """
    import calendar

    return calendar.timegm(
        (int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]), int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19]))
    )


def terminated_reason(exit_code: int, oom_killed: bool = False) -> str:
    """The reason of a terminated container (containerd CRI): OOMKilled, Completed or Error."""
    if oom_killed:
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


# --- Pod phase (kubelet getPhase) ---------------------------------------------


def _state(status: dict) -> tuple[str, dict]:
    """("running" | "waiting" | "terminated" | "", details) of a container status."""
    state = status.get("state") or {}
    for key in ("running", "terminated", "waiting"):
        if key in state and state[key] is not None:
            return key, state[key] or {}
    return "", {}


def _last_terminated(status: dict) -> dict | None:
    return (status.get("lastState") or {}).get("terminated")


def app_containers_begun(containers: Sequence[dict]) -> bool:
    """An app container has run: the pod is initialized for good."""
    return any(_state(s)[0] in ("running", "terminated") or _last_terminated(s) for s in containers)


def sidecar_done(status: dict, sidecars: Collection[str], begun: bool) -> bool:
    """A sidecar (its name in `sidecars`) no longer holds the pod's initialization back once it
    has started, or once the app containers have run (KEP-753; docs/lifecycle.md, "Sidecars")."""
    return status.get("name") in sidecars and (
        begun or (_state(status)[0] == "running" and bool(status.get("started")))
    )


def pod_phase(
    containers: list[dict],
    init_containers: Sequence[dict] = (),
    restart_policy: str = "Always",
    *,
    deadline_exceeded: bool = False,
    watcher_lost: bool = False,
    sidecars: Collection[str] = (),
) -> str:
    """The pod phase (docs/lifecycle.md, "Phases") from its container statuses, as the kubelet's getPhase.

    `containers` and `init_containers` hold one status dict per container of
    the spec, in spec order (module docstring for the shape); a container not
    created yet has {"state": {"waiting": {"reason": "ContainerCreating"}}}
    or no state at all.

    - Unknown: the watcher is lost, so nothing can be trusted;
    - Failed: activeDeadlineSeconds exceeded, or an init container failed
      under restartPolicy Never;
    - Pending: an init container has not succeeded yet, or a container has
      never run;
    - Running: a container runs, or all have stopped but will be restarted;
    - Succeeded / Failed: all stopped for good — Succeeded when all exited 0.
    A pod without containers (`pod create`) is Running: its sandbox is up and
    there is nothing to wait for. Sidecars (the init containers named in
    `sidecars`) count as initialized once started, and never in the rest.
    """
    if watcher_lost:
        return "Unknown"
    if deadline_exceeded:
        return "Failed"

    init_pending = init_failed = 0
    begun = app_containers_begun(containers)
    for status in init_containers:
        if status.get("name") in sidecars:
            init_pending += not sidecar_done(status, sidecars, begun)
            continue
        kind, details = _state(status)
        if kind == "terminated":
            if details.get("exitCode", 0) != 0:
                init_failed += 1
        elif kind == "waiting" and (last := _last_terminated(status)) is not None:
            if last.get("exitCode", 0) != 0:
                init_failed += 1
            else:
                init_pending += 1
        else:
            init_pending += 1
    if init_failed and restart_policy == "Never":
        return "Failed"
    if init_pending or init_failed:
        return "Pending"

    running = stopped = succeeded = waiting = 0
    for status in containers:
        kind, details = _state(status)
        if kind == "running":
            running += 1
        elif kind == "terminated":
            stopped += 1
            succeeded += details.get("exitCode", 0) == 0
        elif kind == "waiting" and _last_terminated(status) is not None:
            # Waiting to be restarted (CrashLoopBackOff): it has run and stopped.
            stopped += 1
        else:
            waiting += 1
    if not containers:
        return "Running"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


# --- The STATUS column (kubectl get pods: printPod) ---------------------------


def pod_status_text(
    containers: list[dict],
    init_containers: Sequence[dict] = (),
    *,
    phase: str = "Pending",
    reason: str = "",
    deletion: bool = False,
    watcher_lost: bool = False,
    init_total: int | None = None,
    sidecars: Collection[str] = (),
) -> str:
    """What `kubectl get pods` shows in STATUS.

    `containers` / `init_containers`: status dicts (module docstring) in spec
    order; `phase`: the pod phase; `reason`: the pod's status.reason
    (`DeadlineExceeded`, `Evicted`, …); `deletion`: a deletionTimestamp is
    set; `watcher_lost`: nothing watches the pod any more; `init_total`: the
    number of init containers in the spec (default: len(init_containers)).

    As kubectl: the phase, or the pod's reason; then the first init container
    that has not succeeded (`Init:N/M`, `Init:Error`, `Init:CrashLoopBackOff`,
    `Init:ExitCode:N`); else the first container with a waiting or
    terminated reason (`ContainerCreating`, `CrashLoopBackOff`, `Completed`,
    `Error`, `OOMKilled`, `ExitCode:N`, `Signal:N`) — with `Completed` shown
    as `Running` (or `NotReady`) while another container still runs; then
    `Terminating` for a pod being deleted that has not finished.
    Two nsbox choices: a lost watcher shows `Unknown` (kubectl shows that for
    a pod on an unreachable node), and a Failed pod with a reason (Evicted,
    DeadlineExceeded) shows that reason rather than its containers' ones.
    """
    if watcher_lost:
        return "Unknown"
    text = reason or phase
    total = len(init_containers) if init_total is None else init_total

    initializing = False
    begun = app_containers_begun(containers)
    for i, status in enumerate(init_containers):
        kind, details = _state(status)
        if kind == "terminated" and details.get("exitCode", 0) == 0 or sidecar_done(status, sidecars, begun):
            continue
        initializing = True
        if kind == "terminated":
            if details.get("reason"):
                text = "Init:" + details["reason"]
            elif details.get("signal"):
                text = f"Init:Signal:{details['signal']}"
            else:
                text = f"Init:ExitCode:{details.get('exitCode', 0)}"
        elif kind == "waiting" and details.get("reason") and details["reason"] != "PodInitializing":
            text = "Init:" + details["reason"]
        else:
            text = f"Init:{i}/{total}"
        break
    if not initializing and total > len(init_containers):
        # Init containers in the spec have no status yet: the next one is pending.
        initializing = True
        text = f"Init:{len(init_containers)}/{total}"

    if not initializing and not (phase == "Failed" and reason):
        has_running = False
        # kubectl walks backwards so that the first container's reason wins.
        for status in reversed(containers):
            kind, details = _state(status)
            if kind == "waiting" and details.get("reason"):
                text = details["reason"]
            elif kind == "terminated" and details.get("reason"):
                text = details["reason"]
            elif kind == "terminated":
                if details.get("signal"):
                    text = f"Signal:{details['signal']}"
                else:
                    text = f"ExitCode:{details.get('exitCode', 0)}"
            elif kind == "running" and status.get("ready"):
                has_running = True
        if text == "Completed" and has_running:
            text = "Running" if all(s.get("ready") for s in containers) else "NotReady"

    if deletion and phase not in ("Succeeded", "Failed"):
        text = "Terminating"
    return text


def pod_ready_text(containers: list[dict], sidecar_statuses: Sequence[dict] = ()) -> str:
    """The READY column: ready containers / containers, sidecars counted as app containers (kubectl)."""
    counted = [*containers, *sidecar_statuses]
    ready = sum(1 for s in counted if s.get("ready") and _state(s)[0] == "running")
    return f"{ready}/{len(counted)}"


def pod_restart_count(
    containers: list[dict], init_containers: Sequence[dict] = (), sidecars: Collection[str] = ()
) -> int:
    """The RESTARTS column (kubectl): init containers' restarts while the pod
    initializes, the app containers' and the sidecars' once it has."""
    begun = app_containers_begun(containers)
    initializing = any(
        not (_state(s)[0] == "terminated" and _state(s)[1].get("exitCode", 0) == 0 or sidecar_done(s, sidecars, begun))
        for s in init_containers
    )
    chosen = init_containers if initializing else [*containers, *(s for s in init_containers if s["name"] in sidecars)]
    return sum(int(s.get("restartCount", 0)) for s in chosen)
