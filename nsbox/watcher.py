"""The per-pod watcher: the one process that lives as long as the pod.

It is forked from the CLI that creates the pod and outlives it (like
conmon/containerd-shim, but one per pod). It

- holds the pod's namespaces (it made them: see sandbox.py) and starts every
  container as its own child, so it can reap them and read their exit status;
- captures their stdout/stderr into CRI log files;
- applies the restart policy with back-off, runs init containers in order;
- records container states and events in status.json (it is its only writer);
- carries out termination (SPEC §5) and tears the pod down (SPEC §6);
- answers the CLI on a unix socket (`start`, `delete`, `wait-exit`);
- while nothing happens, becomes the small C program nsbox-idle in its own
  process, which execs the watcher back on the next event (hibernation below).

It imports nothing heavy (no yaml, no pyroute2): its memory is paid per pod.

A watcher started with `adopt=True` takes over a pod whose watcher died: it
cannot reap or log the surviving processes (they are not its children), but
it can signal them through pidfds and carry out a termination (SPEC §5.6).
"""

from __future__ import annotations

import errno
import heapq
import itertools
import json
import os
import selectors
import signal
import socket
import sys
import time

from nsbox import cgroups, control, kube, logs, native
from nsbox.errors import NsboxError, WaitingForConfig
from nsbox.model import ContainerSpec, PodSpec, Volume
from nsbox.state import FileLock, PodPaths, Root, read_json, remove_tree, write_json

# `container` and `sandbox` (making things) are imported where they are used: a watcher
# exec'd back from nsbox-idle to end its pod needs neither.
TYPE_CHECKING = False          # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any, Callable


DEFAULT_POD_PIDS_LIMIT = 4096     # per pod: a fork bomb stays inside its pod
MAX_EVENTS = 100
STATE_CHECK_PERIOD = 2.0          # how often the watcher checks that its pod's state still exists
CGROUP_ROOT_XATTR = "trusted.nsbox.root"   # which root a pod cgroup belongs to (for gc)
PAUSE_CGROUP = ".pause"           # below the pod cgroup: PID 1 of a shared PID namespace (no container name starts with ".")
VOLUME_CHECK_PERIOD = 2.0         # disk-backed emptyDir sizeLimit: an overrun is noticed within a few seconds
SHED_DELAY = 0.5                  # after the ready report: the CLI does not wait for it, a quick `run --rm` never pays it
HIBERNATE_AFTER = 0.5             # seconds without events before the watcher becomes nsbox-idle
CONFIG_RETRY = 10.0               # a container waiting for a ConfigMap or Secret tries again (also hibernated)
CONFIG_RESYNC_PERIOD = 60.0       # config volumes are refreshed while awake even if no change was announced


# ---------------------------------------------------------------- launching

def launch(root: Root, uid: str, *, adopt: bool = False, stdio: tuple[int, int, int] | None = None,
           follow: bool = False, timeout: float = 30.0) -> dict[str, Any]:
    """Fork the watcher of pod `uid` and wait until it reports that the pod is set up.

    Returns the watcher's report ({"ok": True, "errors": [...]}). The watcher
    is double-forked into a session of its own, so it survives the CLI.
    `stdio` hands the CLI's terminal or pipes to the pod's containers (-i/-t).
    With `follow`, the report pipe stays open and report["pipe"] is its read
    end: the watcher writes one more JSON line there when the pod's containers
    have ended for good (after the teardown of a `--rm` pod), so `run -a`
    learns the exit code even when nothing of the pod is left to ask.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork():
                os._exit(0)
            _watcher_main(root, uid, w, adopt, stdio, follow)
        except BaseException:
            pass
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    try:
        line = read_line(r, timeout)
    except TimeoutError:
        os.close(r)
        raise NsboxError("the pod's watcher did not report within "
                         f"{timeout:.0f} s (see {root.pod(uid).watcher_log})") from None
    if line is None:
        os.close(r)
        raise NsboxError(f"the pod's watcher died while setting up (see {root.pod(uid).watcher_log})")
    report = json.loads(line)
    if follow and "error" not in report:
        report["pipe"] = r
    else:
        os.close(r)
    if "error" in report:
        raise NsboxError(report["error"])
    return report


def read_line(fd: int, timeout: float | None = None) -> bytes | None:
    """One newline-terminated line from a pipe, read byte-wise so nothing after it is consumed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    buf = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and (left <= 0 or not sel.select(left)):
                raise TimeoutError
            b = os.read(fd, 1)
            if not b:
                return bytes(buf) if buf else None
            if b == b"\n":
                return bytes(buf)
            buf += b


def _watcher_main(root: Root, uid: str, ready_fd: int, adopt: bool,
                  stdio: tuple[int, int, int] | None, follow: bool) -> None:
    paths = root.pod(uid)
    keep = {ready_fd}
    attach = None
    if stdio is not None:
        attach = tuple(os.dup(fd) for fd in stdio)
        keep.update(attach)
    log_fd = os.open(paths.watcher_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    # Drop everything the CLI had open (its locks above all) except what we keep.
    for fd in _open_fds():
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    watcher = Watcher(root, uid, adopt=adopt, attach=attach, follow=follow)
    try:
        watcher.start(ready_fd)
        # Forked from the CLI: give back what only the CLI needed, unless nsbox-idle replaces it all.
        watcher.at(SHED_DELAY, lambda: watcher.can_hibernate() or _shed_cli_memory(), keeps_awake=False)
        watcher.loop()
    except BaseException as e:
        import traceback               # here: the CLIs that import this module only to talk to a watcher skip it
        traceback.print_exc()
        msg = str(e) if isinstance(e, (NsboxError, OSError)) else f"internal error: {e!r}"
        watcher.report_ready({"error": msg})
        raise


def _shed_cli_memory() -> None:
    """The watcher is forked from the CLI and lives as long as the pod: give back what only the
    CLI needed (argument parsing, YAML, rendering) so that each pod costs less."""
    import gc
    for name in list(sys.modules):
        if name in _CLI_ONLY_MODULES or name.split(".")[0] in _CLI_ONLY_MODULES:
            del sys.modules[name]
    gc.collect()
    native.malloc_trim()            # hand the freed heap back: the watcher lives as long as the pod


_CLI_ONLY_MODULES = {"argparse", "yaml", "_yaml", "nsbox.cli", "nsbox.manifest", "nsbox.status",
                     "nsbox.pods", "nsbox.doctor", "gettext", "uuid", "threading", "concurrent"}


def _open_fds() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 1024))


def resume(state_fd: int) -> None:
    """The entry point nsbox-idle execs: the hibernated watcher of a pod wakes up."""
    with open(state_fd, "rb") as f:
        state = json.load(f)
    code = 0
    try:
        # The spec comes with the state: pod.json may be what vanished (_check_state).
        watcher = Watcher(Root(state["root"]), state["uid"], adopt=state["adopt"],
                          pod=PodSpec.from_dict(state["pod"]))
        watcher.resume(state)
        watcher.loop()
    except BaseException:
        import traceback
        traceback.print_exc()      # to the watcher's log; the next CLI adopts the pod (SPEC §5.6)
        code = 1
    os._exit(code)


# ---------------------------------------------------------------- the watcher

class Running:
    """The watcher's view of one container."""

    def __init__(self, spec: ContainerSpec, is_init: bool):
        self.spec = spec
        self.is_init = is_init
        self.pid = 0
        self.pidfd = -1
        self.proc_start = 0                 # /proc/PID/stat start time, to re-adopt safely
        self.child = False                  # our child (we reap it) or adopted (we only watch it)
        self.restart_count = 0
        self.backoff_index = 0
        self.started_mono = 0.0
        self.state: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict[str, Any] = {}
        self.log_fd = -1
        self.streams: dict[int, logs.StreamWriter] = {}
        self.oom_before = 0
        self.term_at = 0.0                  # when SIGTERM was sent (monotonic), 0 = not yet
        self.restart_timer: list[Any] | None = None
        self.config_timer: list[Any] | None = None   # waiting for a ConfigMap, Secret or config volume

    @property
    def running(self) -> bool:
        return self.pid > 0

    def to_status(self) -> dict[str, Any]:
        return {"name": self.spec.name, "init": self.is_init, "pid": self.pid,
                "procStart": self.proc_start, "restartCount": self.restart_count,
                "state": self.state, "lastState": self.last_state,
                "ready": self.running and not self.is_init}


class Watcher:
    def __init__(self, root: Root, uid: str, *, adopt: bool = False,
                 attach: tuple[int, ...] | None = None, follow: bool = False, pod: PodSpec | None = None):
        self.root = root
        self.uid = uid
        self.paths: PodPaths = root.pod(uid)
        self.adopt = adopt
        self.attach = attach
        self.pod: PodSpec = pod or PodSpec.from_dict(read_json(self.paths.pod_json))
        self.cg = cgroups.detect()
        self.sel = selectors.DefaultSelector()
        self.timers: list[list[Any]] = []
        self.seq = itertools.count()
        self.containers: dict[str, Running] = {}
        for c in self.pod.init_containers:
            self.containers[c.name] = Running(c, True)
        for c in self.pod.containers:
            self.containers[c.name] = Running(c, False)
        self.children: dict[int, Callable[[int], None]] = {}   # pid -> on_exit(wait status)
        self.clients: dict[socket.socket, str] = {}             # socket -> what it waits for
        self.events: list[dict[str, Any]] = []
        self.exit_codes: dict[str, int] = {}                   # containers that ended for good
        self.phase = "Pending"
        self.reason = ""
        self.message = ""
        self.start_time = kube.rfc3339()
        self.deletion: dict[str, Any] | None = None
        self.kill_deadline = 0.0
        self.terminating = False
        self.dirty = True
        self.done = False
        self.ready_fd = -1
        self.follow = follow               # keep the report pipe for the final exit codes
        self.etc_files: dict[str, str] = {}
        self.mount_errors: dict[str, str] = {}   # config volume -> why it cannot be set up (FailedMount)
        self.pod_ip = ""                   # --network bridge: this pod's address (network.py)
        self.host_netns_fd = -1            # --network bridge: the host's netns, to plumb and unplug the veth
        self.pause_pid = 0                 # PID 1 of the shared PID namespace (shareProcessNamespace)
        self.pause_start = 0
        self.pid_ns_fd = -1                # containers join this PID namespace
        self.lock = FileLock(self.paths.watcher_lock)
        self.listener: socket.socket | None = None
        self.deadline_timer: list[Any] | None = None    # activeDeadlineSeconds
        self.active_at = 0.0               # the last event (monotonic): the watcher hibernates after a quiet spell
        self.hibernate_timer: list[Any] | None = None
        self.idle_program_ok = os.access(native.IDLE_PROGRAM, os.X_OK)
        self.base_backoff = float(self.pod.annotations.get("nsbox.io/backoff-base-seconds", kube.BACKOFF_BASE))
        self.max_backoff = float(self.pod.annotations.get("nsbox.io/backoff-max-seconds", kube.BACKOFF_MAX))

    # ------------------------------------------------------------ set-up

    def start(self, ready_fd: int) -> None:
        self.ready_fd = ready_fd
        if not self.lock.acquire(blocking=False):
            raise NsboxError(f'pod "{self.pod.name}" already has a watcher')
        _set_process_name(self.title)
        _become_subreaper()
        self._catch_signals()
        self.listener = control.listen(self.paths.ctl)
        self.sel.register(self.listener, selectors.EVENT_READ, self._on_accept)

        old = read_json(self.paths.status_json) or {}
        self.events = old.get("events", [])
        if self.adopt:
            self._adopt(old)
        else:
            self._create_sandbox()
        self.deletion = read_json(self.paths.deletion_json)
        errors: list[str] = []
        if self.deletion is not None:
            # A termination that was under way when the previous watcher died starts over
            # with the full grace period (SPEC §5.6).
            self.begin_termination(int(self.deletion.get("gracePeriodSeconds", 30)),
                                   bool(self.deletion.get("force")))
        elif not self.adopt:
            errors = self._start_next()
        # The CLI's terminal or stdin went to the container; holding it ourselves would keep
        # the terminal open after the container is gone.
        for fd in self.attach or ():
            os.close(fd)
        self.attach = None
        self.every(STATE_CHECK_PERIOD, self._check_state)
        self._every_config_resync()
        self._arm_active_deadline()
        if self.checks_volumes:
            self.every(VOLUME_CHECK_PERIOD, self._check_volume_usage)
        self.save()
        self.report_ready({"ok": True, "errors": errors, "pid": os.getpid()})
        self.active_at = time.monotonic()

    @property
    def title(self) -> str:
        return f"nsbox-watch {self.pod.namespace}/{self.pod.name}"

    @property
    def checks_volumes(self) -> bool:
        return any(v.kind == "emptyDir" and v.medium != "Memory" and v.size_limit for v in self.pod.volumes)

    def _catch_signals(self) -> None:
        """SIGCHLD wakes the loop through a pipe; the terminal's and a closed pipe's signals are ignored."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        self.sel.register(wake_r, selectors.EVENT_READ, self._on_signal)

    def report_ready(self, report: dict[str, Any], final: bool = False) -> None:
        """A JSON line to the CLI that forked us; the pipe stays open for `follow` until `final`."""
        if self.ready_fd < 0:
            return
        try:
            os.write(self.ready_fd, json.dumps(report).encode() + b"\n")
        except OSError:
            final = True                   # the CLI is gone: nobody to tell
        if final or not self.follow or "error" in report:
            os.close(self.ready_fd)
            self.ready_fd = -1

    def _create_sandbox(self) -> None:
        from nsbox import sandbox
        pod = self.pod
        pod_cg = self.cg.pod_path(self.uid)
        self.cg.create(pod_cg)
        for path in self.cg.paths(pod_cg).values():
            try:
                os.setxattr(path, CGROUP_ROOT_XATTR, self.root.path.encode())
            except OSError:
                pass
        pids = int(pod.annotations.get("nsbox.io/pids-limit", DEFAULT_POD_PIDS_LIMIT))
        self.cg.set_limits(pod_cg, pids_max=pids, **_pod_limits(pod))
        if pod.network == "bridge":
            self.host_netns_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        sandbox.enter(pod, self.paths)
        if pod.network == "bridge":
            # Before any container starts: they find eth0 configured (network.py).
            from nsbox import network
            self.pod_ip = network.attach(pod, self.root.path, self.host_netns_fd).ip
        sandbox.set_sysctls(pod)           # after the network: net.ipv4.conf.eth0.* needs eth0
        self.etc_files = sandbox.write_etc_files(pod, self.paths, self.pod_ip)
        self._mount_config_volumes()
        if pod.share_process_namespace:
            self._start_pause()
        self.event("Normal", "SandboxReady", f"namespaces, hostname {pod.effective_hostname!r} and /dev/shm ready")

    def _start_pause(self) -> None:
        """PID 1 of the pod-wide PID namespace, in a cgroup of the pod's (so teardown and gc kill it)."""
        from nsbox import sandbox
        pid = sandbox.start_shared_pid_namespace()
        self.children[pid] = self._pause_exited
        cg_path = self.cg.container_path(self.uid, PAUSE_CGROUP)
        self.cg.create(cg_path)
        self.cg.add_process(cg_path, pid)
        self._hold_pid_namespace(pid, native.process_start_time(pid) or 0)

    def _hold_pid_namespace(self, pid: int, start: int) -> None:
        self.pause_pid, self.pause_start = pid, start
        self.pid_ns_fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)

    def _pause_exited(self, status: int) -> None:
        self.pause_pid = 0
        if self.deletion is None:
            # The kernel has killed every process of the namespace with it.
            self.event("Warning", "PauseExited", "PID 1 of the shared PID namespace exited "
                       f"(status {os.waitstatus_to_exitcode(status)}): the pod's processes were killed")

    def _adopt(self, old: dict[str, Any]) -> None:
        """Take over the processes a dead watcher left running."""
        self.pod_ip = old.get("podIP", "")
        self.start_time = old.get("startTime") or self.start_time
        if old.get("phase") == "Failed" and old.get("reason"):
            self.phase, self.reason, self.message = "Failed", old["reason"], old.get("message", "")
        pause = old.get("pause") or {}
        if pause.get("pid") and native.process_start_time(pause["pid"]) == pause.get("procStart"):
            self._hold_pid_namespace(pause["pid"], pause["procStart"])
        for st in old.get("containers", []):
            r = self.containers.get(st["name"])
            if r is None:
                continue
            r.restart_count = st.get("restartCount", 0)
            r.state, r.last_state = st.get("state", r.state), st.get("lastState", {})
            pid, start = st.get("pid", 0), st.get("procStart", 0)
            if pid and start and native.process_start_time(pid) == start:
                pidfd = native.pidfd_open(pid)
                r.pid, r.proc_start, r.child = pid, start, False
                if pidfd is not None:
                    r.pidfd = pidfd
                    self.sel.register(pidfd, selectors.EVENT_READ, lambda _fd, r=r: self._adopted_exit(r))
                else:
                    self.every(0.1, lambda r=r: self._poll_adopted(r))
            elif "running" in r.state:
                r.state = {"terminated": {"exitCode": 137, "reason": "Unknown",
                                          "message": "exited while the pod had no watcher",
                                          "finishedAt": kube.rfc3339()}}
        self.event("Warning", "WatcherRestarted", "a new watcher adopted the pod's processes")

    # ------------------------------------------------------------ the loop

    def loop(self) -> None:
        while not self.done:
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.monotonic())
            events = self.sel.select(timeout)
            if events:
                self.active_at = time.monotonic()
            for key, _ in events:
                # An earlier callback of this batch may have closed (and reused) this fd.
                if self.sel.get_map().get(key.fd) is key:
                    key.data(key.fileobj)
            self._run_timers()
            if self.dirty and not self.done:
                self.save()
            if self.can_hibernate():
                quiet = time.monotonic() - self.active_at
                if quiet >= HIBERNATE_AFTER:
                    self.hibernate()
                elif self.hibernate_timer is None:
                    self.hibernate_timer = self.at(HIBERNATE_AFTER - quiet, self._quiet_spell_over, keeps_awake=False)
        self._finish()

    def _quiet_spell_over(self) -> None:
        self.hibernate_timer = None        # the loop decides: hibernate, or wait from the last event

    def at(self, delay: float, fn: Callable[[], None], keeps_awake: bool = True) -> list[Any]:
        """Call `fn` in `delay` seconds. A timer keeps the watcher from hibernating unless
        hibernate() hands it over (restarts, the active deadline) or it may be dropped."""
        entry = [time.monotonic() + delay, next(self.seq), fn, keeps_awake]
        heapq.heappush(self.timers, entry)
        return entry

    def every(self, period: float, fn: Callable[[], None]) -> None:
        """Periodic checks: resume() sets them up again, so they never keep the watcher awake."""
        def tick() -> None:
            fn()
            self.at(period, tick, keeps_awake=False)
        self.at(period, tick, keeps_awake=False)

    @staticmethod
    def cancel(entry: list[Any] | None) -> None:
        if entry is not None:
            entry[2], entry[3] = (lambda: None), False

    def _run_timers(self) -> None:
        t = time.monotonic()
        while self.timers and self.timers[0][0] <= t:
            fn = heapq.heappop(self.timers)[2]
            fn()

    def _on_signal(self, fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass
        self._reap()

    def _reap(self) -> int:
        """Reap every child that has exited; returns how many."""
        reaped = 0
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return reaped
            if pid == 0:
                return reaped
            reaped += 1
            on_exit = self.children.pop(pid, None)
            if on_exit is not None:
                on_exit(status)

    # ------------------------------------------------------------ hibernation

    # While nothing happens, the watcher execs nsbox-idle (csrc/idle.c) in its own process:
    # the PID, the children, the namespaces, the flock, the control socket and the log
    # pipes all survive execve, and ≈ 12 MB RSS of Python become ≈ 1.2 MB of C (0.1–0.3 MB
    # PSS). nsbox-idle copies container output into the logs and execs Python back
    # (resume() below) when a child exits, a request arrives, a timer is due or the pod's
    # state is gone. All the policy stays here; the price is a Python start-up (≈ 45 ms)
    # in front of the first event.

    def can_hibernate(self) -> bool:
        """Nothing is under way that only this Python process can carry on."""
        if not self.idle_program_ok or self.done or self.deletion is not None:
            return False
        if self.ready_fd >= 0 or self.clients or self.attach is not None or self.checks_volumes:
            return False               # `run -a` waits on us; the disk usage check is Python's
        known = {r.pid for r in self.containers.values() if r.running and r.child}
        if self.pause_pid:
            known.add(self.pause_pid)
        if not set(self.children) <= known:
            return False               # a hook is running
        if any(t[3] for t in self.timers):
            return False               # e.g. a SIGKILL due at the end of a grace period
        # Adopted processes are watched through their pidfds; without one they are polled.
        return all(r.child or r.pidfd >= 0 for r in self.containers.values() if r.running)

    def hibernate(self) -> None:
        """Exec nsbox-idle with what it needs to copy logs and to exec us back; returns if it cannot."""
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        # A child that exited before the block is handled here; one that exits after it
        # leaves SIGCHLD pending, and nsbox-idle wakes on it at once.
        if self._reap() or not self.can_hibernate():
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            return
        for r in self.containers.values():
            for w in r.streams.values():
                w.flush()
        if self.dirty:
            self.save()
        state, fds = self._handoff()
        state_fd = os.memfd_create("nsbox-watcher-state", 0)
        os.write(state_fd, json.dumps(state).encode())
        os.lseek(state_fd, 0, os.SEEK_SET)
        for fd in fds:
            os.set_inheritable(fd, True)
        # -S: no `site` (≈ 5 ms of every wake-up); this package's parent and this process's
        # sys.path (with what .pth files added) instead.
        path = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))] + [p for p in sys.path if p]
        resume = "import sys; sys.path[:] = %r; from nsbox.watcher import resume; resume(%d)" % (path, state_fd)
        argv = [self.title, "--check", self.paths.pod_json]
        adopted = [r.pidfd for r in self.containers.values() if r.running and not r.child]
        for fd in [self.listener.fileno(), *adopted]:
            argv += ["--wake-on", str(fd)]
        for r in self.containers.values():
            for fd, w in r.streams.items():
                argv += ["--log", f"{fd}:{w.fd}:{w.stream.decode()}"]
        due = [t[0] for t in (self.deadline_timer, *(r.restart_timer for r in self.containers.values()),
                              *(r.config_timer for r in self.containers.values())) if t]
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

    def _handoff(self) -> tuple[dict[str, Any], list[int]]:
        """What resume() needs that status.json does not hold, and the descriptors that must survive."""
        fds = [self.listener.fileno(), self.lock.fd]
        fds += [fd for fd in (self.pid_ns_fd, self.host_netns_fd) if fd >= 0]
        containers = {}
        for name, r in self.containers.items():
            containers[name] = {
                **r.to_status(),           # pid, procStart, restartCount, state, lastState
                "pidfd": r.pidfd, "child": r.child, "backoffIndex": r.backoff_index,
                "startedMono": r.started_mono, "logFd": r.log_fd, "streams": {str(fd): w.stream.decode() for fd, w in r.streams.items()},
                "oomBefore": r.oom_before, "restartAt": r.restart_timer[0] if r.restart_timer else None,
                "configRetryAt": r.config_timer[0] if r.config_timer else None,
            }
            fds += [fd for fd in (r.pidfd, r.log_fd, *r.streams) if fd >= 0]
        return {
            "root": self.root.path, "uid": self.uid, "adopt": self.adopt, "pod": self.pod.to_dict(),
            "listener": self.listener.fileno(), "lock": self.lock.fd,
            "pidNsFd": self.pid_ns_fd, "hostNetnsFd": self.host_netns_fd,
            "pause": [self.pause_pid, self.pause_start], "pauseChild": self.pause_pid in self.children,
            "phase": self.phase, "reason": self.reason, "message": self.message,
            "startTime": self.start_time, "podIP": self.pod_ip, "events": self.events,
            "exitCodes": self.exit_codes, "etcFiles": self.etc_files, "mountErrors": self.mount_errors,
            "deadlineAt": self.deadline_timer[0] if self.deadline_timer else None,
            "containers": containers,
        }, fds

    def resume(self, state: dict[str, Any]) -> None:
        """Carry on where hibernate() left off, in the same process, exec'd back by nsbox-idle."""
        _set_process_name(self.title)
        self.lock.fd = state["lock"]
        self.listener = socket.socket(fileno=state["listener"])
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, self._on_accept)
        self.pid_ns_fd, self.host_netns_fd = state["pidNsFd"], state["hostNetnsFd"]
        self.pause_pid, self.pause_start = state["pause"]
        if state["pauseChild"]:
            self.children[self.pause_pid] = self._pause_exited
        self.phase, self.reason, self.message = state["phase"], state["reason"], state["message"]
        self.start_time, self.pod_ip, self.events = state["startTime"], state["podIP"], state["events"]
        self.exit_codes, self.etc_files = state["exitCodes"], state["etcFiles"]
        self.mount_errors = state.get("mountErrors", {})
        now = time.monotonic()
        if state["deadlineAt"] is not None:
            self.deadline_timer = self.at(max(0.0, state["deadlineAt"] - now), self._deadline_exceeded,
                                          keeps_awake=False)
        fds = [self.lock.fd, self.listener.fileno()] + [fd for fd in (self.pid_ns_fd, self.host_netns_fd) if fd >= 0]
        for name, st in state["containers"].items():
            r = self.containers.get(name)
            if r is None:
                continue
            r.pid, r.pidfd, r.proc_start, r.child = st["pid"], st["pidfd"], st["procStart"], st["child"]
            r.restart_count, r.backoff_index = st["restartCount"], st["backoffIndex"]
            r.started_mono, r.state, r.last_state = st["startedMono"], st["state"], st["lastState"]
            r.log_fd, r.oom_before = st["logFd"], st["oomBefore"]
            for fd, stream in st["streams"].items():
                r.streams[int(fd)] = logs.StreamWriter(r.log_fd, stream)
                self.sel.register(int(fd), selectors.EVENT_READ, lambda fd, r=r: self._on_output(r, fd))
            if r.running and r.child:
                self.children[r.pid] = lambda status, r=r: self._container_exited(r, status)
            elif r.running:
                self.sel.register(r.pidfd, selectors.EVENT_READ, lambda _fd, r=r: self._adopted_exit(r))
            if st["restartAt"] is not None:
                r.restart_timer = self.at(max(0.0, st["restartAt"] - now), lambda r=r: self._restart(r),
                                          keeps_awake=False)
            if st.get("configRetryAt") is not None:
                r.config_timer = self.at(max(0.0, st["configRetryAt"] - now), lambda r=r: self._config_retry(r),
                                         keeps_awake=False)
            fds += [fd for fd in (r.pidfd, r.log_fd, *r.streams) if fd >= 0]
        for fd in fds:
            os.set_inheritable(fd, False)
        self.every(STATE_CHECK_PERIOD, self._check_state)
        self._every_config_resync()
        self.dirty = False
        self.active_at = now
        self._catch_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})   # nsbox-idle left it blocked
        self._reap()
        self._check_state()

    # ------------------------------------------------------------ status

    def event(self, kind: str, reason: str, message: str, obj: str = "") -> None:
        self.events.append({"time": kube.rfc3339(), "type": kind, "reason": reason,
                            "message": message, "object": obj})
        del self.events[:-MAX_EVENTS]
        self.dirty = True

    def save(self) -> None:
        if self.done:
            return                         # torn down: there is no state left to write
        self._update_phase()
        write_json(self.paths.status_json, {
            "phase": self.phase, "reason": self.reason, "message": self.message,
            "startTime": self.start_time,
            **({"podIP": self.pod_ip} if self.pod_ip else {}),
            "pause": {"pid": self.pause_pid, "procStart": self.pause_start} if self.pause_pid else None,
            "watcher": {"pid": os.getpid(), "procStart": native.process_start_time(os.getpid())},
            "containers": [r.to_status() for r in self.containers.values()],
            "events": self.events,
        })
        self.dirty = False

    def _update_phase(self) -> None:
        if self.phase == "Failed" and self.reason:
            return                         # DeadlineExceeded, Evicted: final
        inits = [r for r in self.containers.values() if r.is_init]
        mains = [r for r in self.containers.values() if not r.is_init]
        self.phase = kube.pod_phase([r.to_status() for r in mains], [r.to_status() for r in inits],
                                    self.pod.restart_policy)

    # ------------------------------------------------------------ containers

    @property
    def ended(self) -> bool:
        """Failed for good (DeadlineExceeded, Evicted): nothing starts or restarts any more."""
        return self.phase == "Failed" and bool(self.reason)

    def _start_next(self) -> list[str]:
        """Start what may start now: the next init container, or every main container."""
        if self.deletion is not None or self.ended:
            return []
        for r in self.containers.values():
            if not r.is_init:
                continue
            term = r.state.get("terminated")
            if term and term.get("exitCode") == 0:
                continue
            if not r.running and r.restart_timer is None and not term:
                return self._start_all([r])
            return []
        waiting = [r for r in self.containers.values()
                   if not r.is_init and not r.running and "waiting" in r.state and r.restart_timer is None]
        return self._start_all(waiting)

    def _start_all(self, rs: list[Running]) -> list[str]:
        errors = []
        for r in rs:
            error = self._try_start(r)
            if error:
                errors.append(f'container "{r.spec.name}": {error}')
        return errors

    def _try_start(self, r: Running) -> str | None:
        """Start `r`; a failure becomes its terminated state (StartError) and is returned.

        The failure is recorded on the next turn of the loop, not here: recording an exit
        starts the next round of containers, and the caller may be in the middle of a round.
        """
        try:
            self.start_container(r)
            return None
        except WaitingForConfig as e:
            self._wait_for_config(r, e)
            return None
        except (NsboxError, OSError) as e:
            self._close_log(r)
            self.at(0, lambda r=r, e=e: self._record_start_failure(r, e))
            return str(e)

    def start_container(self, r: Running) -> None:
        from nsbox import container
        c = r.spec
        config = self._container_config(c)
        cg_path = self.cg.container_path(self.uid, c.name)
        self.cg.create(cg_path)
        self.cg.set_limits(cg_path, cpu_millis=c.resources.cpu_millis, memory_bytes=c.resources.memory_bytes)
        self.cg.set_devices(cg_path, None if c.security.privileged else cgroups.DEFAULT_DEVICE_RULES)
        r.oom_before = self.cg.oom_killed(cg_path)
        os.makedirs(self.paths.container_dir(c.name), 0o700, exist_ok=True)
        attach = self.attach if self.attach is not None and (c.stdin or c.tty) and r.restart_count == 0 else None
        console = os.ttyname(attach[1]) if attach and c.tty and os.isatty(attach[1]) else ""
        req = container.start_request(self.pod, c, self.paths, self.etc_files, pid_ns_fd=self.pid_ns_fd,
                                      pod_ip=self.pod_ip, console=console, config=config)
        log_path = self.paths.log_file(self.pod.namespace, self.pod.name, c.name, r.restart_count)
        os.makedirs(os.path.dirname(log_path), 0o700, exist_ok=True)
        r.log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        pipes = []
        cg_fd, procs = self.cg.join_targets(cg_path)
        try:
            req.cgroup_fd, req.cgroup_procs = cg_fd, procs
            if attach is not None:
                req.stdin = attach[0] if c.stdin else -1
                if c.tty:
                    req.stdout, req.stderr, req.ctty = attach[1], attach[2], True
            if req.stdout < 0:
                for stream in ("stdout", "stderr"):
                    rd, wr = os.pipe2(os.O_CLOEXEC)
                    pipes.append((rd, wr, stream))
                req.stdout, req.stderr = pipes[0][1], pipes[1][1]
            try:
                pid, pidfd = native.spawn(req)
            except native.SpawnError:
                for rd, _, _ in pipes:
                    os.close(rd)
                raise
        finally:
            for _, wr, _ in pipes:
                os.close(wr)
            if cg_fd >= 0:
                os.close(cg_fd)
        for rd, _, stream in pipes:
            os.set_blocking(rd, False)
            r.streams[rd] = logs.StreamWriter(r.log_fd, stream)
            self.sel.register(rd, selectors.EVENT_READ, lambda fd, r=r: self._on_output(r, fd))
        r.pid, r.pidfd, r.child = pid, pidfd, True
        r.proc_start = native.process_start_time(pid) or 0
        r.started_mono = time.monotonic()
        r.term_at = 0.0
        r.state = {"running": {"startedAt": kube.rfc3339()}}
        self.children[pid] = lambda status, r=r: self._container_exited(r, status)
        if config is not None:
            for message in config.skipped:
                self.event("Warning", "InvalidEnvironmentVariableNames", message)   # the pod's, as the kubelet's
        self.event("Normal", "Started", f"Started container {c.name}", c.name)
        if c.post_start:
            self._run_hook(r, c.post_start, "PostStart")

    # ------------------------------------------------------------ ConfigMaps, Secrets, downward API

    @property
    def config_volumes(self) -> list[Volume]:
        """configMap, secret, downwardAPI and projected volumes (projection.CONFIG_VOLUME_KINDS)."""
        return [v for v in self.pod.volumes if v.kind not in ("emptyDir", "hostPath")]

    def _mount_config_volumes(self) -> None:
        """Each config volume on its own tmpfs, filled now."""
        if not self.config_volumes:
            return
        from nsbox import projection
        for v in self.config_volumes:
            projection.mount_tmpfs(v, self.paths.volume(v.name))
        self._sync_volumes()

    def _sync_volumes(self) -> None:
        """Bring the config volumes up to date with the store (the kubelet's resync)."""
        if self.done or not self.config_volumes:
            return
        from nsbox import projection
        errors = projection.sync_volumes(self.root.path, self.pod, self.paths.volume)
        for name, detail in errors.items():
            if self.mount_errors.get(name) != detail:       # one event per cause, as the kubelet's are aggregated
                self.event("Warning", "FailedMount", str(projection.MountNotReady(name, detail)))
        self.mount_errors = errors

    def _every_config_resync(self) -> None:
        if self.config_volumes:
            self.every(CONFIG_RESYNC_PERIOD, self._sync_volumes)

    def _container_config(self, c: ContainerSpec) -> Any:
        """What container `c` needs from objects before it starts: its volumes set up, its
        variables resolved (projection.EnvConfig, or None when it uses no object)."""
        for m in c.volume_mounts:
            if m.name in self.mount_errors:
                from nsbox import projection
                # A volume set up once keeps its files when its object goes: only a first set-up waits.
                if not os.path.lexists(os.path.join(self.paths.volume(m.name), projection.DATA_DIR)):
                    raise projection.MountNotReady(m.name, self.mount_errors[m.name])
        if c.env_from or any(e.ref_kind for e in c.env):
            from nsbox import projection
            return projection.env_config(self.root.path, self.pod, c)
        return None

    def _wait_for_config(self, r: Running, e: WaitingForConfig) -> None:
        """The kubelet's waiting states: ContainerCreating with a FailedMount event (a volume),
        CreateContainerConfigError with a Failed event (a variable); tried again in
        CONFIG_RETRY seconds, or at once when an object changes (sync-config)."""
        if e.reason == "ContainerCreating":
            state = {"waiting": {"reason": e.reason}}     # the FailedMount event is _sync_volumes'
        else:
            state = {"waiting": {"reason": e.reason, "message": str(e)}}
            if r.state != state:
                self.event("Warning", "Failed", f"Error: {e}", r.spec.name)
        r.state = state
        self.cancel(r.config_timer)
        r.config_timer = self.at(CONFIG_RETRY, lambda r=r: self._config_retry(r), keeps_awake=False)
        self.dirty = True

    def _config_retry(self, r: Running) -> None:
        r.config_timer = None
        if self.deletion is not None or self.ended or r.running:
            return
        if self.mount_errors:
            self._sync_volumes()
        self._try_start(r)

    def _sync_config(self) -> None:
        """An object changed (Runtime.config_changed): refresh volumes, retry who waited for one."""
        self._sync_volumes()
        for r in self.containers.values():
            if r.config_timer is not None:
                self.cancel(r.config_timer)
                self._config_retry(r)

    def _record_start_failure(self, r: Running, e: Exception) -> None:
        self._close_log(r)
        r.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": str(e),
                                  "startedAt": kube.rfc3339(), "finishedAt": kube.rfc3339()}}
        self.event("Warning", "Failed", f"Error: {e}", r.spec.name)
        self._after_exit(r, 128)

    def _on_output(self, r: Running, fd: int) -> None:
        try:
            self._feed(r, fd, os.read(fd, 65536))
        except BlockingIOError:
            pass

    def _feed(self, r: Running, fd: int, data: bytes) -> None:
        if data:
            r.streams[fd].feed(data)
            return
        r.streams.pop(fd).flush()          # end of stream
        self.sel.unregister(fd)
        os.close(fd)
        if not r.streams and not r.running:
            self._close_log(r)

    def _drain(self, r: Running) -> None:
        """Log what the container wrote before it exited, without waiting for more."""
        for fd in list(r.streams):
            while fd in r.streams:
                try:
                    self._feed(r, fd, os.read(fd, 65536))
                except BlockingIOError:
                    break

    def _close_log(self, r: Running) -> None:
        for fd, w in list(r.streams.items()):
            w.flush()
            self.sel.unregister(fd)
            os.close(fd)
        r.streams.clear()
        if r.log_fd >= 0:
            os.close(r.log_fd)
            r.log_fd = -1

    def _container_exited(self, r: Running, status: int) -> None:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            code, extra = kube.exit_code_for_signal(sig), {"signal": sig}
        else:
            code, extra = os.waitstatus_to_exitcode(status), {}
        cg_path = self.cg.container_path(self.uid, r.spec.name)
        if os.WIFSIGNALED(status) and self.cg.oom_killed(cg_path) > r.oom_before:
            reason = kube.terminated_reason(code, oom_killed=True)
        else:
            reason = kube.terminated_reason(code)
        started = r.state.get("running", {}).get("startedAt", "")
        r.state = {"terminated": {"exitCode": code, "reason": reason, "startedAt": started,
                                  "finishedAt": kube.rfc3339(), **extra}}
        self._process_gone(r)
        self._after_exit(r, code)

    def _adopted_exit(self, r: Running) -> None:
        r.state = {"terminated": {"exitCode": 137 if r.term_at else 0, "reason": "Unknown",
                                  "message": "exit status unknown (the process was adopted)",
                                  "finishedAt": kube.rfc3339()}}
        self._process_gone(r)
        self._after_exit(r, -1)

    def _poll_adopted(self, r: Running) -> None:
        if r.running and native.process_start_time(r.pid) != r.proc_start:
            self._adopted_exit(r)

    def _process_gone(self, r: Running) -> None:
        if r.pidfd >= 0:
            if not r.child:
                self.sel.unregister(r.pidfd)
            os.close(r.pidfd)
        r.pid, r.pidfd = 0, -1
        cg_path = self.cg.container_path(self.uid, r.spec.name)
        # With its own PID namespace the kernel killed the rest with PID 1; with a shared
        # one (or an adopted process) leftovers may remain: nothing outlives its container.
        if self.cg.populated(cg_path):
            self.cg.kill(cg_path)
        self._drain(r)
        if not r.streams:
            self._close_log(r)
        self.dirty = True

    def _after_exit(self, r: Running, code: int) -> None:
        if self.deletion is not None:
            self._check_terminated()
            return
        ran = time.monotonic() - r.started_mono if r.started_mono else 0
        if ran >= kube.BACKOFF_RESET_AFTER:
            r.backoff_index = 0
        restart = kube.should_restart_init if r.is_init else kube.should_restart
        if code >= 0 and not self.ended and restart(self.pod.restart_policy, code):
            delay = kube.restart_backoff(r.backoff_index, self.base_backoff, self.max_backoff)
            r.backoff_index += 1
            r.last_state = r.state
            if delay > 0:
                r.state = {"waiting": {"reason": "CrashLoopBackOff",
                                       "message": f"back-off {delay:g}s restarting failed container={r.spec.name}"}}
                self.event("Warning", "BackOff", f"Back-off {delay:g}s restarting failed container", r.spec.name)
            else:
                r.state = {"waiting": {"reason": "ContainerCreating"}}
            r.restart_timer = self.at(delay, lambda r=r: self._restart(r), keeps_awake=False)
        else:
            self._notify_exit(r, code)
            self._start_next()
        self._maybe_auto_remove()

    def _notify_exit(self, r: Running, code: int) -> None:
        """Tell `run --attach` that its container has ended for good (after the teardown with --rm)."""
        self.exit_codes[r.spec.name] = code
        if self.pod.auto_remove:
            return
        if all(n in self.exit_codes for n in (c.name for c in self.pod.containers)):
            self.report_ready({"exitCodes": self.exit_codes}, final=True)
        for sock, waits in list(self.clients.items()):
            if waits == "exit:" + r.spec.name:
                self._send(sock, {"exited": code})

    def _restart(self, r: Running) -> None:
        r.restart_timer = None
        if self.deletion is not None or self.ended:
            return
        r.restart_count += 1
        self.dirty = True
        self._try_start(r)

    def _maybe_auto_remove(self) -> None:
        if not self.pod.auto_remove or self.deletion is not None:
            return
        self._update_phase()
        if self.phase in ("Succeeded", "Failed"):
            self.deletion = {"gracePeriodSeconds": 0, "force": False, "auto": True}
            self._check_terminated()

    # ------------------------------------------------------------ hooks and exec

    def _run_hook(self, r: Running, command: list[str], kind: str, on_done: Callable[[bool], None] | None = None) -> None:
        from nsbox import container
        try:
            req, fds = container.exec_request(self.pod, r.spec, r.pid, command, pod_ip=self.pod_ip)
        except NsboxError as e:
            self.event("Warning", f"Failed{kind}Hook", str(e), r.spec.name)
            if on_done:
                on_done(False)
            return
        cg_fd, procs = self.cg.join_targets(self.cg.container_path(self.uid, r.spec.name))
        req.cgroup_fd, req.cgroup_procs = cg_fd, procs
        try:
            pid, pidfd = native.spawn(req)
        except native.SpawnError as e:
            self.event("Warning", f"Failed{kind}Hook", str(e), r.spec.name)
            if on_done:
                on_done(False)
            return
        finally:
            for fd in fds:
                os.close(fd)
            if cg_fd >= 0:
                os.close(cg_fd)
        if pidfd >= 0:
            os.close(pidfd)

        def exited(status: int) -> None:
            ok = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            if not ok:
                self.event("Warning", f"Failed{kind}Hook",
                           f"{kind} hook {command!r} exited with status {os.waitstatus_to_exitcode(status)}",
                           r.spec.name)
                if kind == "PostStart" and r.running and self.deletion is None:
                    # As the kubelet does: a failed postStart kills the container.
                    self.signal(r, signal.SIGKILL)
            if on_done:
                on_done(ok)
        self.children[pid] = exited

    def signal(self, r: Running, sig: int) -> None:
        if r.running:
            native.send_signal(r.pid, sig, r.pidfd if r.pidfd >= 0 else None, r.proc_start)

    # ------------------------------------------------------------ termination (SPEC §5)

    def begin_termination(self, grace: int, force: bool) -> None:
        """preStop, SIGTERM when it ends (or at G), SIGKILL at max(G, SIGTERM + 2 s)."""
        t0 = time.monotonic()
        if self.terminating:
            # A second delete may only shorten the grace period (as the API server allows).
            if t0 + grace < self.kill_deadline:
                self.kill_deadline = t0 + grace
                for r in self.containers.values():
                    if r.running:
                        self.at(grace, lambda r=r: (self._term(r), self._kill_if_due(r)))
            return
        self.terminating = True
        self.deletion = self.deletion or {}
        self.deletion.update({"gracePeriodSeconds": grace, "force": force})
        self.event("Normal", "Killing", f"Stopping pod (grace period {grace}s)")
        self.kill_deadline = t0 + grace
        self._stop_containers(grace, force)
        self._check_terminated()

    def _stop_containers(self, grace: int, force: bool) -> None:
        """Cancel restarts; preStop then SIGTERM for each running container (SIGKILL follows in _term)."""
        for r in self.containers.values():
            self.cancel(r.restart_timer)
            self.cancel(r.config_timer)
            r.restart_timer = r.config_timer = None
            if not r.running:
                continue
            self.event("Normal", "Killing", f"Stopping container {r.spec.name}", r.spec.name)
            if r.spec.pre_stop and not force and grace > 0 and r.child:
                hook_timer = self.at(grace, lambda r=r: self._term(r))
                self._run_hook(r, r.spec.pre_stop, "PreStop",
                               on_done=lambda ok, r=r, t=hook_timer: (self.cancel(t), self._term(r)))
            else:
                self._term(r)

    def fail_pod(self, reason: str, message: str) -> None:
        """The pod has failed for good (DeadlineExceeded, Evicted), as the kubelet decides it:
        phase Failed with a reason, containers stopped with the pod's grace period, nothing
        restarted; the pod itself stays until it is deleted."""
        if self.deletion is not None or self.phase in ("Succeeded", "Failed"):
            return
        self.phase, self.reason, self.message = "Failed", reason, message
        self.event("Warning", reason, message)
        grace = self.pod.termination_grace_period
        self.kill_deadline = time.monotonic() + grace
        self._stop_containers(grace, force=False)
        self._maybe_auto_remove()

    def _arm_active_deadline(self) -> None:
        """activeDeadlineSeconds counts from the pod's start (status.startTime), across watchers."""
        limit = self.pod.active_deadline_seconds
        if limit is None or self.deletion is not None or self.ended:
            return
        elapsed = 0.0
        if self.adopt:
            elapsed = time.time() - kube.epoch(self.start_time)
        self.deadline_timer = self.at(max(0.0, limit - elapsed), self._deadline_exceeded, keeps_awake=False)

    def _deadline_exceeded(self) -> None:
        self.deadline_timer = None
        self.fail_pod("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")

    def _check_volume_usage(self) -> None:
        """Evict the pod when a disk-backed emptyDir outgrows its sizeLimit (the kubelet's eviction)."""
        if self.deletion is not None or self.ended:
            return
        for v in self.pod.volumes:
            if v.kind == "emptyDir" and v.medium != "Memory" and v.size_limit:
                used = disk_usage(self.paths.volume(v.name))
                if used > v.size_limit:
                    self.fail_pod("Evicted", f'Usage of EmptyDir volume "{v.name}" exceeds the limit '
                                             f'"{v.size_limit}" bytes (uses {used} bytes).')
                    return

    def _term(self, r: Running) -> None:
        if not r.running or r.term_at:
            return
        r.term_at = time.monotonic()
        self.signal(r, signal.SIGTERM)
        kill_at = kube.sigkill_at(self.kill_deadline, r.term_at)
        self.at(kill_at - time.monotonic(), lambda r=r: self._kill(r))

    def _kill_if_due(self, r: Running) -> None:
        if r.term_at and time.monotonic() >= kube.sigkill_at(self.kill_deadline, r.term_at):
            self._kill(r)

    def _kill(self, r: Running) -> None:
        cg_path = self.cg.container_path(self.uid, r.spec.name)
        if r.running or self.cg.populated(cg_path):
            self.event("Normal", "Killing", f"Grace period over: SIGKILL to container {r.spec.name}", r.spec.name)
            self.cg.kill(cg_path)
            self.signal(r, signal.SIGKILL)

    def _check_terminated(self) -> None:
        """Tear the pod down as soon as every container has ended (not at the end of G)."""
        if self.deletion is None or self.done:
            return
        if any(r.running for r in self.containers.values()):
            return
        self.teardown()

    def _kill_all(self) -> None:
        """SIGKILL to every process of the pod (its whole cgroup), then reap our children."""
        pod_cg = self.cg.pod_path(self.uid)
        if self.cg.populated(pod_cg):
            self.cg.kill(pod_cg)
        deadline = time.monotonic() + 5
        while self.children and time.monotonic() < deadline:
            self._reap()
            if self.children:
                time.sleep(0.01)

    def teardown(self) -> None:
        """SPEC §6: no process, mount, cgroup or state of the pod remains."""
        pod_cg = self.cg.pod_path(self.uid)
        self._kill_all()
        for r in self.containers.values():
            self._close_log(r)
        for v in self.pod.volumes:
            if (v.kind, v.medium) == ("emptyDir", "Memory") or v in self.config_volumes:   # tmpfs each
                _umount(self.paths.volume(v.name))
        _umount(self.paths.shm)
        if self.pod.network == "bridge":
            from nsbox import network
            network.detach(self.root.path, self.uid, self.host_netns_fd)   # before the state goes (gc's rule)
        if self.pid_ns_fd >= 0:
            os.close(self.pid_ns_fd)
            self.pid_ns_fd = -1
        self.cg.remove(pod_cg)
        remove_tree(self.paths.log_dir(self.pod.namespace, self.pod.name))
        self.root.release(self.pod.namespace, self.pod.name, self.uid)
        remove_tree(self.paths.dir)
        self.done = True

    def _check_state(self) -> None:
        """If the pod's state was wiped (a lost /run, a removed root), nothing can manage the pod
        any more: end it rather than leave processes nobody knows about."""
        if self.done or os.path.exists(self.paths.pod_json):
            return
        self._kill_all()
        if self.pod.network == "bridge":
            from nsbox import network
            network.detach(self.root.path, self.uid, self.host_netns_fd)
        try:
            self.cg.remove(self.cg.pod_path(self.uid))
        except NsboxError:
            pass
        self.done = True

    def _finish(self) -> None:
        self.report_ready({"gone": True, "exitCodes": self.exit_codes}, final=True)
        for sock in list(self.clients):
            self._send(sock, {"gone": True, "exitCodes": self.exit_codes})
            sock.close()

    def _send(self, sock: socket.socket, msg: dict[str, Any]) -> None:
        try:
            sock.send(json.dumps(msg).encode())
        except OSError:
            pass

    # ------------------------------------------------------------ the control socket

    def _on_accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self.clients[sock] = ""
        self.sel.register(sock, selectors.EVENT_READ, self._on_request)

    def _on_request(self, sock: socket.socket) -> None:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 65536, 3)
        except BlockingIOError:
            return
        except OSError:
            msg, fds = b"", []
        if not msg:
            self.sel.unregister(sock)
            self.clients.pop(sock, None)
            sock.close()
            return
        try:
            reply = self.handle(json.loads(msg), fds, sock)
        except (NsboxError, OSError) as e:
            reply = {"error": str(e)}
        finally:
            for fd in fds:
                os.close(fd)
        if reply is not None:
            self._send(sock, reply)
        if self.dirty and not self.done:
            self.save()

    def handle(self, req: dict[str, Any], fds: list[int], sock: socket.socket) -> dict[str, Any] | None:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "start":
            # A container added to the running pod (`run --pod`): the CLI wrote it into pod.json.
            self.pod = PodSpec.from_dict(read_json(self.paths.pod_json))
            c = self.pod.container(req["container"])
            if c is None or c.name in self.containers and self.containers[c.name].running:
                raise NsboxError(f'container "{req["container"]}" cannot be started')
            r = self.containers.setdefault(c.name, Running(c, False))
            saved = self.attach
            if fds:
                self.attach = tuple(fds) if len(fds) == 3 else (fds[0], -1, -1)
            try:
                error = self._try_start(r)
            finally:
                self.attach = saved
            if error:
                raise NsboxError(f'container "{c.name}": {error}')
            return {"ok": True, "pid": r.pid}
        if op == "sync-config":
            self._sync_config()
            return {"ok": True}
        if op == "delete":
            self.deletion = read_json(self.paths.deletion_json) or {}
            self.begin_termination(int(req.get("grace", 30)), bool(req.get("force")))
            self.clients[sock] = "delete"
            return {"ok": True}
        if op == "wait-exit":
            # `run --attach`: told when the named container has terminated for good.
            name = req["container"]
            self.clients[sock] = "exit:" + name
            if name in self.exit_codes and not self.pod.auto_remove:
                return {"exited": self.exit_codes[name]}
            return {"ok": True}
        raise NsboxError(f"unknown request {op!r}")


# ---------------------------------------------------------------- helpers

def _pod_limits(pod: PodSpec) -> dict[str, int | None]:
    """`pod create --cpu/--memory` set the pod's own limits; otherwise the kubelet's sum rule."""
    cpu, mem = pod.annotations.get("nsbox.io/pod-cpu"), pod.annotations.get("nsbox.io/pod-memory")
    if cpu or mem:
        return {"cpu_millis": kube.parse_cpu(cpu) if cpu else None,
                "memory_bytes": kube.parse_memory(mem) if mem else None}
    return {
        "cpu_millis": kube.pod_resource_limit([c.resources.cpu_millis for c in pod.containers],
                                              [c.resources.cpu_millis for c in pod.init_containers]),
        "memory_bytes": kube.pod_resource_limit([c.resources.memory_bytes for c in pod.containers],
                                                [c.resources.memory_bytes for c in pod.init_containers]),
    }


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
            continue                       # vanished or unreadable: count what can be counted
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


# These use python-prctl's C module `_prctl` (what `prctl.set_name` & co. call): the `prctl`
# wrapper builds its capability classes at import, ≈ 5–8 ms before the watcher's ready report
# and 0.1 MB in every watcher, for calls it does not need.

def _set_process_name(name: str) -> None:
    try:
        import _prctl
        _prctl.prctl(_prctl.PR_SET_NAME, name[:15])
        _prctl.set_proctitle(name)
    except (ImportError, OSError):
        pass


def _become_subreaper() -> None:
    """Orphans of the pod's processes are reparented to the watcher, which reaps them."""
    try:
        import _prctl
        _prctl.prctl(_prctl.PR_SET_CHILD_SUBREAPER, 1)
    except ImportError:
        pass
