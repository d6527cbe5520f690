"""The per-pod watcher: the one process that lives as long as the pod.

It is forked from the CLI that creates the pod and outlives it (like
conmon/containerd-shim, but one per pod). It

- holds the pod's namespaces (it made them: holder.py, sandbox.py) and starts every
  container as its own child, so it can reap them and read their exit status;
- captures their stdout/stderr into CRI log files;
- applies the restart policy with back-off, runs init containers in order (containers.py),
  starts containers that wait for a ConfigMap or Secret when it comes (config.py);
- records container states and events in status.json (it is its only writer; podstate.py);
- carries out termination and tears the pod down (termination.py, README "How pods end");
- answers the CLI on a unix socket (`start`, `delete`, `wait-exit`: commands.py);
- while nothing happens, becomes the small C program nsbox-idle in its own
  process, which execs the watcher back on the next event (hibernation.py).

`Watcher` below holds these parts together around one event loop (loop.py); each part
keeps a reference to it and reaches the others through it (`w.containers`, `w.termination`).
It imports nothing heavy (no yaml, no pyroute2): its memory is paid per pod.

A watcher started with `adopt=True` takes over a pod whose watcher died: it
cannot reap or log the surviving processes (they are not its children), but
it can signal them through pidfds and carry out a termination.
"""

from __future__ import annotations

import json
import os
import selectors
import sys
import time

from nsbox import cgroups, kube, native
from nsbox.errors import NsboxError
from nsbox.model import PodSpec
from nsbox.state import FileLock, PodPaths, Root, read_json, write_state
from nsbox.watcher import holder
from nsbox.watcher.commands import ControlServer
from nsbox.watcher.config import ConfigVolumes
from nsbox.watcher.containers import Containers
from nsbox.watcher.hibernation import Hibernation
from nsbox.watcher.images import ImagePulls
from nsbox.watcher.loop import EventLoop
from nsbox.watcher.podstate import PodState
from nsbox.watcher.probes import Probes
from nsbox.watcher.termination import STATE_CHECK_PERIOD, VOLUME_CHECK_PERIOD, Termination

# `container` and `sandbox` (making things) are imported where they are used: a watcher
# exec'd back from nsbox-idle to end its pod needs neither.
TYPE_CHECKING = False  # typing costs milliseconds of start-up: only type checkers import it
if TYPE_CHECKING:
    from typing import Any


MAX_EVENTS = 100
SHED_DELAY = 0.5  # after the ready report: the CLI does not wait for it, a quick `run --rm` never pays it


# ---------------------------------------------------------------- launching


def launch(
    root: Root,
    uid: str,
    *,
    adopt: bool = False,
    stdio: tuple[int, int, int] | None = None,
    follow: bool = False,
    prime: bool = False,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Fork the watcher of pod `uid` and wait until it reports that the pod is set up.

    Returns the watcher's report ({"ok": True, "errors": [...]}). The watcher
    is forked into a session of its own (no controlling terminal, no signal from the
    CLI's terminal), so it survives the CLI: once the CLI exits, init (or the nearest
    subreaper) is its parent. One fork, not the daemon's classic two: the second would
    only keep it from being a session leader, which could gain a controlling terminal by
    opening one, and a watcher never opens a terminal (the CLI passes it descriptors);
    docs/design.md §2.
    `stdio` hands the CLI's terminal or pipes to the pod's containers (-i/-t).
    With `follow`, the report pipe stays open and report["pipe"] is its read
    end: the watcher writes one more JSON line there when the pod's containers
    have ended for good (after the teardown of a `--rm` pod), so `run -a`
    learns the exit code even when nothing of the pod is left to ask.
    `prime`: the watcher starts a process as it sets the pod up, into cgroups the CLI made;
    idle until the report, the CLI meanwhile primes that process's migration
    (Cgroups.prime_migrations).
    """
    r, w = os.pipe()
    if os.fork() == 0:
        try:
            os.close(r)
            os.setsid()
            _watcher_main(root, uid, w, adopt, stdio, follow)
        except BaseException:
            pass
        os._exit(0)
    os.close(w)
    if prime:
        cgroups.detect().prime_migrations()
    try:
        line = read_line(r, timeout)
    except TimeoutError:
        os.close(r)
        raise NsboxError(
            f"the pod's watcher did not report within {timeout:.0f} s (see {root.pod(uid).watcher_log})"
        ) from None
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


def _watcher_main(
    root: Root, uid: str, ready_fd: int, adopt: bool, stdio: tuple[int, int, int] | None, follow: bool
) -> None:
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
        def shed() -> None:
            if not watcher.hibernation.can_hibernate():
                _shed_cli_memory()

        watcher.loop.at(SHED_DELAY, shed, keeps_awake=False)
        watcher.run()
    except BaseException as e:
        import traceback  # here: the CLIs that import this module only to talk to a watcher skip it

        traceback.print_exc()
        msg = str(e) if isinstance(e, (NsboxError, OSError)) else f"internal error: {e!r}"
        watcher.report_ready({"error": msg})
        raise


def _shed_cli_memory() -> None:
    """The watcher is forked from the CLI and lives as long as the pod: give back what only the
    CLI needed (argument parsing, YAML, rendering) so that each pod costs less."""
    import gc

    for name in list(sys.modules):
        if any(name == m or name.startswith(m + ".") for m in _CLI_ONLY_MODULES):  # and their submodules
            del sys.modules[name]
    gc.collect()
    native.malloc_trim()  # hand the freed heap back: the watcher lives as long as the pod


_CLI_ONLY_MODULES = {
    "argparse",
    "yaml",
    "_yaml",
    "nsbox.cli",
    "nsbox.apply",
    "nsbox.manifest",
    "nsbox.status",
    "nsbox.pods",
    "nsbox.doctor",
    "gettext",
    "uuid",
    "threading",
    "concurrent",
}


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
        # The spec comes with the state: pod.json may be what vanished (Termination.check_state).
        watcher = Watcher.from_handoff(state)
        watcher.hibernation.resume(state)
        watcher.run()
    except BaseException:
        import traceback

        traceback.print_exc()  # to the watcher's log; the next CLI adopts the pod
        code = 1
    os._exit(code)


# ---------------------------------------------------------------- the watcher


class Watcher:
    def __init__(
        self,
        root: Root,
        uid: str,
        *,
        adopt: bool = False,
        attach: tuple[int, ...] | None = None,
        follow: bool = False,
        pod: PodSpec | None = None,
        state: PodState | None = None,
    ):
        self.root = root
        self.uid = uid
        self.paths: PodPaths = root.pod(uid)
        self.adopt = adopt
        self.attach = attach  # the CLI's stdio for -i/-t, until the container has it
        self.follow = follow  # keep the report pipe for the final exit codes
        self.pod: PodSpec = pod or PodSpec.from_dict(read_json(self.paths.pod_json))
        self.state = state or PodState()
        self.cg = cgroups.detect()
        self.lock = FileLock(self.paths.watcher_lock)
        self.ready_fd = -1  # the report pipe to the CLI that forked us
        self.dirty = True  # status.json is behind
        self.done = False  # the pod is gone: the loop ends
        self.loop = EventLoop()
        self.containers = Containers(self)
        self.probes = Probes(self)
        self.config = ConfigVolumes(self)
        self.images = ImagePulls(self)
        self.termination = Termination(self)
        self.hibernation = Hibernation(self)
        self.server = ControlServer(self)

    @classmethod
    def from_handoff(cls, state: dict[str, Any]) -> Watcher:
        """The watcher that hibernation.handoff() described, before it resumes."""
        return cls(
            Root(state["root"]),
            state["uid"],
            adopt=state["adopt"],
            pod=PodSpec.from_dict(state["pod"]),
            state=PodState.from_dict(state),
        )

    @property
    def title(self) -> str:
        return f"nsbox-watch {self.pod.namespace}/{self.pod.name}"

    def start(self, ready_fd: int) -> None:
        self.ready_fd = ready_fd
        if not self.lock.acquire(blocking=False):
            raise NsboxError(f'pod "{self.pod.name}" already has a watcher')
        holder.set_process_name(self.title)
        holder.become_subreaper()
        self.loop.catch_signals()
        self.server.listen()

        old = read_json(self.paths.status_json) or {}
        if self.adopt:
            self._adopt(old)
        else:
            self.state.events = old.get("events", [])
            holder.create_sandbox(self)
        term = self.termination
        term.deletion = read_json(self.paths.deletion_json)
        errors: list[str] = []
        if term.deletion is not None:
            # A termination that was under way when the previous watcher died starts over
            # with the full grace period.
            term.begin(int(term.deletion.get("gracePeriodSeconds", 30)), bool(term.deletion.get("force")))
        elif not self.adopt:
            errors = self.containers.start_next()
        # The CLI's terminal or stdin went to the container; holding it ourselves would keep
        # the terminal open after the container is gone.
        for fd in self.attach or ():
            os.close(fd)
        self.attach = None
        self.loop.every(STATE_CHECK_PERIOD, term.check_state)
        self.config.resync_periodically()
        term.arm_active_deadline()
        if term.checks_volumes:
            self.loop.every(VOLUME_CHECK_PERIOD, term.check_volume_usage)
        self.save()
        self.report_ready({"ok": True, "errors": errors, "pid": os.getpid()})
        self.loop.active_at = time.monotonic()

    def _adopt(self, old: dict[str, Any]) -> None:
        """Take over the pod a dead watcher left, as its status.json (`old`) describes it."""
        self.state = PodState.from_status(old)
        holder.adopt_pause(self)
        from nsbox.watcher import adoption

        adoption.adopt(self.containers, old)
        self.event("Warning", "WatcherRestarted", "a new watcher adopted the pod's processes")

    def run(self) -> None:
        while not self.done:
            self.loop.turn()
            if self.dirty and not self.done:
                self.save()
            self.hibernation.after_turn()
        self.report_ready({"gone": True, "exitCodes": self.state.exit_codes}, final=True)
        self.server.finish(self.state.exit_codes)

    def report_ready(self, report: dict[str, Any], final: bool = False) -> None:
        """A JSON line to the CLI that forked us; the pipe stays open for `follow` until `final`."""
        if self.ready_fd < 0:
            return
        try:
            os.write(self.ready_fd, json.dumps(report).encode() + b"\n")
        except OSError:
            final = True  # the CLI is gone: nobody to tell
        if final or not self.follow or "error" in report:
            os.close(self.ready_fd)
            self.ready_fd = -1

    # ------------------------------------------------------------ status

    def event(self, kind: str, reason: str, message: str, obj: str = "") -> None:
        events = self.state.events
        events.append({"time": kube.rfc3339(), "type": kind, "reason": reason, "message": message, "object": obj})
        del events[:-MAX_EVENTS]
        self.dirty = True

    def save(self) -> None:
        if self.done:
            return  # torn down: there is no state left to write
        self.update_phase()
        watcher = {"pid": os.getpid(), "procStart": native.process_start_time(os.getpid())}
        write_state(self.paths.status_json, self.state.to_status(watcher, [r.to_status() for r in self.containers]))
        self.dirty = False

    def update_phase(self) -> None:
        if self.state.ended:
            return  # DeadlineExceeded, Evicted: final
        inits = [r.to_status() for r in self.containers if r.is_init]
        mains = [r.to_status() for r in self.containers if not r.is_init]
        self.state.phase = kube.pod_phase(mains, inits, self.pod.restart_policy, sidecars=self.pod.sidecars)
