"""How a pod ends (README "How pods end"): deletion with preStop, SIGTERM, the grace period
and SIGKILL; failure for good (activeDeadlineSeconds, eviction); the teardown that leaves
nothing behind; and the end of a pod whose state was wiped."""

from __future__ import annotations

import errno
import os
import signal
import time
from functools import partial

from nsbox import kube, native
from nsbox.errors import NsboxError
from nsbox.state import remove_tree
from nsbox.watcher import holder, hooks

TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any

    from nsbox.state import Root
    from nsbox.watcher import Watcher
    from nsbox.watcher.containers import Running
    from nsbox.watcher.loop import Timer

STATE_CHECK_PERIOD = 2.0  # how often the watcher checks that its pod's state still exists
VOLUME_CHECK_PERIOD = 2.0  # disk-backed emptyDir sizeLimit: an overrun is noticed within a few seconds


class Termination:
    def __init__(self, w: Watcher):
        self.w = w
        self.deletion: dict[str, Any] | None = None  # deletion.json once the pod is being deleted
        self.terminating = False
        self.kill_deadline = 0.0  # monotonic: the end of the grace period
        self.deadline_timer: Timer | None = None  # activeDeadlineSeconds
        self.stopping: set[Running] = set()  # containers whose stop sequence has begun
        self.awaiting_turn: list[Running] = []  # sidecars whose stop signal waits (Termination 12)
        self.stopping_sidecars = False  # the app containers are done: the sidecars are being stopped

    # ------------------------------------------------------------ deletion

    def ends_without_python(self) -> bool:
        """May nsbox-idle carry out a `delete` of this hibernated pod itself (docs/design.md §3)?
        Only when its termination is nothing but signals and a wait: no preStop hook to run
        (a hook is a process Python starts and watches), no sidecar to stop in its turn
        (Termination 12), every running container our own child (an adopted one is signalled
        through a pidfd and its exit is not ours to see), and no stop sequence under way."""
        if self.deletion is not None or self.stopping or self.awaiting_turn:
            return False
        running = [r for r in self.w.containers if r.running]
        return all(r.child and r.pid > 0 and not r.spec.pre_stop and not r.spec.is_sidecar for r in running)

    def stop_plan(self) -> list[tuple[int, int]]:
        """(PID, signal) of each running container's main process: what nsbox-idle sends on delete."""
        return [
            (r.pid, stop_signal(r.spec.stop_signal or r.started_as.get("stopSignal", "")))
            for r in self.w.containers
            if r.running
        ]

    def begin(self, grace: int, force: bool) -> None:
        """preStop, SIGTERM when it ends (or at G), SIGKILL at max(G, SIGTERM + 2 s)."""
        w = self.w
        t0 = time.monotonic()
        if self.terminating:
            # A second delete may only shorten the grace period (as the API server allows).
            if t0 + grace < self.kill_deadline:
                self.kill_deadline = t0 + grace
                for r in w.containers:
                    if r.running:
                        w.loop.at(grace, partial(self._term_or_kill, r))
            return
        self.terminating = True
        self.deletion = self.deletion or {}
        self.deletion.update({"gracePeriodSeconds": grace, "force": force})
        w.event("Normal", "Killing", f"Stopping pod (grace period {grace}s)")
        self.kill_deadline = t0 + grace
        self._stop_containers(grace, force)
        self.check_terminated()

    def _stop_containers(self, grace: int, force: bool, only: list[Running] | None = None) -> None:
        """Cancel restarts; preStop then the stop signal for each running container (of `only`
        when given), sidecars in their turn (SIGKILL follows in _term)."""
        w = self.w
        for r in list(w.containers) if only is None else only:
            w.loop.cancel(r.restart_timer)
            w.loop.cancel(r.config_timer)
            r.restart_timer = r.config_timer = None
            if not r.running or r in self.stopping:
                continue
            self.stopping.add(r)
            w.event("Normal", "Killing", f"Stopping container {r.spec.name}", r.spec.name)
            if r.spec.pre_stop and not force and grace > 0 and r.child:
                hook_timer = w.loop.at(grace, partial(self._term, r))
                hooks.run(w, r, r.spec.pre_stop, "PreStop", on_done=partial(self._pre_stop_done, r, hook_timer))
            elif force or grace <= 0:
                self._term(r)
            else:
                self._in_turn(r)

    def _pre_stop_done(self, r: Running, timer: Timer, ok: bool) -> None:
        timer.cancel()
        self._in_turn(r)

    def _in_turn(self, r: Running) -> None:
        """The stop signal now, or, for a sidecar, once what it serves has ended — every app
        container and every sidecar started after it — or at the end of the grace period,
        whichever comes first (docs/lifecycle.md, Termination 12; the kubelet's termination
        ordering)."""
        if not self._waits(r):
            self._term(r)
            return
        if r not in self.awaiting_turn:
            self.awaiting_turn.append(r)
            self.w.loop.at(self.kill_deadline - time.monotonic(), partial(self._term, r))

    def _waits(self, r: Running) -> bool:
        if not r.spec.is_sidecar:
            return False
        later = False
        for other in self.w.containers:
            if other is r:
                later = True
            elif other.running and (not other.is_init or (later and other.spec.is_sidecar)):
                return True
        return False

    def next_turns(self) -> None:
        """A container has ended: the sidecars that waited for it may be stopped now."""
        for r in list(self.awaiting_turn):
            if not self._waits(r):
                self.awaiting_turn.remove(r)
                self._term(r)

    def stop_sidecars(self) -> None:
        """Every app container has ended for good: stop the sidecars, as a deletion would, with
        the pod's grace period (docs/lifecycle.md, "Sidecars"); the pod then stays."""
        if self.stopping_sidecars:
            self.next_turns()
            return
        w = self.w
        sidecars = [r for r in w.containers if r.spec.is_sidecar]
        if not sidecars or self.deletion is not None or w.state.ended:
            return
        self.stopping_sidecars = True
        grace = w.pod.termination_grace_period
        self.kill_deadline = time.monotonic() + grace
        self._stop_containers(grace, force=False, only=sidecars)

    def _term_or_kill(self, r: Running) -> None:
        self._term(r)
        self._kill_if_due(r)

    def _term(self, r: Running) -> None:
        if not r.running or r.term_at:
            return
        r.term_at = time.monotonic()
        self.w.containers.signal(r, stop_signal(r.spec.stop_signal or r.started_as.get("stopSignal", "")))
        kill_at = kube.sigkill_at(self.kill_deadline, r.term_at)
        self.w.loop.at(kill_at - time.monotonic(), partial(self._kill, r))

    def _kill_if_due(self, r: Running) -> None:
        """After a shorter second delete: SIGKILL now if the new deadline has passed, else at it
        (the timer of the first delete would come too late)."""
        if not r.term_at:
            return
        delay = kube.sigkill_at(self.kill_deadline, r.term_at) - time.monotonic()
        if delay <= 0:
            self._kill(r)
        else:
            self.w.loop.at(delay, partial(self._kill, r))

    def _kill(self, r: Running) -> None:
        w = self.w
        cg_path = w.cg.container_path(w.uid, r.spec.name)
        if r.running or w.cg.populated(cg_path):
            w.event("Normal", "Killing", f"Grace period over: SIGKILL to container {r.spec.name}", r.spec.name)
            w.cg.kill(cg_path)
            w.containers.signal(r, signal.SIGKILL)

    def check_terminated(self) -> None:
        """Tear the pod down as soon as every container has ended (not at the end of G)."""
        if self.deletion is None or self.w.done:
            return
        self.next_turns()
        if self.w.containers.any_running:
            return
        self.teardown()

    def maybe_auto_remove(self) -> None:
        """`run --rm`: the pod is deleted once it has succeeded or failed."""
        w = self.w
        if not w.pod.auto_remove or self.deletion is not None:
            return
        w.update_phase()
        if w.state.phase in ("Succeeded", "Failed"):
            self.deletion = {"gracePeriodSeconds": 0, "force": False, "auto": True}
            self.check_terminated()

    # ------------------------------------------------------------ failure for good

    def fail_pod(self, reason: str, message: str) -> None:
        """The pod has failed for good (DeadlineExceeded, Evicted), as the kubelet decides it:
        phase Failed with a reason, containers stopped with the pod's grace period, nothing
        restarted; the pod itself stays until it is deleted."""
        w = self.w
        if self.deletion is not None or w.state.phase in ("Succeeded", "Failed"):
            return
        w.state.phase, w.state.reason, w.state.message = "Failed", reason, message
        w.event("Warning", reason, message)
        grace = w.pod.termination_grace_period
        self.kill_deadline = time.monotonic() + grace
        self._stop_containers(grace, force=False)
        self.maybe_auto_remove()

    def arm_active_deadline(self) -> None:
        """activeDeadlineSeconds counts from the pod's start (status.startTime), across watchers."""
        w = self.w
        limit = w.pod.active_deadline_seconds
        if limit is None or self.deletion is not None or w.state.ended:
            return
        elapsed = 0.0
        if w.adopt:
            elapsed = time.time() - kube.epoch(w.state.start_time)
        self.deadline_in(max(0.0, limit - elapsed))

    def deadline_in(self, delay: float) -> None:
        """activeDeadlineSeconds runs out in `delay` seconds; hibernation hands the timer over to nsbox-idle."""
        self.deadline_timer = self.w.loop.at(delay, self._deadline_exceeded, keeps_awake=False)

    def _deadline_exceeded(self) -> None:
        self.deadline_timer = None
        self.fail_pod("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")

    @property
    def checks_volumes(self) -> bool:
        """A disk-backed emptyDir with a sizeLimit: its usage is checked every VOLUME_CHECK_PERIOD."""
        return any(v.kind == "emptyDir" and v.medium != "Memory" and v.size_limit for v in self.w.pod.volumes)

    def check_volume_usage(self) -> None:
        """Evict the pod when a disk-backed emptyDir outgrows its sizeLimit (the kubelet's eviction)."""
        w = self.w
        if self.deletion is not None or w.state.ended:
            return
        for v in w.pod.volumes:
            if v.kind == "emptyDir" and v.medium != "Memory" and v.size_limit:
                used = disk_usage(w.paths.volume(v.name))
                if used > v.size_limit:
                    self.fail_pod(
                        "Evicted",
                        f'Usage of EmptyDir volume "{v.name}" exceeds the limit '
                        f'"{v.size_limit}" bytes (uses {used} bytes).',
                    )
                    return

    # ------------------------------------------------------------ the end

    def kill_all(self) -> None:
        """SIGKILL to every process of the pod (its whole cgroup), then reap our children."""
        w = self.w
        w.images.cancel()  # a pull is no process of the pod's cgroup, and ends with it
        pod_cg = w.cg.pod_path(w.uid)
        if w.cg.populated(pod_cg):
            w.cg.kill(pod_cg)
        deadline = time.monotonic() + 5
        while w.loop.children and time.monotonic() < deadline:
            w.loop.reap()
            if w.loop.children:
                time.sleep(0.01)

    def teardown(self) -> None:
        """No process, mount, cgroup or state of the pod remains (README "How pods end")."""
        w = self.w
        pod_cg = w.cg.pod_path(w.uid)
        self.kill_all()
        for r in w.containers:
            w.containers.close_log(r)
        config_volumes = w.config.volumes
        for v in w.pod.volumes:
            if (v.kind, v.medium) == ("emptyDir", "Memory") or v in config_volumes:  # tmpfs each
                _umount(w.paths.volume(v.name))
        _umount(w.paths.shm)
        _umount(w.paths.scratch)  # the pod's scratch tmpfs (sandbox.enter)
        if w.pod.network == "bridge":
            from nsbox import network

            network.detach(w.root.path, w.uid, w.state.host_netns_fd)  # before the state goes (gc's rule)
        if w.state.pid_ns_fd >= 0:
            os.close(w.state.pid_ns_fd)
            w.state.pid_ns_fd = -1
        pause = [holder.PAUSE_CGROUP] if w.pod.share_process_namespace else []
        w.cg.remove(pod_cg, children=[*(r.spec.name for r in w.containers), *pause])
        if not w.pod.host_users:
            from nsbox import userns

            userns.release(w.root.path, w.uid)  # its last process is gone with the cgroup
        w.images.release()
        remove_tree(w.paths.log_dir(w.pod.namespace, w.pod.name))
        w.root.release(w.pod.namespace, w.pod.name, w.uid)
        remove_tree(w.paths.dir)
        w.done = True

    def check_state(self) -> None:
        """If the pod's state was wiped (a lost /run, a removed root), nothing can manage the pod
        any more: end it rather than leave processes nobody knows about."""
        w = self.w
        if w.done or os.path.exists(w.paths.pod_json):
            return
        self.kill_all()
        if w.pod.network == "bridge":
            from nsbox import network

            network.detach(w.root.path, w.uid, w.state.host_netns_fd)
        try:
            w.cg.remove(w.cg.pod_path(w.uid))
        except NsboxError:
            pass
        else:
            if not w.pod.host_users:
                from nsbox import userns

                userns.release(w.root.path, w.uid)
        w.done = True


def finish_handed_over(root: Root, uid: str, lock_fd: int, listener_fd: int, netns_fd: int) -> None:
    """The teardown of a pod whose nsbox-idle ended its containers and handed the watcher's lock,
    control socket and host netns to the deleting CLI (csrc/idle.c --end; docs/design.md §3): the
    same teardown a watcher runs, in this process, holding the watcher's lock as the watcher did.
    If this process dies on the way, the lock is free and the pod (its deletion.json) is still
    there: the next `delete` or `gc` starts a watcher that finishes it (Termination 6)."""
    from nsbox.model import PodSpec
    from nsbox.state import read_json
    from nsbox.watcher import Watcher
    from nsbox.watcher.podstate import PodState

    w = None
    try:
        paths = root.pod(uid)
        spec = read_json(paths.pod_json)
        if spec is None:
            return  # the state was wiped: nothing here to tear down (gc's case)
        status = read_json(paths.status_json) or {}
        w = Watcher(root, uid, pod=PodSpec.from_dict(spec), state=PodState.from_status(status))
        w.lock.fd, lock_fd = lock_fd, -1
        w.state.host_netns_fd = netns_fd  # network.detach joins it: here, where we are already
        w.termination.deletion = read_json(paths.deletion_json) or {}
        w.termination.teardown()
    finally:
        for fd in (lock_fd, listener_fd, netns_fd):
            if fd >= 0:
                os.close(fd)
        if w is not None:
            w.loop.sel.close()  # its epoll descriptor: one CLI may end a thousand pods
            w.lock.release()  # the watcher's flock, last: the pod is gone (or left for the next delete)


def stop_signal(name: str) -> int:
    """The signal that asks a container to stop: its lifecycle.stopSignal, else its image's
    StopSignal ("SIGQUIT", "QUIT", "SIGRTMIN+3" or a number, as containerd reads it), else
    SIGTERM (docs/lifecycle.md, "Stop signal"; docs/images.md, "Image pods")."""
    if name.isdigit():
        return int(name)
    base, sign, offset = name.upper().removeprefix("SIG").partition("+" if "+" in name else "-")
    if base in ("RTMIN", "RTMAX") and (not sign or offset.isdigit()):
        value = signal.SIGRTMIN if base == "RTMIN" else signal.SIGRTMAX
        return int(value) + (int(offset) if sign == "+" else -int(offset or 0))
    try:
        return int(signal.Signals["SIG" + name.upper().removeprefix("SIG")])
    except KeyError:
        return signal.SIGTERM


def disk_usage(path: str) -> int:
    """Bytes allocated below `path`, as `du -s` counts them: each inode once, not crossing mounts."""
    try:
        top = os.lstat(path)
    except OSError:
        return 0
    seen: set[int] = set()
    total = 0
    stack = [path]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue  # vanished or unreadable: count what can be counted
        with entries:
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_dev != top.st_dev or st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
                total += st.st_blocks * 512
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    return total


def _umount(path: str) -> None:
    try:
        native.umount(path, native.MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
