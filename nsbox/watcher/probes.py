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

Every failed check is an `Unhealthy` event. While a worker is scheduled its timers keep the
watcher awake: a pod whose running containers have probes does not hibernate.
"""

from __future__ import annotations

import signal
import time
from functools import partial

from nsbox import kube
from nsbox.kube.probes import KIND_TITLES, ResultRun
from nsbox.watcher import actions, hooks

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from nsbox.model import Probe
    from nsbox.watcher import Watcher
    from nsbox.watcher.containers import Running
    from nsbox.watcher.loop import Timer


class Worker:
    """One probe of one run of a container (a restart gets new workers)."""

    def __init__(self, w: Watcher, r: Running, kind: str, probe: Probe):
        self.w, self.r, self.kind, self.probe = w, r, kind, probe
        self.pid = r.pid
        self.results = ResultRun({"liveness": True, "readiness": False, "startup": None}[kind])
        self.busy = False
        self.stopped = False
        self.timer: Timer | None = w.loop.at(probe.initial_delay, self._tick)

    def stop(self) -> None:
        self.stopped = True
        self.w.loop.cancel(self.timer)
        self.timer = None

    def _tick(self) -> None:
        self.timer = self.w.loop.at(self.probe.period, self._tick)
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
