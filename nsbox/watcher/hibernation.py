"""While nothing happens, the watcher becomes nsbox-idle, and nsbox-idle execs it back.

The watcher execs nsbox-idle (csrc/idle.c) in its own process: the PID, the children, the
namespaces, the flock, the control socket and the log pipes all survive execve, and
≈ 12 MB RSS of Python become ≈ 1.2 MB of C (0.1–0.3 MB PSS). nsbox-idle copies container
output into the logs and execs Python back (nsbox.watcher.resume) when a child exits, a
request arrives, a timer is due or the pod's state is gone. All the policy stays in Python;
the price is a Python start-up (≈ 45 ms) in front of the first event. What only the Python
process knew goes along in a memfd: the pod's record (podstate.py), each container's, the
descriptors, the probes' workers, and when the timers that nsbox-idle keeps are due.
nsbox-idle checks tcpSocket and HTTP probes itself and gives back what it counted as
arguments of the exec'd watcher (probes.py). For a pod whose end needs no Python
(Termination.ends_without_python), nsbox-idle also carries out a `delete` itself and hands
the teardown to the deleting CLI (docs/design.md §3).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from nsbox import native
from nsbox.watcher import holder
from nsbox.watcher.termination import STATE_CHECK_PERIOD

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.watcher import Watcher
    from nsbox.watcher.loop import Timer

HIBERNATE_AFTER = 0.5  # seconds without events before the watcher becomes nsbox-idle


class Hibernation:
    def __init__(self, w: Watcher):
        self.w = w
        self.idle_program_ok = os.access(native.IDLE_PROGRAM, os.X_OK)
        self.quiet_timer: Timer | None = None

    def can_hibernate(self) -> bool:
        """Nothing is under way that only this Python process can carry on."""
        w = self.w
        if not self.idle_program_ok or w.done or w.termination.deletion is not None:
            return False
        if w.ready_fd >= 0 or w.server.clients or w.attach is not None or w.termination.checks_volumes:
            return False  # `run -a` waits on us; the disk usage check is Python's
        known = {r.pid for r in w.containers if r.running and r.child}
        if w.state.pause_pid:
            known.add(w.state.pause_pid)
        if not set(w.loop.children) <= known:
            return False  # a hook is running
        if w.loop.keeps_awake:
            return False  # e.g. a SIGKILL due at the end of a grace period
        # Adopted processes are watched through their pidfds; without one they are polled.
        return all(r.child or r.pidfd >= 0 for r in w.containers if r.running)

    def after_turn(self) -> None:
        """Hibernate after a quiet spell of HIBERNATE_AFTER seconds."""
        if not self.can_hibernate():
            return
        quiet = time.monotonic() - self.w.loop.active_at
        if quiet >= HIBERNATE_AFTER:
            self.hibernate()
        elif self.quiet_timer is None:
            self.quiet_timer = self.w.loop.at(HIBERNATE_AFTER - quiet, self._quiet_spell_over, keeps_awake=False)

    def _quiet_spell_over(self) -> None:
        self.quiet_timer = None  # the loop decides: hibernate, or wait from the last event

    def hibernate(self) -> None:
        """Exec nsbox-idle with what it needs to copy logs and to exec us back; returns if it cannot."""
        w = self.w
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        # A child that exited before the block is handled here; one that exits after it
        # leaves SIGCHLD pending, and nsbox-idle wakes on it at once.
        if w.loop.reap() or not self.can_hibernate():
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            return
        for r in w.containers:
            for sw in r.streams.values():
                sw.flush()
        if w.dirty:
            w.save()
        state, fds = self.handoff()
        probes, probe_args, probes_due = w.probes.handoff()
        state["probes"] = probes
        state_fd = os.memfd_create("nsbox-watcher-state", 0)
        os.write(state_fd, json.dumps(state).encode())
        os.lseek(state_fd, 0, os.SEEK_SET)
        for fd in fds:
            os.set_inheritable(fd, True)
        # -S: no `site` (≈ 5 ms of every wake-up); this package's parent and this process's
        # sys.path (with what .pth files added) instead.
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = [package_parent] + [p for p in sys.path if p]
        resume = f"import sys; sys.path[:] = {path!r}; from nsbox.watcher import resume; resume({state_fd:d})"
        argv = [w.title, "--check", w.paths.pod_json]
        adopted = [r.pidfd for r in w.containers if r.running and not r.child]
        assert w.server.listener is not None  # listening since start()
        for fd in [w.server.listener.fileno(), *adopted]:
            argv += ["--wake-on", str(fd)]
        for r in w.containers:
            for fd, sw in r.streams.items():
                argv += ["--log", f"{fd}:{sw.fd}:{sw.stream.decode()}"]
        argv += probe_args  # nsbox-idle checks these itself (probes.py)
        if w.termination.ends_without_python():
            # nsbox-idle answers a delete itself: stop signals, SIGKILL at the end of the grace
            # period, then the control socket, this lock and the host netns to the deleting CLI.
            end = f"{w.server.listener.fileno()}:{w.lock.fd}"
            if w.state.host_netns_fd >= 0:
                end += f":{w.state.host_netns_fd}"
            argv += ["--end", end]
            for pid, sig in w.termination.stop_plan():
                argv += ["--stop", f"{pid}:{sig}"]
        due = [
            *probes_due,
            *(
                t.when
                for t in (
                    w.termination.deadline_timer,
                    *(r.restart_timer for r in w.containers),
                    *(r.config_timer for r in w.containers),
                )
                if t
            ),
        ]
        if due:
            argv += ["--wake-at", str(int(min(due) * 1e9))]
        argv += ["--", sys.executable, "-I", "-S", "-u", "-c", resume]
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execv(native.IDLE_PROGRAM, argv)
        except OSError as e:
            print(f"cannot hibernate: exec {native.IDLE_PROGRAM}: {e.strerror}", file=sys.stderr)
            self.idle_program_ok = False
            os.close(state_fd)
            for fd in fds:
                os.set_inheritable(fd, False)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def handoff(self) -> tuple[dict[str, Any], list[int]]:
        """What resume() needs that status.json does not hold, and the descriptors that must survive."""
        w = self.w
        assert w.server.listener is not None  # listening since start()
        listener = w.server.listener.fileno()
        fds = [listener, w.lock.fd]
        fds += [fd for fd in (w.state.pid_ns_fd, w.state.host_netns_fd) if fd >= 0]
        containers = {}
        for name, r in w.containers.by_name.items():
            containers[name] = {
                **r.to_status(),
                **r.to_dict(),
                "streams": {str(fd): sw.stream.decode() for fd, sw in r.streams.items()},
                "restartAt": r.restart_timer.when if r.restart_timer else None,
                "configRetryAt": r.config_timer.when if r.config_timer else None,
            }
            fds += [fd for fd in (r.pidfd, r.log_fd, *r.streams) if fd >= 0]
        deadline = w.termination.deadline_timer
        return {
            "root": w.root.path,
            "uid": w.uid,
            "adopt": w.adopt,
            "pod": w.pod.to_dict(),
            **w.state.to_dict(),
            "listener": listener,
            "lock": w.lock.fd,
            "pauseChild": w.state.pause_pid in w.loop.children,
            "deadlineAt": deadline.when if deadline else None,
            "containers": containers,
        }, fds

    def resume(self, state: dict[str, Any]) -> None:
        """Carry on where hibernate() left off, in the same process, exec'd back by nsbox-idle;
        the pod's record is already `w.state` (Watcher.from_handoff)."""
        w = self.w
        holder.set_process_name(w.title)
        w.lock.fd = state["lock"]
        w.server.take_over(state["listener"])
        if state["pauseChild"]:
            holder.reap_pause(w, w.state.pause_pid)
        now = time.monotonic()
        if state["deadlineAt"] is not None:
            w.termination.deadline_in(max(0.0, state["deadlineAt"] - now))
        fds = [w.lock.fd, state["listener"]]
        fds += [fd for fd in (w.state.pid_ns_fd, w.state.host_netns_fd) if fd >= 0]
        for name, st in state["containers"].items():
            r = w.containers.by_name.get(name)
            if r is None:
                continue
            r.load(st)
            for fd, stream in st["streams"].items():
                w.containers.log_stream(r, int(fd), stream)
            if r.running and r.child:
                w.containers.reap_as_child(r)
            elif r.running:
                from nsbox.watcher import adoption

                adoption.watch(w.containers, r)
            if st["restartAt"] is not None:
                w.containers.restart_in(r, max(0.0, st["restartAt"] - now))
            if st.get("configRetryAt") is not None:
                w.config.retry_in(r, max(0.0, st["configRetryAt"] - now))
            fds += [fd for fd in (r.pidfd, r.log_fd, *r.streams) if fd >= 0]
        for fd in fds:
            os.set_inheritable(fd, False)
        # What nsbox-idle counted of the probes comes as our arguments (csrc/idle.c).
        w.probes.resume(state["probes"], sys.argv[1:])
        w.loop.every(STATE_CHECK_PERIOD, w.termination.check_state)
        w.config.resync_periodically()
        w.dirty = False
        w.loop.active_at = now
        # Connections nsbox-idle accepted and left to us, and a deletion it began but could not
        # hand over (the deleting CLIs went away): it is carried on here, from deletion.json.
        for arg in sys.argv[1:]:
            fd = arg.removeprefix("accepted:")
            if fd != arg and fd.isdigit():
                w.server.take_client(int(fd))
        if "nsbox-idle:deleting" in sys.argv[1:]:
            from nsbox.state import read_json

            deletion = read_json(w.paths.deletion_json)
            if deletion is not None:
                w.termination.deletion = deletion
                w.termination.begin(int(deletion.get("gracePeriodSeconds", 30)), bool(deletion.get("force")))
        w.loop.catch_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})  # nsbox-idle left it blocked
        w.loop.reap()
        w.termination.check_state()
