"""Liveness, readiness and startup probes of the running containers, as the kubelet's prober
workers run them (docs/lifecycle.md, "Probes"):

- each probe of a running container has a worker: its first check after initialDelaySeconds,
  then one each periodSeconds (a check still under way skips a tick), each bounded by
  timeoutSeconds (actions.py runs the handler);
- a startup probe holds liveness and readiness back until it succeeds;
- readiness decides the container's `ready` (and so the pod's Ready condition) and never
  restarts anything; before its first success the container is not ready;
- failureThreshold failures of liveness or startup in a row kill the container as a deletion
  kills one (preStop, the stop signal, SIGKILL at the end of the probe's grace period or the
  pod's); its exit is recorded and the restart policy applies, with back-off.

Every failed check is an `Unhealthy` event.

Probes do not keep the watcher awake (docs/lifecycle.md, "Probes while the watcher is idle"):
when it hibernates, its tcpSocket and plain-HTTP httpGet workers are handed to nsbox-idle
(csrc/idle.c --probe), which checks them itself and execs Python back only for a result
that needs it: a failure, a success that turns the reported result, or a redirect. The
others (exec, HTTPS, gRPC, a host that is not an IPv4 address) make nsbox-idle wake Python
when they are due (--wake-at); Python checks, and hibernates again after its quiet spell.
"""

from __future__ import annotations

import os
import signal
import time
from functools import partial

from nsbox import kube
from nsbox.kube.probes import KIND_TITLES, ResultRun, http_request_headers, http_url
from nsbox.watcher import actions, hooks

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.model import Handler, Probe
    from nsbox.watcher import Watcher
    from nsbox.watcher.containers import Running
    from nsbox.watcher.loop import Timer


class Worker:
    """One probe of one run of a container (a restart gets new workers)."""

    def __init__(self, w: Watcher, r: Running, kind: str, probe: Probe, first_in: float | None = None):
        self.w, self.r, self.kind, self.probe = w, r, kind, probe
        self.pid = r.pid
        self.results = ResultRun({"liveness": True, "readiness": False, "startup": None}[kind])
        self.busy = False
        self.stopped = False
        # Hibernation hands the timer over (to nsbox-idle, or as its --wake-at): it never keeps us awake.
        delay = probe.initial_delay if first_in is None else first_in
        self.timer: Timer | None = w.loop.at(delay, self._tick, keeps_awake=False)

    @property
    def active(self) -> bool:
        """Its checks count now: not held back by a startup probe, nor a startup probe done."""
        return (self.kind == "startup") != self.r.started_ok

    def stop(self) -> None:
        self.stopped = True
        self.w.loop.cancel(self.timer)
        self.timer = None

    def _tick(self) -> None:
        self.timer = self.w.loop.at(self.probe.period, self._tick, keeps_awake=False)
        r = self.r
        if self.busy or not r.running or r.pid != self.pid:
            return
        if self.kind == "startup" and r.started_ok:
            self.stop()  # started: the startup probe has done its work
            return
        if self.kind != "startup" and not r.started_ok:
            return  # held back by the startup probe
        self.busy = True
        actions.run(self.w, r, self.probe.handler, self.probe.timeout, self._result)

    def _result(self, ok: bool, output: str) -> None:
        self.busy = False
        w, r = self.w, self.r
        if self.stopped or not r.running or r.pid != self.pid:
            return
        if not ok:
            w.event("Warning", "Unhealthy", f"{KIND_TITLES[self.kind]} probe failed: {output}", r.spec.name)
        changed = self.results.add(ok, self.probe.success_threshold, self.probe.failure_threshold)
        if not changed:
            return
        if self.kind == "readiness":
            r.probed_ready = ok
            r.ready_changed_at = kube.rfc3339()
            w.dirty = True
        elif self.kind == "startup" and ok:
            r.started_ok = True
            if r.spec.readiness_probe is None:
                r.ready_changed_at = kube.rfc3339()
            w.dirty = True
            if r.spec.is_sidecar:
                w.loop.at(0, w.containers.start_after_sidecar)  # the next init container waited for this
        elif not ok:  # liveness or startup: failureThreshold failures in a row
            self.results.reset()
            w.probes.kill(r, self.kind, self.probe)


# ResultRun's None, True and False as nsbox-idle's --probe takes and gives them back.
_TRISTATE = {False: 0, True: 1, None: 2}
_FROM_TRISTATE = {0: False, 1: True, 2: None}


def idle_spec(handler: Handler, pod_ip: str) -> str | None:
    """What follows KIND in nsbox-idle's --probe for a check it can make itself, "tcp:" or
    "http:" then IPV4:PORT[:REQUEST]; None for one Python must make."""
    import socket

    from nsbox.watcher.actions import LOOPBACK_POD_IP

    if handler.kind not in ("tcpSocket", "httpGet") or (handler.kind == "httpGet" and handler.scheme != "HTTP"):
        return None
    if not 0 < handler.port < 65536:
        return None  # refused by the manifest already; nsbox-idle would refuse it too, and exit
    host = handler.host or pod_ip or LOOPBACK_POD_IP
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        return None  # a name to resolve, or IPv6: the fork does it
    if handler.kind == "tcpSocket":
        return f"tcp:{host}:{handler.port}"
    path = handler.path if handler.path.startswith("/") else "/" + handler.path
    lines = [f"GET {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in http_request_headers(handler, host)]
    request = "\r\n".join([*lines, "Connection: close", "", ""])
    if "\0" in request or not request.isascii():
        return None  # not for an argv (the fork sends latin-1)
    return f"http:{host}:{handler.port}:{request}"


def idle_failure(handler: Handler, pod_ip: str, outcome: str) -> str:
    """The kubelet's message for a failed check of nsbox-idle, from its outcome "fail WHAT"
    (netprobe.py says the same for the checks of the fork)."""
    from nsbox.watcher.actions import LOOPBACK_POD_IP
    from nsbox.watcher.netprobe import _dial_error

    host = handler.host or pod_ip or LOOPBACK_POD_IP
    what = outcome.removeprefix("fail ")
    if what.startswith("status="):
        return f"HTTP probe failed with statuscode: {what.removeprefix('status=')}"
    if what.startswith("errno="):
        code = int(what.removeprefix("errno="))
        text = _dial_error(host, handler.port, OSError(code, os.strerror(code)))
    elif what == "dial-timeout":
        text = _dial_error(host, handler.port, TimeoutError())
    elif what == "timeout":
        text = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    else:
        text = "malformed HTTP response"
    return f'Get "{http_url(handler, host)}": {text}' if handler.kind == "httpGet" else text


class Probes:
    def __init__(self, w: Watcher):
        self.w = w
        self.workers: dict[Running, list[Worker]] = {}

    def started(self, r: Running) -> None:
        """`r` has just started (or been adopted): probe it afresh."""
        self.stopped(r)
        spec = r.spec
        r.started_ok = spec.startup_probe is None
        r.probed_ready = spec.readiness_probe is None
        if r.is_init and not r.spec.is_sidecar:
            return  # only sidecars among init containers have probes (the API server refuses the others')
        workers = [
            Worker(self.w, r, kind, probe)
            for kind, probe in (
                ("startup", spec.startup_probe),
                ("liveness", spec.liveness_probe),
                ("readiness", spec.readiness_probe),
            )
            if probe is not None
        ]
        if workers:
            self.workers[r] = workers

    def stopped(self, r: Running) -> None:
        """`r`'s process has gone: its workers end."""
        for worker in self.workers.pop(r, []):
            worker.stop()

    def kill(self, r: Running, kind: str, probe: Probe) -> None:
        """Kill `r` for a failed liveness or startup probe, as a deletion kills one container
        (termination.py): preStop, the stop signal, SIGKILL at the end of the grace period."""
        w = self.w
        if w.termination.deletion is not None or w.state.ended:
            return  # already being stopped for good
        self.stopped(r)
        w.event("Normal", "Killing", f"Container {r.spec.name} failed {kind} probe, will be restarted", r.spec.name)
        grace = probe.grace if probe.grace is not None else w.pod.termination_grace_period
        deadline = time.monotonic() + grace
        pid = r.pid
        if r.spec.pre_stop is not None and r.child and grace > 0:
            hook_timer = w.loop.at(grace, partial(self._term, r, pid, deadline))
            hooks.run(
                w, r, r.spec.pre_stop, "PreStop", on_done=partial(self._pre_stop_done, r, pid, deadline, hook_timer)
            )
        else:
            self._term(r, pid, deadline)

    def _pre_stop_done(self, r: Running, pid: int, deadline: float, timer: Timer, ok: bool) -> None:
        timer.cancel()
        self._term(r, pid, deadline)

    def _term(self, r: Running, pid: int, deadline: float) -> None:
        from nsbox.watcher.termination import stop_signal

        if not r.running or r.pid != pid:
            return
        self.w.containers.signal(r, stop_signal(r.started_as.get("stopSignal", "")))
        kill_at = kube.sigkill_at(deadline, time.monotonic())
        self.w.loop.at(kill_at - time.monotonic(), partial(self._kill, r, pid))

    def _kill(self, r: Running, pid: int) -> None:
        w = self.w
        if r.running and r.pid == pid:
            w.cg.kill(w.cg.container_path(w.uid, r.spec.name))
            w.containers.signal(r, signal.SIGKILL)

    # ------------------------------------------------------------ hibernation

    def handoff(self) -> tuple[dict[str, Any], list[str], list[float]]:
        """The workers for resume(); nsbox-idle's --probe arguments for the checks it makes; the
        times at which it must wake us for the others (hibernation.py)."""
        pod_ip = self.w.state.pod_ip
        workers: list[dict[str, Any]] = []
        containers: dict[str, dict[str, Any]] = {}
        args: list[str] = []
        wake_at: list[float] = []
        for r, ws in self.workers.items():
            containers[r.spec.name] = {
                "startedOk": r.started_ok,
                "probedReady": r.probed_ready,
                "readyChangedAt": r.ready_changed_at,  # the Ready condition's lastTransitionTime
            }
            for wk in ws:
                if wk.stopped or wk.timer is None:
                    continue
                res = wk.results
                index = len(workers)
                workers.append(
                    {
                        "container": r.spec.name,
                        "kind": wk.kind,
                        "due": wk.timer.when,
                        "reported": _TRISTATE[res.reported],
                        "last": _TRISTATE[res.last],
                        "run": res.run,
                    }
                )
                if not wk.active:
                    continue  # nothing to check until the startup probe turns, which wakes us
                spec = idle_spec(wk.probe.handler, pod_ip)
                if spec is None:
                    wake_at.append(wk.timer.when)
                    continue
                kind, rest = spec.split(":", 1)
                probe = wk.probe
                numbers = [int(wk.timer.when * 1e9), int(probe.period * 1e9), int(probe.timeout * 1e9)]
                numbers += [probe.success_threshold, _TRISTATE[res.reported], _TRISTATE[res.last], res.run]
                args += ["--probe", ":".join([str(index), kind, *map(str, numbers), rest])]
        return {"workers": workers, "containers": containers}, args, wake_at

    def resume(self, state: dict[str, Any], from_idle: list[str]) -> None:
        """The workers handoff() described, with what nsbox-idle counted since (its arguments to
        us, "ID:NEXT_NS:REPORTED:LAST:RUN:OUTCOME"); a result it left for us is counted now."""
        w = self.w
        counted: dict[int, list[str]] = {}
        for arg in from_idle:
            fields = arg.split(":", 5)
            if len(fields) == 6 and fields[0].isdigit():
                counted[int(fields[0])] = fields[1:]
        for name, st in state["containers"].items():
            r = w.containers.by_name.get(name)
            if r is not None:
                r.started_ok, r.probed_ready, r.ready_changed_at = (
                    st["startedOk"],
                    st["probedReady"],
                    st["readyChangedAt"],
                )
        now = time.monotonic()
        for index, st in enumerate(state["workers"]):
            r = w.containers.by_name.get(st["container"])
            if r is None or not r.running:
                continue
            outcome = ""
            if index in counted:
                next_ns, reported, last, run, outcome = counted[index]
                st = {**st, "due": int(next_ns) / 1e9, "reported": int(reported), "last": int(last), "run": int(run)}
            kind = st["kind"]
            probe = {"startup": r.spec.startup_probe, "liveness": r.spec.liveness_probe}.get(
                kind, r.spec.readiness_probe
            )
            assert probe is not None  # the spec does not change under a running container
            worker = Worker(w, r, kind, probe, first_in=max(0.0, st["due"] - now))
            res = worker.results
            res.reported, res.last, res.run = _FROM_TRISTATE[st["reported"]], _FROM_TRISTATE[st["last"]], st["run"]
            self.workers.setdefault(r, []).append(worker)
            if outcome == "ok":
                w.loop.at(0, partial(worker._result, True, ""))
            elif outcome.startswith("fail"):
                message = idle_failure(probe.handler, w.state.pod_ip, outcome)
                w.loop.at(0, partial(worker._result, False, message))
