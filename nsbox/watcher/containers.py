"""The pod's containers as the watcher runs them: start (init containers first, in order),
output into the CRI logs, exit, and the restart policy with back-off."""

from __future__ import annotations

import errno
import os
import time
from functools import partial

from nsbox import cgroups, kube, logs, native
from nsbox.errors import NsboxError, WaitingForConfig
from nsbox.watcher import hooks, messages
from nsbox.watcher.images import WaitingForImage
from nsbox.watcher.podstate import ContainerState

# `nsbox.container` (making things) is imported where it is used: a watcher exec'd back
# from nsbox-idle to end its pod does not need it.
TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from nsbox.model import ContainerSpec
    from nsbox.watcher import Watcher
    from nsbox.watcher.loop import Timer


# The spawn child's steps that come before its seccomp filter is installed (csrc/nsbox.c):
# a later step that fails may have been refused by the filter.
_BEFORE_SECCOMP = frozenset(
    "pipe clone setsid ctty pdeathsig cgroup setns hostname mount mkdir touch symlink pivot_root umount seccomp".split()
)


class Running(ContainerState):
    """The watcher's view of one container: its saved state and what only this process holds."""

    __eq__ = object.__eq__  # a live view, not a value: compared and hashed by identity
    __hash__ = object.__hash__

    def __init__(self, spec: ContainerSpec, is_init: bool):
        super().__init__()
        self.spec = spec
        self.is_init = is_init
        self.streams: dict[int, logs.StreamWriter] = {}  # pipe read end -> its log writer
        self.term_at = 0.0  # when SIGTERM was sent (monotonic), 0 = not yet
        self.restart_timer: Timer | None = None
        self.config_timer: Timer | None = None  # waiting for a ConfigMap, Secret or config volume
        # Probes (probes.py): a readiness probe's reported result, a startup probe's success,
        # and when a probe last turned `ready` over (the Ready condition's lastTransitionTime).
        self.probed_ready = spec.readiness_probe is None
        self.started_ok = spec.startup_probe is None
        self.ready_changed_at = ""

    def to_status(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "init": self.is_init,
            "pid": self.pid,
            "procStart": self.proc_start,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.started() and (not self.is_init or self.spec.is_sidecar) and self.probed_ready,
            "started": self.started(),
            **({"readyChangedAt": self.ready_changed_at} if self.ready_changed_at else {}),
            **({"imageID": self.image_id} if self.image_id else {}),
            **self.started_as,
        }

    def started(self) -> bool:
        """Whether the container counts as started: running, and its startup probe (if any)
        has succeeded. The next init container may start after a sidecar that has
        (docs/lifecycle.md, "Sidecars")."""
        return self.running and self.started_ok


class Containers:
    def __init__(self, w: Watcher):
        self.w = w
        self.by_name: dict[str, Running] = {}
        for c in w.pod.init_containers:
            self.by_name[c.name] = Running(c, True)
        for c in w.pod.containers:
            self.by_name[c.name] = Running(c, False)
        self.base_backoff = float(w.pod.annotations.get("nsbox.io/backoff-base-seconds", kube.BACKOFF_BASE))
        self.max_backoff = float(w.pod.annotations.get("nsbox.io/backoff-max-seconds", kube.BACKOFF_MAX))

    def __iter__(self) -> Iterator[Running]:
        return iter(self.by_name.values())

    @property
    def any_running(self) -> bool:
        return any(r.running for r in self)

    def signal(self, r: Running, sig: int) -> None:
        if r.running:
            native.send_signal(r.pid, sig, r.pidfd if r.pidfd >= 0 else None, r.proc_start)

    # ------------------------------------------------------------ starting

    @property
    def initialized(self) -> bool:
        """The app containers have been started once: the init phase is over for good, and a
        sidecar that restarts later holds nothing back."""
        return any(
            not r.is_init and (r.running or r.restart_count or r.last_state or "terminated" in r.state) for r in self
        )

    @property
    def completing(self) -> bool:
        """Every app container has ended for good (restartPolicy Never or OnFailure), or an init
        container failed for good (Never): the pod is done, and its sidecars are stopped rather
        than restarted (docs/lifecycle.md, "Sidecars")."""
        w = self.w
        if w.pod.restart_policy == "Always":
            return False
        codes = w.state.exit_codes
        if any(codes.get(c.name, 0) != 0 for c in w.pod.init_containers if not c.is_sidecar):
            return True
        names = [c.name for c in w.pod.containers]
        return bool(names) and all(n in codes for n in names)

    def start_next(self) -> list[str]:
        """Start what may start now: the next init container (after a sidecar that has started),
        or every main container."""
        if self.w.termination.deletion is not None or self.w.state.ended or self.completing:
            return []
        errors: list[str] = []
        for r in self:
            if not r.is_init:
                continue
            term = r.state.get("terminated")
            if r.spec.is_sidecar and (r.started() or self.initialized):
                continue
            if term and term.get("exitCode") == 0 and not r.spec.is_sidecar:
                continue
            if not r.running and r.restart_timer is None and not term:
                errors += self.start_all([r])
                if r.spec.is_sidecar and r.started():
                    continue  # started: the next one may start too
            return errors
        waiting = [
            r for r in self if not r.is_init and not r.running and "waiting" in r.state and r.restart_timer is None
        ]
        return errors + self.start_all(waiting)

    def start_all(self, rs: list[Running]) -> list[str]:
        errors = []
        for r in rs:
            error = self.try_start(r)
            if error:
                errors.append(f'container "{r.spec.name}": {error}')
        return errors

    def try_start(self, r: Running) -> str | None:
        """Start `r`; a failure becomes its terminated state (StartError) and is returned.

        The failure is recorded on the next turn of the loop, not here: recording an exit
        starts the next round of containers, and the caller may be in the middle of a round.
        """
        try:
            self.start(r)
            if r.spec.is_sidecar and not self.initialized:
                self.w.loop.at(0, self.start_after_sidecar)
            return None
        except WaitingForImage:
            return None  # its state says why; the pull or its back-off tries again
        except WaitingForConfig as e:
            self.w.config.wait(r, e)
            return None
        except (NsboxError, OSError) as e:
            self.close_log(r)
            self.w.loop.at(0, partial(self._record_start_failure, r, e))
            return str(e)

    def start_after_sidecar(self) -> None:
        """A sidecar has started (or its startup probe succeeded): the init containers after it
        waited for it (failures are in their states)."""
        self.start_next()

    def start(self, r: Running) -> None:
        from nsbox import container

        w, c = self.w, r.spec
        image = w.images.image_for(r)
        config = w.config.container_config(c)
        run = None
        if image is not None:
            from nsbox import imageroot

            start = imageroot.start(w.pod, c, image)
            run = (start, *w.images.store.lowerdirs(image))
        cg_path = w.cg.container_path(w.uid, c.name)
        w.cg.create(cg_path)
        w.cg.set_limits(cg_path, cpu_millis=c.resources.cpu_millis, memory_bytes=c.resources.memory_bytes)
        w.cg.set_devices(cg_path, None if c.security.privileged else cgroups.DEFAULT_DEVICE_RULES)
        r.oom_before = w.cg.oom_killed(cg_path)
        os.makedirs(w.paths.container_dir(c.name), 0o700, exist_ok=True)
        messages.prepare(w.paths.termination_message(c.name), owner=w.state.userns_first)
        attach = w.attach if w.attach is not None and (c.stdin or c.tty) and r.restart_count == 0 else None
        console = os.ttyname(attach[1]) if attach and c.tty and os.isatty(attach[1]) else ""
        if not w.pod.host_users and not w.state.userns_first:
            from nsbox import userns

            w.state.userns_first = userns.first_id(w.root.path, w.uid)  # an adopting watcher: from the pool
        req = container.start_request(
            w.pod,
            c,
            w.paths,
            w.state.etc_files,
            pid_ns_fd=w.state.pid_ns_fd,
            pod_ip=w.state.pod_ip,
            console=console,
            config=config,
            image=run,
            cgroup_ns=w.cg.version == 2,
            userns_owner=0 if w.pod.host_users else w.state.userns_first,
        )
        log_path = w.paths.log_file(w.pod.namespace, w.pod.name, c.name, r.restart_count)
        os.makedirs(os.path.dirname(log_path), 0o700, exist_ok=True)
        r.log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        pipes = []
        cg_fd, procs = w.cg.join_targets(cg_path)
        try:
            req.cgroup_fd, req.cgroup_procs = cg_fd, procs
            if not w.pod.host_users:
                from nsbox import userns

                req.userns_fd = userns.pod_userns_fd()
            if attach is not None:
                # A terminal is its stdin too, with or without -i (as `podman run -t`): only
                # the CLI decides whether the user's typing reaches it.
                req.stdin = attach[0] if c.stdin or c.tty else -1
                if c.tty:
                    req.stdout, req.stderr, req.ctty = attach[1], attach[2], True
            if req.stdout < 0:
                for stream in ("stdout", "stderr"):
                    rd, wr = os.pipe2(os.O_CLOEXEC)
                    pipes.append((rd, wr, stream))
                req.stdout, req.stderr = pipes[0][1], pipes[1][1]
            try:
                pid, pidfd = native.spawn(req)
            except native.SpawnError as e:
                for rd, _, _ in pipes:
                    os.close(rd)
                if req.seccomp and e.step not in _BEFORE_SECCOMP and (e.step != "exec" or e.errno == errno.EPERM):
                    from nsbox import seccomp

                    which = seccomp.choice(w.pod, c)
                    raise NsboxError(
                        f"{e}: the seccomp profile {which} is in force at this step and may forbid it"
                    ) from None
                raise
        finally:
            for _, wr, _ in pipes:
                os.close(wr)
            if cg_fd >= 0:
                os.close(cg_fd)
            if req.userns_fd >= 0:
                os.close(req.userns_fd)
        for rd, _, stream in pipes:
            os.set_blocking(rd, False)
            self.log_stream(r, rd, stream)
        r.pid, r.pidfd, r.child = pid, pidfd, True
        r.proc_start = native.process_start_time(pid) or 0
        r.started_mono = time.monotonic()
        r.term_at = 0.0
        r.state = {"running": {"startedAt": kube.rfc3339()}}
        r.started_as = {}
        if image is not None and run is not None:
            who = run[0].user
            r.image_id = image.image_id
            r.started_as = {
                "image": image.name,
                "user": {"uid": who.uid, "gid": who.gid, "supplementalGroups": list(who.groups)},
                "cwd": run[0].cwd,
                **({"stopSignal": image.config.stop_signal} if image.config.stop_signal else {}),
            }
        if req.seccomp_path:
            r.started_as["seccomp"] = req.seccomp_path  # exec, hooks and probes get the same filter
        self.reap_as_child(r)
        if config is not None:
            for message in config.skipped:
                w.event("Warning", "InvalidEnvironmentVariableNames", message)  # the pod's, as the kubelet's
        w.event("Normal", "Started", f"Started container {c.name}", c.name)
        w.probes.started(r)
        if c.post_start:
            hooks.run(w, r, c.post_start, "PostStart")

    def reap_as_child(self, r: Running) -> None:
        self.w.loop.children[r.pid] = partial(self.exited, r)

    def _record_start_failure(self, r: Running, e: Exception) -> None:
        self.close_log(r)
        r.state = {
            "terminated": {
                "exitCode": 128,
                "reason": "StartError",
                "message": str(e),
                "startedAt": kube.rfc3339(),
                "finishedAt": kube.rfc3339(),
            }
        }
        self.w.event("Warning", "Failed", f"Error: {e}", r.spec.name)
        self.after_exit(r, 128)

    # ------------------------------------------------------------ output

    def log_stream(self, r: Running, fd: int, stream: str) -> None:
        """What `r` writes to the pipe `fd` goes into its log, as `stream`."""
        r.streams[fd] = logs.StreamWriter(r.log_fd, stream)
        self.w.loop.watch(fd, partial(self._on_output, r))

    def _on_output(self, r: Running, fd: int) -> None:
        try:
            self._feed(r, fd, os.read(fd, 65536))
        except BlockingIOError:
            pass

    def _feed(self, r: Running, fd: int, data: bytes) -> None:
        if data:
            r.streams[fd].feed(data)
            return
        r.streams.pop(fd).flush()  # end of stream
        self.w.loop.unwatch(fd)
        os.close(fd)
        if not r.streams and not r.running:
            self.close_log(r)

    def _drain(self, r: Running) -> None:
        """Log what the container wrote before it exited, without waiting for more."""
        for fd in list(r.streams):
            while fd in r.streams:
                try:
                    self._feed(r, fd, os.read(fd, 65536))
                except BlockingIOError:
                    break

    def close_log(self, r: Running) -> None:
        for fd, sw in list(r.streams.items()):
            sw.flush()
            self.w.loop.unwatch(fd)
            os.close(fd)
        r.streams.clear()
        if r.log_fd >= 0:
            os.close(r.log_fd)
            r.log_fd = -1

    # ------------------------------------------------------------ exits and restarts

    def exited(self, r: Running, status: int) -> None:
        w = self.w
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            code, extra = kube.exit_code_for_signal(sig), {"signal": sig}
        else:
            code, extra = os.waitstatus_to_exitcode(status), {}
        cg_path = w.cg.container_path(w.uid, r.spec.name)
        if os.WIFSIGNALED(status) and w.cg.oom_killed(cg_path) > r.oom_before:
            reason = kube.terminated_reason(code, oom_killed=True)
        else:
            reason = kube.terminated_reason(code)
        started = r.state.get("running", {}).get("startedAt", "")
        r.state = {
            "terminated": {
                "exitCode": code,
                "reason": reason,
                "startedAt": started,
                "finishedAt": kube.rfc3339(),
                **extra,
            }
        }
        self.process_gone(r)
        message = messages.collect(
            w.paths.termination_message(r.spec.name),
            r.spec.termination_message_policy,
            code,
            w.paths.log_file(w.pod.namespace, w.pod.name, r.spec.name, r.restart_count),
        )
        if message:
            r.state["terminated"]["message"] = message
        self.after_exit(r, code)

    def process_gone(self, r: Running) -> None:
        w = self.w
        if r.pidfd >= 0:
            if not r.child:
                w.loop.unwatch(r.pidfd)
            os.close(r.pidfd)
        r.pid, r.pidfd = 0, -1
        w.probes.stopped(r)
        cg_path = w.cg.container_path(w.uid, r.spec.name)
        # With its own PID namespace the kernel killed the rest with PID 1; with a shared
        # one (or an adopted process) leftovers may remain: nothing outlives its container.
        if w.cg.populated(cg_path):
            w.cg.kill(cg_path)
        self._drain(r)
        if not r.streams:
            self.close_log(r)
        w.dirty = True

    def after_exit(self, r: Running, code: int) -> None:
        w = self.w
        if w.termination.deletion is not None:
            w.termination.check_terminated()
            return
        ran = time.monotonic() - r.started_mono if r.started_mono else 0
        if ran >= kube.BACKOFF_RESET_AFTER:
            r.backoff_index = 0
        restart: Callable[[str, int], bool]
        if r.spec.is_sidecar:
            restart = self._sidecar_restarts
        else:
            restart = kube.should_restart_init if r.is_init else kube.should_restart
        if code >= 0 and not w.state.ended and restart(w.pod.restart_policy, code):
            delay = kube.restart_backoff(r.backoff_index, self.base_backoff, self.max_backoff)
            r.backoff_index += 1
            r.last_state = r.state
            if delay > 0:
                r.state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {delay:g}s restarting failed container={r.spec.name}",
                    }
                }
                w.event("Warning", "BackOff", f"Back-off {delay:g}s restarting failed container", r.spec.name)
            else:
                r.state = {"waiting": {"reason": "ContainerCreating"}}
            self.restart_in(r, delay)
        else:
            if not r.spec.is_sidecar:
                self._ended_for_good(r, code)
            self.start_next()
            if self.completing:
                w.termination.stop_sidecars()
            w.termination.next_turns()
        w.termination.maybe_auto_remove()

    def _sidecar_restarts(self, policy: str, code: int) -> bool:
        """A sidecar is restarted whenever it exits, whatever the pod's restartPolicy, until the
        pod completes (KEP-753)."""
        return not self.completing and not self.w.termination.stopping_sidecars

    def _ended_for_good(self, r: Running, code: int) -> None:
        """Tell `run --attach` that its container has ended for good (after the teardown with --rm)."""
        w = self.w
        w.state.exit_codes[r.spec.name] = code
        if w.pod.auto_remove:
            return
        if all(n in w.state.exit_codes for n in (c.name for c in w.pod.containers)):
            w.report_ready({"exitCodes": w.state.exit_codes}, final=True)
        w.server.container_exited(r.spec.name, code)

    def restart_in(self, r: Running, delay: float) -> None:
        """Restart `r` in `delay` seconds; hibernation hands the timer over to nsbox-idle."""
        r.restart_timer = self.w.loop.at(delay, partial(self._restart, r), keeps_awake=False)

    def _restart(self, r: Running) -> None:
        r.restart_timer = None
        if self.w.termination.deletion is not None or self.w.state.ended:
            return
        r.restart_count += 1
        self.w.dirty = True
        self.try_start(r)
